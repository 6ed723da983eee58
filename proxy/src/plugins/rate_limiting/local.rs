//! The `local` policy's counters: in this process, shared by every config this process loads
//! (a config push does not reset them, as Kong's shared dictionary survives one). One lock
//! around a map; a check reads and increments all of a request's windows under it, so the
//! count is exact within this process.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use super::windows::Window;
use super::Counter;

/// Entries above which windows that have ended are swept out.
const SWEEP_ABOVE: usize = 65_536;

/// key → (window, requests counted in that window).
static COUNTERS: LazyLock<Mutex<HashMap<String, (Window, u64)>>> = LazyLock::new(Default::default);

/// Kong's check for one request: the usage of each window before this request; when one is at
/// its limit, the index of that counter and nothing is counted, else every window counts it.
pub(crate) fn check(counters: &[Counter], now: u64) -> (Vec<u64>, Option<usize>) {
    let mut map = COUNTERS.lock().unwrap_or_else(|e| e.into_inner());
    if map.len() > SWEEP_ABOVE {
        map.retain(|_, (w, _)| w.end > now);
    }
    let usage: Vec<u64> = counters
        .iter()
        .map(|c| match map.get(&c.key) {
            Some((w, n)) if *w == c.window => *n,
            _ => 0,
        })
        .collect();
    let stop = counters.iter().zip(&usage).position(|(c, used)| *used >= c.limit);
    if stop.is_none() {
        for c in counters {
            let slot = map.entry(c.key.clone()).or_insert((c.window, 0));
            if slot.0 != c.window {
                *slot = (c.window, 0);
            }
            slot.1 += 1;
        }
    }
    (usage, stop)
}
