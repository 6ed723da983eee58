//! The request body as the client sends it ([`ClientBody`]: an HTTP/2 stream, or sluice's own
//! HTTP/1.1 reader), and as it goes upstream ([`RequestBody`]): streamed frame by frame (trailers
//! included), counting bytes for `kong_bandwidth_bytes{direction="ingress"}` and the access log.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use thiserror::Error;

use crate::downstream::h1::{H1BodyError, H1RequestBody};
use crate::wire::h2_body::RecvBody;

/// A request body as it arrives.
pub enum ClientBody {
    /// An HTTP/1.x request without a body.
    Empty,
    /// An HTTP/1.x request body, read by the connection's loop in [`crate::downstream::h1`].
    H1(H1RequestBody),
    /// An HTTP/2 stream's body, served by [`crate::downstream::h2`].
    H2(H2RequestBody),
    /// The client's body behind a plugin's filter (`crate::plugins`: request-size-limiting's
    /// byte count, request-transformer's rewritten body).
    Filtered(Pin<Box<dyn Body<Data = Bytes, Error = ClientBodyError> + Send>>),
}

/// An HTTP/2 request body and what is left of its declared `content-length` (h2 checks that the
/// DATA adds up to it): an HTTP/1.1 upstream is then sent the length instead of chunks.
pub struct H2RequestBody {
    recv: RecvBody,
    remaining: Option<u64>,
}

impl H2RequestBody {
    pub fn new(stream: h2::RecvStream, content_length: Option<u64>) -> Self {
        H2RequestBody { recv: RecvBody::new(stream), remaining: content_length }
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let f = ready!(self.recv.poll_frame(cx));
        if let (Some(Ok(frame)), Some(n)) = (&f, self.remaining.as_mut()) {
            if let Some(d) = frame.data_ref() {
                *n = n.saturating_sub(d.len() as u64);
            }
        }
        Poll::Ready(f)
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

#[derive(Debug, Error)]
pub enum ClientBodyError {
    #[error(transparent)]
    H1(#[from] H1BodyError),
    #[error(transparent)]
    H2(#[from] h2::Error),
    /// A plugin's filter refused the body (e.g. over request-size-limiting's limit).
    #[error(transparent)]
    Refused(Box<dyn std::error::Error + Send + Sync>),
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        match self.get_mut() {
            ClientBody::Empty => Poll::Ready(None),
            ClientBody::H1(b) => b.poll_frame(cx).map(|f| f.map(|f| f.map_err(Into::into))),
            ClientBody::H2(b) => b.poll_frame(cx).map(|f| f.map(|f| f.map_err(Into::into))),
            ClientBody::Filtered(b) => b.as_mut().poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Empty => true,
            ClientBody::H1(b) => b.is_end_stream(),
            ClientBody::H2(b) => b.recv.is_end_stream(),
            ClientBody::Filtered(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Empty => SizeHint::with_exact(0),
            ClientBody::H1(b) => b.size_hint(),
            ClientBody::H2(b) => b.size_hint(),
            ClientBody::Filtered(b) => b.size_hint(),
        }
    }
}

/// The client's body plus a shared byte counter (none for a body known to be empty).
pub struct RequestBody {
    inner: ClientBody,
    counter: Option<Arc<AtomicU64>>,
}

impl RequestBody {
    pub fn new(inner: ClientBody) -> (Self, Option<Arc<AtomicU64>>) {
        let counter = (!inner.is_end_stream()).then(|| Arc::new(AtomicU64::new(0)));
        (RequestBody { inner, counter: counter.clone() }, counter)
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let (Poll::Ready(Some(Ok(frame))), Some(counter)) = (&polled, &self.counter) {
            if let Some(d) = frame.data_ref() {
                counter.fetch_add(d.len() as u64, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
