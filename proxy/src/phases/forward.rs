//! The life of a proxied request after the connection layer: route it, apply Kong's post-routing
//! protocol checks (kic.md §3.2), run the route's plugins, pick a target, send upstream (retrying
//! only what never reached the upstream), and hand the streamed response back. Every failure is a
//! [`ProxyError`] turned into a response in `respond`.

use std::cell::RefCell;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use tokio::time::Instant;

use crate::upstream::balancer::{ActiveGuard, PickContext};
use crate::body::{Limits, ProxyBody, UpstreamBody, UpstreamStream};
use crate::wire::grpc;
use crate::memo;
use crate::telemetry::observe::{Completion, LogDetails, Observer};
use crate::upstream::pool::{Pool, Sender, TimedOut, Unanswered};
use crate::downstream::request_body::{ClientBody, ClientBodyError, RequestBody};
use crate::downstream::ConnInfo;
use crate::respond::{error_response, ProxyError};
use crate::wire::hop_by_hop::strip_hop_by_hop;
use crate::router::{upstream_path, RouteRequest};
use crate::config::state::{Runtime, State};
use crate::settings::trust::TrustedIps;

/// What every request shares.
pub struct Shared {
    pub state: Arc<State>,
    pub pool: Pool,
    pub observer: Arc<Observer>,
    pub trusted: TrustedIps,
}

/// The request handler of proxy listeners (both HTTP versions).
pub async fn serve(
    req: Request<ClientBody>,
    conn: Arc<ConnInfo>,
    shared: Arc<Shared>,
) -> Result<Response<ProxyBody>, Infallible> {
    let start = Instant::now();
    let rt = shared.state.load();
    let grpc = grpc::is_grpc(req.headers());
    let h2 = req.version() == Version::HTTP_2;
    let mut done = Completion::new(shared.observer.clone(), start, conn.client);
    if done.wants_details() {
        done.set_details(LogDetails {
            method: req.method().clone(),
            host: host_of(req.uri(), req.headers()).to_string(),
            path: req.uri().path().to_string(),
            protocol: protocol_label(grpc, conn.tls, h2),
        });
    }
    let mut done = Some(done);
    match forward(req, &conn, &shared, &rt, grpc, h2, start, &mut done).await {
        Ok(resp) => Ok(resp),
        Err(err) => {
            let resp = error_response(&err, grpc && h2);
            if let Some(mut d) = done {
                d.set_response(resp.status().as_u16(), false, resp.headers());
                d.set_error(&err.to_string());
                d.complete();
            }
            Ok(resp)
        }
    }
}

fn protocol_label(grpc: bool, tls: bool, h2: bool) -> &'static str {
    match (grpc, tls, h2) {
        (true, true, _) => "grpcs",
        (true, false, _) => "grpc",
        (false, true, true) => "https/2",
        (false, true, false) => "https",
        (false, false, true) => "http/2",
        (false, false, false) => "http",
    }
}

