//! Upstream HTTP/2 (grpc, grpcs services) driven with the h2 crate directly instead of hyper's
//! client. hyper's HTTP/2 client passes every request through a channel to its connection task and
//! spawns two tasks per request (one pipes the request body, one waits for the response): on a
//! unary gRPC call that was an eighth of the proxy's instructions (bench/callgrind.sh). Here the
//! request's own task sends the headers, pushes the body while it waits for the response headers,
//! and spawns a task only when the body is still streaming once the response has arrived (client
//! and bidirectional streaming calls).
//!
//! What hyper's client did that this keeps: flow control on the request body (one chunk buffered
//! at most), an upstream reset stops the body, a failed client body resets the upstream stream,
//! keepalive pings while streams are open (never on an idle connection: gRPC servers answer those
//! with GOAWAY `too_many_pings`), and a request the connection could not take is handed back to be
//! retried on a fresh connection.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};

use crate::downstream::request_body::RequestBody;
use crate::response_body::BodyError;
use crate::upstream::pool::{H2Tuning, Io, Unanswered};
use crate::upstream::replay::{self, Head, Recorder, Replay, UnavailableAnswer};
use crate::wire::h2_body::RecvBody;

/// Streams opened before the upstream's SETTINGS say how many it allows (hyper's default).
const INITIAL_MAX_SEND_STREAMS: usize = 100;

/// One upstream HTTP/2 connection, cloned for every request that uses it.
#[derive(Clone)]
pub(crate) struct H2Sender {
    send: h2::client::SendRequest<Bytes>,
    conn: Arc<ConnState>,
    /// Longest wait for the upstream to take more of the request body (the service's
    /// `write_timeout`); set per request by the pool, as connections are shared across services.
    pub(crate) write_timeout: Option<Duration>,
}

/// What the requests on a connection and its task share. The task holds it weakly: once no
/// sender and no response body is left (the pool replaced the connection), it closes.
#[derive(Default)]
struct ConnState {
    /// Set when the connection task ended.
    closed: AtomicBool,
    /// Streams open (sent, response body not yet dropped): keepalive pings only while some are.
    open: AtomicUsize,
}

/// One open stream's share of [`ConnState::open`].
struct OpenStream(Arc<ConnState>);

impl OpenStream {
    fn new(conn: &Arc<ConnState>) -> Self {
        conn.open.fetch_add(1, Ordering::Relaxed);
        OpenStream(conn.clone())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The body of an upstream HTTP/2 response.
pub(crate) struct H2Body {
    recv: RecvBody,
    _open: OpenStream,
}

impl H2Body {
    pub(crate) fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.recv.poll_frame(cx).map(|f| f.map(|f| f.map_err(Into::into)))
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }
}

impl H2Sender {
    /// The HTTP/2 handshake over `io`; the connection is driven by a spawned task from then on.
    pub(crate) async fn handshake(io: Box<dyn Io>, tuning: &H2Tuning) -> Result<H2Sender, h2::Error> {
        let (send, mut conn) = h2::client::Builder::new()
            .initial_window_size(tuning.stream_window)
            .initial_connection_window_size(tuning.connection_window)
            .initial_max_send_streams(INITIAL_MAX_SEND_STREAMS)
            .max_frame_size(1 << 20)
            .max_header_list_size(256 << 10)
            .enable_push(false)
            // Client cancels reset upstream streams; they must never add up to a GOAWAY that
            // fails every other stream on the connection: h2 sends GOAWAY once more than `max_local_error_reset_streams` (1,024 by default) streams were reset locally.
            .max_local_error_reset_streams(None)
            .max_concurrent_reset_streams(usize::MAX >> 1)
            .handshake::<_, Bytes>(io)
            .await?;
        let sender = H2Sender { send, conn: Arc::default(), write_timeout: None };
        let ping = conn.ping_pong();
        let state = Arc::downgrade(&sender.conn);
        let (interval, timeout) = (tuning.keepalive_interval, tuning.keepalive_timeout);
        tokio::spawn(async move {
            tokio::select! {
                r = &mut conn => if let Err(e) = r {
                    tracing::debug!(error = %e, "upstream h2 connection ended");
                },
                why = keep_alive(ping, state.clone(), interval, timeout) => {
                    tracing::debug!("upstream h2 connection closed: {why}");
                }
            }
            if let Some(c) = state.upgrade() {
                c.closed.store(true, Ordering::Release);
            }
        });
        Ok(sender)
    }

