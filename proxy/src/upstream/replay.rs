//! Keeping what an HTTP/2 upstream request sent, so that a call refused before any response byte
//! (REFUSED_STREAM, a GOAWAY that left it out, a reset before the response headers) can be sent
//! again, to another target. The body is recorded as it is pumped upstream (the chunks are shared
//! `Bytes`, not copied) up to a bound; a body over the bound, one still streaming when the call
//! failed, and one that failed on the client's side are never replayed.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body::{Body, Frame, SizeHint};

use crate::downstream::request_body::{ClientBody, ClientBodyError, RequestBody};

/// Request bodies up to this size are kept for a retry (the `grpc` retry buffer).
pub(crate) const DEFAULT_REPLAY_LIMIT: usize = 64 << 10;

/// The request head, kept to send the request again.
pub(crate) struct Head {
    method: http::Method,
    uri: http::Uri,
    version: http::Version,
    headers: HeaderMap,
}

impl Head {
    pub(crate) fn of(parts: &http::request::Parts) -> Head {
        Head { method: parts.method.clone(), uri: parts.uri.clone(), version: parts.version, headers: parts.headers.clone() }
    }
}

/// The body frames sent so far.
pub(crate) struct Recorder {
    frames: Vec<Frame<Bytes>>,
    bytes: usize,
    limit: usize,
    complete: bool,
}

impl Recorder {
    pub(crate) fn new(limit: usize) -> Recorder {
        Recorder { frames: Vec::new(), bytes: 0, limit, complete: false }
    }

    /// Records one frame; `false` when the body is now over the limit (stop recording).
    pub(crate) fn record(&mut self, frame: &Frame<Bytes>, end: bool) -> bool {
        if let Some(d) = frame.data_ref() {
            self.bytes += d.len();
            if self.bytes > self.limit {
                return false;
            }
            self.frames.push(Frame::data(d.clone()));
        } else if let Some(t) = frame.trailers_ref() {
            self.frames.push(Frame::trailers(t.clone()));
        }
        self.complete |= end;
        true
    }

    pub(crate) fn finish(&mut self) {
        self.complete = true;
    }

    /// The request again, when its whole body was recorded.
    pub(crate) fn replay(self, head: Head) -> Option<Request<RequestBody>> {
        if !self.complete {
            return None;
        }
        let body = ClientBody::Filtered(Box::pin(Replayed { frames: self.frames.into() }));
        let (body, _) = RequestBody::new(body);
        let mut req = Request::new(body);
        *req.method_mut() = head.method;
        *req.uri_mut() = head.uri;
        *req.version_mut() = head.version;
        *req.headers_mut() = head.headers;
        Some(req)
    }
}

/// A recorded body, sent again.
struct Replayed {
    frames: VecDeque<Frame<Bytes>>,
}

impl Body for Replayed {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        Poll::Ready(self.frames.pop_front().map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        match self.frames.iter().try_fold(0u64, |n, f| Some(n + f.data_ref()?.len() as u64)) {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
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
        let req = r.replay(head()).unwrap();
        assert_eq!((req.method(), req.uri().path()), (&http::Method::POST, "/a.B/C"));
        assert_eq!(req.headers()["te"], "trailers");
        let got = req.into_body().collect().await.unwrap();
        assert_eq!(got.trailers().unwrap()["x-t"], "1");
        assert_eq!(&got.to_bytes()[..], b"hello");
    }

    #[test]
    fn an_incomplete_or_oversized_body_does_not_replay() {
        let mut r = Recorder::new(4);
        assert!(r.record(&Frame::data(Bytes::from_static(b"abc")), false));
        assert!(!r.record(&Frame::data(Bytes::from_static(b"de")), false), "over the limit");
        let mut r = Recorder::new(4);
        r.record(&Frame::data(Bytes::from_static(b"abc")), false);
        assert!(r.replay(head()).is_none(), "still streaming");
    }
}
