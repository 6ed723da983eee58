//! Downstream HTTP/2, served on the h2 crate directly. The connection's task accepts streams and
//! spawns one task per stream, which runs the [`Handler`] and sends its response. hyper's HTTP/2
//! server, used before, put its own body type around every request, parsed its content-length,
//! removed connection headers from every response with hashed lookups and drove each stream
//! through several layers of futures: 1,600 of the 68,400 instructions a unary gRPC call cost
//! the proxy (bench/callgrind.sh), and 500 more went to following frame boundaries so that a
//! Rapid Reset cut could replace hyper's GOAWAY (h2 sends ENHANCE_YOUR_CALM itself).
//!
//! What hyper's server did that this keeps: its settings (16 KiB frames, a 400 KiB send buffer,
//! at most 1,024 streams reset for local errors), a client's RST_STREAM while the handler runs
//! drops the handler (and so cancels the upstream call), a response body is sent as the client's
//! window allows with at most one chunk waiting, a failing body resets the stream with the HTTP/2
//! reason behind the failure (else INTERNAL_ERROR), a response without `date` gets one, and
//! keepalive pings close a connection whose client stopped answering them. Connection-specific
//! headers are removed from responses as on the way upstream ([`crate::phases::forward`]).
//!
//! And sluice's own limits: the [`ResetTracker`] (Rapid Reset), which cuts the connection with
//! GOAWAY(ENHANCE_YOUR_CALM); closing after `h2_idle_timeout` without streams; graceful shutdown;
//! a closed connection's socket lingers ([`Lingering`]) so the client reads the GOAWAY.

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, DATE};
use http::{HeaderValue, Request, Response};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::downstream::rapid_reset::{Guarded, Lingering, ResetTracker, StreamGuard};
use crate::downstream::request_body::{ClientBody, H2RequestBody};
use crate::downstream::ConnInfo;
use crate::downstream::Handler;
use crate::response_body::{h2_reason, ProxyBody};
use crate::settings::ConnLimits;
use crate::telemetry::metrics::Metrics;
use crate::wire::hop_by_hop::strip_hop_by_hop;

/// hyper's server settings, kept.
const MAX_FRAME_SIZE: u32 = 16 << 10;
const MAX_SEND_BUFFER: usize = 400 << 10;
const MAX_LOCAL_ERROR_RESETS: usize = 1024;

/// How long a connection cut for abuse may take to send its GOAWAY before it is dropped.
const CUT_GRACE: Duration = Duration::from_secs(1);

/// Serves one HTTP/2 connection until it ends, shutdown has drained it, or it was cut for abuse.
pub(crate) async fn serve<I, H>(
    io: I,
    conn: ConnInfo,
    handler: Arc<H>,
    limits: &ConnLimits,
    metrics: &Metrics,
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    H: Handler,
{
    let client = conn.client;
    let conn = Arc::new(conn);
    let resets = Arc::new(ResetTracker::new(limits, metrics.h2_resets.with_label_values(&["rapid_reset"])));
    // Made once and polled across iterations: re-made per accepted stream they would each
    // register a waiter or a timer per request.
    let stop = shutdown.changed();
    let idle = resets.idle_for(limits.h2_idle_timeout);
    let tripped = resets.tripped();
    tokio::pin!(stop, idle, tripped);

    let handshake = builder(limits).handshake::<_, Bytes>(Lingering::new(io));
    let mut h2 = tokio::select! {
        r = handshake => match r {
            Ok(h2) => h2,
            Err(e) => {
                tracing::debug!(%client, error = %e, "h2 handshake failed");
                return;
            }
        },
        _ = &mut stop => return,
        _ = &mut idle => return,
    };
    let keepalive = keep_alive(h2.ping_pong(), limits.h2_keepalive_interval, limits.h2_keepalive_timeout);
    tokio::pin!(keepalive);

    let mut closing = false;
    // Ends when the client closed, the graceful shutdown finished, the Rapid Reset guard tripped,
    // or (true) a keepalive ping went unanswered.
    let unanswered = loop {
        tokio::select! {
            biased;
            next = h2.accept() => match next {
                Some(Ok((req, respond))) => spawn_stream(req, respond, &handler, &conn, &resets),
                Some(Err(e)) => {
                    if !resets.is_tripped() {
                        tracing::debug!(error = %e, "h2 connection ended with error");
                    }
                    break false;
                }
                None => break false,
            },
            _ = &mut tripped => break false,
            _ = &mut stop, if !closing => {
                closing = true;
                h2.graceful_shutdown();
            }
            _ = &mut idle, if !closing => {
                tracing::debug!(%client, "idle HTTP/2 connection closed");
                // A stream that raced the GOAWAY still runs to its end.
                closing = true;
                h2.graceful_shutdown();
            }
            _ = &mut keepalive => break true,
        }
    };
    if resets.is_tripped() {
        tracing::warn!(%client, "HTTP/2 rapid reset: connection cut with GOAWAY(ENHANCE_YOUR_CALM)");
        // h2 sends GOAWAY(last processed stream, ENHANCE_YOUR_CALM) and ends every stream (on a
        // connection that closed meanwhile, there is nothing left to send).
        h2.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
        let _ = tokio::time::timeout(CUT_GRACE, async { while let Some(Ok(_)) = h2.accept().await {} }).await;
    } else if unanswered {
        tracing::debug!(%client, "keepalive ping unanswered: HTTP/2 connection closed");
    }
}

fn builder(limits: &ConnLimits) -> h2::server::Builder {
    let mut b = h2::server::Builder::new();
    b.initial_window_size(limits.h2_stream_window)
        .initial_connection_window_size(limits.h2_connection_window)
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(limits.max_header_list_size)
        .max_frame_size(MAX_FRAME_SIZE)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS));
    b
}

