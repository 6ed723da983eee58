//! Keeping what an HTTP/2 upstream request sent, so that a call refused before any response byte
//! (REFUSED_STREAM, a GOAWAY that left it out, a reset before the response headers) can be sent
//! again, to another target. The body is recorded as it is pumped upstream (the chunks are shared
//! `Bytes`, not copied) up to a bound. A body over the bound and one that failed on the client's
//! side are never replayed. One the client is still sending is replayed only when it paused
//! between whole gRPC messages (typically a unary call whose END_STREAM had not yet come in when
//! the refusal did): the recorded messages go again and the rest follows live, as in Envoy. A
//! body cut in the middle of a message (a large message still arriving) is not replayed.
//!
//! With the service's `retry_on_unavailable`, a trailers-only `grpc-status: 14` answer counts as
//! a refusal too ([`UnavailableAnswer`]): nothing of it has gone to the client yet.
//!
//! Cost: every send that may be retried keeps the head (a clone of the header map) and the
//! first data frame inline (no allocation for the usual one-frame unary body); more frames go
//! to a vector.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body::{Body, Frame, SizeHint};

use crate::downstream::request_body::{ClientBody, ClientBodyError, RequestBody};

/// What a send keeps so that a refused request can be sent again (the service's retry settings).
#[derive(Debug, Clone, Copy)]
pub struct Replay {
    /// The largest body kept (`retry_buffer_size`); a larger one is sent once.
    pub limit: usize,
    /// Whether a trailers-only UNAVAILABLE answer is retried (`retry_on_unavailable`).
    pub on_unavailable: bool,
}

/// A trailers-only UNAVAILABLE answer, retried under `retry_on_unavailable` as a refusal.
#[derive(Debug, thiserror::Error)]
#[error("upstream answered UNAVAILABLE (trailers-only){}", .message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
pub(crate) struct UnavailableAnswer {
    pub message: Option<String>,
}

impl UnavailableAnswer {
    /// The answer when `head` is a trailers-only `grpc-status: 14` (`ended`: no body follows).
    pub(crate) fn of(head: &HeaderMap, ended: bool) -> Option<UnavailableAnswer> {
        if !ended || head.get(crate::wire::grpc::GRPC_STATUS).is_none_or(|s| s.as_bytes() != b"14") {
            return None;
        }
        let message = head.get("grpc-message").and_then(|m| m.to_str().ok()).map(str::to_string);
        Some(UnavailableAnswer { message })
    }
}

/// The request head, kept to send the request again.
pub(crate) struct Head {
    method: http::Method,
    uri: http::Uri,
    version: http::Version,
    headers: HeaderMap,
}

impl Head {
    pub(crate) fn of(parts: &http::request::Parts) -> Head {
        Head {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers: parts.headers.clone(),
        }
    }
}

/// The body frames sent so far: the first data frame inline, the rest (rare for gRPC unary
/// calls) in `more`.
pub(crate) struct Recorder {
    first: Option<Bytes>,
    more: Vec<Frame<Bytes>>,
    bytes: usize,
    limit: usize,
    complete: bool,
}

impl Recorder {
    pub(crate) fn new(limit: usize) -> Recorder {
        Recorder { first: None, more: Vec::new(), bytes: 0, limit, complete: false }
    }

    /// Records one frame; `false` when the body is now over the limit (stop recording).
    pub(crate) fn record(&mut self, frame: &Frame<Bytes>, end: bool) -> bool {
        if let Some(d) = frame.data_ref() {
            self.bytes += d.len();
            if self.bytes > self.limit {
                return false;
            }
            if self.first.is_none() && self.more.is_empty() {
                self.first = Some(d.clone());
            } else {
                self.more.push(Frame::data(d.clone()));
            }
        } else if let Some(t) = frame.trailers_ref() {
            self.more.push(Frame::trailers(t.clone()));
        }
        self.complete |= end;
        true
    }

    /// The recorded frames, in order.
    fn frames(self) -> impl Iterator<Item = Frame<Bytes>> {
        self.first.map(Frame::data).into_iter().chain(self.more)
    }

    /// Whether the recorded data is whole gRPC messages (5-byte prefix + length each): the
    /// client paused between messages rather than in the middle of one.
    pub(crate) fn on_message_boundary(&self) -> bool {
        let mut data = Vec::with_capacity(self.bytes);
        data.extend_from_slice(self.first.as_deref().unwrap_or_default());
        for f in &self.more {
            if let Some(d) = f.data_ref() {
                data.extend_from_slice(d);
            }
        }
        let mut rest = &data[..];
        while rest.len() >= 5 {
            let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            match rest.get(5 + len..) {
                Some(r) => rest = r,
                None => return false,
            }
        }
        rest.is_empty()
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.complete
    }

    pub(crate) fn finish(&mut self) {
        self.complete = true;
    }

