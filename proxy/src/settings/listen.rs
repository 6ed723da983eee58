//! Kong's listener grammar (`KONG_PROXY_LISTEN`, `KONG_STATUS_LISTEN`) and the sockets it describes.
//!
//! A user who moves from Kong keeps their listen lines, so this module accepts exactly Kong's
//! grammar (`off`, or comma-separated `ADDRESS:PORT [flags]`) and refuses anything else with an error
//! naming the offending token, before anything is bound. [`ListenEntry::bind`] turns one entry into
//! a non-blocking `std::net::TcpListener` with the socket options its flags ask for.
//!
//! Sockets are built with `socket2` because `tokio::net::TcpSocket` has no `IPV6_V6ONLY` and no
//! keepalive idle/interval/count setters. Options set on the listening socket (`SO_KEEPALIVE`,
//! `TCP_KEEPIDLE`, `TCP_KEEPINTVL`, `TCP_KEEPCNT`) are inherited by accepted connections on Linux,
//! which is also how nginx applies them.
//!
//! Differences from nginx, on purpose:
//! - `deferred` is accepted but has no effect: socket2 has no `TCP_DEFER_ACCEPT` setter, std's is
//!   unstable (`tcp_deferaccept`) and `unsafe` is forbidden here. Binding such an entry logs a warning.
//! - `bind` is accepted and changes nothing: every entry is always bound on its own socket, so a
//!   wildcard and a specific address on one port need `reuseport` on both.
//! - port `0` is accepted (the kernel picks a port), which in-process tests rely on.
//! - a host name that resolves to several addresses is bound on the first by [`ListenEntry::bind`]
//!   (nginx binds them all, as [`ListenEntry::bind_all`] does).
//!
//! As in Kong: a first entry `off` turns the listener off whatever follows it; an IPv6 socket gets
//! `IPV6_V6ONLY` unless `ipv6only=off` (nginx's default); the same `ADDRESS:PORT` twice is refused.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, ToSocketAddrs};
use std::str::FromStr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, TcpKeepalive, Type};
use thiserror::Error;

/// nginx's default listen backlog on Linux (`NGX_LISTEN_BACKLOG`); the kernel caps any value at
/// `net.core.somaxconn`.
pub const DEFAULT_BACKLOG: u32 = 511;

/// Linux's upper bounds for `TCP_KEEPIDLE`/`TCP_KEEPINTVL` (seconds) and `TCP_KEEPCNT`.
const MAX_KEEPALIVE_SECS: u64 = 32_767;
const MAX_KEEPALIVE_COUNT: u32 = 127;

/// Kong's default `proxy_listen`.
pub fn kong_default_proxy_listen() -> &'static str {
    "0.0.0.0:8000 reuseport backlog=16384, 0.0.0.0:8443 http2 ssl reuseport backlog=16384"
}

/// sluice's default `status_listen` (Kong's is `127.0.0.1:8007`; sluice serves probes and
/// `/metrics` there, so it listens on all interfaces, on port 8100).
pub fn kong_default_status_listen() -> &'static str {
    "0.0.0.0:8100"
}

/// A parsed listen value: the entries to bind, in order. No entries means `off`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListenSpec {
    pub entries: Vec<ListenEntry>,
}

/// One `ADDRESS:PORT [flags]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenEntry {
    pub addr: ListenAddr,
    pub port: u16,
    pub ssl: bool,
    pub http2: bool,
    pub proxy_protocol: bool,
    pub deferred: bool,
    pub bind: bool,
    pub reuseport: bool,
    /// `backlog=N`; [`DEFAULT_BACKLOG`] when unset.
    pub backlog: Option<u32>,
    /// `ipv6only=on|off`; for IPv6 sockets unset means on, as in nginx.
    pub ipv6only: Option<bool>,
    pub so_keepalive: Option<KeepAlive>,
}

/// The address part of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
    /// A host name resolved when binding; `*` means every IPv4 interface (`0.0.0.0`), as in nginx.
    Name(String),
}

/// `so_keepalive=on|off|idle:interval:count`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepAlive {
    On,
    Off,
    /// Keepalive on, with the given parameters; an unset part keeps the system default.
    Params {
        idle: Option<Duration>,
        interval: Option<Duration>,
        count: Option<u32>,
    },
}

