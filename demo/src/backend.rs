//! Starting and stopping a demo backend: binds a real TCP socket, optionally wraps it in TLS (rustls, ALPN `h2`),
//! and serves the demo services, gRPC reflection (v1 and v1alpha) and `grpc.health.v1.Health` behind the
//! observing layer. The server stops when the [`Backend`] is dropped or shut down.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;

use crate::echo::echo_server::EchoServer;
use crate::error::DemoError;
use crate::hello::hello_service_server::HelloServiceServer;
use crate::killable::KillableIo;
use crate::library::LibraryService;
use crate::library_pb::library_server::LibraryServer;
use crate::observe::ObserveLayer;
use crate::services::{EchoService, Hello, UserService};
use crate::stats::Stats;
use crate::user::user_server::UserServer;
use crate::{FILE_DESCRIPTOR_SET, MAX_MESSAGE_SIZE};

/// How long [`Backend::shutdown`] lets open calls finish before it drops them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What to start.
#[derive(Clone, Debug)]
pub struct BackendOptions {
    /// Reported in `x-backend-name` and in `EchoResponse.backend` / `LoginResponse.backend`.
    pub name: String,
    /// Where to listen; `None` = `127.0.0.1:0` (a free port).
    pub addr: Option<SocketAddr>,
    /// `(cert PEM, key PEM)`: serve h2 over TLS instead of h2c.
    pub tls: Option<(String, String)>,
    /// With `tls`: a CA PEM; clients must present a certificate it issued (mutual TLS).
    pub client_ca: Option<String>,
}

impl Default for BackendOptions {
    fn default() -> Self {
        Self::named("demo")
    }
}

impl BackendOptions {
    /// A plaintext backend on a free loopback port.
    pub fn named(name: &str) -> Self {
        Self { name: name.to_owned(), addr: None, tls: None, client_ca: None }
    }

    /// The same options, served over TLS with this certificate and key (PEM).
    pub fn with_tls(mut self, cert_pem: String, key_pem: String) -> Self {
        self.tls = Some((cert_pem, key_pem));
        self
    }

    /// The same options, refusing TLS clients without a certificate issued by `ca_pem`.
    pub fn with_client_ca(mut self, ca_pem: String) -> Self {
        self.client_ca = Some(ca_pem);
        self
    }
}

type ServeResult = Result<(), tonic::transport::Error>;

/// A running backend. Dropping it (or [`Backend::kill`]) stops at once: the port closes and every open connection
/// is cut without GOAWAY, as when a real backend dies. [`Backend::shutdown`] stops gracefully instead.
#[derive(Debug)]
pub struct Backend {
    addr: SocketAddr,
    name: String,
    tls: bool,
    stats: Stats,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<ServeResult>>,
    /// Cancelling it cuts every open connection.
    kill: CancellationToken,
}

/// Starts a backend; it is accepting connections when this returns.
pub async fn spawn(opts: BackendOptions) -> Result<Backend, DemoError> {
    let addr = opts.addr.unwrap_or_else(|| SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    let listener = TcpListener::bind(addr).await.map_err(|source| DemoError::Bind { addr, source })?;
    serve(listener, opts).await
}

/// Starts a backend on a socket bound by the caller (`opts.addr` is ignored), e.g. one bound inside
/// another network namespace; the listener must be non-blocking.
pub async fn spawn_on(listener: std::net::TcpListener, opts: BackendOptions) -> Result<Backend, DemoError> {
    let addr = listener
        .local_addr()
        .map_err(|source| DemoError::Bind { addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)), source })?;
    let listener = TcpListener::from_std(listener).map_err(|source| DemoError::Bind { addr, source })?;
    serve(listener, opts).await
}

async fn serve(listener: TcpListener, opts: BackendOptions) -> Result<Backend, DemoError> {
    let addr = listener
        .local_addr()
        .map_err(|source| DemoError::Bind { addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)), source })?;
    let kill = CancellationToken::new();
    let connection_token = kill.clone();
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .map(move |accepted| accepted.map(|tcp| KillableIo::new(tcp, connection_token.clone())));

    let stats = Stats::new();
    let (health_reporter, health) = tonic_health::server::health_reporter();
    for service in [
        HelloServiceServer::<Hello>::NAME,
        EchoServer::<EchoService>::NAME,
        UserServer::<UserService>::NAME,
        "grpc.health.v1.Health",
    ] {
        health_reporter.set_service_status(service, ServingStatus::Serving).await;
    }
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1().map_err(|e| DemoError::Reflection(e.to_string()))?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(|e| DemoError::Reflection(e.to_string()))?;

    let mut builder = Server::builder();
    let tls = opts.tls.is_some();
    if let Some((cert, key)) = opts.tls {
        crate::tls::install_default_provider();
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
        if let Some(ca) = &opts.client_ca {
            config = config.client_ca_root(tonic::transport::Certificate::from_pem(ca));
        }
        builder = builder.tls_config(config)?;
    }
    let hello = HelloServiceServer::new(Hello)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let echo = EchoServer::new(EchoService { name: opts.name.clone() })
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let user = UserServer::new(UserService { name: opts.name.clone() })
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let router = builder
        .layer(ObserveLayer::new(stats.clone(), &opts.name))
        .add_service(hello)
        .add_service(echo)
        .add_service(user)
        .add_service(LibraryServer::new(LibraryService))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);

    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
        // Either a stop request or the Backend dropping its sender ends the server.
        let _ = stopped.await;
    }));
    tracing::info!(%addr, name = %opts.name, tls, "demo backend listening");
    Ok(Backend { addr, name: opts.name, tls, stats, stop: Some(stop), task: Some(task), kill })
}

impl Backend {
    /// The bound address (the real port when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the backend speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// `http://addr` or `https://addr`.
    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.addr)
    }

    /// The backend's call statistics (shared: later calls show up in the returned handle).
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    /// Stops accepting, lets open calls finish for up to 5 s, then drops what is left.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await.is_err() {
                tracing::warn!(addr = %self.addr, "open calls did not finish in time; dropping them");
                self.kill.cancel();
                task.abort();
            }
        }
    }

    /// Stops at once: closes the port and cuts every open connection (the same as dropping the backend).
    pub fn kill(self) {
        drop(self);
    }

    /// Serves until `signal` resolves (then shuts down gracefully) or the server fails.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> Result<(), DemoError> {
        let Some(mut task) = self.task.take() else {
            return Ok(());
        };
        tokio::select! {
            result = &mut task => match result {
                Ok(served) => served.map_err(DemoError::from),
                Err(join) => Err(DemoError::ServerTask(join.to_string())),
            },
            () = signal => {
                self.task = Some(task);
                self.shutdown().await;
                Ok(())
            }
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        // Aborting the accept loop closes the port; cancelling the token fails every connection's I/O, so hyper
        // drops the connections and their calls (which the stats then count as cancelled).
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.kill.cancel();
    }
}
