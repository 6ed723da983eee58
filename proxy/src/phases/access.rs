//! Kong's access phase: the route's plugins in priority order on the client's request. The
//! first plugin that answers ends the phase; its [`PluginReply`](crate::respond::PluginReply)
//! becomes the reply in `respond` (Kong's JSON, or trailers-only for gRPC).
//!
//! On a route where plugins scoped to consumers apply, the phase watches for an auth plugin
//! identifying such a consumer and then goes on with that consumer's chain, from the plugin
//! after the one that authenticated (Kong resolves each plugin's config lazily, in priority
//! order); the later phases run that chain too. Routes without such plugins take the plain loop.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use http::header::HeaderName;
use http::request::Parts;

use super::Ctx;
use crate::config::state::RouteRt;
use crate::downstream::request_body::ClientBody;
use crate::downstream::ConnInfo;
use crate::plugins::consumers::Consumers;
use crate::plugins::{AccessCtx, Plugin, PluginChain};
use crate::respond::ProxyError;
use crate::settings::trust::TrustedIps;

const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn access(
    route: &RouteRt,
    index: usize,
    parts: &mut Parts,
    conn: &ConnInfo,
    trusted: &TrustedIps,
    grpc: bool,
    consumers: &Consumers,
    ctx: &mut Ctx,
) -> Result<(), ProxyError> {
    ctx.route = Some(index);
    let plugins = route.plugins.access();
    let starts = route.plugins.request_start();
    if plugins.is_empty() && starts.is_empty() {
        return Ok(());
    }
    let mut req = AccessCtx {
        client_ip: forwarded_ip(&parts.headers, conn, trusted),
        parts,
        capture_paths: &route.capture_paths,
        route_name: &route.metrics.route,
        service_name: &route.metrics.service,
        grpc,
        tls: conn.tls,
        state: &mut ctx.plugins,
        consumers,
    };
    for p in starts {
        p.request_start(&mut req);
    }
    let result = if route.consumer_chains.is_empty() {
        plugins.iter().try_for_each(|p| run(p, &mut req))
    } else {
        with_consumer_chains(plugins, &route.consumer_chains, &mut req)
    };
    // The trace ends with the request's record, whatever ends the request.
    if let (Some(t), Some(d)) = (ctx.plugins.trace.take(), ctx.done.as_mut()) {
        d.set_trace(t);
    }
    // The `consumer` label of this request's metrics (also when a later plugin refused it).
    if let (Some(c), Some(done)) = (&ctx.plugins.consumer, ctx.done.as_mut()) {
        if let Some(c) = consumers.get(c.index) {
            done.set_consumer(c.label.clone());
        }
    }
    result
}

/// One plugin's access handler; a refusal becomes an event of the request's trace (when sampled).
#[inline(always)]
fn run(p: &Arc<dyn Plugin>, req: &mut AccessCtx<'_>) -> Result<(), ProxyError> {
    p.access(req).map_err(|reply| {
        if let Some(t) = req.state.trace.as_mut() {
            t.rejected(p.name(), &reply);
        }
        ProxyError::Plugin(reply)
    })
}

/// The access loop of a route with consumer-scoped plugins: once the request's consumer is one
/// with a chain here, the rest of the phase runs that chain's plugins ordered after the current
/// one, and the chain is kept for the later phases.
fn with_consumer_chains(
    route_plugins: &[Arc<dyn Plugin>],
    chains: &HashMap<usize, Arc<PluginChain>>,
    req: &mut AccessCtx<'_>,
) -> Result<(), ProxyError> {
    let mut chain: Option<Arc<PluginChain>> = None;
    let mut i = 0;
    loop {
        let list = chain.as_deref().map_or(route_plugins, PluginChain::access);
        let Some(p) = list.get(i).cloned() else { return Ok(()) };
        run(&p, req)?;
        i += 1;
        let Some(consumer) = req.state.consumer.as_mut() else { continue };
        let Some(next) = chains.get(&consumer.index) else { continue };
        if chain.as_ref().is_some_and(|c| Arc::ptr_eq(c, next)) {
            continue;
        }
        consumer.chain = Some(next.clone());
        // Kong's order: priority descending, then name descending.
        let after = |q: &Arc<dyn Plugin>| (q.priority(), q.name()) < (p.priority(), p.name());
        i = next.access().iter().position(after).unwrap_or(next.access().len());
        chain = Some(next.clone());
    }
}

/// The route's body filters on the client's body (request-size-limiting), in priority order.
pub(crate) fn request_body(route: &RouteRt, parts: &Parts, mut body: ClientBody, ctx: &mut Ctx) -> ClientBody {
    for p in route.plugins.request_body() {
        body = p.request_body(body, &parts.headers, &mut ctx.plugins);
    }
    body
}

/// Kong's forwarded client address (`kong.client.get_forwarded_ip`): `X-Real-IP` (Kong's default
/// `real_ip_header`) when the peer is trusted, else the connection's client (the PROXY protocol
/// address on such listeners).
pub(crate) fn forwarded_ip(headers: &http::HeaderMap, conn: &ConnInfo, trusted: &TrustedIps) -> IpAddr {
    if trusted.contains(conn.peer.ip()) {
        if let Some(ip) = headers.get(X_REAL_IP).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok()) {
            return ip;
        }
    }
    conn.client.ip()
}
