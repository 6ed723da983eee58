//! Kong's body_filter phase: the upstream's response body on its way to the client, frame by
//! frame, bounded by the call's deadline and the service's read timeout, feeding the request's
//! record (bytes, `grpc-status` from trailers) and completing it (the log phase) when it ends or
//! is dropped. The route's body_filter plugins see each frame (hook point of response-transformer).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::plugins::request_size_limiting::{self, Tripwire};
use crate::plugins::response_transformer::JsonBody;
use crate::response_body::{h2_reason, BodyError};
use crate::telemetry::observe::Completion;
use crate::upstream::balancer::ActiveGuard;
use crate::upstream::h1::H1Body;
use crate::upstream::h2::H2Body;
use crate::wire::grpc::{self, Code};
use crate::wire::grpc_web::{Mode, WebResponse};

/// Timers that bound an upstream response body.
pub(crate) struct Limits {
    /// Absolute end (from `grpc-timeout`): the call is over at this instant.
    pub deadline: Option<Instant>,
    /// Longest gap between two frames from the upstream (the service's `read_timeout`).
    pub idle: Duration,
    /// When the response head arrived: the first gap starts here.
    pub head_at: Instant,
}

/// An upstream response body as its connection delivers it.
pub(crate) enum UpstreamStream {
    /// From an HTTP/1.1 connection.
    H1(H1Body),
    /// From an HTTP/2 stream.
    H2(H2Body),
}

impl UpstreamStream {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self {
            UpstreamStream::H1(b) => b.poll_frame(cx),
            UpstreamStream::H2(b) => b.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamStream::H1(b) => b.is_end_stream(),
            UpstreamStream::H2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamStream::H1(b) => b.size_hint(),
            UpstreamStream::H2(_) => SizeHint::default(),
        }
    }
}

/// The upstream body with its limits and its completion record.
pub(crate) struct UpstreamBody {
    inner: Option<UpstreamStream>,
    grpc: bool,
    deadline: Option<Instant>,
    idle: Duration,
    /// Where the current gap between frames started, as of the last time the body waited.
    last_frame: Instant,
    /// A frame arrived since `last_frame` was read. The clock is read when the body next waits,
    /// not per frame: a unary call's frames all arrive in one poll and need no clock at all (a
    /// clock read costs ~25 ns on this VM, bench/RESULTS.md), and the gap is measured from that
    /// poll, within microseconds of the frame.
    moved: bool,
    timer: Option<Pin<Box<Sleep>>>,
    /// Trailers to send after the upstream part (a synthesized end for gRPC).
    pending_trailers: Option<HeaderMap>,
    done: bool,
    completion: Option<Completion>,
    /// Keeps the target's in-flight count up until the response ends (least-connections).
    active: Option<ActiveGuard>,
    /// The route's body_filter and log plugins (empty for most routes).
    plugins: Option<Arc<crate::plugins::PluginChain>>,
    /// request-size-limiting's tripwire on the request body, which may still be streaming.
    size_limit: Option<Tripwire>,
}

impl UpstreamBody {
    pub(crate) fn new(
        inner: UpstreamStream,
        grpc: bool,
        limits: Limits,
        completion: Completion,
        active: Option<ActiveGuard>,
        plugins: Option<Arc<crate::plugins::PluginChain>>,
    ) -> Self {
        UpstreamBody {
            inner: Some(inner),
            grpc,
            deadline: limits.deadline,
            idle: limits.idle,
            last_frame: limits.head_at,
            moved: false,
            timer: None,
            pending_trailers: None,
            done: false,
            completion: Some(completion),
            active,
            plugins,
            size_limit: None,
        }
    }

    /// The instant the next timer must fire: the sooner of the deadline and the idle limit.
    fn next_wake(&self) -> Instant {
        let idle_at = self.last_frame + self.idle;
        match self.deadline {
            Some(d) if d < idle_at => d,
            _ => idle_at,
        }
    }

