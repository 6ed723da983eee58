//! Kong's header_filter phase: the response head on its way to the client. Hop-by-hop headers
//! go, then the route's header_filter plugins run in priority order. The proxy's own replies
//! (errors, plugin answers) pass through the same plugins once the access phase has started.

use http::response::Parts;
use http::{HeaderMap, Version};

use crate::config::state::RouteRt;
use crate::plugins::{HeaderFilterCtx, RequestState};
use crate::response_body::ProxyBody;
use crate::wire::hop_by_hop::strip_hop_by_hop;

#[inline(always)]
pub(crate) fn header_filter(route: &RouteRt, head: &mut Parts, state: &mut RequestState) {
    head.version = Version::HTTP_11;
    strip_hop_by_hop(&mut head.headers);
    run_plugins(route, head.status.as_u16(), &mut head.headers, state);
}

/// The route's header_filter plugins (response-transformer's hook point among them).
pub(crate) fn run_plugins(route: &RouteRt, status: u16, headers: &mut HeaderMap, state: &mut RequestState) {
    // The consumer's chain when the access phase switched to one (consumers.rs).
    let chain = state.consumer.as_ref().and_then(|c| c.chain.clone());
    let plugins = chain.as_deref().unwrap_or(&route.plugins).header_filter();
    if plugins.is_empty() {
        return;
    }
    let mut resp = HeaderFilterCtx { status, headers, grpc_route: route.grpc || route.grpcs, state };
    for p in plugins {
        p.header_filter(&mut resp);
    }
}

/// The body_filter of the proxy's own reply: response-transformer's JSON edit, if its
/// header_filter asked for one (Kong's plugins see `kong.response.exit` bodies too).
pub(crate) fn local_body(resp: &mut http::Response<ProxyBody>, state: &mut RequestState) {
    if let (Some(t), ProxyBody::Full(body)) = (state.json_body.take(), resp.body_mut()) {
        if let Some(b) = body.take() {
            *body = Some(t.apply_body(b));
        }
    }
}
