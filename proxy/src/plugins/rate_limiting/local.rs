//! The `local` policy's counters: in this process, shared by every config this process loads
//! (a config push does not reset them, as Kong's shared dictionary survives one). One lock
//! around a map; a check reads and increments all of a request's windows under it, so the
//! count is exact within this process.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use super::windows::Window;
use super::Counter;

/// Entries above which windows that have ended are swept out (at most once a second).
const SWEEP_ABOVE: usize = 65_536;

#[derive(Default)]
struct Counters {
    /// key → (window, requests counted in that window).
    map: HashMap<String, (Window, u64)>,
    /// No sweep before this second.
    next_sweep: u64,
}

static COUNTERS: LazyLock<Mutex<Counters>> = LazyLock::new(Default::default);

/// Kong's check for one request: the usage of each window before this request; when one is at
/// its limit, the index of that counter and nothing is counted, else every window counts it.
pub(crate) fn check(counters: &[Counter], now: u64) -> (Vec<u64>, Option<usize>) {
    let mut counters_now = COUNTERS.lock().unwrap_or_else(|e| e.into_inner());
    let Counters { map, next_sweep } = &mut *counters_now;
    if map.len() > SWEEP_ABOVE && now >= *next_sweep {
        map.retain(|_, (w, _)| w.end > now);
        *next_sweep = now + 1;
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
            // The key is copied only for a new counter, not on every request.
            match map.get_mut(&c.key) {
                Some(slot) if slot.0 == c.window => slot.1 += 1,
                Some(slot) => *slot = (c.window, 1),
                None => {
                    map.insert(c.key.clone(), (c.window, 1));
                }
            }
        }
    }
    (usage, stop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(key: &str, limit: u64, window: Window) -> Counter {
        Counter { period: 5, limit, window, key: key.into() }
    }

    #[test]
    fn a_refused_request_is_not_counted_and_a_new_window_starts_at_zero() {
        let w = Window { start: 100, end: 200 };
        let short = counter("local-test:a:second", 2, Window { start: 150, end: 151 });
        let long = counter("local-test:a:year", 3, w);
        let both = [short.clone(), long.clone()];
        assert_eq!(check(&both, 150), (vec![0, 0], None));
        assert_eq!(check(&both, 150), (vec![1, 1], None));
        // The short window is full: refused, and the long one keeps its count.
        assert_eq!(check(&both, 150), (vec![2, 2], Some(0)));
        assert_eq!(check(std::slice::from_ref(&long), 150), (vec![2], None));
        assert_eq!(check(std::slice::from_ref(&long), 150), (vec![3], Some(0)));
        let next = counter("local-test:a:year", 3, Window { start: 200, end: 300 });
        assert_eq!(check(&[next], 200), (vec![0], None));
    }
}
