//! Kong's log phase: once a response is over, the route's log plugins run and the request's
//! record goes to the metrics and the access log (`telemetry::observe`). For an upstream
//! response this happens when its body ends or is dropped (`body_filter`); for the proxy's own
//! replies, right away.

use http::Response;

use crate::plugins::PluginChain;
use crate::respond::ProxyError;
use crate::response_body::ProxyBody;
use crate::telemetry::observe::Completion;

/// The route's log plugins for a finished upstream response.
pub(crate) fn run_plugins(chain: &PluginChain, done: &Completion) {
    for p in chain.log() {
        p.log(done.status());
    }
}

/// Records a reply the proxy made itself.
pub(crate) fn local_reply(done: Option<Completion>, resp: &Response<ProxyBody>, err: &ProxyError) {
    if let Some(mut d) = done {
        d.set_response(resp.status().as_u16(), false, resp.headers());
        d.set_error(&err.to_string());
        d.complete();
    }
}
