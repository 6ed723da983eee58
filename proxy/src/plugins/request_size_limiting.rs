//! `request-size-limiting`, streaming-safe. Kong reads a body without `Content-Length` into memory
//! before measuring it, which buffers every gRPC client stream; sluice instead checks the declared
//! length on the request head ([`SizeLimit::check_head`]) and counts the bytes of the body as they
//! flow upstream ([`LimitedBody`]), failing the stream as soon as the count passes the limit. No
//! byte is held back: frames pass one by one, and the frame that crosses the limit is not sent.
//!
//! A refusal is a [`SizeLimitError`]; the caller answers it with [`SizeLimitError::status`] (413
//! "Request size limit exceeded", 417 after `Expect: 100-continue`, 411 "A valid Content-Length
//! header is required"), which `respond` maps to RESOURCE_EXHAUSTED for a gRPC client. When the
//! body trips mid-stream the upstream send fails; [`Tripwire::tripped`] tells the caller that the
//! limit, not the upstream, ended it.
//!
//! What a client sees when its body passes the limit while it is being sent:
//! - before the upstream answered (a unary call, a client stream, any HTTP upload): the upstream
//!   request is reset (HTTP/2 `CANCEL`) or its connection closed (HTTP/1.1), and the client gets
//!   the proxy's own reply: 413 with Kong's JSON, or for gRPC a trailers-only
//!   `RESOURCE_EXHAUSTED` "Request size limit exceeded";
//! - after the upstream's response head was sent on (a bidirectional stream): a gRPC response
//!   ends with `grpc-status: 8` trailers and the same message; a plain HTTP response is cut off
//!   (stream reset or connection closed), as there is no way to give it a status any more.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Buf;
use http::header::{CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING};
use http::{HeaderMap, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use proxy_config::plugins::RequestSizeLimitingConfig;
use thiserror::Error;

use super::{AccessCtx, Phases, Plugin, RequestState};
use crate::downstream::request_body::{ClientBody, ClientBodyError};
use crate::respond::PluginReply;

pub(crate) const NAME: &str = proxy_config::plugins::request_size_limiting::NAME;

/// The plugin (Kong's PRIORITY 951): the head check in the access phase, then the body counted
/// on its way upstream.
#[derive(Debug)]
pub(crate) struct RequestSizeLimiting(SizeLimit);

impl RequestSizeLimiting {
    pub(crate) fn new(c: &RequestSizeLimitingConfig) -> Self {
        RequestSizeLimiting(SizeLimit::new(c))
    }
}

impl Plugin for RequestSizeLimiting {
    fn name(&self) -> &'static str {
        NAME
    }
    fn priority(&self) -> u32 {
        951
    }
    fn phases(&self) -> Phases {
        Phases::ACCESS.union(Phases::REQUEST_BODY)
    }
    fn access(&self, req: &mut AccessCtx<'_>) -> Result<(), Box<PluginReply>> {
        self.0.check_head(&req.parts.headers).map_err(|e| Box::new(reply(e)))
    }
    fn request_body(&self, body: ClientBody, headers: &HeaderMap, state: &mut RequestState) -> ClientBody {
        if body.is_end_stream() {
            return body;
        }
        let (limited, tripwire) = self.0.wrap(body, headers);
        state.size_limit = Some(tripwire);
        ClientBody::Filtered(Box::pin(limited.map_err(|e| match e {
            LimitedBodyError::Body(e) => e,
            LimitedBodyError::Limit(l) => ClientBodyError::Refused(Box::new(l)),
        })))
    }
}

/// The proxy's answer to a refusal (`respond` turns it into Kong's JSON or gRPC status 8).
pub(crate) fn reply(e: SizeLimitError) -> PluginReply {
    PluginReply::new(e.status().as_u16(), e.message())
}

/// The answer when the body went over the limit while it was being sent.
pub(crate) fn too_large() -> PluginReply {
    reply(SizeLimitError::TooLarge { expect_continue: false })
}

