//! Test gRPC backends for health checks and retries: a tonic server whose
//! `grpc.health.v1.Health` (tonic-health) flips between SERVING and NOT_SERVING and whose Echo can
//! be told to answer UNAVAILABLE or to stall, shut down gracefully (GOAWAY); and a raw HTTP/2
//! (h2 crate) gRPC server that refuses chosen streams with REFUSED_STREAM.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use sluice_demo::echo::echo_server::{Echo, EchoServer};
use sluice_demo::echo::{EchoRequest, EchoResponse};
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

/// What a test backend's Echo does.
#[derive(Default)]
pub struct Behaviour {
    pub unavailable: AtomicBool,
    pub stall: AtomicBool,
    pub calls: AtomicUsize,
}

struct EchoImpl {
    name: String,
    behaviour: Arc<Behaviour>,
}

#[tonic::async_trait]
impl Echo for EchoImpl {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        self.behaviour.calls.fetch_add(1, Ordering::SeqCst);
        if self.behaviour.unavailable.load(Ordering::SeqCst) {
            return Err(Status::unavailable("told to be unavailable"));
        }
        if self.behaviour.stall.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        Ok(Response::new(EchoResponse {
            message: request.into_inner().message,
            backend: self.name.clone(),
            ..Default::default()
        }))
    }
    async fn echo_v2(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        self.echo(request).await
    }
}

/// A tonic backend with a flippable health service and an Echo service.
pub struct Backend {
    pub addr: SocketAddr,
    reporter: HealthReporter,
    pub behaviour: Arc<Behaviour>,
    /// TCP connections accepted (each active probe dials anew; proxied calls share one).
    pub accepted: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter.set_service_status("", ServingStatus::Serving).await;
        let behaviour = Arc::new(Behaviour::default());
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let incoming = TcpIncoming::from(listener).inspect(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let echo = EchoServer::new(EchoImpl { name: name.to_string(), behaviour: behaviour.clone() });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(health)
                .add_service(echo)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Backend { addr, reporter, behaviour, accepted, stop: Some(stop), task }
    }

    pub async fn serving(&self, yes: bool) {
        let status = if yes { ServingStatus::Serving } else { ServingStatus::NotServing };
        self.reporter.set_service_status("", status).await;
    }

    pub fn calls(&self) -> usize {
        self.behaviour.calls.load(Ordering::SeqCst)
    }
}

impl Backend {
    /// Graceful shutdown: GOAWAY to every connection, calls in flight finish, the port closes.
    pub fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A raw HTTP/2 gRPC server: each stream is answered with a one-message OK response naming the
/// server, unless `refuse(n)` (n = 0, 1, ... per stream) says to reset it with REFUSED_STREAM,
/// after `refuse_after` (the body is read first when `read_body_first`).
pub struct RefusingBackend {
    pub addr: SocketAddr,
    /// Streams seen.
    pub streams: Arc<AtomicUsize>,
    /// `x-sluice-attempt-count` of every stream (None when absent).
    pub attempts: Arc<Mutex<Vec<Option<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RefusingBackend {
    pub async fn start(
        name: &'static str,
        refuse: impl Fn(usize) -> bool + Send + Sync + 'static,
        refuse_after: Duration,
    ) -> RefusingBackend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let streams = Arc::new(AtomicUsize::new(0));
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let refuse = Arc::new(refuse);
        let (s, a) = (streams.clone(), attempts.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (s, a, refuse) = (s.clone(), a.clone(), refuse.clone());
                tokio::spawn(async move {
                    let Ok(mut conn) = h2::server::handshake(tcp).await else { return };
                    while let Some(Ok((req, mut respond))) = conn.accept().await {
                        let n = s.fetch_add(1, Ordering::SeqCst);
                        let attempt =
                            req.headers().get("x-sluice-attempt-count").map(|v| v.to_str().unwrap().to_string());
                        a.lock().unwrap().push(attempt);
                        let refused = refuse(n);
                        tokio::spawn(async move {
                            if refused {
                                tokio::time::sleep(refuse_after).await;
                                respond.send_reset(h2::Reason::REFUSED_STREAM);
                                return;
                            }
                            let mut body = req.into_body();
                            while let Some(chunk) = body.data().await {
                                let Ok(chunk) = chunk else { return };
                                let _ = body.flow_control().release_capacity(chunk.len());
                            }
                            let head =
                                http::Response::builder().header("content-type", "application/grpc").body(()).unwrap();
                            let Ok(mut send) = respond.send_response(head, false) else { return };
                            // EchoResponse { backend: name }: field 2, length-delimited.
                            let mut message = vec![0x12, name.len() as u8];
                            message.extend_from_slice(name.as_bytes());
                            let mut framed = vec![0u8];
                            framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
                            framed.extend_from_slice(&message);
                            let _ = send.send_data(Bytes::from(framed), false);
                            let mut trailers = http::HeaderMap::new();
                            trailers.insert("grpc-status", "0".parse().unwrap());
                            let _ = send.send_trailers(trailers);
                        });
                    }
                });
            }
        });
        RefusingBackend { addr, streams, attempts, task }
    }

    pub fn streams(&self) -> usize {
        self.streams.load(Ordering::SeqCst)
    }
}

impl Drop for RefusingBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}
