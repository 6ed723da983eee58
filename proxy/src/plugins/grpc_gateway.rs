//! Kong's `grpc-gateway` (PRIORITY 998): a JSON/REST request that matches one of the API's
//! `google.api.http` bindings goes to the upstream as a gRPC call, and the gRPC answer comes back
//! as JSON. The API is compiled when the config is built (proxy_config::transcode), so nothing
//! is parsed per request but the request itself.
//!
//! - access: the binding is chosen by method and path template; path variables and query
//!   parameters become a JSON tree of the request message's fields ([`Transcode`]), kept in
//!   [`RequestState::grpc_gateway`](super::RequestState). gRPC requests pass through untouched.
//! - [`request::finish`], once the upstream request is built: the body is merged in (`body: "*"`
//!   or one field), the message is encoded by reflection and framed, the request becomes
//!   `POST /pkg.Service/Method` with `content-type: application/grpc`.
//! - [`response::respond`], once the upstream answered: the gRPC messages become proto3 JSON
//!   (one object for a unary call; for a server stream, a JSON array that streams,
//!   [`stream`]), and a gRPC error becomes Google's HTTP status and a `{"code", "message"}` body.

use std::sync::Arc;

use prost_reflect::{FieldDescriptor, Kind};
use proxy_config::plugins::GrpcGatewayConfig;
use proxy_config::transcode::{field_path, Binding, BodyRule};
use serde_json::{Map, Value};
use thiserror::Error;

use super::{AccessCtx, BuildError, Phases, Plugin};
use crate::respond::PluginReply;

pub(crate) mod request;
pub(crate) mod response;
mod stream;

/// Why a request cannot be transcoded; [`GatewayError::status`] is the answer's status.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum GatewayError {
    #[error("grpc-gateway: no google.api.http rule matches {method} {path}")]
    NoBinding { method: String, path: String },
    #[error("grpc-gateway: path variable '{0}' is not valid UTF-8 once decoded")]
    Encoding(String),
    #[error("grpc-gateway: query parameter '{name}': {why}")]
    Query { name: String, why: String },
    #[error("grpc-gateway: field '{field}': '{value}' is not a bool")]
    Bool { field: String, value: String },
    #[error("grpc-gateway: field '{0}' is set twice")]
    Twice(String),
    #[error("grpc-gateway: this rule takes no request body")]
    UnexpectedBody,
    #[error("grpc-gateway: the request body is not JSON: {0}")]
    Json(String),
    #[error("grpc-gateway: the request body must be a JSON object")]
    NotObject,
    #[error("grpc-gateway: {0}")]
    Message(String),
    #[error("grpc-gateway: the request body is over 8 MiB")]
    TooLarge,
}

impl GatewayError {
    pub(crate) fn status(&self) -> u16 {
        match self {
            GatewayError::NoBinding { .. } => 404,
            GatewayError::TooLarge => 413,
            _ => 400,
        }
    }
    pub(crate) fn reply(&self) -> Box<PluginReply> {
        Box::new(PluginReply::new(self.status(), self.to_string()))
    }
}

/// One configured `grpc-gateway` instance: its bindings, in declaration order.
#[derive(Debug)]
pub(crate) struct GrpcGateway {
    bindings: Vec<Arc<Binding>>,
}

impl GrpcGateway {
    pub(crate) const NAME: &'static str = "grpc-gateway";

    pub(crate) fn new(c: &GrpcGatewayConfig) -> Result<Self, BuildError> {
        let api = c.compile().map_err(|(field, e)| BuildError::new(format!("config.{field}"), e.to_string()))?;
        Ok(GrpcGateway { bindings: api.bindings.into_iter().map(Arc::new).collect() })
    }
}

/// A request being transcoded: its binding and the fields the path and query set.
#[derive(Debug)]
pub struct Transcode {
    pub binding: Arc<Binding>,
    pub fields: Map<String, Value>,
}

