//! Upstream connections, pooled per (target, transport). sluice owns this pool rather than using
//! hyper-util's legacy client because a proxy must choose the target per request while sending the
//! client's `:authority`/Host, and must retry a request that never reached the upstream (closed
//! pooled connection, GOAWAY, REFUSED_STREAM) on a fresh connection.
//!
//! HTTP/2 (grpc, grpcs): one multiplexed connection per key, redialled when it closes (driven by
//! `upstream_h2`).
//! HTTP/1.1 (http, https): a LIFO list of idle connections per key (`upstream_h1`). A request
//! takes one out; its response body puts it back once complete. Idle connections nobody polls, so
//! one is checked before reuse (an upstream may have closed it), and a sweeper closes those idle
//! longer than [`H1_IDLE_TIMEOUT`] or closed by the upstream.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::ServerName;
use thiserror::Error;
use tokio::net::TcpStream;

use crate::downstream::request_body::RequestBody;
use crate::response_body::BodyError;
use crate::upstream::dns::{DnsError, Resolver};
use crate::upstream::h1::H1Conn;
use crate::upstream::h2::H2Sender;

/// Idle HTTP/1.1 connections kept per key.
const MAX_IDLE_H1: usize = 256;
/// How long an idle HTTP/1.1 connection is kept (Kong's `upstream_keepalive_idle_timeout`).
pub(crate) const H1_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often idle HTTP/1.1 connections are checked.
const H1_SWEEP_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub(crate) enum ConnectError {
    #[error(transparent)]
    Resolve(#[from] DnsError),
    #[error("connect to {addr} failed: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("connect to {addr} timed out after {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("TLS handshake with {addr} failed: {source}")]
    Tls { addr: String, source: std::io::Error },
    #[error("invalid TLS server name '{0}'")]
    ServerName(String),
    #[error("HTTP handshake with {addr} failed: {source}")]
    Handshake { addr: String, source: Box<dyn std::error::Error + Send + Sync> },
}

impl ConnectError {
    /// Whether the failure says the target itself is unreachable (Kong's passive `tcp_failures`),
    /// as opposed to a TLS or protocol mismatch that a different config would fix.
    pub(crate) fn is_tcp_failure(&self) -> bool {
        matches!(self, ConnectError::Connect { .. } | ConnectError::Timeout { .. } | ConnectError::Resolve(_))
    }
}

/// Which wire protocol and security an upstream connection uses.
#[derive(Clone)]
pub struct Transport {
    pub h2: bool,
    /// TLS client config and the SNI to send; `None` for cleartext.
    pub tls: Option<(Arc<rustls::ClientConfig>, Arc<str>)>,
    /// The service's `write_timeout` (HTTP/2: see [`H2Sender::write_timeout`]; HTTP/1.1: see
    /// [`H1Conn::write_timeout`]).
    pub write_timeout: Duration,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    host: Arc<str>,
    port: u16,
    h2: bool,
    /// SNI and the identity of the TLS config (pointer), so different verification settings never
    /// share a connection.
    tls: Option<(Arc<str>, usize)>,
}

/// An upstream request that got no response. `request` is given back when it never reached the
/// upstream, so the caller may retry it on a fresh connection (boxed: that is rare, and a small
/// error keeps every request's `Result` small).
pub struct Unanswered {
    pub request: Option<Box<http::Request<RequestBody>>>,
    pub error: BodyError,
}

/// No response head within the read timeout (or before the gRPC deadline).
#[derive(Debug)]
pub struct TimedOut;

/// A connection ready to take one request.
pub(crate) enum Sender {
    /// An HTTP/1.1 connection, owned by the request, and where it goes back when done.
    H1(H1Conn, H1PoolReturn),
    H2(H2Sender),
}

/// Tuning of upstream HTTP/2 connections.
#[derive(Clone, Debug)]
pub(crate) struct H2Tuning {
    pub stream_window: u32,
    pub connection_window: u32,
    /// PING period while streams are open, and how long one may go unanswered.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
}

impl Default for H2Tuning {
    fn default() -> Self {
        H2Tuning {
            stream_window: 4 << 20,
            connection_window: 16 << 20,
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(20),
        }
    }
}

/// A fast hash for pool keys (FxHash's mix). Keys come from the config, never from requests, so
/// a DoS-resistant hash (SipHash, several hundred instructions per lookup) buys nothing here.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl KeyHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type KeyMap<V> = HashMap<Key, V, BuildHasherDefault<KeyHasher>>;

/// The HTTP/2 connection of one key, and the lock that makes one dial at a time for it.
#[derive(Default)]
struct H2Slot {
    sender: Option<H2Sender>,
    dial: Arc<tokio::sync::Mutex<()>>,
}

/// Whether an idle HTTP/1.1 connection may still serve: not idle too long, not closed by the upstream.
fn h1_usable(conn: &mut H1Conn, now: std::time::Instant) -> bool {
    now.duration_since(conn.idle_since) < H1_IDLE_TIMEOUT && conn.is_reusable()
}

/// Idle HTTP/1.1 connections per key, most recently used last.
type H1Idle = Mutex<KeyMap<Vec<H1Conn>>>;

/// Where an HTTP/1.1 connection returns when its exchange is complete.
pub struct H1PoolReturn {
    idle: Arc<H1Idle>,
    key: Key,
}

impl H1PoolReturn {
    pub fn put(self, mut conn: H1Conn) {
        conn.idle_since = std::time::Instant::now();
        let mut map = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = map.entry(self.key).or_default();
        if list.len() < MAX_IDLE_H1 {
            list.push(conn);
        }
    }
}

#[derive(Default)]
pub(crate) struct Pool {
    h1: Arc<H1Idle>,
    h1_sweeper: std::sync::OnceLock<()>,
    h2: Mutex<KeyMap<H2Slot>>,
    pub tuning: H2Tuning,
    /// Host names to addresses, cached (never a lookup per request).
    pub dns: Arc<Resolver>,
}

impl Pool {
    pub(crate) fn new(tuning: H2Tuning, dns: Arc<Resolver>) -> Self {
        Pool { tuning, dns, ..Pool::default() }
    }

    fn key(host: &Arc<str>, port: u16, t: &Transport) -> Key {
        Key {
            host: host.clone(),
            port,
            h2: t.h2,
            tls: t.tls.as_ref().map(|(cfg, sni)| (sni.clone(), Arc::as_ptr(cfg) as usize)),
        }
    }

    /// A sender for `host:port`: a pooled one when `fresh` is false and one is usable, else a new
    /// connection (dialled within `connect_timeout`).
    pub(crate) async fn get(
        &self,
        host: &Arc<str>,
        port: u16,
        transport: &Transport,
        connect_timeout: Duration,
        fresh: bool,
    ) -> Result<Sender, ConnectError> {
        let key = Self::key(host, port, transport);
        if transport.h2 {
            // Fast path, every request: the live connection, under a short synchronous lock.
            let dial = {
                let mut map = self.h2.lock().unwrap_or_else(|p| p.into_inner());
                let slot = map.entry(key.clone()).or_default();
                if !fresh {
                    if let Some(s) = slot.sender.as_ref().filter(|s| !s.is_closed()) {
                        return Ok(Sender::H2(s.for_transport(transport)));
                    }
                }
                slot.dial.clone()
            };
            // Slow path: one dial at a time per key; whoever waited reuses what the dialler made.
            let _dialling = dial.lock().await;
            if !fresh {
                let map = self.h2.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(s) = map.get(&key).and_then(|slot| slot.sender.as_ref()).filter(|s| !s.is_closed()) {
                    return Ok(Sender::H2(s.for_transport(transport)));
                }
            }
            // Dialling is rare: boxed, so its large future does not bloat every request's.
            let s = Box::pin(self.dial_h2(host, port, transport, connect_timeout)).await?;
            let mut map = self.h2.lock().unwrap_or_else(|p| p.into_inner());
            let for_request = s.for_transport(transport);
            map.entry(key).or_default().sender = Some(s);
            Ok(Sender::H2(for_request))
        } else {
            if !fresh {
                let now = std::time::Instant::now();
                let mut map = self.h1.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(list) = map.get_mut(&key) {
                    // Most recently used first; stale or closed connections met on the way are dropped.
                    while let Some(mut conn) = list.pop() {
                        if h1_usable(&mut conn, now) {
                            conn.reused = true;
                            conn.write_timeout = Some(transport.write_timeout);
                            return Ok(Sender::H1(conn, H1PoolReturn { idle: self.h1.clone(), key }));
                        }
                    }
                }
            }
            let mut conn = Box::pin(self.dial_h1(host, port, transport, connect_timeout)).await?;
            conn.write_timeout = Some(transport.write_timeout);
            Ok(Sender::H1(conn, H1PoolReturn { idle: self.h1.clone(), key }))
        }
    }

    /// Closes idle HTTP/1.1 connections that timed out or that the upstream closed, every
    /// [`H1_SWEEP_EVERY`] while the pool lives. Started with the first HTTP/1.1 connection.
    fn start_h1_sweeper(&self) {
        self.h1_sweeper.get_or_init(|| {
            let idle = Arc::downgrade(&self.h1);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(H1_SWEEP_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(idle) = idle.upgrade() else { return };
                    let now = std::time::Instant::now();
                    let mut map = idle.lock().unwrap_or_else(|p| p.into_inner());
                    map.retain(|_, list| {
                        list.retain_mut(|c| h1_usable(c, now));
                        !list.is_empty()
                    });
                }
            });
        });
    }

    /// Dials `host:port` over `transport` (TLS when it says so) within `timeout`.
    async fn connect(
        &self,
        host: &str,
        port: u16,
        transport: &Transport,
        timeout: Duration,
    ) -> Result<Box<dyn Io>, ConnectError> {
        dial(&self.dns, host, port, transport, timeout).await
    }

    async fn dial_h2(
        &self,
        host: &str,
        port: u16,
        transport: &Transport,
        timeout: Duration,
    ) -> Result<H2Sender, ConnectError> {
        let io = self.connect(host, port, transport, timeout).await?;
        H2Sender::handshake(io, &self.tuning)
            .await
            .map_err(|e| ConnectError::Handshake { addr: format!("{host}:{port}"), source: Box::new(e) })
    }

    async fn dial_h1(
        &self,
        host: &str,
        port: u16,
        transport: &Transport,
        timeout: Duration,
    ) -> Result<H1Conn, ConnectError> {
        self.start_h1_sweeper();
        Ok(H1Conn::new(self.connect(host, port, transport, timeout).await?))
    }
}

