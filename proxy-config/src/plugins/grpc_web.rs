//! `grpc-web` (Kong `kong/plugins/grpc-web/schema.lua`): lets browsers call gRPC services.
//! Kong's fields: `allow_origin_header` (the `Access-Control-Allow-Origin` it answers with) and
//! `pass_stripped_path` (send the route-stripped path upstream instead of the client's path).
//! Kong's `proto` serves its JSON mode (`application/json` bodies); sluice leaves JSON to the
//! `grpc-gateway` transcoder and rejects `proto` here with an error naming it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::check::{join, Checker, LeftOut};

pub const NAME: &str = "grpc-web";

fn any_origin() -> String {
    "*".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcWebConfig {
    /// `Access-Control-Allow-Origin` on preflights and responses (Kong's default `*`).
    #[serde(default = "any_origin")]
    pub allow_origin_header: String,
    /// `true`: the upstream gets the path after the route's `strip_path`; `false` (Kong's
    /// default): the client's path as sent (a gRPC method path).
    #[serde(default)]
    pub pass_stripped_path: bool,
}

impl Default for GrpcWebConfig {
    fn default() -> Self {
        GrpcWebConfig { allow_origin_header: any_origin(), pass_stripped_path: false }
    }
}

pub(crate) fn check(c: &mut Checker, v: Option<&Value>) {
    let left_out = [LeftOut {
        name: "proto",
        why: "grpc-web carries gRPC-Web only; JSON calls go through the grpc-gateway plugin",
    }];
    let Some(m) = c.record("config", v, &["allow_origin_header", "pass_stripped_path"], &left_out) else { return };
    if let Some(origin) = c.string(m, "config", "allow_origin_header") {
        if origin.is_empty() || origin.bytes().any(|b| b.is_ascii_control()) {
            c.err(join("config", "allow_origin_header"), format!("invalid header value '{origin}'"));
        }
    }
    c.boolean(m, "config", "pass_stripped_path");
}