/// What is wrong with one entry; the offending token is always part of the message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EntryError {
    #[error("empty entry")]
    Empty,
    #[error("missing port in '{0}' (expected ADDRESS:PORT)")]
    MissingPort(String),
    #[error("port ranges are not supported: '{0}'")]
    PortRange(String),
    #[error("invalid port '{0}' (expected a decimal number 0-65535)")]
    BadPort(String),
    #[error("invalid address '{token}': {reason}")]
    BadAddress { token: String, reason: &'static str },
    #[error("IPv6 address must be in brackets, like '[::]:8000': '{0}'")]
    UnbracketedIpv6(String),
    #[error("unknown flag '{0}'")]
    UnknownFlag(String),
    #[error("duplicate flag '{0}'")]
    DuplicateFlag(String),
    #[error("invalid backlog '{0}' (expected backlog=N with N from 1 to 2147483647)")]
    BadBacklog(String),
    #[error("invalid ipv6only '{0}' (expected ipv6only=on or ipv6only=off)")]
    BadIpv6only(String),
    #[error("invalid so_keepalive '{token}': {reason}")]
    BadKeepalive { token: String, reason: String },
    #[error("duplicate listen address '{0}'")]
    DuplicateAddress(String),
}

/// A listen value that cannot be used, or a socket that cannot be opened.
#[derive(Debug, Error)]
pub enum ListenError {
    /// The whole value is empty (`off` disables a listener).
    #[error("invalid {var} value '{value}': empty (use 'off' to disable the listener)")]
    EmptyValue { var: String, value: String },
    /// One entry is malformed.
    #[error("invalid {var} entry '{entry}': {problem}")]
    Entry { var: String, entry: String, problem: EntryError },
    /// A name could not be resolved.
    #[error("cannot resolve listen address '{name}:{port}': {source}")]
    Resolve {
        name: String,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    /// A name resolved to nothing.
    #[error("listen address '{name}:{port}' resolves to no address")]
    NoAddress { name: String, port: u16 },
    /// A socket call failed.
    #[error("cannot listen on {addr}: {step}: {source}")]
    Socket {
        addr: SocketAddr,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl ListenError {
    /// The entry problem, when this error is about one entry.
    pub fn entry_error(&self) -> Option<&EntryError> {
        match self {
            ListenError::Entry { problem, .. } => Some(problem),
            _ => None,
        }
    }
}

impl ListenSpec {
    /// Parses `value` and names `var` (e.g. `KONG_PROXY_LISTEN`) in any error.
    pub fn parse_env(var: &str, value: &str) -> Result<ListenSpec, ListenError> {
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err(ListenError::EmptyValue { var: var.to_string(), value: value.to_string() });
        }
        let raw: Vec<&str> = trimmed.split(',').map(str::trim).collect();
        // Kong: when the first entry is `off`, the listener is off, whatever follows.
        if raw.first() == Some(&"off") {
            return Ok(ListenSpec::default());
        }
        let mut entries: Vec<ListenEntry> = Vec::with_capacity(raw.len());
        for text in raw {
            let entry_err = |problem| ListenError::Entry { var: var.to_string(), entry: text.to_string(), problem };
            let entry = parse_entry(text).map_err(entry_err)?;
            if entry.port != 0 && entries.iter().any(|e| e.addr == entry.addr && e.port == entry.port) {
                return Err(entry_err(EntryError::DuplicateAddress(entry.addr_port())));
            }
            entries.push(entry);
        }
        Ok(ListenSpec { entries })
    }

    /// True for `off`.
    pub fn is_off(&self) -> bool {
        self.entries.is_empty()
    }
}

impl FromStr for ListenSpec {
    type Err = ListenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ListenSpec::parse_env("listen", s)
    }
}

impl fmt::Display for ListenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.entries.is_empty() {
            return f.write_str("off");
        }
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::V4(ip) => write!(f, "{ip}"),
            ListenAddr::V6(ip) => write!(f, "[{ip}]"),
            ListenAddr::Name(n) => f.write_str(n),
        }
    }
}

impl fmt::Display for KeepAlive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeepAlive::On => f.write_str("on"),
            KeepAlive::Off => f.write_str("off"),
            KeepAlive::Params { idle, interval, count } => {
                if let Some(d) = idle {
                    write_secs(f, d.as_secs())?;
                }
                f.write_str(":")?;
                if let Some(d) = interval {
                    write_secs(f, d.as_secs())?;
                }
                f.write_str(":")?;
                if let Some(c) = count {
                    write!(f, "{c}")?;
                }
                Ok(())
            }
        }
    }
}

