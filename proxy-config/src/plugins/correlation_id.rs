//! `correlation-id` (Kong `kong/plugins/correlation-id/schema.lua`): a request id in a header,
//! kept when the client sent one, generated otherwise, and optionally echoed to the client.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::check::{bad_header, join, valid_token, Checker};

pub const NAME: &str = "correlation-id";

/// How a missing id is generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Generator {
    /// A random UUID per request.
    #[serde(rename = "uuid")]
    Uuid,
    /// A UUID per worker with a counter appended (`<uuid>#<n>`).
    #[default]
    #[serde(rename = "uuid#counter")]
    UuidCounter,
    /// Kong's nginx-variable tracker string (`server_addr-server_port-pid-connection-…`).
    #[serde(rename = "tracker")]
    Tracker,
}

pub const GENERATORS: [&str; 3] = ["uuid", "uuid#counter", "tracker"];

fn default_header() -> String {
    "Kong-Request-ID".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorrelationIdConfig {
    #[serde(default = "default_header")]
    pub header_name: String,
    #[serde(default)]
    pub generator: Generator,
    #[serde(default)]
    pub echo_downstream: bool,
}

impl Default for CorrelationIdConfig {
    fn default() -> Self {
        CorrelationIdConfig { header_name: default_header(), generator: Generator::default(), echo_downstream: false }
    }
}

pub(crate) fn check(c: &mut Checker, v: Option<&Value>) {
    let Some(m) = c.record("config", v, &["header_name", "generator", "echo_downstream"], &[]) else { return };
    if let Some(h) = c.string(m, "config", "header_name") {
        if !valid_token(h) {
            c.err(join("config", "header_name"), bad_header(h));
        }
    }
    c.one_of(m, "config", "generator", &GENERATORS);
    c.boolean(m, "config", "echo_downstream");
}
