//! The `local` policy's counters: in this process, shared by every config this process loads
//! (a config push does not reset them, as Kong's shared dictionary survives one). One table per
//! plugin scope (its route and service), found once when a config builds the plugin; a request
//! looks its identifier up once, under the table's lock, and reads and increments all of its
//! windows there, so the count is exact within this process and no key is built per request.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use proxy_config::plugins::rate_limiting::WINDOWS;

use super::windows::Window;
use super::Counter;

/// Entries above which a table sweeps out identifiers whose windows have all ended (at most
/// once a second).
const SWEEP_ABOVE: usize = 65_536;

/// One identifier's counts: per period (index into [`WINDOWS`]) the window counted and the
/// requests counted in it. An unused period's window is `Window::default()`, which ends at 0.
type Slots = [(Window, u64); WINDOWS.len()];

/// The counters of one scope: identifier → its windows.
#[derive(Debug, Default)]
pub(crate) struct Table(Mutex<Entries>);

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<Box<str>, Slots>,
    /// No sweep before this second.
    next_sweep: u64,
}

/// Every scope's table, kept across config pushes.
static TABLES: LazyLock<Mutex<HashMap<String, Arc<Table>>>> = LazyLock::new(Default::default);

/// Whether any of the windows counted is still open at `now`.
fn live(slots: &Slots, now: u64) -> bool {
    slots.iter().any(|(w, _)| w.end > now)
}

impl Table {
    /// The table of `scope`, made on its first use. Tables no plugin holds any more (their
    /// scope left the config) lose the windows that have ended, and go once empty.
    pub(crate) fn of(scope: &str, now: u64) -> Arc<Table> {
        let mut tables = TABLES.lock().unwrap_or_else(PoisonError::into_inner);
        tables.retain(|s, t| {
            if s == scope || Arc::strong_count(t) > 1 {
                return true;
            }
            let mut entries = t.0.lock().unwrap_or_else(PoisonError::into_inner);
            entries.map.retain(|_, slots| live(slots, now));
            !entries.map.is_empty()
        });
        tables.entry(scope.to_string()).or_default().clone()
    }

    /// Kong's check for one request of `identifier`: the usage of each counter's window before
    /// this request (in `counters` order); when one is at its limit, the index of that counter
    /// and nothing is counted, else every window counts the request.
    pub(crate) fn check(
        &self,
        identifier: &str,
        counters: &[Counter],
        now: u64,
    ) -> ([u64; WINDOWS.len()], Option<usize>) {
        let mut entries = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let Entries { map, next_sweep } = &mut *entries;
        if map.len() > SWEEP_ABOVE && now >= *next_sweep {
            map.retain(|_, slots| live(slots, now));
            *next_sweep = now + 1;
        }
        match map.get_mut(identifier) {
            Some(slots) => count(slots, counters),
            None => {
                // The identifier is copied only for its first request, not on every one.
                let mut slots = Slots::default();
                let checked = count(&mut slots, counters);
                if checked.1.is_none() {
                    map.insert(identifier.into(), slots);
                }
                checked
            }
        }
    }
}

/// [`Table::check`] on one identifier's windows.
fn count(slots: &mut Slots, counters: &[Counter]) -> ([u64; WINDOWS.len()], Option<usize>) {
    let mut usage = [0; WINDOWS.len()];
    for (used, c) in usage.iter_mut().zip(counters) {
        let (window, n) = slots[c.period];
        if window == c.window {
            *used = n;
        }
    }
    let stop = counters.iter().zip(&usage).position(|(c, used)| *used >= c.limit);
    if stop.is_none() {
        for (c, used) in counters.iter().zip(&usage) {
            slots[c.period] = (c.window, used + 1);
        }
    }
    (usage, stop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(period: usize, limit: u64, window: Window) -> Counter {
        Counter { period, limit, window }
    }

    #[test]
    fn a_refused_request_is_not_counted_and_a_new_window_starts_at_zero() {
        let table = Table::default();
        let check = |counters: &[Counter], now| {
            let (usage, stop) = table.check("a", counters, now);
            (usage[..counters.len()].to_vec(), stop)
        };
        let short = counter(0, 2, Window { start: 150, end: 151 });
        let long = counter(5, 3, Window { start: 100, end: 200 });
        let both = [short, long];
        assert_eq!(check(&both, 150), (vec![0, 0], None));
        assert_eq!(check(&both, 150), (vec![1, 1], None));
        // The short window is full: refused, and the long one keeps its count.
        assert_eq!(check(&both, 150), (vec![2, 2], Some(0)));
        assert_eq!(check(&[long], 150), (vec![2], None));
        assert_eq!(check(&[long], 150), (vec![3], Some(0)));
        // Another identifier has its own counts.
        assert_eq!(table.check("b", &[long], 150).0[0], 0);
        let next = counter(5, 3, Window { start: 200, end: 300 });
        assert_eq!(check(&[next], 200), (vec![0], None));
    }

    #[test]
    fn a_scope_keeps_its_table_and_a_dropped_scope_goes_once_its_windows_end() {
        let t = Table::of("local-test:kept", 100);
        t.check("a", &[counter(1, 5, Window { start: 60, end: 120 })], 100);
        assert!(Arc::ptr_eq(&t, &Table::of("local-test:kept", 100)), "a config push keeps the counts");
        drop(t);
        // Nobody holds it, but its minute is still open: kept.
        let again = Table::of("local-test:kept", 110);
        assert_eq!(again.check("a", &[counter(1, 5, Window { start: 60, end: 120 })], 110).0[0], 1);
        drop(again);
        Table::of("local-test:other", 130);
        let tables = TABLES.lock().unwrap();
        assert!(!tables.contains_key("local-test:kept"), "its window ended and no plugin holds it");
    }
}