/// Kong's message for a body over the limit.
pub(crate) const TOO_LARGE: &str = "Request size limit exceeded";
/// Kong's message when `require_content_length` is set and the request has none.
pub(crate) const LENGTH_REQUIRED: &str = "A valid Content-Length header is required";

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub(crate) enum SizeLimitError {
    /// The declared or counted body is over the limit; `expect_continue` when the client sent
    /// `Expect: 100-continue` (Kong answers 417 then).
    #[error("Request size limit exceeded")]
    TooLarge { expect_continue: bool },
    /// `require_content_length` and no valid `Content-Length` (nor chunked transfer coding).
    #[error("A valid Content-Length header is required")]
    LengthRequired,
}

impl SizeLimitError {
    /// The HTTP status Kong answers with.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            SizeLimitError::TooLarge { expect_continue: false } => StatusCode::PAYLOAD_TOO_LARGE,
            SizeLimitError::TooLarge { expect_continue: true } => StatusCode::EXPECTATION_FAILED,
            SizeLimitError::LengthRequired => StatusCode::LENGTH_REQUIRED,
        }
    }

    /// The message of the error body (and of `grpc-message`).
    pub(crate) fn message(&self) -> &'static str {
        match self {
            SizeLimitError::TooLarge { .. } => TOO_LARGE,
            SizeLimitError::LengthRequired => LENGTH_REQUIRED,
        }
    }
}

/// One instance's limit, built once per config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SizeLimit {
    limit: u64,
    require_content_length: bool,
}

impl SizeLimit {
    pub(crate) fn new(config: &RequestSizeLimitingConfig) -> Self {
        SizeLimit { limit: config.limit_bytes(), require_content_length: config.require_content_length }
    }

    /// Kong's access-phase check on the head: a declared `Content-Length` over the limit is
    /// refused before any byte is read; without a valid one, `require_content_length` refuses
    /// unless the body is chunked. (An HTTP/2 request, every gRPC call included, has no chunked
    /// coding: with `require_content_length` it needs a `content-length`, as in Kong.)
    pub(crate) fn check_head(&self, headers: &HeaderMap) -> Result<(), SizeLimitError> {
        let declared =
            headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|s| s.trim().parse::<u64>().ok());
        match declared {
            Some(n) if n > self.limit => Err(SizeLimitError::TooLarge { expect_continue: expects_continue(headers) }),
            Some(_) => Ok(()),
            None if self.require_content_length && !chunked(headers) => Err(SizeLimitError::LengthRequired),
            None => Ok(()),
        }
    }

    /// The body, counted as it flows; see [`LimitedBody`]. The tripwire says afterwards whether
    /// the limit ended the body.
    pub(crate) fn wrap<B>(&self, body: B, headers: &HeaderMap) -> (LimitedBody<B>, Tripwire) {
        let tripwire = Tripwire::default();
        let body = LimitedBody {
            inner: body,
            limit: self.limit,
            seen: 0,
            expect_continue: expects_continue(headers),
            tripped: tripwire.0.clone(),
        };
        (body, tripwire)
    }
}

fn expects_continue(headers: &HeaderMap) -> bool {
    headers.get(EXPECT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
}

fn chunked(headers: &HeaderMap) -> bool {
    headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|c| c.trim().eq_ignore_ascii_case("chunked"))
}

/// Set once a [`LimitedBody`] has refused its body.
#[derive(Debug, Clone, Default)]
pub struct Tripwire(Arc<AtomicBool>);

