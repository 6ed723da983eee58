//! Wires the proxy together: state, listeners, admin socket, status listener, and an orderly
//! shutdown. `main` and the in-process tests both start the proxy through [`start`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use thiserror::Error;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::config::admin::{self, AdminError};
use crate::config::state::State;
use crate::config::status::StatusHandler;
use crate::listen::server::{accept_loop, Listener};
use crate::listen::tls::{self, SniResolver, TlsError};
use crate::phases::ProxyHandler;
use crate::settings::listen::{ListenEntry, ListenError};
use crate::settings::Settings;
use crate::telemetry::access_log::{AccessLog, AccessLogError};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::observe::Observer;
use crate::upstream::dns::Resolver;
use crate::upstream::pool::{H2Tuning, Pool};

#[derive(Debug, Error)]
pub enum StartError {
    #[error("default certificate: {0}")]
    Certificate(#[from] TlsError),
    #[error("listener '{entry}': {source}")]
    Bind { entry: String, source: ListenError },
    #[error("listener '{entry}': {source}")]
    Register { entry: String, source: std::io::Error },
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error(transparent)]
    AccessLog(#[from] AccessLogError),
    #[error("KONG_LUA_SSL_TRUSTED_CERTIFICATE '{path}': {source}")]
    TrustedCertificate { path: PathBuf, source: std::io::Error },
    #[error("KONG_DECLARATIVE_CONFIG '{path}': {message}")]
    DeclarativeConfig { path: PathBuf, message: String },
}

/// A running proxy.
pub struct Running {
    /// Bound proxy listeners, in `KONG_PROXY_LISTEN` order.
    pub proxy_addrs: Vec<SocketAddr>,
    pub status_addrs: Vec<SocketAddr>,
    pub admin_socket: PathBuf,
    pub state: Arc<State>,
    shutdown: watch::Sender<bool>,
    tracker: TaskTracker,
    drain: std::time::Duration,
}

fn bind(entry: &ListenEntry) -> Result<tokio::net::TcpListener, StartError> {
    let std = entry.bind().map_err(|source| StartError::Bind { entry: entry.to_string(), source })?;
    tokio::net::TcpListener::from_std(std).map_err(|source| StartError::Register { entry: entry.to_string(), source })
}

/// Starts everything; returns once every socket is bound and serving.
pub async fn start(settings: Settings) -> Result<Running, StartError> {
    let default_cert = tls::load_default_certificate(
        settings.ssl_cert.as_ref().map(|(c, _)| c.as_path()),
        settings.ssl_cert.as_ref().map(|(_, k)| k.as_path()),
    )?;
    let trusted = match &settings.trusted_certificates {
        None => None,
        Some(paths) => Some(paths.iter().try_fold(Vec::new(), |mut pem, path| {
            let file =
                std::fs::read(path).map_err(|source| StartError::TrustedCertificate { path: path.clone(), source })?;
            pem.extend_from_slice(&file);
            pem.push(b'\n');
            Ok::<_, StartError>(pem)
        })?),
    };
    crate::plugins::rate_limiting::redis_store::set_trusted_certificates(trusted);
    let node_id = format!("{:016x}", std::process::id() as u64 ^ 0x5151_1ce0_0000_0000);
    let metrics = Arc::new(Metrics::new(node_id, env!("CARGO_PKG_VERSION")));
    // One DNS cache for the pool and the active health probes.
    let dns = Arc::new(Resolver::new(settings.dns.clone()));
    let state = Arc::new(
        State::new(default_cert, metrics.clone(), dns.clone())
            .map_err(|e| StartError::DeclarativeConfig { path: PathBuf::new(), message: e.message })?,
    );
    if let Some(path) = &settings.declarative_config {
        let text = std::fs::read_to_string(path)
            .map_err(|e| StartError::DeclarativeConfig { path: path.clone(), message: e.to_string() })?;
        let config = proxy_config::parse(&text)
            .map_err(|e| StartError::DeclarativeConfig { path: path.clone(), message: e.to_string() })?;
        state
            .apply(config, false)
            .map_err(|e| StartError::DeclarativeConfig { path: path.clone(), message: e.message })?;
    } else if let Some(cache) = &settings.config_cache {
        // The last pushed config, so the proxy serves before the controller is back. A missing or
        // unusable cache is not fatal: the proxy starts empty (not ready) and waits for a push.
        match admin::load_cache(cache, &state) {
            Ok(Some(hash)) => tracing::info!(path = %cache.display(), %hash, "configuration loaded from cache"),
            Ok(None) => {}
            Err(e) => tracing::warn!(path = %cache.display(), error = %e, "configuration cache not used"),
        }
    }

    let access_log = match &settings.access_log {
        Some(target) => Some(AccessLog::open(target)?),
        None => None,
    };
    // SLUICE_METRICS=off: a switch for measuring what request metrics cost (make bench).
    let metrics_enabled = !matches!(std::env::var("SLUICE_METRICS").as_deref(), Ok("off" | "0" | "false"));
    let observer = Arc::new(Observer { metrics: metrics.clone(), access_log, metrics_enabled });
    let shared = Arc::new(ProxyHandler {
        state: state.clone(),
        pool: Pool::new(
            H2Tuning {
                keepalive_interval: settings.limits.upstream_h2_keepalive_interval,
                keepalive_timeout: settings.limits.upstream_h2_keepalive_timeout,
                ..H2Tuning::default()
            },
            dns,
        ),
        observer,
        trusted: settings.trusted_ips.clone(),
    });
    let limits = Arc::new(settings.limits.clone());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let tracker = TaskTracker::new();

    let resolver = {
        let state = state.clone();
        Arc::new(SniResolver::new(Arc::new(move || state.current().certs.clone())))
    };
    // Bind everything first so a bad entry fails before anything serves.
    let mut proxy = Vec::new();
    for entry in &settings.proxy_listen.entries {
        let tcp = bind(entry)?;
        let tls = entry.ssl.then(|| tokio_rustls::TlsAcceptor::from(tls::server_config(resolver.clone(), entry.http2)));
        proxy.push(Listener {
            tcp,
            name: entry.to_string(),
            http2: entry.http2,
            tls,
            proxy_protocol: entry.proxy_protocol,
        });
    }
    let mut status = Vec::new();
    for entry in &settings.status_listen.entries {
        let tcp = bind(entry)?;
        let tls = entry.ssl.then(|| tokio_rustls::TlsAcceptor::from(tls::server_config(resolver.clone(), entry.http2)));
        status.push(Listener {
            tcp,
            name: entry.to_string(),
            http2: entry.http2,
            tls,
            proxy_protocol: entry.proxy_protocol,
        });
    }
    let admin_listener = admin::bind(&settings.admin_socket)?;

    // One connection budget for all proxy listeners; the status listeners have their own, so a
    // flood on the proxy ports cannot lock out probes and scrapes.
    let proxy_open = Arc::new(AtomicUsize::new(0));
    let status_open = Arc::new(AtomicUsize::new(0));
    let proxy_addrs = proxy.iter().filter_map(|l| l.tcp.local_addr().ok()).collect();
    let status_addrs = status.iter().filter_map(|l| l.tcp.local_addr().ok()).collect();
    for l in proxy {
        tokio::spawn(accept_loop(
            l,
            shared.clone(),
            limits.clone(),
            metrics.clone(),
            shutdown_rx.clone(),
            tracker.clone(),
            proxy_open.clone(),
        ));
    }
    let status_handler = Arc::new(StatusHandler { state: state.clone() });
    for l in status {
        tokio::spawn(accept_loop(
            l,
            status_handler.clone(),
            limits.clone(),
            metrics.clone(),
            shutdown_rx.clone(),
            tracker.clone(),
            status_open.clone(),
        ));
    }
    let admin_state = Arc::new(admin::AdminState::new(state.clone(), settings.config_cache.clone()));
    tokio::spawn(admin::serve(admin_listener, admin_state, shutdown_rx.clone(), tracker.clone()));

    Ok(Running {
        proxy_addrs,
        status_addrs,
        admin_socket: settings.admin_socket.clone(),
        state,
        shutdown,
        tracker,
        drain: settings.limits.drain_timeout,
    })
}

impl Running {
    /// Stops accepting, lets in-flight requests and streams finish up to the drain deadline, then
    /// returns (remaining connections are dropped with the runtime).
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.tracker.close();
        if tokio::time::timeout(self.drain, self.tracker.wait()).await.is_err() {
            tracing::warn!(drain = ?self.drain, "drain deadline reached; closing remaining connections");
        }
        let _ = std::fs::remove_file(&self.admin_socket);
    }
}
