//! Old configurations are freed on a thread of their own, never on a request thread.
//!
//! A request keeps its config snapshot (`Arc<LiveConfig>`) to its end, so after a swap the last
//! request in flight on the old config would free it: with 100,000 routes that is hundreds of
//! thousands of frees (routes, regexes, hash tables) on a worker thread, a latency spike for every
//! request queued behind it. A swap hands the old snapshot to [`Retirer`] instead; its thread
//! frees a snapshot once no request holds it any more.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the thread looks whether requests still hold a retired snapshot.
const POLL: Duration = Duration::from_millis(20);

/// Frees retired snapshots off the request path. Dropping it lets the thread finish.
pub(crate) struct Retirer<T: Send + Sync + 'static> {
    /// `None` when the thread could not be started: snapshots are then freed where they are
    /// dropped, as without a retirer.
    tx: Mutex<Option<Sender<Arc<T>>>>,
}

impl<T: Send + Sync + 'static> Retirer<T> {
    pub(crate) fn new() -> Retirer<T> {
        let (tx, rx) = mpsc::channel::<Arc<T>>();
        let spawned = std::thread::Builder::new().name("sluice-retire".into()).spawn(move || {
            let mut held: Vec<Arc<T>> = Vec::new();
            loop {
                let next = if held.is_empty() {
                    rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
                } else {
                    rx.recv_timeout(POLL)
                };
                match next {
                    Ok(old) => held.push(old),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                // Count 1: only this thread holds it, and nothing can clone it again.
                held.retain(|old| Arc::strong_count(old) > 1);
            }
        });
        if let Err(e) = &spawned {
            tracing::warn!(error = %e, "old configurations will be freed by the last request using them");
        }
        Retirer { tx: Mutex::new(spawned.ok().map(|_| tx)) }
    }

    /// Frees `old` on the retirer's thread once nothing else holds it.
    pub(crate) fn retire(&self, old: Arc<T>) {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = tx.as_ref() {
            // A send fails only when the thread is gone; `old` is then dropped here.
            let _ = tx.send(old);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::sync::Arc;
    use std::time::Duration;

    use super::Retirer;

    /// Reports the name of the thread that drops it.
    struct Snapshot(mpsc::Sender<String>);

    impl Drop for Snapshot {
        fn drop(&mut self) {
            let _ = self.0.send(std::thread::current().name().unwrap_or("unnamed").to_string());
        }
    }

    #[test]
    fn a_retired_snapshot_is_freed_on_the_retire_thread_once_the_last_request_lets_go() {
        let (tx, rx) = mpsc::channel();
        let retirer = Retirer::new();
        let old = Arc::new(Snapshot(tx));
        let request = old.clone();
        retirer.retire(old);
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err(), "freed while a request holds it");
        drop(request);
        let freed_on = rx.recv_timeout(Duration::from_secs(5)).expect("freed after the request ended");
        assert_eq!(freed_on, "sluice-retire");
    }
}
