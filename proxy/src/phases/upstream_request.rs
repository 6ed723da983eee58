//! Kong's `access.after`: the request as the upstream gets it. The path joins the service path
//! and the matched request path (`strip_path`, `path_handling`), Host follows `preserve_host`,
//! hop-by-hop headers go, X-Forwarded-* and X-Real-IP are set as Kong sets them (kept from
//! trusted peers only), and the request body is wrapped to count its bytes.

use std::cell::RefCell;
use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Uri, Version};

use super::route::{self, strip_port, Routed};
use crate::config::state::{RouteRt, ServiceRt};
use crate::downstream::request_body::{ClientBody, RequestBody};
use crate::downstream::ConnInfo;
use crate::memo;
use crate::respond::ProxyError;
use crate::router::upstream_path;
use crate::settings::trust::TrustedIps;
use crate::telemetry::observe::Completion;
use crate::wire::hop_by_hop::strip_hop_by_hop;

#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn upstream_request(
    mut parts: Parts,
    body: ClientBody,
    route: &RouteRt,
    svc: &ServiceRt,
    routed: &Routed,
    conn: &ConnInfo,
    trusted: &TrustedIps,
    done: &mut Option<Completion>,
) -> Result<Request<RequestBody>, ProxyError> {
    // The router's Host field when nothing since could have changed it: one lookup less.
    let host = match &routed.host_field {
        Some(v) if route.plugins.access().is_empty() && route.plugins.request_start().is_empty() => {
            v.to_str().unwrap_or("")
        }
        _ => route::host_of(&parts.uri, &parts.headers),
    };
    let authority = if route.preserve_host {
        FORWARDED_VALUES.with(|c| c.borrow_mut().preserved_host(host)).unwrap_or_else(|| svc.upstream_host.clone())
    } else {
        svc.upstream_host.clone()
    };
    let forwarded_host = FORWARDED_VALUES.with(|c| c.borrow_mut().host(strip_port(host)));
    let mut headers = std::mem::take(&mut parts.headers);
    strip_hop_by_hop(&mut headers);
    set_forwarded_values(&mut headers, conn, trusted, forwarded_host);

    // Kong's join of the service path and the request path is the request path itself when nothing
    // is stripped and the service path is none or "/" (for a path that starts with "/"): sent as is.
    let as_is = !route.strip_path
        && svc.path.as_deref().is_none_or(|p| (p.is_empty() || p == "/") && parts.uri.path().starts_with('/'));
    let path_and_query = if as_is {
        parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"))
    } else {
        let mut p = upstream_path(
            svc.path.as_deref(),
            path_of(&parts.uri),
            routed.matched_path_len,
            route.strip_path,
            route.path_handling,
        );
        if let Some(q) = parts.uri.query() {
            p.push('?');
            p.push_str(q);
        }
        PathAndQuery::try_from(p).map_err(|_| ProxyError::BadRequest)?
    };

    let h2_upstream = svc.transport.h2;
    // Built from its parts, not with `Uri::builder()`, whose `map` steps cost ~120 instructions
    // per request when not inlined (bench/callgrind.sh).
    let uri = if h2_upstream {
        headers.remove(header::HOST);
        let scheme = if svc.transport.tls.is_some() { Scheme::HTTPS } else { Scheme::HTTP };
        let authority =
            FORWARDED_VALUES.with(|c| c.borrow_mut().authority(&authority)).ok_or(ProxyError::BadRequest)?;
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(scheme);
        uri.authority = Some(authority);
        uri.path_and_query = Some(path_and_query);
        Uri::from_parts(uri).map_err(|_| ProxyError::BadRequest)?
    } else {
        headers.insert(header::HOST, authority);
        Uri::from(path_and_query)
    };

    let (body, counter) = RequestBody::new(body);
    if let (Some(d), Some(counter)) = (done.as_mut(), counter) {
        d.set_request_counter(counter);
    }
    let mut up = Request::new(body);
    *up.method_mut() = parts.method;
    *up.uri_mut() = uri;
    *up.version_mut() = if h2_upstream { Version::HTTP_2 } else { Version::HTTP_11 };
    *up.headers_mut() = headers;

    Ok(up)
}