    /// A clone for one request over `transport` (which carries the service's write timeout).
    pub(crate) fn for_transport(&self, transport: &crate::upstream::pool::Transport) -> H2Sender {
        H2Sender { write_timeout: Some(transport.write_timeout), ..self.clone() }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.conn.closed.load(Ordering::Acquire)
    }

    /// Sends `req` and waits for the response headers, pushing the request body meanwhile. With
    /// `replay` a request the upstream refused before answering (or answered UNAVAILABLE
    /// trailers-only, when `replay.on_unavailable`) comes back in [`Unanswered::request`] when its
    /// whole body (at most `replay.limit` bytes) was sent ([`super::replay`]).
    pub(crate) async fn send(
        &mut self,
        req: Request<RequestBody>,
        replay: Option<Replay>,
    ) -> Result<Response<H2Body>, Unanswered> {
        // Fails when the connection is going away (GOAWAY read, closed), before anything was sent.
        // (Streams over the upstream's concurrency limit wait in h2's queue once sent.)
        if let Err(error) = poll_fn(|cx| self.send.poll_ready(cx)).await {
            return Err(Unanswered { request: Some(Box::new(req)), error: error.into() });
        }
        let (parts, body) = req.into_parts();
        let end_of_stream = body.is_end_stream();
        let head = replay.map(|_| Head::of(&parts));
        let (mut response, tx) = self
            .send
            .send_request(Request::from_parts(parts, ()), end_of_stream)
            .map_err(|error| Unanswered { request: None, error: error.into() })?;
        // Open from here: a call waiting long for its response headers keeps pings going too.
        let open = OpenStream::new(&self.conn);
        let mut recorder = replay.map(|r| Recorder::new(r.limit));
        if end_of_stream {
            if let Some(r) = recorder.as_mut() {
                r.finish();
            }
        }
        let write_timeout = self.write_timeout;
        let mut pump =
            (!end_of_stream).then(|| BodyPump { body, tx, recorder: recorder.take(), write_timeout, stalled: None });
        let mut pumped = false;
        let got = poll_fn(|cx| {
            if let (Some(p), false) = (pump.as_mut(), pumped) {
                pumped = p.poll_send(cx).is_ready();
            }
            Pin::new(&mut response).poll(cx)
        })
        .await;
        let (r, unavailable) = match got {
            Ok(r) => {
                let unavailable = match replay {
                    Some(Replay { on_unavailable: true, .. }) => {
                        UnavailableAnswer::of(r.headers(), r.body().is_end_stream())
                    }
                    _ => None,
                };
                let Some(unavailable) = unavailable else {
                    if let (Some(mut p), false) = (pump, pumped) {
                        // The response came first and the body is still streaming: keep pushing it.
                        p.recorder = None;
                        tokio::spawn(p);
                    }
                    return Ok(r.map(|stream| H2Body { recv: RecvBody::new(stream), _open: open }));
                };
                (r, unavailable)
            }
            Err(error) => {
                let request = if replay::refused_before_response(&error) { again(head, pump, recorder) } else { None };
                return Err(Unanswered { request, error: error.into() });
            }
        };
        // A trailers-only UNAVAILABLE: sent again when the body can be, else passed on.
        match again(head, pump, recorder) {
            Some(request) => Err(Unanswered { request: Some(request), error: Box::new(unavailable) }),
            None => Ok(r.map(|stream| H2Body { recv: RecvBody::new(stream), _open: open })),
        }
    }
}

/// The request to send again after a refusal: its head and the body as recorded (by the pump,
/// or before it when the request had no body), when the body can be replayed.
fn again(head: Option<Head>, pump: Option<BodyPump>, recorder: Option<Recorder>) -> Option<Box<Request<RequestBody>>> {
    let (recorder, rest) = match pump {
        Some(p) => p.into_replay()?,
        None => (recorder?, None),
    };
    recorder.replay(head?, rest).map(Box::new)
}

/// Pings while the connection has open streams. Returns why the connection should close: a ping
/// went unanswered, or no sender and no stream is left to use it.
async fn keep_alive(
    mut ping: Option<h2::PingPong>,
    state: Weak<ConnState>,
    interval: Duration,
    timeout: Duration,
) -> &'static str {
    loop {
        tokio::time::sleep(interval).await;
        match state.upgrade() {
            None => return "idle and no longer pooled",
            Some(s) if s.open.load(Ordering::Relaxed) == 0 => continue,
            Some(_) => {}
        }
        if let Some(p) = ping.as_mut() {
            if !matches!(tokio::time::timeout(timeout, p.ping(h2::Ping::opaque())).await, Ok(Ok(_))) {
                return "keepalive ping unanswered";
            }
        }
    }
}