/// Seconds in the largest nginx unit that divides them evenly (`1800` → `30m`).
fn write_secs(f: &mut fmt::Formatter<'_>, secs: u64) -> fmt::Result {
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs != 0 && secs.is_multiple_of(size) {
            return write!(f, "{}{unit}", secs / size);
        }
    }
    write!(f, "{secs}s")
}

impl fmt::Display for ListenEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.addr_port())?;
        for (on, flag) in [
            (self.ssl, "ssl"),
            (self.http2, "http2"),
            (self.proxy_protocol, "proxy_protocol"),
            (self.deferred, "deferred"),
            (self.bind, "bind"),
            (self.reuseport, "reuseport"),
        ] {
            if on {
                write!(f, " {flag}")?;
            }
        }
        if let Some(b) = self.backlog {
            write!(f, " backlog={b}")?;
        }
        if let Some(v6) = self.ipv6only {
            write!(f, " ipv6only={}", if v6 { "on" } else { "off" })?;
        }
        if let Some(ka) = &self.so_keepalive {
            write!(f, " so_keepalive={ka}")?;
        }
        Ok(())
    }
}

impl ListenEntry {
    /// An entry for `addr:port` with no flags.
    pub fn new(addr: ListenAddr, port: u16) -> ListenEntry {
        ListenEntry {
            addr,
            port,
            ssl: false,
            http2: false,
            proxy_protocol: false,
            deferred: false,
            bind: false,
            reuseport: false,
            backlog: None,
            ipv6only: None,
            so_keepalive: None,
        }
    }

    /// `ADDRESS:PORT` as written in the grammar (IPv6 in brackets).
    pub fn addr_port(&self) -> String {
        format!("{}:{}", self.addr, self.port)
    }

    /// The socket addresses this entry stands for; names are resolved here (blocking).
    pub fn socket_addrs(&self) -> Result<Vec<SocketAddr>, ListenError> {
        match &self.addr {
            ListenAddr::V4(ip) => Ok(vec![SocketAddr::from((*ip, self.port))]),
            ListenAddr::V6(ip) => Ok(vec![SocketAddr::from((*ip, self.port))]),
            ListenAddr::Name(n) if n == "*" => Ok(vec![SocketAddr::from((Ipv4Addr::UNSPECIFIED, self.port))]),
            ListenAddr::Name(n) => {
                let resolved = (n.as_str(), self.port).to_socket_addrs().map_err(|source| ListenError::Resolve {
                    name: n.clone(),
                    port: self.port,
                    source,
                })?;
                let mut out: Vec<SocketAddr> = Vec::new();
                for a in resolved {
                    if !out.contains(&a) {
                        out.push(a);
                    }
                }
                if out.is_empty() {
                    return Err(ListenError::NoAddress { name: n.clone(), port: self.port });
                }
                Ok(out)
            }
        }
    }

    /// Opens a listening, non-blocking socket for this entry, ready for
    /// `tokio::net::TcpListener::from_std`. A name that resolves to several addresses is bound on
    /// the first one; [`ListenEntry::bind_all`] binds them all.
    pub fn bind(&self) -> Result<TcpListener, ListenError> {
        let addrs = self.socket_addrs()?;
        let first = addrs
            .first()
            .copied()
            .ok_or_else(|| ListenError::NoAddress { name: self.addr.to_string(), port: self.port })?;
        if addrs.len() > 1 {
            tracing::warn!(entry = %self, bound = %first, resolved = ?addrs,
                "listen name resolves to several addresses; binding the first");
        }
        self.bind_addr(first)
    }

    /// Opens one listening socket per address the entry resolves to (as nginx does for names).
    pub fn bind_all(&self) -> Result<Vec<TcpListener>, ListenError> {
        self.socket_addrs()?.into_iter().map(|a| self.bind_addr(a)).collect()
    }

