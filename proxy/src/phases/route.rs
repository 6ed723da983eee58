//! Route (Kong's `access.before`): find the route on the request's config snapshot, then Kong's
//! post-routing protocol checks in Kong's order (its runloop's `access.before`): 415 non-gRPC on a gRPC route, 426
//! gRPC over HTTP/1.1, grpc-status 1 plaintext on a grpcs-only route, 426/redirect for https-only.
//! A grpc route with the grpc-web plugin takes gRPC-Web calls and preflights past these checks, and
//! a preflight that matched nothing is matched again as the gRPC-Web call it announces.

use http::header::{self, HeaderMap};
use http::request::Parts;
use http::uri::{Authority, PathAndQuery};
use http::{HeaderValue, Uri};

use crate::config::state::LiveConfig;
use crate::downstream::ConnInfo;
use crate::respond::ProxyError;
use crate::router::{RouteMatch, RouteRequest};
use crate::telemetry::observe::Completion;

/// The matched route.
pub(crate) struct Routed {
    /// Index into `LiveConfig::routes`.
    pub route: usize,
    /// Length of the path prefix the route matched (for `strip_path`).
    pub matched_path_len: usize,
    /// The Host field the router read (a request without an authority in its target, i.e. any
    /// HTTP/1.1 request in origin form): `upstream_request` reuses it instead of looking the
    /// field up again when no access plugin ran in between (bench/callgrind.sh).
    pub host_field: Option<HeaderValue>,
}

#[inline(always)]
pub(crate) fn route(
    parts: &Parts,
    conn: &ConnInfo,
    rt: &LiveConfig,
    grpc: bool,
    h2: bool,
    done: &mut Option<Completion>,
) -> Result<Routed, ProxyError> {
    // `host_of`, keeping the field it read.
    let (host, host_field) = match parts.uri.authority() {
        Some(a) => (a.as_str(), None),
        None => match parts.headers.get(header::HOST) {
            Some(v) => (v.to_str().unwrap_or(""), Some(v.clone())),
            None => ("", None),
        },
    };
    let path = parts.uri.path();
    let request = RouteRequest {
        host,
        path,
        method: parts.method.as_str(),
        headers: &parts.headers,
        sni: conn.sni.as_deref(),
        grpc,
    };
    let found = match rt.router.find(&request) {
        Some(m) => Some(m),
        None => grpc_web_preflight(rt, &request),
    };
    // `let else`, not `ok_or(error)?`: an error built eagerly is dropped on every routed request.
    let Some(m) = found else { return Err(ProxyError::NoRoute) };
    let route = &rt.routes[m.route];
    if let Some(d) = done.as_mut() {
        d.set_route(route.metrics.clone());
        if grpc {
            d.set_grpc_path(path);
        }
    }

    if route.is_grpc_route() && !(route.plugins.has_grpc_web() && grpc_web_admits(parts)) {
        if !grpc {
            return Err(ProxyError::NotGrpc);
        }
        if !h2 {
            return Err(ProxyError::GrpcOverHttp1);
        }
        if !conn.tls && !route.grpc {
            return Err(ProxyError::GrpcsOnly);
        }
    } else if route.https && !route.http && !conn.tls {
        let status = route.https_redirect_status_code;
        let location = (status != 426).then(|| {
            let pq = parts.uri.path_and_query().map(PathAndQuery::as_str).unwrap_or("/");
            format!("https://{}{}", strip_port(host), pq)
        });
        return Err(ProxyError::HttpsRequired { status, location });
    }
    Ok(Routed { route: m.route, matched_path_len: m.matched_path_len, host_field })
}

/// A browser's CORS preflight for a gRPC-Web call carries no content type, so it misses the routes
/// that require a gRPC one (every route translated from a GRPCRoute). When nothing else matched,
/// it is looked up again as the gRPC-Web call it announces, and kept only if that finds a grpc
/// route with the grpc-web plugin (which answers it). Only a preflight that matched nothing pays.
#[cold]
fn grpc_web_preflight(rt: &LiveConfig, req: &RouteRequest<'_>) -> Option<RouteMatch> {
    if req.method != "OPTIONS" || !req.headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        return None;
    }
    let mut headers = req.headers.clone();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc-web+proto"));
    let m = rt.router.find(&RouteRequest { headers: &headers, grpc: true, ..*req })?;
    let route = &rt.routes[m.route];
    (route.is_grpc_route() && route.plugins.has_grpc_web()).then_some(m)
}

/// On a grpc/grpcs route with the grpc-web plugin: a gRPC-Web call (any HTTP version, either
/// port) or a CORS preflight goes on to the plugin instead of Kong's protocol refusals.
fn grpc_web_admits(parts: &Parts) -> bool {
    parts.method == http::Method::OPTIONS || crate::wire::grpc_web::Mode::of(&parts.headers).is_some()
}

/// `:authority` for HTTP/2, else the Host header; empty when neither is present.
pub(crate) fn host_of<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> &'a str {
    uri.authority()
        .map(Authority::as_str)
        .or_else(|| headers.get(header::HOST).and_then(|v| v.to_str().ok()))
        .unwrap_or("")
}

pub(crate) fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map(|(h, _)| &host[..h.len() + 1]).unwrap_or(host);
    }
    // The port is the run of digits at the end, after a ':'. One scan from the end over bytes,
    // not `rsplit_once(':')` then a digit check: this runs on every request (X-Forwarded-Host).
    let b = host.as_bytes();
    let digits = b.iter().rev().take_while(|c| c.is_ascii_digit()).count();
    match b.len().checked_sub(digits + 1) {
        Some(colon) if b[colon] == b':' => &host[..colon],
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(strip_port("example.com:8000"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:8000"), "[::1]");
        assert_eq!(strip_port("example.com:"), "example.com");
        assert_eq!(strip_port("a:b:80"), "a:b");
        assert_eq!(strip_port("a:b1"), "a:b1");
        assert_eq!(strip_port("8000"), "8000");
        assert_eq!(strip_port(":80"), "");
    }
}
