//! The response body the proxy sends downstream: a local reply, or the upstream's body passed
//! through frame by frame (no buffering; built in `phases::body_filter`) with the guarantees a
//! gRPC client needs:
//! - a `grpc-timeout` deadline that expires mid-stream drops the upstream body (which resets the
//!   upstream stream with CANCEL) and ends the response with `grpc-status: 4` trailers;
//! - an upstream reset or read timeout mid-stream ends a gRPC response with `grpc-status` trailers
//!   (never a silent hang); a plain HTTP response is aborted instead, as there is no trailer to say it;
//! - when the body ends or is dropped (client went away), the request's record is completed, which
//!   feeds metrics and the access log exactly once.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame, SizeHint};

use crate::wire::grpc::{self, Code};

/// The error type of [`ProxyBody`]: the downstream side resets the stream (h2) or closes the
/// connection (HTTP/1.1) when it sees one.
pub(crate) type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// Every response body sluice produces.
pub enum ProxyBody {
    /// No body (also used for gRPC trailers-only replies, whose status lives in the headers).
    Empty,
    /// A small local reply (Kong's JSON errors, status pages, admin answers).
    Full(Option<Bytes>),
    /// The upstream's body, streamed.
    /// The upstream's body, streamed ([`crate::phases::body_filter::UpstreamBody`]; boxed as a
    /// trait object so that this layer does not name the upstream connection types).
    Upstream(Pin<Box<dyn Body<Data = Bytes, Error = BodyError> + Send>>),
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
            ProxyBody::Upstream(u) => u.as_mut().poll_frame(cx),
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

/// The HTTP/2 reset reason behind an error (an h2 error, or an error caused by one), if any.
pub(crate) fn h2_reason(e: &(dyn std::error::Error + 'static)) -> Option<h2::Reason> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(h2e) = err.downcast_ref::<h2::Error>() {
            return h2e.reason();
        }
        cur = err.source();
    }
    None
}

/// Header values of a gRPC trailers-only reply.
pub(crate) fn trailers_only_headers(code: Code, message: &str) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(3);
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert("grpc-status", code.header_value());
    h.insert("grpc-message", grpc::encode_message(message));
    h
}