    /// Opens a listening socket on `addr` with this entry's options.
    pub fn bind_addr(&self, addr: SocketAddr) -> Result<TcpListener, ListenError> {
        let err = |step: &'static str| move |source: std::io::Error| ListenError::Socket { addr, step, source };
        let socket =
            Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err("socket"))?;
        socket.set_reuse_address(true).map_err(err("SO_REUSEADDR"))?;
        if self.reuseport {
            socket.set_reuse_port(true).map_err(err("SO_REUSEPORT"))?;
        }
        if addr.is_ipv6() {
            socket.set_only_v6(self.ipv6only.unwrap_or(true)).map_err(err("IPV6_V6ONLY"))?;
        } else if self.ipv6only.is_some() {
            tracing::warn!(entry = %self, "ipv6only applies to IPv6 addresses only; ignored");
        }
        match &self.so_keepalive {
            None => {}
            Some(KeepAlive::On) => socket.set_keepalive(true).map_err(err("SO_KEEPALIVE"))?,
            Some(KeepAlive::Off) => socket.set_keepalive(false).map_err(err("SO_KEEPALIVE"))?,
            Some(KeepAlive::Params { idle, interval, count }) => {
                let mut ka = TcpKeepalive::new();
                if let Some(d) = idle {
                    ka = ka.with_time(*d);
                }
                if let Some(d) = interval {
                    ka = ka.with_interval(*d);
                }
                if let Some(c) = count {
                    ka = ka.with_retries(*c);
                }
                socket.set_tcp_keepalive(&ka).map_err(err("TCP keepalive"))?;
            }
        }
        if self.deferred {
            tracing::warn!(entry = %self, "'deferred' (TCP_DEFER_ACCEPT) is not supported by sluice and has no effect");
        }
        socket.bind(&addr.into()).map_err(err("bind"))?;
        // Parsing keeps backlogs within i32; the fallback only guards hand-built entries.
        let backlog = i32::try_from(self.backlog.unwrap_or(DEFAULT_BACKLOG)).unwrap_or(i32::MAX);
        socket.listen(backlog).map_err(err("listen"))?;
        socket.set_nonblocking(true).map_err(err("O_NONBLOCK"))?;
        Ok(socket.into())
    }
}

/// Parses one trimmed entry.
fn parse_entry(text: &str) -> Result<ListenEntry, EntryError> {
    let mut tokens = text.split_whitespace();
    let first = tokens.next().ok_or(EntryError::Empty)?;
    let (addr, port) = parse_addr_port(first)?;
    let mut e = ListenEntry::new(addr, port);
    for tok in tokens {
        let dup = || EntryError::DuplicateFlag(tok.to_string());
        let set = |flag: &mut bool| if std::mem::replace(flag, true) { Err(dup()) } else { Ok(()) };
        match tok {
            "ssl" => set(&mut e.ssl)?,
            "http2" => set(&mut e.http2)?,
            "proxy_protocol" => set(&mut e.proxy_protocol)?,
            "deferred" => set(&mut e.deferred)?,
            "bind" => set(&mut e.bind)?,
            "reuseport" => set(&mut e.reuseport)?,
            _ => {
                let (key, value) = tok.split_once('=').unwrap_or((tok, ""));
                match key {
                    "backlog" => {
                        let n = parse_backlog(value).ok_or_else(|| EntryError::BadBacklog(tok.to_string()))?;
                        if e.backlog.replace(n).is_some() {
                            return Err(dup());
                        }
                    }
                    "ipv6only" => {
                        let v = match value {
                            "on" => true,
                            "off" => false,
                            _ => return Err(EntryError::BadIpv6only(tok.to_string())),
                        };
                        if e.ipv6only.replace(v).is_some() {
                            return Err(dup());
                        }
                    }
                    "so_keepalive" => {
                        let ka = parse_keepalive(value)
                            .map_err(|reason| EntryError::BadKeepalive { token: tok.to_string(), reason })?;
                        if e.so_keepalive.replace(ka).is_some() {
                            return Err(dup());
                        }
                    }
                    _ => return Err(EntryError::UnknownFlag(tok.to_string())),
                }
            }
        }
    }
    Ok(e)
}

fn parse_backlog(s: &str) -> Option<u32> {
    let n = parse_decimal(s, 10)?;
    (1..=i32::MAX as u64).contains(&n).then_some(n as u32)
}

