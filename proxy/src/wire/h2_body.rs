//! An HTTP/2 stream's body read frame by frame: DATA, then trailers if any. Both sides use it, the
//! client's request body ([`crate::downstream::request_body`]) and an upstream's response body
//! ([`crate::upstream::h2`]); each received chunk's flow-control window is given back as soon as it
//! is handed on, so the peer may send the next one while this one is forwarded.

use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::Frame;

/// The receiving half of one h2 stream.
pub(crate) struct RecvBody {
    stream: h2::RecvStream,
    /// DATA has ended; trailers (if any) come next.
    data_done: bool,
}

impl RecvBody {
    pub(crate) fn new(stream: h2::RecvStream) -> Self {
        RecvBody { stream, data_done: false }
    }

    pub(crate) fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if !self.data_done {
            match ready!(self.stream.poll_data(cx)) {
                Some(Ok(data)) => {
                    // The data is ours now: give its window back to the peer.
                    let _ = self.stream.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => self.data_done = true,
            }
        }
        match ready!(self.stream.poll_trailers(cx)) {
            Ok(Some(t)) => Poll::Ready(Some(Ok(Frame::trailers(t)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        self.stream.is_end_stream()
    }
}