/// `:authority` for HTTP/2, else the Host header; empty when neither is present.
fn host_of<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> &'a str {
    uri.authority()
        .map(Authority::as_str)
        .or_else(|| headers.get(header::HOST).and_then(|v| v.to_str().ok()))
        .unwrap_or("")
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    req: Request<ClientBody>,
    conn: &ConnInfo,
    shared: &Shared,
    rt: &Runtime,
    grpc: bool,
    h2: bool,
    start: Instant,
    done: &mut Option<Completion>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let (mut parts, body) = req.into_parts();
    let host = host_of(&parts.uri, &parts.headers);
    let path = parts.uri.path();
    let m = rt
        .router
        .find(&RouteRequest {
            host,
            path,
            method: parts.method.as_str(),
            headers: &parts.headers,
            sni: conn.sni.as_deref(),
            grpc,
        })
        .ok_or(ProxyError::NoRoute)?;
    let route = &rt.routes[m.route];
    if let Some(d) = done.as_mut() {
        d.set_route(route.metrics.clone());
        if grpc {
            d.set_grpc_path(path);
        }
    }

    // Kong's post-routing protocol checks, in Kong's order.
    if route.is_grpc_route() {
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
    if let Some(t) = &route.plugins.termination {
        return Err(ProxyError::Terminated { status: t.status, message: t.message.clone(), body: t.body.clone() });
    }
    let svc = &rt.services[route.service.ok_or(ProxyError::NoService)?];

    // The deadline of a gRPC call starts when the proxy receives it.
    let deadline = if grpc { grpc::parse_timeout(&parts.headers).map(|d| start + d) } else { None };

    let authority = if route.preserve_host {
        FORWARDED_VALUES.with(|c| c.borrow_mut().preserved_host(host)).unwrap_or_else(|| svc.upstream_host.clone())
    } else {
        svc.upstream_host.clone()
    };
    let forwarded_host = FORWARDED_VALUES.with(|c| c.borrow_mut().host(strip_port(host)));
    let mut headers = std::mem::take(&mut parts.headers);
    strip_hop_by_hop(&mut headers);
    set_forwarded_values(&mut headers, conn, &shared.trusted, forwarded_host);
    if let Some(ops) = &route.plugins.request_headers {
        ops.apply(&mut headers);
    }

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
            m.matched_path_len,
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
    let uri = if h2_upstream {
        headers.remove(header::HOST);
        let scheme = if svc.transport.tls.is_some() { Scheme::HTTPS } else { Scheme::HTTP };
        let authority =
            FORWARDED_VALUES.with(|c| c.borrow_mut().authority(&authority)).ok_or(ProxyError::BadRequest)?;
        Uri::builder().scheme(scheme).authority(authority).path_and_query(path_and_query).build()
    } else {
        headers.insert(header::HOST, authority);
        Uri::builder().path_and_query(path_and_query).build()
    }
    .map_err(|_| ProxyError::BadRequest)?;

    let (body, counter) = RequestBody::new(body);
    if let (Some(d), Some(counter)) = (done.as_mut(), counter) {
        d.set_request_counter(counter);
    }
    let mut up = Request::new(body);
    *up.method_mut() = parts.method;
    *up.uri_mut() = uri;
    *up.version_mut() = if h2_upstream { Version::HTTP_2 } else { Version::HTTP_11 };
    *up.headers_mut() = headers;

    let client_ip = conn.client.ip();
    let mut tried: Vec<usize> = Vec::new();
    let mut fresh = false;
    let mut attempt: u32 = 0;
    loop {
        if let Some(d) = deadline {
            let now = Instant::now();
            if d <= now {
                return Err(ProxyError::DeadlineExceeded);
            }
            up.headers_mut().insert(grpc::GRPC_TIMEOUT, grpc::format_timeout(d - now));
        }
        let (target_host, port, target_idx, label, guard) = match &svc.balancer {
            Some(b) => {
                let ctx = PickContext { headers: up.headers(), client_ip };
                let i = b.pick(&ctx, &tried).ok_or(ProxyError::NoHealthyTarget)?;
                let t = &b.targets[i];
                (t.host.clone(), t.port, Some(i), Some(t.label.clone()), Some(ActiveGuard::new(t.health.clone())))
            }
            // The label of a plain host:port service is only rendered when something reads it
            // (the access log, a debug line on failure): `format!` per request is measurable.
            None => (svc.host.clone(), svc.port, None, None, None),
        };
        let label = || label.clone().unwrap_or_else(|| Arc::from(format!("{}:{}", svc.host, svc.port)));
        let connect_budget = match deadline {
            Some(d) => svc.connect_timeout.min(d.saturating_duration_since(Instant::now())),
            None => svc.connect_timeout,
        };
        let sender = match shared.pool.get(&target_host, port, &svc.transport, connect_budget, fresh).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(target = %label(), error = %e, "upstream connect failed");
                if let (Some(b), Some(i)) = (&svc.balancer, target_idx) {
                    if e.is_tcp_failure() {
                        b.targets[i].health.record_failure(b.failure_threshold, b.cooldown);
                    }
                    tried.push(i);
                }
                attempt += 1;
                if attempt > svc.retries || deadline.is_some_and(|d| d <= Instant::now()) {
                    return Err(if deadline.is_some_and(|d| d <= Instant::now()) {
                        ProxyError::DeadlineExceeded
                    } else {
                        ProxyError::UpstreamFailed { detail: e.to_string() }
                    });
                }
                if svc.balancer.as_ref().is_some_and(|b| tried.len() >= b.targets.len()) {
                    tried.clear();
                }
                continue;
            }
        };
        let sent_at = Instant::now();
        let wait = match deadline {
            Some(d) => svc.read_timeout.min(d.saturating_duration_since(sent_at)),
            None => svc.read_timeout,
        };
        // One timeout per protocol, each awaited where it is made: the send futures are large,
        // and every move of one (into a wrapper, into the timeout) is a memcpy per request. An
        // HTTP/1.1 connection keeps a timer of its own (cheaper than one per request).
        let sent = match sender {
            Sender::H1(conn, home) => {
                conn.send(up, home, sent_at + wait).await.map(|r| r.map(|r| r.map(UpstreamStream::H1)))
            }
            Sender::H2(mut s) => tokio::time::timeout_at(sent_at + wait, s.send(up))
                .await
                .map(|r| r.map(|r| r.map(UpstreamStream::H2)))
                .map_err(|_| TimedOut),
        };
        let resp = match sent {
            Err(TimedOut) => {
                return Err(if deadline.is_some_and(|d| d <= Instant::now() + Duration::from_millis(1)) {
                    ProxyError::DeadlineExceeded
                } else {
                    ProxyError::UpstreamTimeout
                })
            }
            Ok(Ok(resp)) => resp,
            // The request never left: retry it on a fresh connection (closed pooled connection,
            // GOAWAY before the stream started).
            Ok(Err(Unanswered { request: Some(back), .. })) if attempt < svc.retries => {
                up = *back;
                fresh = true;
                attempt += 1;
                continue;
            }
            // The client's own body broke (bad framing, or it left): its fault, never the upstream's.
            Ok(Err(Unanswered { error, .. })) if client_body_failed(&*error) => {
                tracing::debug!(target = %label(), error = %error, "client request body failed");
                return Err(ProxyError::InvalidRequest { reason: error.to_string() });
            }
            Ok(Err(Unanswered { error, .. })) => {
                let refused = crate::body::h2_reason(&*error) == Some(h2::Reason::REFUSED_STREAM);
                tracing::debug!(target = %label(), error = %error, refused, "upstream request failed");
                return Err(ProxyError::UpstreamFailed { detail: error.to_string() });
            }
        };
        if let (Some(b), Some(i)) = (&svc.balancer, target_idx) {
            b.targets[i].health.record_success();
        }
        let head_at = Instant::now();
        let upstream_latency = head_at - sent_at;
        let (mut rparts, rbody) = resp.into_parts();
        rparts.version = Version::HTTP_11;
        strip_hop_by_hop(&mut rparts.headers);
        if let Some(ops) = &route.plugins.response_headers {
            ops.apply(&mut rparts.headers);
        }
        let Some(mut d) = done.take() else {
            return Ok(Response::from_parts(rparts, ProxyBody::Empty));
        };
        d.set_upstream(if d.wants_details() { Some(label()) } else { None }, upstream_latency);
        d.set_response(rparts.status.as_u16(), true, &rparts.headers);
        if let Some(g) = guard {
            d.hold(g);
        }
        let body = UpstreamBody::new(rbody, grpc && h2, Limits { deadline, idle: svc.read_timeout, head_at }, d);
        return Ok(Response::from_parts(rparts, ProxyBody::Upstream(Box::new(body))));
    }
}

/// Whether an upstream exchange failed because the client's request body did.
fn client_body_failed(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut e = Some(error);
    while let Some(err) = e {
        if err.is::<ClientBodyError>() {
            return true;
        }
        e = err.source();
    }
    false
}

fn path_of(uri: &Uri) -> &str {
    uri.path()
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map(|(h, _)| &host[..h.len() + 1]).unwrap_or(host);
    }
    // Bytes, not `rsplit_once(':')`: a char searcher per request is measurable.
    match host.bytes().rposition(|b| b == b':') {
        Some(i) if host.as_bytes()[i + 1..].iter().all(u8::is_ascii_digit) => &host[..i],
        _ => host,
    }
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

impl crate::downstream::Handler for Shared {
    // `serve` itself, not a future awaiting it: one state machine less to build and move.
    fn call(
        self: Arc<Self>,
        req: Request<ClientBody>,
        conn: Arc<ConnInfo>,
    ) -> impl std::future::Future<Output = Result<Response<ProxyBody>, Infallible>> + Send + 'static {
        serve(req, conn, self)
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
    }

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
