//! HTTP/2 Rapid Reset protection (CVE-2023-44487) for downstream connections.
//!
//! The h2 server ([`crate::downstream::h2`]) accepts every new stream at once and runs our handler
//! for it, so the h2 crate's own limit (`max_pending_accept_reset_streams`, streams reset before
//! the application accepted them) does not see a client that opens a stream, lets the proxy start
//! the upstream call, then resets it. Like Envoy's premature-reset check, each h2 connection gets a
//! [`ResetTracker`]: every stream takes a [`StreamGuard`]; a guard dropped before the response
//! ended and within `h2_reset_lifetime` of its start is a premature reset. Once
//! `h2_reset_min_streams` streams were seen and at least `h2_reset_percent` % of them were
//! premature resets, the connection is cut: GOAWAY(ENHANCE_YOUR_CALM) from h2, and every stream on
//! it ends (their upstream calls are cancelled). Each cut counts in
//! `sluice_h2_resets_total{reason="rapid_reset"}`. The counts are halved whenever they reach twice
//! the minimum, so they describe the recent streams of the connection (a client cannot bank good
//! requests and then reset freely).
//!
//! The same guards count the connection's open streams, so the connection task can close an h2
//! connection that has had none for `h2_idle_timeout` ([`ResetTracker::idle_for`]).
//!
//! Whenever an h2 connection is closed by us before the client closed its side (this cut, h2's
//! own GOAWAYs for CONTINUATION floods or pending-accept resets, shutdown), the socket lingers up
//! to 1 s ([`Lingering`]), half-closed and discarding input, so the client reads the GOAWAY instead
//! of getting a TCP reset for the bytes it had in flight (the same reason nginx has
//! `lingering_close`).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::settings::ConnLimits;

/// How long a cut connection keeps reading (and discarding) before the socket closes.
const LINGER: Duration = Duration::from_secs(1);

/// Per-connection premature-reset accounting.
pub(crate) struct ResetTracker {
    min_streams: u32,
    percent: u32,
    lifetime: Duration,
    /// (streams, premature resets), decayed.
    counts: Mutex<(u32, u32)>,
    /// Streams whose guard is alive, and since when none has been.
    open: Mutex<(usize, Instant)>,
    tripped: AtomicBool,
    notify: Notify,
    /// `sluice_h2_resets_total{reason="rapid_reset"}`.
    cuts: IntCounter,
}

impl ResetTracker {
    pub(crate) fn new(limits: &ConnLimits, cuts: IntCounter) -> ResetTracker {
        ResetTracker {
            min_streams: limits.h2_reset_min_streams.max(1),
            percent: limits.h2_reset_percent.clamp(1, 100),
            lifetime: limits.h2_reset_lifetime,
            counts: Mutex::new((0, 0)),
            open: Mutex::new((0, Instant::now())),
            tripped: AtomicBool::new(false),
            notify: Notify::new(),
            cuts,
        }
    }

    /// A new stream started on the connection.
    pub(crate) fn start(self: &Arc<Self>) -> StreamGuard {
        {
            let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            c.0 = c.0.saturating_add(1);
            if c.0 >= self.min_streams.saturating_mul(2) {
                c.0 /= 2;
                c.1 /= 2;
            }
        }
        self.open.lock().unwrap_or_else(|p| p.into_inner()).0 += 1;
        StreamGuard { tracker: self.clone(), started: Instant::now(), finished: AtomicBool::new(false) }
    }

    fn stream_ended(&self) {
        let mut o = self.open.lock().unwrap_or_else(|p| p.into_inner());
        o.0 = o.0.saturating_sub(1);
        if o.0 == 0 {
            o.1 = Instant::now();
        }
    }

    /// Resolves once the connection has had no open stream for `timeout`.
    pub(crate) async fn idle_for(&self, timeout: Duration) {
        loop {
            let (open, since) = *self.open.lock().unwrap_or_else(|p| p.into_inner());
            let at = if open == 0 { since + timeout } else { Instant::now() + timeout };
            if open == 0 && at <= Instant::now() {
                return;
            }
            tokio::time::sleep_until(at).await;
        }
    }

    fn premature(&self) {
        let trip = {
            let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            c.1 = c.1.saturating_add(1).min(c.0);
            c.0 >= self.min_streams && u64::from(c.1) * 100 >= u64::from(self.percent) * u64::from(c.0)
        };
        if trip && !self.tripped.swap(true, Ordering::AcqRel) {
            self.cuts.inc();
            self.notify.notify_one();
        }
    }

    /// Whether the connection must be cut.
    pub(crate) fn is_tripped(&self) -> bool {
        self.tripped.load(Ordering::Acquire)
    }

    /// Resolves once the connection must be cut.
    pub(crate) async fn tripped(&self) {
        while !self.is_tripped() {
            self.notify.notified().await;
        }
    }
}

/// Held by one stream from the service call to the end of its response body.
pub(crate) struct StreamGuard {
    tracker: Arc<ResetTracker>,
    started: Instant,
    finished: AtomicBool,
}

