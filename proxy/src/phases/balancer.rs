//! Kong's balancer phase, with the sending it drives: pick a target (weighted round-robin,
//! least-connections or consistent hashing; passive health), get a pooled connection, send, and
//! retry what the upstream never processed, up to the service's `retries`: connect failures and
//! HTTP/2 refusals (REFUSED_STREAM, GOAWAY, a reset before the response headers) on another
//! target (and, with `retry_on_unavailable`, a trailers-only UNAVAILABLE answer), replaying a
//! body of at most `retry_buffer_size` (64 KiB) that was sent whole; a request a closed pooled
//! connection never took, on a fresh connection. Every attempt fits in the `grpc-timeout`
//! deadline, which goes upstream as the time remaining. [`balance_and_send`] is the one attempt
//! loop.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use tokio::time::Instant;

use crate::config::state::ServiceRt;
use crate::downstream::request_body::{ClientBodyError, RequestBody};
use crate::downstream::ConnInfo;
use crate::phases::body_filter::UpstreamStream;
use crate::plugins::opentelemetry::Attempts;
use crate::respond::ProxyError;
use crate::response_body::ProxyBody;
use crate::upstream::balancer::{ActiveGuard, PickContext};
use crate::upstream::health::Outcome;
use crate::upstream::pool::{ConnectError, Pool, Sender, TimedOut, Unanswered};
use crate::upstream::replay::UnavailableAnswer;
use crate::wire::grpc;

/// Sent upstream on a retried request: which attempt this is (2 for the first retry), as Envoy's
/// `x-envoy-attempt-count`. A first attempt goes without it.
pub(crate) const ATTEMPT_COUNT: http::HeaderName = http::HeaderName::from_static("x-sluice-attempt-count");

/// What the balancer phase leaves for the response phases.
pub(crate) struct Sent {
    /// The target's label (`None` for a plain host:port service: rendered only when read).
    pub label: Option<Arc<str>>,
    /// Keeps the target's in-flight count up until the response ends.
    pub guard: Option<ActiveGuard>,
    pub sent_at: Instant,
    pub head_at: Instant,
}

