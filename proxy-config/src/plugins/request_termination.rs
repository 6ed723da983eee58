//! `request-termination` (Kong `kong/plugins/request-termination/schema.lua`): answer with a
//! fixed status and message or body instead of proxying. `echo` and `trigger` are Kong's
//! debugging aids; sluice does not implement them and rejects them when set.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::check::{join, Checker, LeftOut};

pub const NAME: &str = "request-termination";

fn default_status() -> u16 {
    503
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestTerminationConfig {
    #[serde(default = "default_status")]
    pub status_code: u16,
    /// The message of Kong's default `{"message": ...}` body (exclusive with `body`).
    #[serde(default)]
    pub message: Option<String>,
    /// The raw body's content type (requires `body`).
    #[serde(default)]
    pub content_type: Option<String>,
    /// A raw response body.
    #[serde(default)]
    pub body: Option<String>,
    /// Kong's default `false` is accepted; `true` is rejected by the schema check.
    #[serde(default, skip_serializing)]
    echo: bool,
}

impl Default for RequestTerminationConfig {
    fn default() -> Self {
        RequestTerminationConfig { status_code: 503, message: None, content_type: None, body: None, echo: false }
    }
}

impl RequestTerminationConfig {
    /// A config answering `status_code` with `message`.
    pub fn with_message(status_code: u16, message: impl Into<String>) -> Self {
        RequestTerminationConfig { status_code, message: Some(message.into()), ..Default::default() }
    }
}

fn present(s: Option<&str>) -> bool {
    s.is_some_and(|s| !s.is_empty())
}

pub(crate) fn check(c: &mut Checker, v: Option<&Value>) {
    let fields = ["status_code", "message", "content_type", "body", "echo"];
    let left_out = [LeftOut {
        name: "trigger",
        why: "request-termination always terminates (Kong's trigger header/query argument is not implemented)",
    }];
    let Some(m) = c.record("config", v, &fields, &left_out) else { return };
    c.between(m, "config", "status_code", 100, 599);
    let message = c.string(m, "config", "message");
    let content_type = c.string(m, "config", "content_type");
    let body = c.string(m, "config", "body");
    if c.boolean(m, "config", "echo") == Some(true) {
        c.err(join("config", "echo"), "not supported by sluice: echoing the request back is not implemented");
    }
    if present(message) && (present(content_type) || present(body)) {
        c.err("config", "message cannot be used with content_type or body");
    }
    if present(content_type) && !present(body) {
        c.err("config", "content_type requires a body");
    }
    if let Some(ct) = content_type {
        if ct.bytes().any(|b| b.is_ascii_control()) {
            c.err(join("config", "content_type"), format!("invalid content type '{ct}'"));
        }
    }
}