impl StreamGuard {
    fn finish(&self) {
        self.finished.store(true, Ordering::Relaxed);
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.tracker.stream_ended();
        if !self.finished.load(Ordering::Relaxed) && self.started.elapsed() < self.tracker.lifetime {
            self.tracker.premature();
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that tells its stream's guard when the response is complete.
    pub struct Guarded<B> {
        #[pin]
        inner: B,
        guard: Option<StreamGuard>,
    }
}

impl<B> Guarded<B> {
    pub(crate) fn new(inner: B, guard: Option<StreamGuard>) -> Self {
        Guarded { inner, guard }
    }
}

impl<B: Body<Data = Bytes>> Body for Guarded<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let r = ready!(this.inner.poll_frame(cx));
        let end = match &r {
            None | Some(Err(_)) => true,
            Some(Ok(f)) => f.is_trailers(),
        };
        if end {
            if let Some(g) = this.guard.as_ref() {
                g.finish();
            }
        }
        Poll::Ready(r)
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
        if end {
            if let Some(g) = self.guard.as_ref() {
                g.finish();
            }
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The I/O of an h2 connection, which lingers when dropped before the client closed its side.
pub(crate) struct Lingering<I: AsyncRead + AsyncWrite + Send + Unpin + 'static> {
    inner: Option<I>,
    /// The client closed its side: nothing to linger for.
    eof: bool,
}

impl<I: AsyncRead + AsyncWrite + Send + Unpin + 'static> Lingering<I> {
    pub(crate) fn new(io: I) -> Self {
        Lingering { inner: Some(io), eof: false }
    }

    fn io(&mut self) -> Pin<&mut I> {
        Pin::new(self.inner.as_mut().expect("taken only on drop"))
    }
}

impl<I: AsyncRead + AsyncWrite + Send + Unpin + 'static> Drop for Lingering<I> {
    fn drop(&mut self) {
        // Close our side, then read and discard for a moment so unread client bytes do not turn
        // the close into a TCP reset that could destroy a GOAWAY in flight.
        let (false, Some(mut io), Ok(rt)) = (self.eof, self.inner.take(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        rt.spawn(async move {
            let _ = io.shutdown().await;
            let mut buf = vec![0u8; 16 << 10];
            let _ = tokio::time::timeout(LINGER, async { while matches!(io.read(&mut buf).await, Ok(n) if n > 0) {} })
                .await;
        });
    }
}

impl<I: AsyncRead + AsyncWrite + Send + Unpin + 'static> AsyncRead for Lingering<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let room = buf.remaining() > 0;
        ready!(self.io().poll_read(cx, buf))?;
        if room && buf.filled().len() == before {
            self.eof = true;
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncRead + AsyncWrite + Send + Unpin + 'static> AsyncWrite for Lingering<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.io().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.io().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io().poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter() -> IntCounter {
        IntCounter::new("t", "t").unwrap()
    }

    fn limits(min: u32, percent: u32) -> ConnLimits {
        ConnLimits { h2_reset_min_streams: min, h2_reset_percent: percent, ..ConnLimits::default() }
    }

    #[test]
    fn trips_when_resets_dominate_recent_streams() {
        let t = Arc::new(ResetTracker::new(&limits(10, 50), counter()));
        // 1,000 good streams first: banked goodwill decays away.
        for _ in 0..1000 {
            t.start().finish();
        }
        let mut resets = 0;
        while !t.is_tripped() {
            drop(t.start());
            resets += 1;
            assert!(resets < 50, "never tripped");
        }
        assert!(resets >= 5, "tripped after {resets}");
        assert_eq!(t.cuts.get(), 1);
    }

    #[test]
    fn mixed_traffic_below_the_ratio_never_trips() {
        let t = Arc::new(ResetTracker::new(&limits(10, 50), counter()));
        for i in 0..10_000 {
            let g = t.start();
            if i % 3 != 0 {
                g.finish();
            }
        }
        assert!(!t.is_tripped());
    }

    #[test]
    fn late_resets_are_not_premature() {
        let l = ConnLimits { h2_reset_lifetime: Duration::ZERO, ..limits(1, 1) };
        let t = Arc::new(ResetTracker::new(&l, counter()));
        for _ in 0..100 {
            drop(t.start());
        }
        assert!(!t.is_tripped());
    }

    #[tokio::test]
    async fn idle_is_measured_from_the_last_stream_end() {
        let t = Arc::new(ResetTracker::new(&ConnLimits::default(), counter()));
        let g = t.start();
        let idle = t.idle_for(Duration::from_millis(100));
        tokio::pin!(idle);
        let open = tokio::time::timeout(Duration::from_millis(300), idle.as_mut()).await;
        assert!(open.is_err(), "idle with a stream open");
        let ended = Instant::now();
        g.finish();
        drop(g);
        idle.await;
        let after = ended.elapsed();
        assert!(after >= Duration::from_millis(100) && after < Duration::from_secs(2), "{after:?}");
    }
}