impl Plugin for GrpcGateway {
    fn name(&self) -> &'static str {
        Self::NAME
    }
    fn priority(&self) -> u32 {
        998
    }
    fn phases(&self) -> Phases {
        Phases::ACCESS
    }
    fn access(&self, req: &mut AccessCtx<'_>) -> Result<(), Box<PluginReply>> {
        if req.grpc {
            return Ok(());
        }
        let path = req.parts.uri.path();
        let method = req.parts.method.as_str();
        let found = self.bindings.iter().find_map(|b| {
            if b.http_method != method {
                return None;
            }
            b.template.matches(path).map(|vars| (b, vars))
        });
        let Some((binding, vars)) = found else {
            return Err(GatewayError::NoBinding { method: method.to_string(), path: path.to_string() }.reply());
        };
        let fields = bound_fields(binding, &vars, req.parts.uri.query()).map_err(|e| e.reply())?;
        req.state.grpc_gateway = Some(Box::new(Transcode { binding: binding.clone(), fields }));
        Ok(())
    }
}

/// The JSON tree of the fields the path variables and the query parameters set. The query
/// sets fields only when the rule's body is not `*`, and never the body's field.
fn bound_fields(b: &Binding, vars: &[&str], query: Option<&str>) -> Result<Map<String, Value>, GatewayError> {
    let mut tree = Map::new();
    for (raw, path) in vars.iter().zip(&b.variables) {
        let value = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| GatewayError::Encoding(dotted(path)))?;
        insert(&mut tree, path, &value)?;
    }
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let refuse = |why: String| GatewayError::Query { name: name.to_string(), why };
        if b.body == BodyRule::Whole {
            return Err(refuse("the rule's body is '*': every field comes from the body".into()));
        }
        let path = field_path(&b.method.input(), &name).map_err(refuse)?;
        if let (BodyRule::Field(f), Some(first)) = (&b.body, path.first()) {
            if f == first {
                return Err(refuse("the field is the request body".into()));
            }
        }
        if path.last().is_some_and(|f| f.is_map() || (matches!(f.kind(), Kind::Message(_)) && !is_wkt(f))) {
            return Err(refuse("not a scalar field".into()));
        }
        insert(&mut tree, &path, &value)?;
    }
    Ok(tree)
}

/// Well-known types whose JSON form is a string (Timestamp, Duration, FieldMask, wrappers).
fn is_wkt(f: &FieldDescriptor) -> bool {
    matches!(f.kind(), Kind::Message(m) if m.package_name() == "google.protobuf")
}

fn dotted(path: &[FieldDescriptor]) -> String {
    path.iter().map(|f| f.name()).collect::<Vec<_>>().join(".")
}

/// Sets `path` to `raw` in `tree` (JSON by proto field name): a bool becomes a JSON bool, a
/// repeated field collects every value, anything else stays a string (proto3 JSON reads numbers,
/// enums and well-known types from strings).
fn insert(tree: &mut Map<String, Value>, path: &[FieldDescriptor], raw: &str) -> Result<(), GatewayError> {
    let Some((last, parents)) = path.split_last() else { return Ok(()) };
    let mut node = tree;
    for f in parents {
        let slot = node.entry(f.name()).or_insert_with(|| Value::Object(Map::new()));
        node = match slot {
            Value::Object(m) => m,
            _ => return Err(GatewayError::Twice(dotted(path))),
        };
    }
    let value = match last.kind() {
        Kind::Bool => Value::Bool(match raw {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(GatewayError::Bool { field: dotted(path), value: raw.to_string() }),
        }),
        _ => Value::String(raw.to_string()),
    };
    if last.is_list() {
        match node.entry(last.name()).or_insert_with(|| Value::Array(Vec::new())) {
            Value::Array(items) => items.push(value),
            _ => return Err(GatewayError::Twice(dotted(path))),
        }
    } else if node.insert(last.name().to_string(), value).is_some() {
        return Err(GatewayError::Twice(dotted(path)));
    }
    Ok(())
}