/// A non-empty run of ASCII digits of at most `max_len` characters (so it cannot overflow).
fn parse_decimal(s: &str, max_len: usize) -> Option<u64> {
    if s.is_empty() || s.len() > max_len || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `ADDRESS:PORT`: `[v6]:port`, `a.b.c.d:port`, or `name:port`.
fn parse_addr_port(tok: &str) -> Result<(ListenAddr, u16), EntryError> {
    let missing_port = || EntryError::MissingPort(tok.to_string());
    let (addr, port_str) = if let Some(rest) = tok.strip_prefix('[') {
        let (inner, after) = rest
            .split_once(']')
            .ok_or_else(|| EntryError::BadAddress { token: tok.to_string(), reason: "missing ']'" })?;
        let ip = Ipv6Addr::from_str(inner)
            .map_err(|_| EntryError::BadAddress { token: format!("[{inner}]"), reason: "not an IPv6 address" })?;
        let port = after.strip_prefix(':').ok_or_else(missing_port)?;
        (ListenAddr::V6(ip), port)
    } else {
        let (host, port) = tok.rsplit_once(':').ok_or_else(missing_port)?;
        if host.contains(':') {
            return Err(EntryError::UnbracketedIpv6(tok.to_string()));
        }
        let bad = |reason| EntryError::BadAddress { token: host.to_string(), reason };
        let addr = if host.is_empty() {
            return Err(bad("empty address"));
        } else if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            ListenAddr::V4(parse_ipv4_lenient(host).ok_or_else(|| bad("not an IPv4 address"))?)
        } else if host == "*" || is_host_name(host) {
            ListenAddr::Name(host.to_string())
        } else {
            return Err(bad("not an IP address or host name"));
        };
        (addr, port)
    };
    if port_str.is_empty() {
        return Err(missing_port());
    }
    if let Some((a, b)) = port_str.split_once('-') {
        if parse_decimal(a, 10).is_some() && parse_decimal(b, 10).is_some() {
            return Err(EntryError::PortRange(port_str.to_string()));
        }
    }
    let port = parse_decimal(port_str, 5)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| EntryError::BadPort(port_str.to_string()))?;
    Ok((addr, port))
}

/// IPv4 as Kong normalizes it: four dot-separated decimal octets, leading zeros allowed.
fn parse_ipv4_lenient(s: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = s.split('.');
    for o in &mut octets {
        let n = parse_decimal(parts.next()?, 10)?;
        *o = u8::try_from(n).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(octets))
}

/// Letters, digits, `-`, `_` and `.`, with no empty label (a trailing dot is allowed).
fn is_host_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `on`, `off`, or `[idle]:[interval]:[count]` with nginx time units for idle and interval.
fn parse_keepalive(s: &str) -> Result<KeepAlive, String> {
    match s {
        "on" => return Ok(KeepAlive::On),
        "off" => return Ok(KeepAlive::Off),
        _ => {}
    }
    let parts: Vec<&str> = s.split(':').collect();
    let [idle, interval, count] = parts.as_slice() else {
        return Err("expected on, off or idle:interval:count".to_string());
    };
    let time = |what: &str, v: &str| -> Result<Option<Duration>, String> {
        if v.is_empty() {
            return Ok(None);
        }
        let secs = parse_nginx_seconds(v).ok_or_else(|| format!("{what} '{v}' is not a time like 30, 10s or 30m"))?;
        if !(1..=MAX_KEEPALIVE_SECS).contains(&secs) {
            return Err(format!("{what} '{v}' must be between 1s and {MAX_KEEPALIVE_SECS}s"));
        }
        Ok(Some(Duration::from_secs(secs)))
    };
    let idle = time("idle", idle)?;
    let interval = time("interval", interval)?;
    let count = if count.is_empty() {
        None
    } else {
        let c = parse_decimal(count, 10)
            .and_then(|c| u32::try_from(c).ok())
            .filter(|c| (1..=MAX_KEEPALIVE_COUNT).contains(c))
            .ok_or_else(|| format!("count '{count}' must be a number from 1 to {MAX_KEEPALIVE_COUNT}"))?;
        Some(c)
    };
    if idle.is_none() && interval.is_none() && count.is_none() {
        return Err("at least one of idle, interval and count must be set".to_string());
    }
    Ok(KeepAlive::Params { idle, interval, count })
}

/// nginx's time syntax in seconds: groups of a number and a unit (`y M w d h m s`), largest unit
/// first, e.g. `1h30m`; a plain or trailing number counts as seconds.
fn parse_nginx_seconds(s: &str) -> Option<u64> {
    const UNITS: [(u8, u64); 7] =
        [(b'y', 31_536_000), (b'M', 2_592_000), (b'w', 604_800), (b'd', 86_400), (b'h', 3_600), (b'm', 60), (b's', 1)];
    if s.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    let mut next_unit = 0; // index into UNITS of the smallest unit still allowed to appear
    for b in s.bytes() {
        if b.is_ascii_digit() {
            number = Some(number.unwrap_or(0).checked_mul(10)?.checked_add(u64::from(b - b'0'))?);
            continue;
        }
        let pos = UNITS.iter().position(|(u, _)| *u == b)?;
        if pos < next_unit {
            return None;
        }
        next_unit = pos + 1;
        total = total.checked_add(number.take()?.checked_mul(UNITS[pos].1)?)?;
    }
    if let Some(n) = number {
        if next_unit == UNITS.len() {
            return None; // a bare number after `s`
        }
        total = total.checked_add(n)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests;
