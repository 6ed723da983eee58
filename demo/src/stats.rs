//! What the backend saw, for tests to assert on: calls started, completed and cancelled per full method path, the
//! instant of each cancellation, and the metadata of the last request per method. Cheap to clone (one `Arc`) and
//! safe to read from any thread while the server runs; [`Stats::wait_until`] lets a test wait for a condition
//! without sleeping.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http::HeaderMap;
use tokio::sync::watch;

/// Counters and last request of one method path.
#[derive(Clone, Debug, Default)]
pub struct MethodStats {
    /// Calls whose request headers reached the backend.
    pub started: u64,
    /// Calls whose response was finished (trailers or a trailers-only status sent), success or error.
    pub completed: u64,
    /// Calls whose client went away (stream reset, connection closed) before the response was finished.
    pub cancelled: u64,
    /// When the last cancellation was observed.
    pub last_cancel: Option<Instant>,
    /// The request headers of the last call.
    pub last_request: Option<RequestSeen>,
}

/// The request head of one call, as the backend received it.
#[derive(Clone, Debug)]
pub struct RequestSeen {
    /// `:authority` (HTTP/2) or the `host` header, whichever was present; `:authority` wins.
    pub authority: Option<String>,
    /// All request headers (gRPC metadata included), unmodified.
    pub headers: HeaderMap,
    /// When the request reached the backend.
    pub at: Instant,
}

impl RequestSeen {
    /// The first value of `name` as text, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One observed cancellation.
#[derive(Clone, Debug)]
pub struct Cancellation {
    pub method: String,
    pub at: Instant,
}

#[derive(Default)]
struct Inner {
    methods: BTreeMap<String, MethodStats>,
    cancellations: Vec<Cancellation>,
}

/// Shared, thread-safe call statistics of one backend.
#[derive(Clone)]
pub struct Stats {
    inner: Arc<Mutex<Inner>>,
    /// Bumped on every change, so waiters wake up without polling.
    generation: Arc<watch::Sender<u64>>,
}

impl Default for Stats {
    fn default() -> Self {
        Self { inner: Arc::default(), generation: Arc::new(watch::Sender::new(0)) }
    }
}

impl std::fmt::Debug for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stats").field("methods", &self.lock().methods).finish()
    }
}

impl Stats {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the counters inconsistent in a way that matters to tests.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn changed(&self) {
        self.generation.send_modify(|g| *g = g.wrapping_add(1));
    }

    pub(crate) fn record_start(&self, method: &str, seen: RequestSeen) {
        {
            let mut inner = self.lock();
            let entry = inner.methods.entry(method.to_owned()).or_default();
            entry.started += 1;
            entry.last_request = Some(seen);
        }
        self.changed();
    }

    pub(crate) fn record_completed(&self, method: &str) {
        self.lock().methods.entry(method.to_owned()).or_default().completed += 1;
        self.changed();
    }

    pub(crate) fn record_cancelled(&self, method: &str, at: Instant) {
        {
            let mut inner = self.lock();
            let entry = inner.methods.entry(method.to_owned()).or_default();
            entry.cancelled += 1;
            entry.last_cancel = Some(at);
            inner.cancellations.push(Cancellation { method: method.to_owned(), at });
        }
        self.changed();
    }

    /// Counters of one method path (all zero if never called), e.g. `"/hello.HelloService/SayHello"`.
    pub fn method(&self, path: &str) -> MethodStats {
        self.lock().methods.get(path).cloned().unwrap_or_default()
    }

    /// Counters of every method path seen.
    pub fn all(&self) -> BTreeMap<String, MethodStats> {
        self.lock().methods.clone()
    }

    pub fn started(&self, path: &str) -> u64 {
        self.method(path).started
    }

    pub fn completed(&self, path: &str) -> u64 {
        self.method(path).completed
    }

    pub fn cancelled(&self, path: &str) -> u64 {
        self.method(path).cancelled
    }

    /// Calls started, over all methods.
    pub fn total_started(&self) -> u64 {
        self.lock().methods.values().map(|m| m.started).sum()
    }

    /// Cancellations, over all methods.
    pub fn total_cancelled(&self) -> u64 {
        self.lock().cancellations.len() as u64
    }

    /// Every cancellation observed, oldest first.
    pub fn cancellations(&self) -> Vec<Cancellation> {
        self.lock().cancellations.clone()
    }

    /// The request head of the last call of `path`.
    pub fn last_request(&self, path: &str) -> Option<RequestSeen> {
        self.lock().methods.get(path).and_then(|m| m.last_request.clone())
    }

    /// Waits until `condition` holds, re-checking on every change; false if `timeout` passed first.
    pub async fn wait_until(&self, timeout: Duration, mut condition: impl FnMut(&Stats) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.generation.subscribe();
        loop {
            rx.borrow_and_update();
            if condition(self) {
                return true;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                // The sender lives in `self`, so it cannot close while we wait; time ran out.
                _ => return condition(self),
            }
        }
    }

    /// Waits for the `n`-th cancellation of `path` (1-based) and returns when it was observed.
    pub async fn wait_for_cancel(&self, path: &str, n: u64, timeout: Duration) -> Option<Instant> {
        if self.wait_until(timeout, |s| s.cancelled(path) >= n).await {
            let n = usize::try_from(n.saturating_sub(1)).unwrap_or(usize::MAX);
            self.lock().cancellations.iter().filter(|c| c.method == path).nth(n).map(|c| c.at)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_and_waits() {
        let stats = Stats::new();
        let seen = RequestSeen { authority: Some("a".into()), headers: HeaderMap::new(), at: Instant::now() };
        stats.record_start("/x/Y", seen);
        assert_eq!(stats.started("/x/Y"), 1);
        assert!(!stats.wait_until(Duration::from_millis(20), |s| s.completed("/x/Y") == 1).await);
        let s2 = stats.clone();
        let waiter = tokio::spawn(async move { s2.wait_for_cancel("/x/Y", 1, Duration::from_secs(5)).await });
        let at = Instant::now();
        stats.record_cancelled("/x/Y", at);
        assert_eq!(waiter.await.ok().flatten(), Some(at));
        assert_eq!(stats.total_cancelled(), 1);
        assert_eq!(stats.last_request("/x/Y").and_then(|r| r.authority), Some("a".into()));
    }
}