/// Pushes a request body into its upstream stream, respecting the stream's flow control.
struct BodyPump {
    body: RequestBody,
    tx: h2::SendStream<Bytes>,
    /// What was sent, while a retry may still replay it (dropped when the body outgrows it or
    /// fails).
    recorder: Option<Recorder>,
    /// Kong's `write_timeout`: the longest the upstream may leave the stream without send window
    /// while body remains; then the stream is reset (the call fails instead of hanging).
    write_timeout: Option<Duration>,
    /// Runs while waiting for send window (boxed: only a stalled upload pays for a timer).
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl BodyPump {
    /// Ready when the body is sent, or the stream was reset (by either side).
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            // Wait for some send window before taking the next chunk from the client, so at most
            // one chunk waits in h2's buffer.
            self.tx.reserve_capacity(1);
            if self.tx.capacity() == 0 {
                loop {
                    match self.tx.poll_capacity(cx) {
                        Poll::Ready(Some(Ok(0))) => {}
                        Poll::Ready(Some(Ok(_))) => {
                            self.stalled = None;
                            break;
                        }
                        // The stream is closed or reset: the response side reports it.
                        Poll::Ready(Some(Err(_)) | None) => return Poll::Ready(()),
                        Poll::Pending => return self.poll_stalled(cx),
                    }
                }
            } else if self.tx.poll_reset(cx).is_ready() {
                return Poll::Ready(());
            }
            let frame = match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => {
                    // The client's body failed (it reset its stream or went away).
                    tracing::debug!(error = %e, "client request body failed; upstream stream reset");
                    self.recorder = None;
                    self.tx.send_reset(h2::Reason::CANCEL);
                    return Poll::Ready(());
                }
                None => {
                    if let Some(r) = self.recorder.as_mut() {
                        r.finish();
                    }
                    let _ = self.tx.send_data(Bytes::new(), true);
                    return Poll::Ready(());
                }
            };
            if let Some(r) = self.recorder.as_mut() {
                let end = frame.is_trailers() || self.body.is_end_stream();
                if !r.record(&frame, end) {
                    self.recorder = None;
                }
            }
            match frame.into_data() {
                Ok(data) => {
                    let end = self.body.is_end_stream();
                    if self.tx.send_data(data, end).is_err() || end {
                        return Poll::Ready(());
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        let _ = self.tx.send_trailers(trailers);
                        return Poll::Ready(());
                    }
                }
            }
        }
    }
}

impl BodyPump {
    /// After the upstream refused the stream: the record of the body, with what the client has
    /// yet to send when it is still streaming between whole gRPC messages (it follows the
    /// replayed part live, as in Envoy). `None` when the body outgrew the record, failed, or
    /// stopped in the middle of a message.
    fn into_replay(mut self) -> Option<(Recorder, Option<RequestBody>)> {
        let mut recorder = self.recorder.take()?;
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        while !recorder.is_complete() {
            match Pin::new(&mut self.body).poll_frame(&mut cx) {
                Poll::Ready(None) => recorder.finish(),
                Poll::Ready(Some(Ok(frame))) => {
                    let end = frame.is_trailers() || self.body.is_end_stream();
                    if !recorder.record(&frame, end) {
                        return None;
                    }
                }
                Poll::Ready(Some(Err(_))) => return None,
                Poll::Pending if recorder.on_message_boundary() => return Some((recorder, Some(self.body))),
                Poll::Pending => return None,
            }
        }
        Some((recorder, None))
    }

    /// Waiting for send window: resets the stream once `write_timeout` passes without any.
    fn poll_stalled(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(timeout) = self.write_timeout else { return Poll::Pending };
        let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(timer.as_mut().poll(cx));
        tracing::debug!(?timeout, "the upstream took no request body within write_timeout; stream reset");
        self.tx.send_reset(h2::Reason::CANCEL);
        Poll::Ready(())
    }
}

impl Future for BodyPump {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.get_mut().poll_send(cx)
    }
}
