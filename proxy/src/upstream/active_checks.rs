//! Active health checks (Kong's `healthchecks.active`): one task per target probes it over TCP,
//! HTTP(S) or gRPC (`grpc.health.v1.Health/Check`, which Kong lacks) every `healthy.interval` or
//! `unhealthy.interval` seconds, at most `concurrency` targets of an upstream at a time, and feeds
//! the outcome to the target's [`TargetHealth`]. Probes run off the request path.
//!
//! [`ActiveChecks::sync`] runs after every config swap: the probes of a target whose upstream's
//! `active` block is unchanged keep running (and keep their counters), those of removed targets
//! stop, and a changed block restarts its upstream's probes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use proxy_config::{ActiveHealthcheck, ActiveKind};
use thiserror::Error;
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;

use super::balancer::Balancer;
use super::dns::Resolver;
use super::health::{Outcome, TargetHealth, Thresholds};
use super::pool::{self, ConnectError, Io, Transport};

/// How often a target whose current state is not probed (its interval is 0) is looked at again.
const IDLE_RECHECK: Duration = Duration::from_millis(500);
/// `grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: u64 = 1;

/// Why one probe failed, and how it counts.
#[derive(Debug, Error)]
enum ProbeError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("HTTP exchange failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("unhealthy HTTP status {0}")]
    Status(u16),
    #[error("gRPC health check answered status {code}: {message}")]
    GrpcStatus { code: String, message: String },
    #[error("gRPC health check says {0} (not SERVING)")]
    NotServing(u64),
    #[error("malformed gRPC health check response")]
    Malformed,
}

impl ProbeError {
    fn outcome(&self) -> Outcome {
        match self {
            ProbeError::Connect(ConnectError::Timeout { .. }) | ProbeError::Timeout(_) => Outcome::Timeout,
            ProbeError::Connect(_) => Outcome::TcpFailure,
            _ => Outcome::HttpFailure,
        }
    }
}

/// One target to probe.
#[derive(Clone)]
struct Probe {
    host: Arc<str>,
    port: u16,
    label: Arc<str>,
    health: Arc<TargetHealth>,
}

/// The probing of one upstream.
struct UpstreamChecks {
    config: ActiveHealthcheck,
    spec: Arc<Spec>,
    targets: HashMap<Arc<str>, AbortHandle>,
}

/// What every probe of an upstream shares.
struct Spec {
    config: ActiveHealthcheck,
    /// The proxy's DNS cache (the pool's), so probes resolve names as requests do.
    dns: Arc<Resolver>,
    transport: Transport,
    thresholds: Thresholds,
    permits: Semaphore,
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// The running probes, by upstream name.
pub(crate) struct ActiveChecks {
    upstreams: HashMap<Arc<str>, UpstreamChecks>,
    dns: Arc<Resolver>,
}

impl ActiveChecks {
    pub(crate) fn new(dns: Arc<Resolver>) -> Self {
        ActiveChecks { upstreams: HashMap::new(), dns }
    }

    /// Brings the running probes in line with `balancers` (see the module doc). `tls` builds the
    /// client config of an `https`/`grpcs` check (`verify`, `h2`). Without a Tokio runtime (a
    /// config applied before the proxy starts serving) nothing starts; the next sync does it.
    pub(crate) fn sync<'a, E>(
        &mut self,
        balancers: impl Iterator<Item = &'a Balancer>,
        tls: impl Fn(bool, bool) -> Result<Arc<rustls::ClientConfig>, E>,
    ) where
        E: std::fmt::Display,
    {
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        let mut keep: HashMap<Arc<str>, UpstreamChecks> = HashMap::new();
        for b in balancers {
            let Some(config) = &b.active else { continue };
            let mut checks = match self.upstreams.remove(&b.name) {
                Some(c) if c.config == *config => c,
                old => {
                    drop(old); // its Drop stops its probes
                    let tls_config = if matches!(config.kind, ActiveKind::Https | ActiveKind::Grpcs) {
                        match tls(config.https_verify_certificate, config.kind == ActiveKind::Grpcs) {
                            Ok(c) => Some(c),
                            Err(e) => {
                                tracing::warn!(upstream = %b.name, error = %e, "active health checks not started");
                                continue;
                            }
                        }
                    } else {
                        None
                    };
                    UpstreamChecks {
                        config: config.clone(),
                        spec: Arc::new(Spec::new(config, tls_config, self.dns.clone())),
                        targets: HashMap::new(),
                    }
                }
            };
            let mut targets = HashMap::with_capacity(b.targets.len());
            for t in &b.targets {
                let handle = match checks.targets.remove(&t.label) {
                    Some(h) => h,
                    None => {
                        let probe = Probe {
                            host: t.host.clone(),
                            port: t.port,
                            label: t.label.clone(),
                            health: t.health.clone(),
                        };
                        rt.spawn(run(checks.spec.clone(), probe, b.name.clone())).abort_handle()
                    }
                };
                targets.insert(t.label.clone(), handle);
            }
            // What is left in `checks.targets` was removed from the upstream.
            for (_, h) in checks.targets.drain() {
                h.abort();
            }
            checks.targets = targets;
            keep.insert(b.name.clone(), checks);
        }
        self.upstreams = keep; // dropping the rest stops their probes
    }

