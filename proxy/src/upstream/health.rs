//! The health of each upstream target, as Kong's healthchecker keeps it: counters of consecutive
//! TCP failures, HTTP failures, timeouts and successes, fed by live traffic (passive checks, from
//! the balancer phase) and by probes (active checks, [`super::active_checks`]). A counter that
//! reaches its threshold flips the target; a threshold of 0 turns that counter off.
//!
//! Records live in [`HealthRegistry`], keyed by (upstream, target) and kept across config swaps,
//! so that a new config neither forgets that a target is down nor restarts its probes.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proxy_config::Upstream;
use tokio::time::Instant;

/// How long a target that passive checks took out is skipped before live traffic tries it again,
/// when no active probe of unhealthy targets would bring it back (sluice's choice: Kong leaves it
/// out until an operator or a probe says otherwise).
pub(crate) const DEFAULT_COOLDOWN: Duration = Duration::from_secs(5);
/// `open_until_ms` of a target that stays out until probes bring it back.
const UNTIL_PROBED: u64 = u64::MAX;

/// What one request or probe said about a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    /// Connection refused, reset, unresolvable (Kong's `tcp_failures`).
    TcpFailure,
    /// An unhealthy HTTP status or gRPC status (Kong's `http_failures`).
    HttpFailure,
    /// No answer in time (Kong's `timeouts`).
    Timeout,
}

/// Consecutive counts that flip a target; 0 turns a counter off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Thresholds {
    pub successes: u32,
    pub http_failures: u32,
    pub tcp_failures: u32,
    pub timeouts: u32,
}

/// How live traffic judges a target (Kong's `healthchecks.passive`).
#[derive(Debug, Clone)]
pub(crate) struct PassivePolicy {
    pub thresholds: Thresholds,
    pub healthy_statuses: Box<[u16]>,
    pub unhealthy_statuses: Box<[u16]>,
    /// gRPC codes of a trailers-only response that count as HTTP failures.
    pub grpc_statuses: Box<[u16]>,
    /// `None`: a target taken out stays out until active probes bring it back.
    pub cooldown: Option<Duration>,
    /// Passive `type: tcp`: only connect failures and timeouts count, not responses.
    pub tcp_only: bool,
}

impl PassivePolicy {
    /// Kong's defaults, except that one connect failure takes a target out for
    /// [`DEFAULT_COOLDOWN`] when `tcp_failures` is not set (sluice's circuit breaker; an explicit
    /// 0 turns it off, as in Kong), and that
    /// without probes of unhealthy targets a target taken out gets live traffic again after
    /// that cooldown (Kong would leave it out for good).
    pub(crate) fn from_upstream(u: &Upstream) -> PassivePolicy {
        let hc = u.healthchecks.as_ref();
        let passive = hc.and_then(|h| h.passive.as_ref());
        let healthy = passive.and_then(|p| p.healthy.as_ref());
        let unhealthy = passive.and_then(|p| p.unhealthy.as_ref());
        let active = hc.and_then(|h| h.active.as_ref()).filter(|a| a.enabled());
        let probed_back = active.is_some_and(|a| a.unhealthy.interval > 0.0 && a.healthy.successes > 0);
        PassivePolicy {
            thresholds: Thresholds {
                successes: healthy.and_then(|h| h.successes).unwrap_or(0),
                http_failures: unhealthy.and_then(|u| u.http_failures).unwrap_or(0),
                tcp_failures: unhealthy.and_then(|u| u.tcp_failures).unwrap_or(1),
                timeouts: unhealthy.and_then(|u| u.timeouts).unwrap_or(0),
            },
            healthy_statuses: healthy
                .and_then(|h| h.http_statuses.clone())
                .unwrap_or_else(kong_healthy_statuses)
                .into(),
            unhealthy_statuses: unhealthy.and_then(|u| u.http_statuses.clone()).unwrap_or(vec![429, 500, 503]).into(),
            grpc_statuses: unhealthy.and_then(|u| u.grpc_statuses.clone()).unwrap_or(vec![14]).into(),
            cooldown: if probed_back { None } else { Some(DEFAULT_COOLDOWN) },
            tcp_only: passive.and_then(|p| p.kind.as_deref()) == Some("tcp"),
        }
    }

    /// Judges a response head: its HTTP status, and for gRPC a trailers-only `grpc-status`.
    /// `None`: the status is in neither list (Kong counts nothing).
    pub(crate) fn judge(&self, status: u16, grpc_status: Option<&[u8]>) -> Option<Outcome> {
        if self.tcp_only {
            return None;
        }
        if let Some(code) = grpc_status.and_then(|c| std::str::from_utf8(c).ok()?.parse::<u16>().ok()) {
            if self.grpc_statuses.contains(&code) {
                return Some(Outcome::HttpFailure);
            }
        }
        if self.unhealthy_statuses.contains(&status) {
            Some(Outcome::HttpFailure)
        } else if self.healthy_statuses.contains(&status) {
            Some(Outcome::Success)
        } else {
            None
        }
    }
}

