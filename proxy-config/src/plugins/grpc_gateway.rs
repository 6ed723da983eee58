//! `grpc-gateway` (Kong `kong/plugins/grpc-gateway/schema.lua`, plus Envoy's descriptor-set
//! option): JSON/REST requests transcoded to gRPC by the `google.api.http` rules of a `.proto`.
//! Exactly one source: `proto` (Kong's: a path on the proxy's disk), `proto_text` (the file's
//! text, named by `proto_name`; the controller fills it from a ConfigMap or Secret) or
//! `descriptor_set` (a base64 `FileDescriptorSet` with its imports). The check compiles the
//! source (crate::transcode), so a proto that does not compile or a rule naming a missing field
//! is a config error naming file, line and field.

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::check::{join, Checker};
use crate::transcode::{self, Api, CompileError, ProtoSource};

pub const NAME: &str = "grpc-gateway";

fn default_name() -> String {
    "api.proto".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcGatewayConfig {
    /// Path of a `.proto` file (Kong's field).
    #[serde(default)]
    pub proto: Option<String>,
    /// The `.proto` file's text.
    #[serde(default)]
    pub proto_text: Option<String>,
    /// The file name `proto_text` is compiled (and reported) as.
    #[serde(default = "default_name")]
    pub proto_name: String,
    /// A base64 `FileDescriptorSet` (`protoc --include_imports --descriptor_set_out`).
    #[serde(default)]
    pub descriptor_set: Option<String>,
}

impl GrpcGatewayConfig {
    /// Compiles the configured source; the error's field is the source's.
    pub fn compile(&self) -> Result<Api, (&'static str, CompileError)> {
        if let Some(path) = &self.proto {
            return transcode::compile(ProtoSource::Path(path)).map_err(|e| ("proto", e));
        }
        if let Some(text) = &self.proto_text {
            return transcode::compile(ProtoSource::Text { name: &self.proto_name, text })
                .map_err(|e| ("proto_text", e));
        }
        let b64 = self.descriptor_set.as_deref().unwrap_or_default();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| ("descriptor_set", CompileError::DescriptorSet(format!("not base64: {e}"))))?;
        transcode::compile(ProtoSource::DescriptorSet(&bytes)).map_err(|e| ("descriptor_set", e))
    }
}

pub(crate) fn check(c: &mut Checker, v: Option<&Value>) {
    let sources = ["proto", "proto_text", "descriptor_set"];
    let one_source = "exactly one of these fields must be set: proto, proto_text, descriptor_set";
    let Some(m) = c.record("config", v, &["proto", "proto_text", "proto_name", "descriptor_set"], &[]) else {
        return c.err("config", one_source);
    };
    let set: Vec<&str> =
        sources.into_iter().filter(|k| c.string(m, "config", k).is_some_and(|s| !s.is_empty())).collect();
    c.string(m, "config", "proto_name");
    if set.len() != 1 {
        return c.err("config", one_source);
    }
    let mut v = Value::Object(m.clone());
    super::check::strip_nulls(&mut v);
    let config: GrpcGatewayConfig = match serde_json::from_value(v) {
        Ok(config) => config,
        Err(e) => return c.err("config", e.to_string()),
    };
    if let Err((field, e)) = config.compile() {
        c.err(join("config", field), e.to_string());
    }
}