    /// Ends the stream early: drop the upstream (reset CANCEL), and for gRPC queue status trailers.
    fn end_with(&mut self, code: Code, message: &str) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.inner = None;
        self.timer = None;
        if let Some(c) = self.completion.as_mut() {
            c.set_grpc_status(code.as_u8());
            c.set_error(message);
        }
        if self.grpc {
            let mut t = HeaderMap::with_capacity(2);
            t.insert("grpc-status", code.header_value());
            t.insert("grpc-message", grpc::encode_message(message));
            self.done = true;
            self.finish();
            Poll::Ready(Some(Ok(Frame::trailers(t))))
        } else {
            self.done = true;
            self.finish();
            Poll::Ready(Some(Err(message.to_string().into())))
        }
    }

    fn finish(&mut self) {
        if let Some(c) = self.completion.take() {
            if let Some(chain) = &self.plugins {
                super::log::run_plugins(chain, &c);
            }
            c.complete();
        }
        self.active = None;
    }

    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Option<(Code, &'static str)> {
        if std::mem::take(&mut self.moved) {
            self.last_frame = Instant::now();
        }
        let wake = self.next_wake();
        let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(wake)));
        if timer.deadline() != wake {
            timer.as_mut().reset(wake);
        }
        if timer.as_mut().poll(cx).is_pending() {
            return None;
        }
        let now = Instant::now();
        if self.deadline.is_some_and(|d| d <= now) {
            return Some((Code::DeadlineExceeded, "Deadline Exceeded"));
        }
        if self.last_frame + self.idle <= now {
            return Some((Code::DeadlineExceeded, "The upstream server is timing out"));
        }
        // Woken early because a frame moved `last_frame`; re-arm for the new instant.
        let wake = self.next_wake();
        if let Some(t) = self.timer.as_mut() {
            t.as_mut().reset(wake);
            let _ = t.as_mut().poll(cx);
        }
        None
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Some(t) = this.pending_trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(t))));
        }
        if this.done {
            return Poll::Ready(None);
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(mut frame))) => {
                this.moved = true;
                if let Some(chain) = &this.plugins {
                    for p in chain.body_filter() {
                        p.body_filter(&mut frame);
                    }
                }
                if let Some(c) = this.completion.as_mut() {
                    if let Some(data) = frame.data_ref() {
                        c.add_bytes_out(data.len());
                    } else if let Some(trailers) = frame.trailers_ref() {
                        c.observe_trailers(trailers);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                this.done = true;
                this.finish();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(_))) if this.size_limit.as_ref().is_some_and(Tripwire::tripped) => {
                // The request body went over the limit, so the upstream stream was reset.
                this.end_with(Code::ResourceExhausted, request_size_limiting::TOO_LARGE)
            }
            Poll::Ready(Some(Err(e))) => {
                let code = match h2_reason(&*e) {
                    Some(r) => grpc::code_for_reset(r),
                    None => Code::Unavailable,
                };
                let code = if code == Code::Cancelled { Code::Unavailable } else { code };
                this.end_with(code, "upstream stream reset")
            }
            Poll::Pending => match this.poll_timer(cx) {
                Some((code, msg)) => this.end_with(code, msg),
                None => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        // An upstream body known to be empty (HEAD, 204, 304) is over before it is polled: the
        // downstream side then sends no body and keeps the response's own content-length.
        self.pending_trailers.is_none() && (self.done || self.inner.as_ref().is_some_and(UpstreamStream::is_end_stream))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(i) if !self.done => i.size_hint(),
            _ => SizeHint::with_exact(0),
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if let Some(c) = self.completion.as_mut() {
            if !self.done && !self.inner.as_ref().is_some_and(UpstreamStream::is_end_stream) {
                c.set_cancelled();
            }
        }
        self.finish();
    }
}

/// Wraps the upstream's body for the client and hands the record to it (it completes the record
/// when the body ends or is dropped).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn respond(
    head: http::response::Parts,
    body: UpstreamStream,
    sent: super::balancer::Sent,
    route: &crate::config::state::RouteRt,
    svc: &crate::config::state::ServiceRt,
    grpc: bool,
    deadline: Option<Instant>,
    ctx: &mut super::Ctx,
) -> Result<http::Response<crate::response_body::ProxyBody>, crate::respond::ProxyError> {
    use crate::response_body::ProxyBody;
    let Some(mut d) = ctx.done.take() else {
        return Ok(http::Response::from_parts(head, ProxyBody::Empty));
    };
    let label = || sent.label.clone().unwrap_or_else(|| Arc::from(format!("{}:{}", svc.host, svc.port)));
    d.set_upstream(if d.wants_details() { Some(label()) } else { None }, sent.head_at - sent.sent_at);
    d.set_response(head.status.as_u16(), true, &head.headers);
    // The consumer's chain when the access phase switched to one (consumers.rs).
    let chain = ctx.plugins.consumer.as_ref().and_then(|c| c.chain.as_ref()).unwrap_or(&route.plugins);
    let plugins = (!chain.body_filter().is_empty() || !chain.log().is_empty()).then(|| chain.clone());
    let limits = Limits { deadline, idle: svc.read_timeout, head_at: sent.head_at };
    let mut body = UpstreamBody::new(body, grpc, limits, d, sent.guard, plugins);
    if route.plugins.is_empty() {
        return Ok(http::Response::from_parts(head, ProxyBody::Upstream(Box::pin(body))));
    }
    body.size_limit = ctx.plugins.size_limit.take();
    let body = match ctx.plugins.json_body.take() {
        // grpc-web: the gRPC answer re-framed for a gRPC-Web client (trailers as the last frame).
        _ if ctx.plugins.grpc_web.is_some() => {
            let mode = ctx.plugins.grpc_web.unwrap_or(Mode::Binary);
            ProxyBody::Upstream(Box::pin(WebResponse::new(body, mode)))
        }
        // response-transformer edits this JSON body: collected, then edited at its end (a body
        // known to be empty, as for HEAD, 204 and 304, stays empty).
        Some(t) if !body.is_end_stream() => ProxyBody::Upstream(Box::pin(JsonBody::new(body, t))),
        _ => ProxyBody::Upstream(Box::pin(body)),
    };
    Ok(http::Response::from_parts(head, body))
}
