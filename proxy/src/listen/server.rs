//! Downstream connections: accept, (PROXY protocol), (TLS with SNI and ALPN), protocol detection,
//! and one connection per socket with sluice's limits: [`crate::downstream::h2`] for HTTP/2,
//! [`crate::downstream::h1`] for HTTP/1.x. Every step before the first request is bounded by the
//! handshake timeout; shutdown asks each connection to finish gracefully (GOAWAY for h2,
//! `Connection: close` for h1). Each h2 connection carries a Rapid Reset guard
//! ([`crate::downstream::rapid_reset`]). Connections are capped per listener and over all proxy listeners.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use crate::downstream::h1::{self as downstream_h1, H1Limits};
use crate::downstream::{ConnInfo, Handler};
use crate::listen::sniff::{sniff, Detected, Prefixed};
use crate::settings::ConnLimits;
use crate::telemetry::metrics::Metrics;

/// One bound listener and how to treat its connections.
pub(crate) struct Listener {
    pub tcp: TcpListener,
    pub name: String,
    pub http2: bool,
    pub tls: Option<TlsAcceptor>,
    pub proxy_protocol: bool,
}

/// Accepts until `shutdown` flips, spawning each connection on `tracker`. `global` counts the open
/// connections of every listener sharing it, capped at `limits.max_connections`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn accept_loop<H: Handler>(
    listener: Listener,
    handler: Arc<H>,
    limits: Arc<ConnLimits>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
    tracker: TaskTracker,
    global: Arc<AtomicUsize>,
) {
    let listener = Arc::new(listener);
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = tokio::select! {
            r = listener.tcp.accept() => r,
            _ = shutdown.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(listener = %listener.name, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if open.load(Ordering::Relaxed) >= limits.max_connections_per_listener {
            metrics.rejected_connections.with_label_values(&["listener_limit"]).inc();
            drop(stream);
            continue;
        }
        if global.load(Ordering::Relaxed) >= limits.max_connections {
            metrics.rejected_connections.with_label_values(&["global_limit"]).inc();
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        metrics.accepted_connections.inc();
        let guard = ConnGuard::new(open.clone(), global.clone(), metrics.clone());
        let (listener, handler, limits, metrics, shutdown) =
            (listener.clone(), handler.clone(), limits.clone(), metrics.clone(), shutdown.clone());
        tracker.spawn(async move {
            let _guard = guard;
            serve_socket(stream, peer, &listener, handler, &limits, &metrics, shutdown).await;
        });
    }
}

/// Counts open connections per listener and in `kong_nginx_connections_total{state="active"}`.
struct ConnGuard {
    open: Arc<AtomicUsize>,
    global: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

impl ConnGuard {
    fn new(open: Arc<AtomicUsize>, global: Arc<AtomicUsize>, metrics: Arc<Metrics>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        global.fetch_add(1, Ordering::Relaxed);
        metrics.active_connections.inc();
        ConnGuard { open, global, metrics }
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.global.fetch_sub(1, Ordering::Relaxed);
        self.metrics.active_connections.dec();
    }
}

async fn serve_socket<H: Handler>(
    mut stream: TcpStream,
    peer: SocketAddr,
    listener: &Listener,
    handler: Arc<H>,
    limits: &ConnLimits,
    metrics: &Metrics,
    shutdown: watch::Receiver<bool>,
) {
    let local_port = stream.local_addr().map(|a| a.port()).unwrap_or(0);
    let deadline = tokio::time::Instant::now() + limits.handshake_timeout;

    let mut client = peer;
    if listener.proxy_protocol {
        match tokio::time::timeout_at(deadline, crate::listen::proxy_protocol::read_proxy_header(&mut stream)).await {
            Ok(Ok(h)) => client = h.source.unwrap_or(peer),
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "bad PROXY protocol header");
                metrics.rejected_connections.with_label_values(&["proxy_protocol"]).inc();
                return;
            }
            Err(_) => {
                metrics.rejected_connections.with_label_values(&["handshake_timeout"]).inc();
                return;
            }
        }
    }

    match &listener.tls {
        None => {
            let conn = ConnInfo { client, peer, local_port, tls: false, sni: None };
            if listener.http2 {
                match tokio::time::timeout_at(deadline, sniff(&mut stream)).await {
                    Ok(Ok((detected, prefix))) => {
                        let io = Prefixed::new(prefix, stream);
                        serve_http(io, detected == Detected::H2, conn, handler, limits, metrics, shutdown).await
                    }
                    Ok(Err(_)) => {}
                    Err(_) => metrics.rejected_connections.with_label_values(&["handshake_timeout"]).inc(),
                }
            } else {
                // The HTTP/1.1 header timer bounds the request head; the handshake timeout bounds the
                // wait for its first byte, as on sniffing listeners.
                let mut first = [0u8; 1];
                match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
                    Ok(Ok(n)) if n > 0 => serve_http(stream, false, conn, handler, limits, metrics, shutdown).await,
                    Ok(_) => {}
                    Err(_) => metrics.rejected_connections.with_label_values(&["handshake_timeout"]).inc(),
                }
            }
        }
        Some(acceptor) => {
            // Boxed: the handshake state lives only until it ends, not in every connection's task.
            let tls = match tokio::time::timeout_at(deadline, Box::pin(acceptor.accept(stream))).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    metrics.tls_handshake_failures.with_label_values(&[&listener.name]).inc();
                    return;
                }
                Err(_) => {
                    metrics.tls_handshake_failures.with_label_values(&[&listener.name]).inc();
                    metrics.rejected_connections.with_label_values(&["handshake_timeout"]).inc();
                    return;
                }
            };
            let (_, session) = tls.get_ref();
            let h2 = session.alpn_protocol() == Some(b"h2");
            let sni = session.server_name().map(Arc::from);
            let conn = ConnInfo { client, peer, local_port, tls: true, sni };
            serve_http(tls, h2, conn, handler, limits, metrics, shutdown).await
        }
    }
}

/// Runs one HTTP connection until it ends, shutdown has drained it, or (h2) it was cut for abuse.
pub(crate) async fn serve_http<I, H>(
    io: I,
    h2: bool,
    conn: ConnInfo,
    handler: Arc<H>,
    limits: &ConnLimits,
    metrics: &Metrics,
    shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    H: Handler,
{
    // Each protocol's connection future is boxed at its own size: inline, every connection's
    // task would be as large as the largest of them (and of the TLS handshake).
    if h2 {
        Box::pin(crate::downstream::h2::serve(io, conn, handler, limits, metrics, shutdown)).await;
        return;
    }
    let h1 = H1Limits { header_timeout: limits.h1_header_timeout, max_head: limits.max_header_list_size as usize };
    if let Err(e) = Box::pin(downstream_h1::serve(io, Arc::new(conn), handler, h1, shutdown)).await {
        tracing::debug!(error = %e, "h1 connection ended with error");
    }
}
