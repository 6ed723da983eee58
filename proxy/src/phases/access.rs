//! Kong's access phase: the route's plugins in priority order on the client's request. The
//! first plugin that answers ends the phase; its [`PluginReply`](crate::respond::PluginReply)
//! becomes the reply in `respond` (Kong's JSON, or trailers-only for gRPC).

use std::net::IpAddr;

use http::header::HeaderName;
use http::request::Parts;

use super::Ctx;
use crate::config::state::RouteRt;
use crate::downstream::request_body::ClientBody;
use crate::downstream::ConnInfo;
use crate::plugins::AccessCtx;
use crate::respond::ProxyError;
use crate::settings::trust::TrustedIps;

const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

#[inline(always)]
pub(crate) fn access(
    route: &RouteRt,
    index: usize,
    parts: &mut Parts,
    conn: &ConnInfo,
    trusted: &TrustedIps,
    grpc: bool,
    ctx: &mut Ctx,
) -> Result<(), ProxyError> {
    ctx.route = Some(index);
    let plugins = route.plugins.access();
    if plugins.is_empty() {
        return Ok(());
    }
    let mut req = AccessCtx {
        client_ip: forwarded_ip(&parts.headers, conn, trusted),
        parts,
        capture_paths: &route.capture_paths,
        route_name: &route.metrics.route,
        service_name: &route.metrics.service,
        grpc,
        state: &mut ctx.plugins,
    };
    for p in plugins {
        p.access(&mut req).map_err(ProxyError::Plugin)?;
    }
    Ok(())
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
