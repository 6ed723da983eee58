//! Benchmark backend: one plaintext port that speaks both HTTP/1.1 and h2c
//! (HTTP/2 prior knowledge), detected per connection by hyper-util's auto builder.
//!
//! * `POST /bench.Echo/Echo` (gRPC unary): validates the 5-byte gRPC frame and
//!   echoes it back with `content-type: application/grpc` and trailers
//!   `grpc-status: 0`. A malformed frame gets `grpc-status: 3`.
//! * `POST /bench.Echo/Stream` (gRPC server-streaming): validates the request frame, then answers
//!   with `STREAM_MSGS` (default 100) copies of it as separate DATA frames and `grpc-status: 0`.
//! * any other request: `200 OK`, a fixed 100-byte `text/plain` body.
//!
//! Usage: bench-backend [LISTEN_ADDR]   (default 127.0.0.1:18080)
//! Worker threads: BACKEND_THREADS, else the CPUs in the affinity mask.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

pub const GRPC_PATH: &str = "/bench.Echo/Echo";
pub const STREAM_PATH: &str = "/bench.Echo/Stream";
static HTTP_BODY: &[u8; 100] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyz.\n";

/// A body that yields at most one data frame, then at most one trailers frame.
pub struct OneShot {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Body for OneShot {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        if let Some(t) = self.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(t))));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.data {
            Some(d) => SizeHint::with_exact(d.len() as u64),
            None => SizeHint::with_exact(0),
        }
    }
}

/// `left` copies of one message, one data frame each, then `grpc-status: 0` trailers.
pub struct Repeat {
    msg: Bytes,
    left: usize,
    trailers: Option<HeaderMap>,
}

impl Body for Repeat {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left > 0 {
            self.left -= 1;
            return Poll::Ready(Some(Ok(Frame::data(self.msg.clone()))));
        }
        if let Some(t) = self.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(t))));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0 && self.trailers.is_none()
    }
}

/// Either body the backend answers with.
pub enum Reply {
    One(OneShot),
    Many(Repeat),
}

impl Body for Reply {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Reply::One(b) => Pin::new(b).poll_frame(cx),
            Reply::Many(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Reply::One(b) => b.is_end_stream(),
            Reply::Many(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Reply::One(b) => b.size_hint(),
            Reply::Many(_) => SizeHint::default(),
        }
    }
}

fn stream_msgs() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| std::env::var("STREAM_MSGS").ok().and_then(|s| s.parse().ok()).unwrap_or(100))
}

fn valid_grpc_frame(b: &[u8]) -> bool {
    if b.len() < 5 || b[0] != 0 {
        return false;
    }
    let n = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
    n == b.len() - 5
}

async fn handle(req: Request<Incoming>) -> Result<Response<Reply>, Infallible> {
    if req.method() == http::Method::POST && req.uri().path() == STREAM_PATH {
        let body = match req.into_body().collect().await {
            Ok(c) => c.to_bytes(),
            Err(_) => Bytes::new(),
        };
        let ok = valid_grpc_frame(&body);
        let mut trailers = HeaderMap::with_capacity(1);
        trailers.insert("grpc-status", HeaderValue::from_static(if ok { "0" } else { "3" }));
        let mut resp = Response::new(Reply::Many(Repeat {
            msg: body,
            left: if ok { stream_msgs() } else { 0 },
            trailers: Some(trailers),
        }));
        resp.headers_mut()
            .insert("content-type", HeaderValue::from_static("application/grpc"));
        return Ok(resp);
    }
    if req.method() == http::Method::POST && req.uri().path() == GRPC_PATH {
        let body = match req.into_body().collect().await {
            Ok(c) => c.to_bytes(),
            Err(_) => Bytes::new(),
        };
        let ok = valid_grpc_frame(&body);
        let mut trailers = HeaderMap::with_capacity(1);
        trailers.insert(
            "grpc-status",
            HeaderValue::from_static(if ok { "0" } else { "3" }),
        );
        let mut resp = Response::new(Reply::One(OneShot {
            data: if ok { Some(body) } else { None },
            trailers: Some(trailers),
        }));
        resp.headers_mut()
            .insert("content-type", HeaderValue::from_static("application/grpc"));
        return Ok(resp);
    }
    // Plain HTTP: drain any request body, then a fixed 100-byte answer.
    let _ = req.into_body().collect().await;
    let mut resp = Response::new(Reply::One(OneShot {
        data: Some(Bytes::from_static(HTTP_BODY)),
        trailers: None,
    }));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("text/plain"));
    Ok(resp)
}

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18080".to_string());
    let threads = std::env::var("BACKEND_THREADS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(&addr).await.expect("bind");
        eprintln!("bench-backend listening on {addr} ({threads} worker threads)");
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("accept: {e}");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let mut b = auto::Builder::new(TokioExecutor::new());
                b.http2().max_concurrent_streams(1024);
                let _ = b
                    .serve_connection(TokioIo::new(stream), service_fn(handle))
                    .await;
            });
        }
    });
}