    /// Targets probed now (tests, logs).
    pub(crate) fn running(&self) -> usize {
        self.upstreams.values().map(|u| u.targets.len()).sum()
    }
}

impl Drop for UpstreamChecks {
    fn drop(&mut self) {
        for h in self.targets.values() {
            h.abort();
        }
    }
}

impl Spec {
    fn new(config: &ActiveHealthcheck, tls: Option<Arc<rustls::ClientConfig>>, dns: Arc<Resolver>) -> Spec {
        let headers = config
            .headers
            .iter()
            .flat_map(|(n, vs)| vs.iter().map(move |v| (n, v)))
            .filter_map(|(n, v)| Some((HeaderName::from_bytes(n.as_bytes()).ok()?, HeaderValue::from_str(v).ok()?)))
            .collect();
        Spec {
            config: config.clone(),
            dns,
            transport: Transport {
                h2: matches!(config.kind, ActiveKind::Grpc | ActiveKind::Grpcs),
                // The SNI is set per target (https_sni, else the target's host).
                tls: tls.map(|c| (c, Arc::from(config.https_sni.as_deref().unwrap_or("")))),
                // A probe sends no request body.
                write_timeout: seconds(config.timeout),
            },
            thresholds: Thresholds {
                successes: config.healthy.successes,
                http_failures: config.unhealthy.http_failures,
                tcp_failures: config.unhealthy.tcp_failures,
                timeouts: config.unhealthy.timeouts,
            },
            permits: Semaphore::new(config.concurrency.max(1) as usize),
            headers,
        }
    }
}

fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::ZERO)
}

/// Probes one target until aborted.
async fn run(spec: Arc<Spec>, probe: Probe, upstream: Arc<str>) {
    let healthy_every = seconds(spec.config.healthy.interval);
    let unhealthy_every = seconds(spec.config.unhealthy.interval);
    loop {
        let every = if probe.health.is_marked_unhealthy() { unhealthy_every } else { healthy_every };
        if every.is_zero() {
            tokio::time::sleep(IDLE_RECHECK).await;
            continue;
        }
        let result = {
            let _permit = spec.permits.acquire().await;
            let timeout = seconds(spec.config.timeout);
            match tokio::time::timeout(timeout, check(&spec, &probe, timeout)).await {
                Ok(r) => r,
                Err(_) => Err(ProbeError::Timeout(timeout)),
            }
        };
        let outcome = match &result {
            Ok(Some(o)) => *o,
            Ok(None) => {
                tokio::time::sleep(every).await;
                continue;
            }
            Err(e) => {
                tracing::debug!(%upstream, target = %probe.label, error = %e, "active health check failed");
                e.outcome()
            }
        };
        let was = probe.health.is_marked_unhealthy();
        probe.health.record(outcome, &spec.thresholds, None);
        let now = probe.health.is_marked_unhealthy();
        if was != now {
            let state = if now { "unhealthy" } else { "healthy" };
            tracing::info!(%upstream, target = %probe.label, state, "active health check changed the target's state");
        }
        tokio::time::sleep(every).await;
    }
}

/// One probe: `Ok(Some(Success))` when the target answered healthy, `Ok(None)` when its answer
/// counts for nothing.
async fn check(spec: &Spec, probe: &Probe, timeout: Duration) -> Result<Option<Outcome>, ProbeError> {
    let mut transport = spec.transport.clone();
    if let Some((cfg, sni)) = &transport.tls {
        let sni = if sni.is_empty() { probe.host.clone() } else { sni.clone() };
        transport.tls = Some((cfg.clone(), sni));
    }
    let io = pool::dial(&spec.dns, &probe.host, probe.port, &transport, timeout).await?;
    match spec.config.kind {
        ActiveKind::Tcp => Ok(Some(Outcome::Success)),
        ActiveKind::Http | ActiveKind::Https => check_http(spec, probe, io).await,
        ActiveKind::Grpc | ActiveKind::Grpcs => check_grpc(spec, probe, io).await,
    }
}

fn authority(probe: &Probe) -> String {
    if probe.host.contains(':') {
        format!("[{}]:{}", probe.host, probe.port)
    } else {
        format!("{}:{}", probe.host, probe.port)
    }
}

