//! The request body (RFC 9112 §6: `content-length` or chunked), handed from the connection loop
//! to whichever task polls the request's [`H1RequestBody`]: the body asks for a frame through the
//! shared [`BodyHandoff`], the loop decodes one from the read buffer (sending `100 Continue` first
//! when the client waits for it) and wakes the body. After the response, [`Conn::finish_body`]
//! says whether the connection can read the next request.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{BufMut, Bytes};
use http_body::{Frame, SizeHint};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::io::poll_read_buf;

use super::conn::{Conn, READ_CHUNK};
use crate::wire::h1::{decode, poll_write_all, Decoded, Framing, WireError};

/// A request body that failed: the client's bytes broke the framing, or the connection ended.
#[derive(Debug, Clone, Error)]
pub enum H1BodyError {
    #[error("request body: {0}")]
    Wire(#[from] WireError),
    #[error("client closed the connection inside the request body")]
    Closed,
    #[error("client connection failed inside the request body: {0}")]
    Io(std::io::ErrorKind),
}

impl<I: AsyncRead + AsyncWrite + Unpin> Conn<I> {
    /// Reads the request body for its [`H1RequestBody`] while that wants a frame. True when a
    /// frame (or the body's end or failure) was handed over.
    pub(super) fn feed(&mut self, handoff: &BodyHandoff, cx: &mut Context<'_>) -> bool {
        let mut s = handoff.lock();
        if s.finished() {
            return false;
        }
        if !s.conn_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            s.conn_waker = Some(cx.waker().clone());
        }
        if !s.wanted || s.frame.is_some() {
            return false;
        }
        if std::mem::take(&mut s.expect_continue) && self.rbuf.is_empty() {
            self.wbuf.put_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        if !self.wbuf.is_empty() {
            if let Poll::Ready(Err(e)) = poll_write_all(&mut self.io, cx, &mut self.wbuf) {
                s.fail(H1BodyError::Io(e.kind()));
                return true;
            }
        }
        loop {
            match decode(&mut s.framing, &mut self.rbuf) {
                Ok(Decoded::Frame(frame)) => {
                    s.frame = Some(frame);
                    s.ended = matches!(s.framing, Framing::Length(0) | Framing::Done);
                    s.deliver();
                    return true;
                }
                Ok(Decoded::End) => {
                    s.ended = true;
                    s.deliver();
                    return true;
                }
                Ok(Decoded::NeedMore) => {}
                Err(e) => {
                    s.fail(e.into());
                    return true;
                }
            }
            self.rbuf.reserve(READ_CHUNK);
            match poll_read_buf(Pin::new(&mut self.io), cx, &mut self.rbuf) {
                Poll::Ready(Ok(0)) => {
                    s.fail(H1BodyError::Closed);
                    return true;
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    s.fail(H1BodyError::Io(e.kind()));
                    return true;
                }
                Poll::Pending => return false,
            }
        }
    }

    /// After the response: whether the request body is wholly consumed (what is buffered is
    /// decoded and dropped), so that the next request starts at the front of the buffer.
    pub(super) fn finish_body(&mut self, handoff: &BodyHandoff) -> bool {
        let mut s = handoff.lock();
        if s.failed {
            return false;
        }
        if s.ended {
            return true;
        }
        loop {
            match decode(&mut s.framing, &mut self.rbuf) {
                Ok(Decoded::Frame(_)) => {}
                Ok(Decoded::End) => return true,
                Ok(Decoded::NeedMore) | Err(_) => return false,
            }
        }
    }
}

/// The state a request body shares with the connection loop that reads it.
pub(super) struct BodyHandoff {
    state: Mutex<HandoffState>,
}

struct HandoffState {
    framing: Framing,
    /// Decoded and not yet taken.
    frame: Option<Frame<Bytes>>,
    /// The body's last frame is decoded (it may still wait in `frame`).
    ended: bool,
    failed: bool,
    error: Option<H1BodyError>,
    /// The body was polled and waits for a frame.
    wanted: bool,
    /// `100 Continue` is owed before the first read.
    expect_continue: bool,
    /// Size of a `content-length` body not yet handed over.
    remaining: Option<u64>,
    body_waker: Option<Waker>,
    conn_waker: Option<Waker>,
}

impl BodyHandoff {
    pub(super) fn new(framing: Framing, expect_continue: bool) -> Self {
        let remaining = match framing {
            Framing::Length(n) => Some(n),
            _ => None,
        };
        BodyHandoff {
            state: Mutex::new(HandoffState {
                framing,
                frame: None,
                ended: false,
                failed: false,
                error: None,
                wanted: false,
                expect_continue,
                remaining,
                body_waker: None,
                conn_waker: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HandoffState> {
        // Nothing panics while holding it; a poisoned handoff is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl HandoffState {
    fn finished(&self) -> bool {
        self.ended || self.failed
    }

    fn deliver(&mut self) {
        self.wanted = false;
        if let Some(w) = self.body_waker.take() {
            w.wake();
        }
    }

    fn fail(&mut self, e: H1BodyError) {
        self.failed = true;
        self.error = Some(e);
        self.deliver();
    }
}

/// An HTTP/1.x request body: frames decoded by the connection loop as they are asked for.
pub struct H1RequestBody {
    handoff: Arc<BodyHandoff>,
    done: bool,
    /// The body failed: every later poll fails the same way and it never reads as ended, so that
    /// nothing (a retry on another connection) can mistake it for a complete, shorter body.
    failed: Option<H1BodyError>,
}

impl H1RequestBody {
    pub(super) fn new(handoff: Arc<BodyHandoff>) -> Self {
        H1RequestBody { handoff, done: false, failed: None }
    }

    pub fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, H1BodyError>>> {
        if let Some(e) = &self.failed {
            return Poll::Ready(Some(Err(e.clone())));
        }
        if self.done {
            return Poll::Ready(None);
        }
        let mut s = self.handoff.lock();
        if let Some(frame) = s.frame.take() {
            if let (Some(left), Some(d)) = (s.remaining.as_mut(), frame.data_ref()) {
                *left = left.saturating_sub(d.len() as u64);
            }
            return Poll::Ready(Some(Ok(frame)));
        }
        if let Some(e) = s.error.take() {
            self.failed = Some(e.clone());
            return Poll::Ready(Some(Err(e)));
        }
        if s.finished() {
            self.done = true;
            return Poll::Ready(None);
        }
        s.wanted = true;
        if !s.body_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            s.body_waker = Some(cx.waker().clone());
        }
        // The connection loop is woken unless it is this very task (it reads after this poll).
        let conn = s.conn_waker.as_ref().filter(|w| !w.will_wake(cx.waker())).cloned();
        drop(s);
        if let Some(w) = conn {
            w.wake();
        }
        Poll::Pending
    }

    pub fn is_end_stream(&self) -> bool {
        if self.failed.is_some() {
            return false;
        }
        if self.done {
            return true;
        }
        let s = self.handoff.lock();
        s.ended && s.frame.is_none()
    }

    pub fn size_hint(&self) -> SizeHint {
        match self.handoff.lock().remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

impl Drop for H1RequestBody {
    fn drop(&mut self) {
        // Nobody reads the rest; the connection loop stops waiting for the body to ask.
        let conn = self.handoff.lock().conn_waker.take();
        if let Some(w) = conn {
            w.wake();
        }
    }
}
