//! Upstream host names to addresses through a cache, so that a connection never waits on DNS for
//! a name resolved recently, a name that failed is not looked up again at once, and names that
//! cannot exist never reach a resolver at all.
//!
//! - Names under `.invalid` (RFC 6761: resolvers must answer NXDOMAIN; the controller points the
//!   invalid-backend share of a route at one) fail at once, without a lookup. On a resolver that
//!   drops queries, a lookup would otherwise cost the resolver's whole timeout per connection.
//! - A resolved name is kept for `KONG_DNS_VALID_TTL` seconds; after that, for up to
//!   `KONG_DNS_STALE_TTL` more seconds, the old answer serves while one background lookup
//!   refreshes it (Kong's stale-while-refresh). Past both, a connection waits for a lookup, and
//!   concurrent connections to one name share that lookup.
//! - A failed lookup is remembered for `KONG_DNS_ERROR_TTL` seconds.
//!
//! Lookups go through the system resolver (`getaddrinfo`, as `/etc/hosts` and search domains
//! need), which does not report record TTLs: the valid TTL is therefore a setting (Kong's
//! `dns_valid_ttl`), 30 s unless set, and not each record's own TTL.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use thiserror::Error;

/// How long answers and failures are kept (Kong's `dns_*` settings, in seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    /// `KONG_DNS_VALID_TTL`, default 30 s: how long an answer is used as is.
    pub valid_ttl: Duration,
    /// `KONG_DNS_STALE_TTL`, default 3600 s (Kong's): how long past `valid_ttl` an answer still
    /// serves while a background lookup refreshes it.
    pub stale_ttl: Duration,
    /// `KONG_DNS_ERROR_TTL`, default 1 s (Kong's): how long a failed lookup is remembered.
    pub error_ttl: Duration,
}

impl Default for DnsSettings {
    fn default() -> Self {
        DnsSettings {
            valid_ttl: Duration::from_secs(30),
            stale_ttl: Duration::from_secs(3600),
            error_ttl: Duration::from_secs(1),
        }
    }
}

/// Why a name gave no address.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum DnsError {
    #[error("'{host}' is under .invalid and never resolves")]
    InvalidName { host: String },
    #[error("cannot resolve '{host}': {reason}")]
    Lookup { host: String, reason: Arc<str> },
    #[error("'{host}' resolved to no address")]
    NoAddress { host: String },
}

/// True for `invalid` and names under it (any case, with or without the root dot).
pub fn is_invalid_name(host: &str) -> bool {
    let h = host.strip_suffix('.').unwrap_or(host);
    let tail = h.len().checked_sub(".invalid".len());
    h.eq_ignore_ascii_case("invalid")
        || tail.is_some_and(|t| h.is_char_boundary(t) && h[t..].eq_ignore_ascii_case(".invalid"))
}

/// One name's last answer.
#[derive(Clone)]
enum Answer {
    None,
    Addrs { addrs: Arc<[IpAddr]>, at: Instant },
    Failed { error: DnsError, at: Instant },
}

/// One name: its answer, the lookup in progress, and the rotation over its addresses.
#[derive(Default)]
struct Slot {
    answer: Mutex<Option<Answer>>,
    lookup: tokio::sync::Mutex<()>,
    refreshing: AtomicBool,
    next: AtomicUsize,
}

impl Slot {
    fn answer(&self) -> Answer {
        self.answer.lock().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or(Answer::None)
    }
    fn store(&self, answer: Answer) {
        *self.answer.lock().unwrap_or_else(|p| p.into_inner()) = Some(answer);
    }
    /// The addresses in turn, so connections spread over every address of a name.
    fn pick(&self, addrs: &[IpAddr]) -> IpAddr {
        addrs[self.next.fetch_add(1, Ordering::Relaxed) % addrs.len()]
    }
}

/// The cache; one per proxy, shared by every connection.
#[derive(Default)]
pub struct Resolver {
    settings: DnsSettings,
    slots: Mutex<HashMap<Arc<str>, Arc<Slot>>>,
    /// Lookups made (tests read it to show what was served from the cache).
    lookups: AtomicUsize,
}

impl Resolver {
    pub fn new(settings: DnsSettings) -> Self {
        Resolver { settings, ..Resolver::default() }
    }

    /// Lookups made so far.
    pub fn lookups(&self) -> usize {
        self.lookups.load(Ordering::Relaxed)
    }

    fn slot(&self, host: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = slots.get(host) {
            return s.clone();
        }
        let s = Arc::new(Slot::default());
        slots.insert(host.into(), s.clone());
        s
    }