/// `GET http_path` over HTTP/1.1: a status in `healthy.http_statuses` is a success, one in
/// `unhealthy.http_statuses` an HTTP failure, any other counts for nothing (as in Kong).
async fn check_http(spec: &Spec, probe: &Probe, io: Box<dyn Io>) -> Result<Option<Outcome>, ProbeError> {
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(Method::GET)
        .uri(spec.config.http_path.as_str())
        .header(http::header::HOST, authority(probe))
        .header(http::header::USER_AGENT, "sluice-healthcheck")
        .body(Empty::<Bytes>::new())
        .map_err(|_| ProbeError::Malformed)?;
    req.headers_mut().extend(spec.headers.iter().cloned());
    let status = send.send_request(req).await?.status().as_u16();
    if spec.config.healthy.http_statuses.contains(&status) {
        Ok(Some(Outcome::Success))
    } else if spec.config.unhealthy.http_statuses.contains(&status) {
        Err(ProbeError::Status(status))
    } else {
        Ok(None)
    }
}

/// `grpc.health.v1.Health/Check` over HTTP/2: `SERVING` is a success; any other status, a
/// non-OK `grpc-status` or a malformed answer is an HTTP failure.
async fn check_grpc(spec: &Spec, probe: &Probe, io: Box<dyn Io>) -> Result<Option<Outcome>, ProbeError> {
    let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io)).await?;
    tokio::spawn(conn);
    let scheme = if spec.config.kind == ActiveKind::Grpcs { "https" } else { "http" };
    let uri = format!("{scheme}://{}/grpc.health.v1.Health/Check", authority(probe));
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .header(http::header::USER_AGENT, "sluice-healthcheck")
        .body(Full::new(health_check_request(&spec.config.grpc_service)))
        .map_err(|_| ProbeError::Malformed)?;
    req.headers_mut().extend(spec.headers.iter().cloned());
    let resp = send.send_request(req).await?;
    if resp.status() != StatusCode::OK {
        return Err(ProbeError::Status(resp.status().as_u16()));
    }
    let head_status = resp.headers().get("grpc-status").cloned();
    let head_message = resp.headers().get("grpc-message").cloned();
    let collected = resp.into_body().collect().await?;
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let code = trailers.get("grpc-status").cloned().or(head_status);
    let message = trailers.get("grpc-message").cloned().or(head_message);
    match code.as_ref().map(HeaderValue::as_bytes) {
        Some(b"0") => {}
        Some(other) => {
            return Err(ProbeError::GrpcStatus {
                code: String::from_utf8_lossy(other).into_owned(),
                message: message.map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned()).unwrap_or_default(),
            })
        }
        None => return Err(ProbeError::Malformed),
    }
    match serving_status(collected.to_bytes()) {
        Some(SERVING) => Ok(Some(Outcome::Success)),
        Some(other) => Err(ProbeError::NotServing(other)),
        None => Err(ProbeError::Malformed),
    }
}

/// A length-prefixed `HealthCheckRequest { service }` (field 1, a string).
fn health_check_request(service: &str) -> Bytes {
    let mut message = Vec::with_capacity(service.len() + 3);
    if !service.is_empty() {
        message.push(0x0a);
        put_varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    let mut framed = Vec::with_capacity(message.len() + 5);
    framed.push(0); // not compressed
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    Bytes::from(framed)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(buf: &mut Bytes) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        if !buf.has_remaining() {
            return None;
        }
        let b = buf.get_u8();
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The `status` (field 1, an enum) of one length-prefixed `HealthCheckResponse`; proto3 leaves
/// out a 0 (`UNKNOWN`).
fn serving_status(mut body: Bytes) -> Option<u64> {
    if body.remaining() < 5 || body.get_u8() != 0 {
        return None; // too short, or compressed (never asked for)
    }
    let len = body.get_u32() as usize;
    if body.remaining() < len {
        return None;
    }
    let mut message = body.split_to(len);
    let mut status = 0;
    while message.has_remaining() {
        let key = get_varint(&mut message)?;
        match (key >> 3, key & 7) {
            (1, 0) => status = get_varint(&mut message)?,
            (_, 0) => {
                get_varint(&mut message)?;
            }
            (_, 2) => {
                let n = get_varint(&mut message)? as usize;
                if message.remaining() < n {
                    return None;
                }
                message.advance(n);
            }
            (_, 5) if message.remaining() >= 4 => message.advance(4),
            (_, 1) if message.remaining() >= 8 => message.advance(8),
            _ => return None,
        }
    }
    Some(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_check_messages_round_trip() {
        assert_eq!(&health_check_request("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(&health_check_request("echo")[..], &[0, 0, 0, 0, 6, 0x0a, 4, b'e', b'c', b'h', b'o']);
        assert_eq!(serving_status(Bytes::from_static(&[0, 0, 0, 0, 2, 0x08, 1])), Some(SERVING));
        assert_eq!(serving_status(Bytes::from_static(&[0, 0, 0, 0, 2, 0x08, 2])), Some(2));
        assert_eq!(serving_status(Bytes::from_static(&[0, 0, 0, 0, 0])), Some(0));
        assert_eq!(serving_status(Bytes::from_static(&[0, 0, 0, 0, 3, 0x08])), None);
        assert_eq!(serving_status(Bytes::from_static(&[1, 0, 0, 0, 0])), None);
    }
}
