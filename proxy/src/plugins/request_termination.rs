//! Kong's `request-termination` (PRIORITY 2): answers every request with a fixed status and
//! message or body instead of proxying it. The controller uses it for Gateway API rules without a
//! usable backend. Its reply goes through `respond` like every other plugin refusal, so a gRPC
//! client gets trailers-only with the mapped `grpc-status` and the message.

use proxy_config::plugins::RequestTerminationConfig;

use super::{AccessCtx, Phases, Plugin};
use crate::respond::PluginReply;

/// One configured `request-termination` instance.
#[derive(Debug)]
pub(crate) struct RequestTermination {
    reply: PluginReply,
}

impl RequestTermination {
    pub(crate) const NAME: &'static str = "request-termination";

    pub(crate) fn new(c: RequestTerminationConfig) -> Self {
        let message = c.message.unwrap_or_else(|| default_message(c.status_code));
        let body = c.body.map(|b| (c.content_type.unwrap_or_else(|| "application/json; charset=utf-8".into()), b));
        RequestTermination { reply: PluginReply::new(c.status_code, message).with_body(body) }
    }
}

impl Plugin for RequestTermination {
    fn name(&self) -> &'static str {
        Self::NAME
    }
    fn priority(&self) -> u32 {
        2
    }
    fn phases(&self) -> Phases {
        Phases::ACCESS
    }
    fn access(&self, _req: &mut AccessCtx<'_>) -> Result<(), Box<PluginReply>> {
        Err(Box::new(self.reply.clone()))
    }
}

/// Kong's message when `message` is not set: the status's reason phrase.
fn default_message(status: u16) -> String {
    match status {
        500 => "An unexpected error occurred".into(),
        503 => "Service unavailable".into(),
        _ => http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("").into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxy_config::plugins::PluginConfig;

    fn build(config: serde_json::Value) -> RequestTermination {
        match PluginConfig::from_entity(RequestTermination::NAME, &config).unwrap() {
            PluginConfig::RequestTermination(c) => RequestTermination::new(c),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn message_defaults_to_kong_text() {
        let t = build(serde_json::json!({"status_code": 503}));
        assert_eq!((t.reply.status, t.reply.message.as_str()), (503, "Service unavailable"));
        let t = build(serde_json::json!({"status_code": 500, "message": "no backend"}));
        assert_eq!((t.reply.status, t.reply.message.as_str()), (500, "no backend"));
    }
}