impl Tripwire {
    pub fn tripped(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The error of a [`LimitedBody`]: the inner body's, or the limit.
#[derive(Debug, Error)]
pub(crate) enum LimitedBodyError<E> {
    #[error(transparent)]
    Body(E),
    #[error("{0}")]
    Limit(#[source] SizeLimitError),
}

pin_project_lite::pin_project! {
    /// A body that counts its data bytes and fails with [`SizeLimitError::TooLarge`] once they
    /// exceed the limit. Frames are passed on as they come (nothing is buffered); trailers pass
    /// untouched; after the limit is crossed the inner body is not polled again.
    pub(crate) struct LimitedBody<B> {
        #[pin]
        inner: B,
        limit: u64,
        seen: u64,
        expect_continue: bool,
        tripped: Arc<AtomicBool>,
    }
}

impl<B: Body> Body for LimitedBody<B> {
    type Data = B::Data;
    type Error = LimitedBodyError<B::Error>;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, Self::Error>>> {
        let this = self.project();
        let over = SizeLimitError::TooLarge { expect_continue: *this.expect_continue };
        if this.tripped.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(LimitedBodyError::Limit(over))));
        }
        let frame = match ready!(this.inner.poll_frame(cx)) {
            None => return Poll::Ready(None),
            Some(Err(e)) => return Poll::Ready(Some(Err(LimitedBodyError::Body(e)))),
            Some(Ok(frame)) => frame,
        };
        if let Some(data) = frame.data_ref() {
            *this.seen = this.seen.saturating_add(data.remaining() as u64);
            if *this.seen > *this.limit {
                this.tripped.store(true, Ordering::Release);
                return Poll::Ready(Some(Err(LimitedBodyError::Limit(over))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        !self.tripped.load(Ordering::Relaxed) && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
impl SizeLimit {
    /// The largest body allowed, in bytes (a body of exactly this size passes, as in Kong).
    fn limit(&self) -> u64 {
        self.limit
    }
}

#[cfg(test)]
impl<B> LimitedBody<B> {
    /// The data bytes passed on so far.
    fn seen(&self) -> u64 {
        self.seen
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures_util::stream;
    use http_body_util::{BodyExt, StreamBody};
    use proxy_config::plugins::{PluginConfig, SizeUnit};
    use serde_json::json;

    use super::*;

    fn limit(config: serde_json::Value) -> SizeLimit {
        match PluginConfig::from_entity("request-size-limiting", &config).unwrap() {
            PluginConfig::RequestSizeLimiting(c) => SizeLimit::new(&c),
            other => panic!("{other:?}"),
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(n, v)| (http::HeaderName::from_static(n), http::HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn units_are_kongs_binary_units() {
        for (size, unit, bytes) in
            [(128, "megabytes", 128 << 20), (3, "kilobytes", 3072), (10, "bytes", 10), (0, "bytes", 0)]
        {
            assert_eq!(limit(json!({"allowed_payload_size": size, "size_unit": unit})).limit(), bytes);
        }
        assert_eq!(SizeLimit::new(&RequestSizeLimitingConfig::default()).limit(), 128 * SizeUnit::Megabytes.bytes());
    }

    /// A limit, request headers, and the head check's answer.
    type HeadCase<'a> = (&'a SizeLimit, &'a [(&'static str, &'static str)], Result<(), SizeLimitError>);

    #[test]
    fn head_checks() {
        let plain = limit(json!({"allowed_payload_size": 10, "size_unit": "bytes"}));
        let strict = limit(json!({"allowed_payload_size": 10, "size_unit": "bytes", "require_content_length": true}));
        let too_large = Err(SizeLimitError::TooLarge { expect_continue: false });
        let cases: &[HeadCase<'_>] = &[
            (&plain, &[("content-length", "10")], Ok(())),
            (&plain, &[("content-length", "11")], too_large),
            (
                &plain,
                &[("content-length", "11"), ("expect", "100-Continue")],
                Err(SizeLimitError::TooLarge { expect_continue: true }),
            ),
            (&plain, &[], Ok(())),
            (&plain, &[("content-length", "x")], Ok(())),
            (&strict, &[], Err(SizeLimitError::LengthRequired)),
            (&strict, &[("content-length", "nope")], Err(SizeLimitError::LengthRequired)),
            (&strict, &[("transfer-encoding", "gzip, chunked")], Ok(())),
            (&strict, &[("content-length", "3")], Ok(())),
            (&strict, &[("content-length", "30")], too_large),
        ];
        for (i, (l, h, want)) in cases.iter().enumerate() {
            assert_eq!(l.check_head(&headers(h)), *want, "case {i}: {h:?}");
        }
    }

    #[test]
    fn statuses_and_messages_are_kongs() {
        for (e, status, message) in [
            (SizeLimitError::TooLarge { expect_continue: false }, 413, "Request size limit exceeded"),
            (SizeLimitError::TooLarge { expect_continue: true }, 417, "Request size limit exceeded"),
            (SizeLimitError::LengthRequired, 411, "A valid Content-Length header is required"),
        ] {
            assert_eq!((e.status().as_u16(), e.message(), e.to_string().as_str()), (status, message, message));
        }
    }

    type FrameResult = Result<Frame<Bytes>, std::io::Error>;
    type Frames = Vec<FrameResult>;
    type TestBody = StreamBody<stream::Iter<std::vec::IntoIter<FrameResult>>>;
    /// What [`drain`] saw: data bytes or the limit error, the tripwire, trailers or bytes before the error.
    type Drained = (Result<usize, SizeLimitError>, bool, usize);

    fn body(frames: Frames) -> TestBody {
        StreamBody::new(stream::iter(frames))
    }

    fn data(n: usize) -> FrameResult {
        Ok(Frame::data(Bytes::from(vec![b'x'; n])))
    }

    /// Polls every frame; `Ok(n)` data bytes seen (trailers counted apart) or the limit error
    /// with the data bytes passed on before it.
    async fn drain(l: &SizeLimit, frames: Frames) -> Drained {
        let (mut b, tripwire) = l.wrap(body(frames), &HeaderMap::new());
        let (mut passed, mut trailers) = (0, 0);
        while let Some(f) = b.frame().await {
            match f {
                Ok(f) if f.is_data() => passed += f.into_data().unwrap().len(),
                Ok(_) => trailers += 1,
                Err(LimitedBodyError::Limit(e)) => return (Err(e), tripwire.tripped(), passed),
                Err(LimitedBodyError::Body(e)) => panic!("{e}"),
            }
        }
        (Ok(passed), tripwire.tripped(), trailers)
    }

    #[tokio::test]
    async fn bodies_are_counted_across_frames() {
        let l = limit(json!({"allowed_payload_size": 10, "size_unit": "bytes"}));
        let over = SizeLimitError::TooLarge { expect_continue: false };
        let trailers = || Ok(Frame::trailers(headers(&[("grpc-status", "0")])));
        let cases: Vec<(Frames, Drained)> = vec![
            (vec![], (Ok(0), false, 0)),
            (vec![data(10)], (Ok(10), false, 0)),
            (vec![data(4), data(6), trailers()], (Ok(10), false, 1)),
            (vec![data(11)], (Err(over), true, 0)),
            (vec![data(4), data(4), data(4), data(4)], (Err(over), true, 8)),
            (vec![data(0), data(10), data(0), trailers()], (Ok(10), false, 1)),
        ];
        for (i, (frames, want)) in cases.into_iter().enumerate() {
            assert_eq!(drain(&l, frames).await, want, "case {i}");
        }
    }

    #[tokio::test]
    async fn frames_flow_before_the_body_ends_and_the_inner_body_stops_at_the_limit() {
        let l = limit(json!({"allowed_payload_size": 1, "size_unit": "kilobytes"}));
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
        let (mut b, tripwire) = l.wrap(StreamBody::new(tokio_stream_from(rx)), &HeaderMap::new());
        // Each frame comes out before the next is sent: nothing waits for the end of the body.
        for _ in 0..4 {
            tx.send(data(256)).await.unwrap();
            let f = b.frame().await.unwrap().unwrap();
            assert_eq!(f.into_data().unwrap().len(), 256);
        }
        assert_eq!((b.seen(), tripwire.tripped()), (1024, false));
        tx.send(data(1)).await.unwrap();
        assert!(matches!(b.frame().await, Some(Err(LimitedBodyError::Limit(SizeLimitError::TooLarge { .. })))));
        assert!(tripwire.tripped());
        // The inner body is not read again: a frame sent now stays in the channel.
        tx.send(data(1)).await.unwrap();
        assert!(matches!(b.frame().await, Some(Err(LimitedBodyError::Limit(_)))));
        assert!(!b.is_end_stream());
        assert_eq!(tx.capacity(), 0, "the inner body was polled after the limit");
    }

    /// A stream over an mpsc receiver (tokio-stream is not a dependency).
    fn tokio_stream_from<T>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
