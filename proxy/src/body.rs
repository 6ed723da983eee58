//! The response body the proxy sends downstream: a local reply, or the upstream's body passed
//! through frame by frame (no buffering) with the guarantees a gRPC client needs:
//! - a `grpc-timeout` deadline that expires mid-stream drops the upstream body (which resets the
//!   upstream stream with CANCEL) and ends the response with `grpc-status: 4` trailers;
//! - an upstream reset or read timeout mid-stream ends a gRPC response with `grpc-status` trailers
//!   (never a silent hang); a plain HTTP response is aborted instead, as there is no trailer to say it;
//! - when the body ends or is dropped (client went away), the request's record is completed, which
//!   feeds metrics and the access log exactly once.

use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::wire::grpc::{self, Code};
use crate::telemetry::observe::Completion;
use crate::upstream::h1::H1Body;
use crate::upstream::h2::H2Body;

/// The error type of [`ProxyBody`]: the downstream side resets the stream (h2) or closes the
/// connection (HTTP/1.1) when it sees one.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// Every response body sluice produces.
pub enum ProxyBody {
    /// No body (also used for gRPC trailers-only replies, whose status lives in the headers).
    Empty,
    /// A small local reply (Kong's JSON errors, status pages, admin answers).
    Full(Option<Bytes>),
    /// The upstream's body, streamed.
    Upstream(Box<UpstreamBody>),
}

impl ProxyBody {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        ProxyBody::Full(Some(bytes.into()))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            ProxyBody::Empty => Poll::Ready(None),
            ProxyBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Upstream(u) => Pin::new(u.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Empty => true,
            ProxyBody::Full(b) => b.is_none(),
            ProxyBody::Upstream(u) => u.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Empty => SizeHint::with_exact(0),
            ProxyBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ProxyBody::Full(None) => SizeHint::with_exact(0),
            ProxyBody::Upstream(u) => u.size_hint(),
        }
    }
}

/// Timers that bound an upstream response body.
pub struct Limits {
    /// Absolute end (from `grpc-timeout`): the call is over at this instant.
    pub deadline: Option<Instant>,
    /// Longest gap between two frames from the upstream (the service's `read_timeout`).
    pub idle: Duration,
    /// When the response head arrived: the first gap starts here.
    pub head_at: Instant,
}

/// An upstream response body as its connection delivers it.
pub enum UpstreamStream {
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
pub struct UpstreamBody {
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
}

impl UpstreamBody {
    pub fn new(inner: UpstreamStream, grpc: bool, limits: Limits, completion: Completion) -> Self {
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
            c.complete();
        }
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

use std::future::Future;

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
            Poll::Ready(Some(Ok(frame))) => {
                this.moved = true;
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

/// The HTTP/2 reset reason behind an error (an h2 error, or an error caused by one), if any.
pub fn h2_reason(e: &(dyn std::error::Error + 'static)) -> Option<h2::Reason> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(h2e) = err.downcast_ref::<h2::Error>() {
            return h2e.reason();
        }
        cur = err.source();
    }
    None
}

/// Poll helper so callers can `ready!` on frames (kept for symmetry with hyper's API).
pub fn poll_data(body: Pin<&mut ProxyBody>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BodyError>>> {
    match ready!(body.poll_frame(cx)) {
        Some(Ok(f)) => Poll::Ready(f.into_data().ok().map(Ok)),
        Some(Err(e)) => Poll::Ready(Some(Err(e))),
        None => Poll::Ready(None),
    }
}

/// Header values of a gRPC trailers-only reply.
pub fn trailers_only_headers(code: Code, message: &str) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(3);
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert("grpc-status", code.header_value());
    h.insert("grpc-message", grpc::encode_message(message));
    h
}