    /// The address to dial for `host:port`.
    pub async fn resolve(self: &Arc<Self>, host: &str, port: u16) -> Result<SocketAddr, DnsError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        if is_invalid_name(host) {
            return Err(DnsError::InvalidName { host: host.to_string() });
        }
        let slot = self.slot(host);
        if let Some(r) = self.cached(host, &slot) {
            return r.map(|ip| SocketAddr::new(ip, port));
        }
        // One lookup per name at a time; whoever waited uses what it found.
        let _one = slot.lookup.lock().await;
        if let Some(r) = self.cached(host, &slot) {
            return r.map(|ip| SocketAddr::new(ip, port));
        }
        match self.lookup(host, &slot).await {
            Answer::Addrs { addrs, .. } => Ok(SocketAddr::new(slot.pick(&addrs), port)),
            Answer::Failed { error, .. } => Err(error),
            Answer::None => Err(DnsError::NoAddress { host: host.to_string() }),
        }
    }

    /// The cached answer when it may serve: fresh, or stale within `stale_ttl` (then one
    /// background lookup refreshes it). `None` when a lookup must be waited for.
    fn cached(self: &Arc<Self>, host: &str, slot: &Arc<Slot>) -> Option<Result<IpAddr, DnsError>> {
        let now = Instant::now();
        match slot.answer() {
            Answer::None => None,
            Answer::Failed { error, at } => (now.duration_since(at) < self.settings.error_ttl).then_some(Err(error)),
            Answer::Addrs { addrs, at } => {
                let age = now.duration_since(at);
                if age < self.settings.valid_ttl {
                    return Some(Ok(slot.pick(&addrs)));
                }
                if age >= self.settings.valid_ttl + self.settings.stale_ttl {
                    return None;
                }
                if !slot.refreshing.swap(true, Ordering::AcqRel) {
                    let (me, slot, host) = (self.clone(), slot.clone(), host.to_string());
                    tokio::spawn(async move {
                        let _one = slot.lookup.lock().await;
                        // A failed refresh keeps the stale answer: it is still the best one known.
                        let fresh = me.lookup_only(&host).await;
                        if let Answer::Addrs { .. } = fresh {
                            slot.store(fresh);
                        }
                        slot.refreshing.store(false, Ordering::Release);
                    });
                }
                Some(Ok(slot.pick(&addrs)))
            }
        }
    }

    /// Looks `host` up and stores the answer in `slot`.
    async fn lookup(&self, host: &str, slot: &Slot) -> Answer {
        let answer = self.lookup_only(host).await;
        slot.store(answer.clone());
        answer
    }

    async fn lookup_only(&self, host: &str) -> Answer {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let at = Instant::now();
        match tokio::net::lookup_host((host, 0)).await {
            Ok(found) => {
                let mut addrs: Vec<IpAddr> = Vec::new();
                for a in found {
                    if !addrs.contains(&a.ip()) {
                        addrs.push(a.ip());
                    }
                }
                if addrs.is_empty() {
                    Answer::Failed { error: DnsError::NoAddress { host: host.to_string() }, at }
                } else {
                    Answer::Addrs { addrs: addrs.into(), at }
                }
            }
            Err(e) => {
                Answer::Failed { error: DnsError::Lookup { host: host.to_string(), reason: e.to_string().into() }, at }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_names_are_recognised_in_any_case() {
        for name in ["invalid", "x.invalid", "a.b.INVALID", "svc.invalid."] {
            assert!(is_invalid_name(name), "{name}");
        }
        for name in ["invalid.example", "xinvalid", "localhost", "é.invalidé"] {
            assert!(!is_invalid_name(name), "{name}");
        }
    }

    #[tokio::test]
    async fn invalid_names_fail_without_a_lookup() {
        let r = Arc::new(Resolver::default());
        let err = r.resolve("backend.default.svc.invalid", 80).await.unwrap_err();
        assert!(matches!(err, DnsError::InvalidName { .. }), "{err}");
        assert_eq!(r.lookups(), 0);
    }

    #[tokio::test]
    async fn answers_are_cached_for_the_valid_ttl_then_refreshed() {
        let r = Arc::new(Resolver::new(DnsSettings {
            valid_ttl: Duration::from_millis(200),
            stale_ttl: Duration::ZERO,
            error_ttl: Duration::from_secs(1),
        }));
        for _ in 0..20 {
            let a = r.resolve("localhost", 8080).await.unwrap();
            assert!(a.ip().is_loopback() && a.port() == 8080, "{a}");
        }
        assert_eq!(r.lookups(), 1, "one lookup for 20 resolutions within the TTL");
        tokio::time::sleep(Duration::from_millis(250)).await; // the TTL is wall-clock time
        r.resolve("localhost", 1).await.unwrap();
        assert_eq!(r.lookups(), 2, "expired: looked up again");
    }

    #[tokio::test]
    async fn stale_answers_serve_while_one_refresh_runs() {
        let r = Arc::new(Resolver::new(DnsSettings {
            valid_ttl: Duration::from_millis(50),
            stale_ttl: Duration::from_secs(60),
            error_ttl: Duration::from_secs(1),
        }));
        r.resolve("localhost", 1).await.unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
        for _ in 0..10 {
            r.resolve("localhost", 1).await.unwrap();
        }
        // The ten stale reads started exactly one background refresh; wait for it to end.
        let slot = r.slot("localhost");
        while slot.refreshing.load(Ordering::Acquire) {
            tokio::task::yield_now().await;
        }
        assert_eq!(r.lookups(), 2);
        assert!(matches!(slot.answer(), Answer::Addrs { at, .. } if at.elapsed() < Duration::from_millis(50)));
    }
}
