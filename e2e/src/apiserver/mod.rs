//! An in-memory Kubernetes API server for tests. **It is a test tool, not a Kubernetes API server.**
//!
//! No cluster can be had on the machines sluice is tested on, so end-to-end tests point real `kubectl`
//! (1.32) and kube-rs at this server instead. It implements just enough of the API for those clients:
//! version and legacy discovery, CRUD on namespaced and cluster-scoped kinds, merge / JSON /
//! strategic-merge / (approximated) server-side-apply patches, `status` subresources, CRDs that register
//! their kinds, label and field selectors, and watches with resourceVersions, bookmarks and
//! `sendInitialEvents`. There is no authentication, no admission, no validation against schemas, no
//! garbage collection, no controllers (nothing creates Endpoints, Pods or ReplicaSets), and state lives in
//! memory only. It listens on plain HTTP, on loopback in tests.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let server = e2e::TestApiServer::start().await?;
//! server.write_kubeconfig("/tmp/kubeconfig")?; // then: kubectl --kubeconfig /tmp/kubeconfig get ns
//! let client = server.kube_client()?;          // or use kube-rs directly
//! # drop(client); Ok(()) }
//! ```

pub mod clock;
pub mod discovery;
pub mod http;
pub mod kubeconfig;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod resources;
pub mod selector;
pub mod status;
pub mod store;
pub mod table;
pub mod watch;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use store::Store;

/// Failures starting or talking to a test API server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("binding {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("starting the server runtime: {0}")]
    Runtime(std::io::Error),
    #[error("the server thread exited before it was ready")]
    ThreadGone,
    #[error("writing kubeconfig {path}: {source}")]
    Kubeconfig { path: String, source: std::io::Error },
    #[error("building a kube client: {0}")]
    Client(#[from] kube::Error),
    #[error("bad server url: {0}")]
    Url(#[from] ::http::uri::InvalidUri),
}

/// Tunables of a server; the defaults suit tests.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to listen; `127.0.0.1:0` picks a free port.
    pub listen: SocketAddr,
    /// How many events the watch history keeps (older resourceVersions get `410 Gone`).
    pub history_limit: usize,
    /// How often watches with `allowWatchBookmarks=true` get a BOOKMARK.
    pub bookmark_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(5),
        }
    }
}

/// A bound server, not yet serving. Use it from your own runtime (the `sluice-test-apiserver` binary
/// does); tests usually want [`TestApiServer`].
#[derive(Debug)]
pub struct ApiServer {
    listener: TcpListener,
    app: Arc<http::App>,
}

impl ApiServer {
    /// Binds the listener and creates an empty store (with the usual initial namespaces).
    pub async fn bind(options: &Options) -> Result<Self, ServerError> {
        let listener = TcpListener::bind(options.listen)
            .await
            .map_err(|source| ServerError::Bind { addr: options.listen, source })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind { addr: options.listen, source })?;
        let app = Arc::new(http::App {
            store: Arc::new(Store::new(options.history_limit)),
            addr,
            bookmark_interval: options.bookmark_interval,
        });
        Ok(Self { listener, app })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.app.addr
    }

    /// The store, for tests that want to look behind the API.
    pub fn store(&self) -> Arc<Store> {
        self.app.store.clone()
    }

    /// Accepts connections until the future is dropped; each connection is served on its own task
    /// (HTTP/1.1 or h2c). Dropping the future stops accepting and aborts every connection.
    pub async fn serve(self) {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = self.listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            continue;
                        }
                    };
                    let app = self.app.clone();
                    connections.spawn(async move {
                        let service = service_fn(move |req| http::handle(app.clone(), req));
                        if let Err(e) =
                            auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await
                        {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    }
}

/// A test API server running on its own thread and runtime, so a test may block (for instance on a
/// `kubectl` child process) without starving it. Stops when dropped.
#[derive(Debug)]
pub struct TestApiServer {
    addr: SocketAddr,
    store: Arc<Store>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestApiServer {
    /// Starts a server on `127.0.0.1:0` with default options; returns once it accepts connections.
    pub async fn start() -> Result<Self, ServerError> {
        Self::start_with(Options::default()).await
    }

    /// Starts a server with the given options; returns once it accepts connections.
    pub async fn start_with(options: Options) -> Result<Self, ServerError> {
        let (ready_tx, ready_rx) = oneshot::channel::<Result<(SocketAddr, Arc<Store>), ServerError>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sluice-test-apiserver".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(ServerError::Runtime(e)));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let server = match ApiServer::bind(&options).await {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    if ready_tx.send(Ok((server.local_addr(), server.store()))).is_err() {
                        return;
                    }
                    tokio::select! {
                        _ = server.serve() => {}
                        _ = stop_rx => {}
                    }
                });
            })
            .map_err(ServerError::Runtime)?;
        let (addr, store) = ready_rx.await.map_err(|_| ServerError::ThreadGone)??;
        Ok(Self { addr, store, stop: Some(stop_tx), thread: Some(thread) })
    }

    /// The listening address (`127.0.0.1:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The store behind the API, for assertions that should not go through a client.
    pub fn store(&self) -> Arc<Store> {
        self.store.clone()
    }

    /// The kubeconfig YAML for this server.
    pub fn kubeconfig(&self) -> String {
        kubeconfig::render(self.addr)
    }

    /// Writes a kubeconfig for this server to `path`.
    pub fn write_kubeconfig(&self, path: impl AsRef<Path>) -> Result<(), ServerError> {
        let path = path.as_ref();
        std::fs::write(path, self.kubeconfig())
            .map_err(|source| ServerError::Kubeconfig { path: path.display().to_string(), source })
    }

    /// A kube-rs client for this server (default namespace `default`).
    pub fn kube_client(&self) -> Result<kube::Client, ServerError> {
        install_crypto_provider();
        let config = kube::Config::new(self.url().parse()?);
        Ok(kube::Client::try_from(config)?)
    }
}

/// Makes ring the process-wide rustls provider (kube-rs builds a TLS connector even for `http://`
/// servers). Harmless when a provider is already installed.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // The server thread only drops its runtime after the stop signal, which cancels every task.
            let _ = thread.join();
        }
    }
}