    /// The request again: the recorded body, then `rest` (what the client has yet to send) when
    /// the body was still streaming. `None` when it was neither complete nor given its rest.
    pub(crate) fn replay(self, head: Head, rest: Option<RequestBody>) -> Option<Request<RequestBody>> {
        if !self.complete && rest.is_none() {
            return None;
        }
        let body = ClientBody::Filtered(Box::pin(Replayed { frames: self.frames().collect(), rest }));
        let (body, _) = RequestBody::new(body);
        let mut req = Request::new(body);
        *req.method_mut() = head.method;
        *req.uri_mut() = head.uri;
        *req.version_mut() = head.version;
        *req.headers_mut() = head.headers;
        Some(req)
    }
}

/// A recorded body, sent again, and the client's live remainder after it.
struct Replayed {
    frames: VecDeque<Frame<Bytes>>,
    rest: Option<RequestBody>,
}

impl Body for Replayed {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        if let Some(f) = self.frames.pop_front() {
            return Poll::Ready(Some(Ok(f)));
        }
        match self.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.rest, self.frames.iter().try_fold(0u64, |n, f| Some(n + f.data_ref()?.len() as u64))) {
            (None, Some(n)) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

/// Whether an HTTP/2 stream error says the upstream never processed the request: REFUSED_STREAM,
/// left out by a GOAWAY, or reset by the upstream before its response headers.
pub(crate) fn refused_before_response(e: &h2::Error) -> bool {
    e.reason() == Some(h2::Reason::REFUSED_STREAM) || (e.is_remote() && (e.is_go_away() || e.is_reset()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn head() -> Head {
        let (parts, ()) = Request::post("/a.B/C").header("te", "trailers").body(()).unwrap().into_parts();
        Head::of(&parts)
    }

    #[tokio::test]
    async fn a_complete_body_replays_frame_for_frame() {
        let mut r = Recorder::new(10);
        assert!(r.record(&Frame::data(Bytes::from_static(b"hello")), false));
        let mut t = HeaderMap::new();
        t.insert("x-t", "1".parse().unwrap());
        assert!(r.record(&Frame::trailers(t), true));
        let req = r.replay(head(), None).unwrap();
        assert_eq!((req.method(), req.uri().path()), (&http::Method::POST, "/a.B/C"));
        assert_eq!(req.headers()["te"], "trailers");
        let got = req.into_body().collect().await.unwrap();
        assert_eq!(got.trailers().unwrap()["x-t"], "1");
        assert_eq!(&got.to_bytes()[..], b"hello");
    }

    #[test]
    fn message_boundaries() {
        let mut r = Recorder::new(100);
        assert!(r.on_message_boundary(), "nothing yet");
        r.record(&Frame::data(Bytes::from_static(&[0, 0, 0, 0, 2, 1])), false);
        assert!(!r.on_message_boundary(), "half a message");
        r.record(&Frame::data(Bytes::from_static(&[2, 0, 0, 0])), false);
        assert!(!r.on_message_boundary(), "half a prefix");
        r.record(&Frame::data(Bytes::from_static(&[0, 0])), false);
        assert!(r.on_message_boundary(), "two whole messages");
    }

    #[test]
    fn an_incomplete_or_oversized_body_does_not_replay() {
        let mut r = Recorder::new(4);
        assert!(r.record(&Frame::data(Bytes::from_static(b"abc")), false));
        assert!(!r.record(&Frame::data(Bytes::from_static(b"de")), false), "over the limit");
        let mut r = Recorder::new(4);
        r.record(&Frame::data(Bytes::from_static(b"abc")), false);
        assert!(r.replay(head(), None).is_none(), "still streaming, and no rest to follow");
    }

    #[tokio::test]
    async fn frames_after_the_inline_first_one_replay_in_order() {
        let mut r = Recorder::new(100);
        for chunk in [&b"ab"[..], b"cd", b"ef"] {
            assert!(r.record(&Frame::data(Bytes::from_static(chunk)), false));
        }
        r.finish();
        let got = r.replay(head(), None).unwrap().into_body().collect().await.unwrap();
        assert_eq!(&got.to_bytes()[..], b"abcdef");
    }

    #[test]
    fn only_a_trailers_only_unavailable_is_an_unavailable_answer() {
        let mut h = HeaderMap::new();
        h.insert("grpc-status", "14".parse().unwrap());
        h.insert("grpc-message", "down".parse().unwrap());
        let a = UnavailableAnswer::of(&h, true).unwrap();
        assert_eq!(a.to_string(), "upstream answered UNAVAILABLE (trailers-only): down");
        assert!(UnavailableAnswer::of(&h, false).is_none(), "a body follows");
        h.insert("grpc-status", "13".parse().unwrap());
        assert!(UnavailableAnswer::of(&h, true).is_none(), "another code");
    }
}