/// Kong's default `healthchecks.passive.healthy.http_statuses`.
fn kong_healthy_statuses() -> Vec<u16> {
    let mut v: Vec<u16> = (200..=208).collect();
    v.push(226);
    v.extend(300..=308);
    v
}

/// Health and load of one target.
#[derive(Debug)]
pub struct TargetHealth {
    /// Requests in flight (least-connections).
    pub active: AtomicUsize,
    tcp_failures: AtomicU32,
    http_failures: AtomicU32,
    timeouts: AtomicU32,
    successes: AtomicU32,
    /// 0: healthy. Else the target is skipped while `now < open_until` (ms since `epoch`);
    /// [`UNTIL_PROBED`]: until probes bring it back.
    open_until_ms: AtomicU64,
    epoch: Instant,
}

impl TargetHealth {
    fn new(epoch: Instant) -> Self {
        TargetHealth {
            active: AtomicUsize::new(0),
            tcp_failures: AtomicU32::new(0),
            http_failures: AtomicU32::new(0),
            timeouts: AtomicU32::new(0),
            successes: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            epoch,
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether the balancer may pick the target.
    pub fn is_healthy(&self) -> bool {
        // 0: never opened, or closed again; no need to read the clock.
        let until = self.open_until_ms.load(Ordering::Relaxed);
        until == 0 || (until != UNTIL_PROBED && until <= self.now_ms())
    }

    /// Whether the target is marked unhealthy (a cooled-down target that live traffic may try
    /// again still is, until a success).
    pub fn is_marked_unhealthy(&self) -> bool {
        self.open_until_ms.load(Ordering::Relaxed) != 0
    }

    /// Counts one outcome; `cooldown` is how long a target taken out now is skipped (`None`:
    /// until a success brings it back).
    pub(crate) fn record(&self, outcome: Outcome, th: &Thresholds, cooldown: Option<Duration>) {
        let counter = match outcome {
            Outcome::Success => return self.record_success(th.successes),
            Outcome::TcpFailure => (&self.tcp_failures, th.tcp_failures),
            Outcome::HttpFailure => (&self.http_failures, th.http_failures),
            Outcome::Timeout => (&self.timeouts, th.timeouts),
        };
        if self.successes.load(Ordering::Relaxed) != 0 {
            self.successes.store(0, Ordering::Relaxed);
        }
        let n = counter.0.fetch_add(1, Ordering::Relaxed) + 1;
        if counter.1 > 0 && n >= counter.1 {
            let until = cooldown.map_or(UNTIL_PROBED, |c| self.now_ms() + c.as_millis() as u64);
            self.open_until_ms.store(until.max(1), Ordering::Relaxed);
            self.reset_failures();
        }
    }

    /// Kong's rule: with a `successes` threshold of 0 a success counts for nothing (it does not
    /// even reset the failure counters). sluice's one addition: a success on a target whose
    /// cooldown ended brings it back even then.
    fn record_success(&self, needed: u32) {
        let until = self.open_until_ms.load(Ordering::Relaxed);
        let needed = if needed == 0 && until != 0 && until != UNTIL_PROBED { 1 } else { needed };
        if needed == 0 {
            return;
        }
        if until == 0 {
            // The common case: one load per counter, no store.
            if self.tcp_failures.load(Ordering::Relaxed) != 0
                || self.http_failures.load(Ordering::Relaxed) != 0
                || self.timeouts.load(Ordering::Relaxed) != 0
            {
                self.reset_failures();
            }
            return;
        }
        self.reset_failures();
        let n = self.successes.fetch_add(1, Ordering::Relaxed) + 1;
        if needed > 0 && n >= needed {
            self.successes.store(0, Ordering::Relaxed);
            self.open_until_ms.store(0, Ordering::Relaxed);
        }
    }

    fn reset_failures(&self) {
        self.tcp_failures.store(0, Ordering::Relaxed);
        self.http_failures.store(0, Ordering::Relaxed);
        self.timeouts.store(0, Ordering::Relaxed);
    }
}

/// Health records by (upstream, target), kept across config builds.
#[derive(Default)]
pub struct HealthRegistry {
    epoch: Option<Instant>,
    entries: HashMap<(String, String), Arc<TargetHealth>>,
}

impl HealthRegistry {
    pub fn get(&mut self, upstream: &str, target: &str) -> Arc<TargetHealth> {
        let epoch = *self.epoch.get_or_insert_with(Instant::now);
        self.entries
            .entry((upstream.to_string(), target.to_string()))
            .or_insert_with(|| Arc::new(TargetHealth::new(epoch)))
            .clone()
    }

    /// Forgets targets that no config uses any more.
    pub fn retain(&mut self, live: &HashSet<(String, String)>) {
        self.entries.retain(|k, _| live.contains(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TH: Thresholds = Thresholds { successes: 2, http_failures: 2, tcp_failures: 1, timeouts: 0 };

    #[test]
    fn each_counter_flips_at_its_threshold_and_zero_turns_it_off() {
        let h = HealthRegistry::default().get("u", "a:1");
        for _ in 0..10 {
            h.record(Outcome::Timeout, &TH, None);
        }
        assert!(h.is_healthy(), "timeouts: 0 is off");
        h.record(Outcome::HttpFailure, &TH, None);
        assert!(h.is_healthy());
        h.record(Outcome::HttpFailure, &TH, None);
        assert!(!h.is_healthy());
        h.record(Outcome::Success, &TH, None);
        assert!(!h.is_healthy(), "two successes needed");
        h.record(Outcome::Success, &TH, None);
        assert!(h.is_healthy());
    }

    #[test]
    fn a_success_resets_failures_and_a_failure_resets_successes() {
        let h = HealthRegistry::default().get("u", "a:1");
        h.record(Outcome::HttpFailure, &TH, None);
        h.record(Outcome::Success, &TH, None);
        h.record(Outcome::HttpFailure, &TH, None);
        assert!(h.is_healthy(), "not consecutive");
        h.record(Outcome::TcpFailure, &TH, None);
        h.record(Outcome::Success, &TH, None);
        h.record(Outcome::TcpFailure, &TH, None);
        h.record(Outcome::Success, &TH, None);
        assert!(!h.is_healthy(), "the failure in between reset the successes");
    }

    #[test]
    fn a_cooldown_lets_traffic_try_again_and_one_success_closes_it() {
        let h = HealthRegistry::default().get("u", "a:1");
        let th = Thresholds { successes: 0, ..TH };
        h.record(Outcome::TcpFailure, &th, Some(Duration::from_millis(1)));
        assert!(!h.is_healthy());
        std::thread::sleep(Duration::from_millis(5)); // the cooldown ends
        assert!(h.is_healthy() && h.is_marked_unhealthy());
        h.record(Outcome::Success, &th, Some(Duration::ZERO));
        assert!(!h.is_marked_unhealthy());
    }

    #[test]
    fn with_successes_off_a_success_counts_for_nothing() {
        let h = HealthRegistry::default().get("u", "a:1");
        let th = Thresholds { successes: 0, ..TH };
        h.record(Outcome::HttpFailure, &th, None);
        h.record(Outcome::Success, &th, None);
        h.record(Outcome::HttpFailure, &th, None);
        assert!(!h.is_healthy(), "Kong does not reset failures on an uncounted success");
        h.record(Outcome::Success, &th, None);
        assert!(!h.is_healthy(), "and nothing but a probe brings it back");
    }

    #[test]
    fn passive_judges_statuses_and_grpc_codes() {
        let u: Upstream = serde_json::from_value(serde_json::json!({"name": "u",
            "healthchecks": {"passive": {"unhealthy": {"http_failures": 1, "grpc_statuses": [14, 4]}}}}))
        .unwrap();
        let p = PassivePolicy::from_upstream(&u);
        assert_eq!(p.judge(200, Some(b"14")), Some(Outcome::HttpFailure));
        assert_eq!(p.judge(200, Some(b"4")), Some(Outcome::HttpFailure));
        assert_eq!(p.judge(200, Some(b"5")), Some(Outcome::Success));
        assert_eq!(p.judge(503, None), Some(Outcome::HttpFailure));
        assert_eq!(p.judge(404, None), None);
        assert_eq!(p.cooldown, Some(DEFAULT_COOLDOWN));
    }

    #[test]
    fn passive_tcp_failures_unset_is_one_and_zero_is_off_as_in_kong() {
        let policy = |unhealthy: serde_json::Value| {
            let u: Upstream = serde_json::from_value(
                serde_json::json!({"name": "u", "healthchecks": {"passive": {"unhealthy": unhealthy}}}),
            )
            .unwrap();
            PassivePolicy::from_upstream(&u)
        };
        assert_eq!(policy(serde_json::json!({})).thresholds.tcp_failures, 1, "sluice's circuit breaker");
        let off = policy(serde_json::json!({"tcp_failures": 0}));
        assert_eq!(off.thresholds.tcp_failures, 0);
        let h = HealthRegistry::default().get("u", "a:1");
        for _ in 0..10 {
            h.record(Outcome::TcpFailure, &off.thresholds, off.cooldown);
        }
        assert!(h.is_healthy(), "tcp_failures: 0 never takes a target out");
    }
}