/// A byte stream to an upstream: TCP or TLS over TCP.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Dials `host:port` over `transport` (TLS when it says so) within `timeout`, resolving the
/// name through `dns`: the pool's connections and the active health probes.
pub(crate) async fn dial(
    dns: &Arc<Resolver>,
    host: &str,
    port: u16,
    transport: &Transport,
    timeout: Duration,
) -> Result<Box<dyn Io>, ConnectError> {
    let addr_label = format!("{host}:{port}");
    let dial = async {
        let addr = dns.resolve(host, port).await?;
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| ConnectError::Connect { addr: addr_label.clone(), source })?;
        let _ = tcp.set_nodelay(true);
        match &transport.tls {
            None => Ok(Box::new(tcp) as Box<dyn Io>),
            Some((cfg, sni)) => {
                let name =
                    ServerName::try_from(sni.to_string()).map_err(|_| ConnectError::ServerName(sni.to_string()))?;
                let tls = tokio_rustls::TlsConnector::from(cfg.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|source| ConnectError::Tls { addr: addr_label.clone(), source })?;
                Ok(Box::new(tls) as Box<dyn Io>)
            }
        }
    };
    match tokio::time::timeout(timeout, dial).await {
        Ok(r) => r,
        Err(_) => Err(ConnectError::Timeout { addr: format!("{host}:{port}"), timeout }),
    }
}