/// Sends the request in `request` to a target of `svc` and hands the response head to `then`
/// (the response phases), whose result this returns.
///
/// Both shapes are for speed: these values are large, and every move of one is a memcpy per
/// request (bench/callgrind.sh). The request stays in the caller's slot until the attempt that
/// sends it takes it (a retry of a request that never left puts it back), rather than being moved
/// into this future; the response goes to `then` here, rather than out through this future's
/// output and into the caller.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn balance_and_send(
    request: &mut Option<Request<RequestBody>>,
    svc: &ServiceRt,
    conn: &ConnInfo,
    pool: &Pool,
    deadline: Option<Instant>,
    attempt_timeout: Option<Duration>,
    trace: Option<&Attempts>,
    then: impl FnOnce(Response<UpstreamStream>, Sent) -> Result<Response<ProxyBody>, ProxyError>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let client_ip = conn.client.ip();
    let mut tried: Vec<usize> = Vec::new();
    let mut fresh = false;
    let mut attempt: u32 = 0;
    loop {
        // Every attempt finds the request in the slot: the caller's, or one a retry put back.
        let Some(up) = request.as_mut() else { return Err(ProxyError::BadRequest) };
        if attempt > 0 {
            up.headers_mut().insert(ATTEMPT_COUNT, http::HeaderValue::from(attempt + 1));
        }
        // This attempt's bound: the call's deadline, and the route's per-attempt timeout.
        let bound = if deadline.is_some() || attempt_timeout.is_some() {
            let now = Instant::now();
            if deadline.is_some_and(|d| d <= now) {
                return Err(ProxyError::DeadlineExceeded);
            }
            let bound = attempt_bound(deadline, attempt_timeout, now);
            // A gRPC upstream learns the time it has left; a plain HTTP one has no such header.
            if let (Some(b), true) = (bound, grpc::is_grpc_content_type(up.headers().get(http::header::CONTENT_TYPE))) {
                up.headers_mut().insert(grpc::GRPC_TIMEOUT, grpc::format_timeout(b - now));
            }
            bound
        } else {
            None
        };
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
        if let (Some(t), Some(up)) = (trace, request.as_mut()) {
            t.begin(up.headers_mut(), &target_host, port);
        }
        let label_of = || label.clone().unwrap_or_else(|| Arc::from(format!("{}:{}", svc.host, svc.port)));
        let connect_budget = match bound {
            Some(d) => svc.connect_timeout.min(d.saturating_duration_since(Instant::now())),
            None => svc.connect_timeout,
        };
        let sender = match pool.get(&target_host, port, &svc.transport, connect_budget, fresh).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(target = %label_of(), error = %e, "upstream connect failed");
                if let Some(t) = trace {
                    t.failed(&e);
                }
                if let (Some(b), Some(i)) = (&svc.balancer, target_idx) {
                    if let ConnectError::Timeout { .. } = e {
                        b.record(i, Outcome::Timeout);
                    } else if e.is_tcp_failure() {
                        b.record(i, Outcome::TcpFailure);
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
        let wait = match bound {
            Some(d) => svc.read_timeout.min(d.saturating_duration_since(sent_at)),
            None => svc.read_timeout,
        };
        let Some(up) = request.take() else { return Err(ProxyError::BadRequest) };
        // Only a request that may still be retried is kept for a replay.
        let replay = (attempt < svc.retries).then_some(svc.replay);
        // One timeout per protocol, each awaited where it is made: the send futures are large,
        // and every move of one (into a wrapper, into the timeout) is a memcpy per request. An
        // HTTP/1.1 connection keeps a timer of its own (cheaper than one per request).
        let sent = match sender {
            Sender::H1(conn, home) => {
                conn.send(up, home, sent_at + wait).await.map(|r| r.map(|r| r.map(UpstreamStream::H1)))
            }
            Sender::H2(mut s) => tokio::time::timeout_at(sent_at + wait, s.send(up, replay))
                .await
                .map(|r| r.map(|r| r.map(UpstreamStream::H2)))
                .map_err(|_| TimedOut),
        };
        let resp = match sent {
            Err(TimedOut) => {
                if let (Some(b), Some(i)) = (&svc.balancer, target_idx) {
                    b.record(i, Outcome::Timeout);
                }
                return Err(if deadline.is_some_and(|d| d <= Instant::now() + Duration::from_millis(1)) {
                    ProxyError::DeadlineExceeded
                } else {
                    ProxyError::UpstreamTimeout
                });
            }
            Ok(Ok(resp)) => resp,
            // The upstream never processed the request: retry it on a fresh connection (closed
            // pooled connection, GOAWAY before the stream started), and on another target when
            // this one refused it (REFUSED_STREAM, GOAWAY, reset before the response headers),
            // replaying its recorded body.
            Ok(Err(Unanswered { request: Some(back), error })) if attempt < svc.retries => {
                if let Some(t) = trace {
                    t.failed(&error);
                }
                tracing::debug!(target = %label_of(), error = %error, attempt, "upstream did not take the request; retrying");
                let unavailable = error.is::<UnavailableAnswer>();
                if let (Some(b), Some(i), true) = (&svc.balancer, target_idx, unavailable) {
                    if let Some(outcome) = b.passive.judge(200, Some(b"14")) {
                        b.record(i, outcome);
                    }
                }
                if let Some(i) = target_idx {
                    tried.push(i);
                    if svc.balancer.as_ref().is_some_and(|b| tried.len() >= b.targets.len()) {
                        tried.clear();
                    }
                }
                attempt += 1;
                *request = Some(*back);
                // An UNAVAILABLE answer came over a working connection: keep using it.
                fresh = !unavailable;
                continue;
            }
            // The client's own body broke (bad framing, or it left): its fault, never the upstream's.
            Ok(Err(Unanswered { error, .. })) if client_body_failed(&*error) => {
                tracing::debug!(target = %label_of(), error = %error, "client request body failed");
                return Err(ProxyError::InvalidRequest { reason: error.to_string() });
            }
            Ok(Err(Unanswered { error, .. })) => {
                let refused = crate::response_body::h2_reason(&*error) == Some(h2::Reason::REFUSED_STREAM);
                tracing::debug!(target = %label_of(), error = %error, refused, "upstream request failed");
                return Err(ProxyError::UpstreamFailed { detail: error.to_string() });
            }
        };
        if let (Some(b), Some(i)) = (&svc.balancer, target_idx) {
            let grpc_status = resp.headers().get(grpc::GRPC_STATUS).map(|v| v.as_bytes());
            if let Some(outcome) = b.passive.judge(resp.status().as_u16(), grpc_status) {
                b.record(i, outcome);
            }
        }
        if let Some(t) = trace {
            t.answered(resp.status().as_u16());
        }
        let head_at = Instant::now();
        return then(resp, Sent { label, guard, sent_at, head_at });
    }
}

/// The sooner of the call's deadline and `now` + the route's per-attempt timeout.
fn attempt_bound(deadline: Option<Instant>, attempt_timeout: Option<Duration>, now: Instant) -> Option<Instant> {
    match (deadline, attempt_timeout) {
        (Some(d), Some(t)) => Some(d.min(now + t)),
        (d, t) => d.or(t.map(|t| now + t)),
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