/// Pings the client every `interval`; returns when a ping went unanswered for `timeout`.
async fn keep_alive(ping: Option<h2::PingPong>, interval: Duration, timeout: Duration) {
    let Some(mut ping) = ping else { return std::future::pending().await };
    loop {
        tokio::time::sleep(interval).await;
        if !matches!(tokio::time::timeout(timeout, ping.ping(h2::Ping::opaque())).await, Ok(Ok(_))) {
            return;
        }
    }
}

/// Runs the handler for one stream on a task of its own.
fn spawn_stream<H: Handler>(
    req: Request<h2::RecvStream>,
    respond: h2::server::SendResponse<Bytes>,
    handler: &Arc<H>,
    conn: &Arc<ConnInfo>,
    resets: &Arc<ResetTracker>,
) {
    let guard = resets.start();
    let (parts, stream) = req.into_parts();
    // h2 has checked that the DATA will add up to a declared length.
    let length = if stream.is_end_stream() {
        None
    } else {
        parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok())
    };
    let req = Request::from_parts(parts, ClientBody::H2(H2RequestBody::new(stream, length)));
    // Boxed: a pointer is cheaper to move into the task than the whole request state machine.
    let call = Box::pin(handler.clone().call(req, conn.clone()));
    tokio::spawn(answer(call, respond, guard));
}

/// Waits for the handler's response, unless the client resets the stream first, and sends it.
async fn answer<F>(mut call: Pin<Box<F>>, mut respond: h2::server::SendResponse<Bytes>, guard: StreamGuard)
where
    F: Future<Output = Result<Response<ProxyBody>, Infallible>>,
{
    let resp = poll_fn(|cx| match call.as_mut().poll(cx) {
        Poll::Ready(Ok(resp)) => Poll::Ready(Some(resp)),
        Poll::Ready(Err(never)) => match never {},
        // RST_STREAM from the client: dropping the call cancels its upstream request.
        Poll::Pending => respond.poll_reset(cx).map(|_| None),
    })
    .await;
    drop(call);
    let Some(resp) = resp else { return };
    let (mut head, body) = resp.into_parts();
    strip_hop_by_hop(&mut head.headers);
    head.headers.entry(DATE).or_insert_with(crate::wire::http_date::now);
    let body = Guarded::new(body, Some(guard));
    let end = body.is_end_stream();
    if !end {
        if let Some(n) = body.size_hint().exact() {
            head.headers.entry(CONTENT_LENGTH).or_insert_with(|| HeaderValue::from(n));
        }
    }
    let tx = match respond.send_response(Response::from_parts(head, ()), end) {
        Ok(tx) => tx,
        Err(e) => {
            tracing::debug!(error = %e, "sending the response head failed");
            respond.send_reset(h2::Reason::INTERNAL_ERROR);
            return;
        }
    };
    if !end {
        let mut send = SendBody { body, tx, waiting: None };
        poll_fn(|cx| send.poll_send(cx)).await;
    }
}

/// Sends a response body into its stream as the client's flow control allows.
struct SendBody {
    body: Guarded<ProxyBody>,
    tx: h2::SendStream<Bytes>,
    /// A chunk taken from the body that waits for send window (and whether it ends the body).
    waiting: Option<(Bytes, bool)>,
}

impl SendBody {
    /// Ready when the body is sent, failed, or the stream was reset.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.waiting.is_some() {
                while self.tx.capacity() == 0 {
                    match self.tx.poll_capacity(cx) {
                        Poll::Ready(Some(Ok(0))) => {}
                        Poll::Ready(Some(Ok(_))) => break,
                        // Reset or closed.
                        Poll::Ready(Some(Err(_)) | None) => return Poll::Ready(()),
                        Poll::Pending => return self.wait(cx),
                    }
                }
                let (data, end) = self.waiting.take().expect("checked above");
                if self.tx.send_data(data, end).is_err() || end {
                    return Poll::Ready(());
                }
                continue;
            }
            let frame = match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Pending => return self.wait(cx),
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(None) => {
                    let _ = self.tx.send_data(Bytes::new(), true);
                    return Poll::Ready(());
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::debug!(error = %e, "response body failed; stream reset");
                    self.tx.send_reset(h2_reason(&*e).unwrap_or(h2::Reason::INTERNAL_ERROR));
                    return Poll::Ready(());
                }
            };
            match frame.into_data() {
                Ok(data) => {
                    let end = self.body.is_end_stream();
                    if data.is_empty() {
                        if self.tx.send_data(data, end).is_err() || end {
                            return Poll::Ready(());
                        }
                    } else {
                        // Claim a byte of window, not the chunk: a whole chunk per stream pins
                        // the connection window while it waits, and other streams stall behind it. h2 asks for
                        // the rest once the data is queued.
                        self.tx.reserve_capacity(1);
                        self.waiting = Some((data, end));
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        self.tx.reserve_capacity(0);
                        let _ = self.tx.send_trailers(trailers);
                        return Poll::Ready(());
                    }
                }
            }
        }
    }

    /// Before waiting (for the body or for window): a reset from the client ends the response,
    /// and dropping the body cancels the upstream call.
    fn wait(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.tx.poll_reset(cx).map(|_| ())
    }
}