fn path_of(uri: &Uri) -> &str {
    uri.path()
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// X-Forwarded-* and X-Real-IP as Kong sets them; incoming values are kept only from trusted peers.
#[cfg(test)]
fn set_forwarded(h: &mut HeaderMap, conn: &ConnInfo, trusted: &TrustedIps, host: &str) {
    let host_value = FORWARDED_VALUES.with(|c| c.borrow_mut().host(host));
    set_forwarded_values(h, conn, trusted, host_value)
}

/// [`set_forwarded`] with the host already rendered (`None`: not a valid header value).
fn set_forwarded_values(h: &mut HeaderMap, conn: &ConnInfo, trusted: &TrustedIps, host_value: Option<HeaderValue>) {
    let trust = trusted.contains(conn.peer.ip());
    // Room for the five headers below: one growth of the map instead of up to three.
    h.reserve(5);
    let (ip, port) = FORWARDED_VALUES.with(|c| {
        let mut c = c.borrow_mut();
        (c.ip(conn.client.ip()), c.port(conn.local_port))
    });
    let xff = match (trust, h.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok())) {
        (true, Some(prev)) => HeaderValue::from_str(&format!("{prev}, {}", conn.client.ip())).unwrap_or(ip.clone()),
        _ => ip.clone(),
    };
    h.insert(X_FORWARDED_FOR, xff);
    h.insert(X_REAL_IP, ip);
    if !(trust && h.contains_key(&X_FORWARDED_PROTO)) {
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(if conn.tls { "https" } else { "http" }));
    }
    if !(trust && h.contains_key(&X_FORWARDED_HOST)) {
        if let Some(v) = host_value {
            h.insert(X_FORWARDED_HOST, v);
        }
    }
    if !(trust && h.contains_key(&X_FORWARDED_PORT)) {
        h.insert(X_FORWARDED_PORT, port);
    }
}

/// The last client IP, listener port and host rendered as header values, per worker thread:
/// consecutive requests mostly come from the same connection, so the values are reused (a cheap
/// reference-count bump) instead of formatted and allocated for every request.
#[derive(Default)]
struct ForwardedValues {
    ip: Option<(IpAddr, HeaderValue)>,
    port: Option<(u16, HeaderValue)>,
    host: Option<HeaderValue>,
    /// The last client host sent upstream as it came (`preserve_host`), port included.
    preserved_host: Option<HeaderValue>,
    /// The last upstream `:authority`, parsed.
    authority: Option<(HeaderValue, Authority)>,
}

thread_local! {
    static FORWARDED_VALUES: RefCell<ForwardedValues> = RefCell::new(ForwardedValues::default());
}

impl ForwardedValues {
    fn ip(&mut self, ip: IpAddr) -> HeaderValue {
        memo::last(&mut self.ip, ip, ip_value)
    }

    fn port(&mut self, port: u16) -> HeaderValue {
        memo::last(&mut self.port, port, HeaderValue::from)
    }

    /// `None` when `value` is not a valid authority.
    fn authority(&mut self, value: &HeaderValue) -> Option<Authority> {
        match &self.authority {
            Some((last, a)) if last == value => Some(a.clone()),
            _ => {
                let a = Authority::try_from(value.as_bytes()).ok()?;
                self.authority = Some((value.clone(), a.clone()));
                Some(a)
            }
        }
    }

    /// X-Forwarded-Host. `None` when `host` is not a valid header value.
    fn host(&mut self, host: &str) -> Option<HeaderValue> {
        reuse_value(&mut self.host, host)
    }

    /// The Host / `:authority` sent upstream under `preserve_host`. `None` when `host` is not a
    /// valid header value.
    fn preserved_host(&mut self, host: &str) -> Option<HeaderValue> {
        reuse_value(&mut self.preserved_host, host)
    }
}

/// `last` when it holds `s`, else `s` made into a header value and kept in `last`. Always inlined:
/// as a call it cost ~44 instructions per use (bench/callgrind.sh), more than the compare it does.
#[inline(always)]
fn reuse_value(last: &mut Option<HeaderValue>, s: &str) -> Option<HeaderValue> {
    match last {
        Some(v) if v.as_bytes() == s.as_bytes() => Some(v.clone()),
        _ => {
            let v = HeaderValue::from_str(s).ok()?;
            *last = Some(v.clone());
            Some(v)
        }
    }
}

fn ip_value(ip: IpAddr) -> HeaderValue {
    // An IP address always renders as a valid header value.
    HeaderValue::from_str(&ip.to_string()).unwrap_or(HeaderValue::from_static("0.0.0.0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_headers_replace_untrusted_values() {
        let conn = ConnInfo {
            client: "10.1.1.1:5000".parse().unwrap(),
            peer: "10.1.1.1:5000".parse().unwrap(),
            local_port: 8000,
            tls: false,
            sni: None,
        };
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6".parse().unwrap());
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        set_forwarded(&mut h, &conn, &TrustedIps::none(), "example.com");
        assert_eq!(h["x-forwarded-for"], "10.1.1.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-port"], "8000");
        assert_eq!(h["x-forwarded-host"], "example.com");
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6".parse().unwrap());
        set_forwarded(&mut h, &conn, &"10.0.0.0/8".parse().unwrap(), "example.com");
        assert_eq!(h["x-forwarded-for"], "6.6.6.6, 10.1.1.1");
    }
}
