//! Picks the upstream target for each request (never per connection): weighted round-robin,
//! least-connections or consistent hashing (header or client IP), skipping targets whose passive
//! health says they are down ([`super::health`], shared across config swaps so that a new config
//! does not forget that a target is refusing connections).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::{HeaderMap, HeaderName};
use proxy_config::{ActiveHealthcheck, Algorithm, HashOn, Upstream};

pub(crate) use super::health::{HealthRegistry, TargetHealth};
use super::health::{Outcome, PassivePolicy};

/// Longest weighted round-robin schedule kept (weights are scaled down past it).
const MAX_SCHEDULE: u64 = 4096;
/// Virtual nodes per unit of weight on the consistent-hashing ring (capped per target).
const VNODES_PER_WEIGHT: u32 = 4;
const MAX_VNODES: u32 = 400;

/// Counts a request against its target while it is in flight (least-connections).
#[derive(Debug)]
pub(crate) struct ActiveGuard(Arc<TargetHealth>);

impl ActiveGuard {
    pub(crate) fn new(health: Arc<TargetHealth>) -> Self {
        health.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(health)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One target of an upstream.
#[derive(Debug)]
pub struct Target {
    pub host: Arc<str>,
    pub port: u16,
    pub weight: u32,
    /// `host:port` as written in the config (labels, logs).
    pub label: Arc<str>,
    pub health: Arc<TargetHealth>,
}

/// What a hashing balancer may hash.
pub struct PickContext<'a> {
    pub headers: &'a HeaderMap,
    pub client_ip: IpAddr,
}

/// A built upstream.
pub struct Balancer {
    pub name: Arc<str>,
    pub targets: Vec<Target>,
    algorithm: Algorithm,
    schedule: Vec<u32>,
    cursor: AtomicUsize,
    hash_on: HashOn,
    hash_header: Option<HeaderName>,
    /// What is hashed when the `hash_on` input is missing (Kong's `hash_fallback`).
    hash_fallback: HashOn,
    hash_fallback_header: Option<HeaderName>,
    ring: Vec<(u64, u32)>,
    /// How live traffic judges targets.
    pub(crate) passive: PassivePolicy,
    /// `healthchecks.threshold`: below this percentage of healthy weight the whole upstream
    /// counts as unhealthy (0: off).
    threshold: f64,
    /// Probing, when the upstream has it on (run by [`super::active_checks`]).
    pub active: Option<ActiveHealthcheck>,
    pub host_header: Option<String>,
}

impl Balancer {
    /// Builds from a validated upstream; `registry` supplies (and keeps) the targets' health.
    pub fn build(u: &Upstream, registry: &mut HealthRegistry) -> Balancer {
        let mut targets = Vec::with_capacity(u.targets.len());
        let mut index: HashMap<String, usize> = HashMap::new();
        for t in &u.targets {
            let Ok((host, port)) = proxy_config::validate::parse_target(&t.target) else { continue };
            let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
            let key = format!("{host}:{port}");
            // Duplicates (same address twice) merge, summing weights, as KIC does.
            if let Some(&i) = index.get(&key) {
                let existing: &mut Target = &mut targets[i];
                existing.weight += t.weight;
                continue;
            }
            index.insert(key, targets.len());
            targets.push(Target {
                host: host.into(),
                port,
                weight: t.weight,
                label: t.target.as_str().into(),
                health: registry.get(&u.name, &t.target),
            });
        }
        let ring = if u.algorithm == Algorithm::ConsistentHashing { build_ring(&targets) } else { Vec::new() };
        Balancer {
            name: u.name.as_str().into(),
            schedule: build_schedule(&targets),
            targets,
            algorithm: u.algorithm,
            cursor: AtomicUsize::new(0),
            hash_on: u.hash_on,
            hash_header: u.hash_on_header.as_deref().and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
            hash_fallback: u.hash_fallback,
            hash_fallback_header: u
                .hash_fallback_header
                .as_deref()
                .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
            ring,
            passive: PassivePolicy::from_upstream(u),
            threshold: u.healthchecks.as_ref().and_then(|h| h.threshold).unwrap_or(0.0),
            active: u.healthchecks.as_ref().and_then(|h| h.active.clone()).filter(|a| a.enabled()),
            host_header: u.host_header.clone(),
        }
    }

    /// Counts what live traffic said about target `i`.
    pub(crate) fn record(&self, i: usize, outcome: Outcome) {
        self.targets[i].health.record(outcome, &self.passive.thresholds, self.passive.cooldown);
    }

    fn eligible(&self, i: usize, tried: &[usize]) -> bool {
        let t = &self.targets[i];
        t.weight > 0 && t.health.is_healthy() && !tried.contains(&i)
    }

    /// Picks a target index, avoiding `tried` (earlier attempts of this request). `None` when no
    /// target with weight > 0 is healthy.
    pub fn pick(&self, ctx: &PickContext<'_>, tried: &[usize]) -> Option<usize> {
        if self.threshold > 0.0 && !self.above_threshold() {
            return None;
        }
        match self.algorithm {
            Algorithm::ConsistentHashing if self.hash_on != HashOn::None => {
                self.pick_hashed(ctx, tried).or_else(|| self.pick_round_robin(tried))
            }
            Algorithm::LeastConnections => self.pick_least_connections(tried),
            _ => self.pick_round_robin(tried),
        }
    }

    /// Whether the healthy targets hold at least `threshold` percent of the weight (Kong).
    fn above_threshold(&self) -> bool {
        let total: u64 = self.targets.iter().map(|t| u64::from(t.weight)).sum();
        let healthy: u64 = self.targets.iter().filter(|t| t.health.is_healthy()).map(|t| u64::from(t.weight)).sum();
        total > 0 && healthy as f64 * 100.0 >= self.threshold * total as f64
    }

    fn pick_round_robin(&self, tried: &[usize]) -> Option<usize> {
        if self.schedule.is_empty() {
            return None;
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let n = self.schedule.len();
        (0..n).map(|k| self.schedule[(start + k) % n] as usize).find(|&i| self.eligible(i, tried))
    }

    fn pick_least_connections(&self, tried: &[usize]) -> Option<usize> {
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let n = self.targets.len();
        let mut best: Option<(u64, usize)> = None;
        for k in 0..n {
            let i = (start + k) % n;
            if !self.eligible(i, tried) {
                continue;
            }
            let t = &self.targets[i];
            // Compare active/weight without division: active * 1e6 / weight.
            let load = (t.health.active.load(Ordering::Relaxed) as u64 + 1) * 1_000_000 / u64::from(t.weight);
            if best.is_none_or(|(b, _)| load < b) {
                best = Some((load, i));
            }
        }
        best.map(|(_, i)| i)
    }

    fn pick_hashed(&self, ctx: &PickContext<'_>, tried: &[usize]) -> Option<usize> {
        if self.ring.is_empty() {
            return None;
        }
        let key = hash_key(self.hash_on, self.hash_header.as_ref(), ctx)
            .or_else(|| hash_key(self.hash_fallback, self.hash_fallback_header.as_ref(), ctx))?;
        let start = self.ring.partition_point(|(p, _)| *p < key);
        let n = self.ring.len();
        (0..n).map(|k| self.ring[(start + k) % n].1 as usize).find(|&i| self.eligible(i, tried))
    }
}

/// The hash of what `on` names in the request; `None` when the request lacks it.
fn hash_key(on: HashOn, header: Option<&HeaderName>, ctx: &PickContext<'_>) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match on {
        HashOn::Header => ctx.headers.get(header?)?.as_bytes().hash(&mut h),
        HashOn::Ip => ctx.client_ip.hash(&mut h),
        _ => return None,
    }
    Some(h.finish())
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Smooth weighted round-robin order (nginx's algorithm) over weights reduced by their gcd.
fn build_schedule(targets: &[Target]) -> Vec<u32> {
    let weights: Vec<u64> = targets.iter().map(|t| u64::from(t.weight)).collect();
    let g = weights.iter().copied().filter(|w| *w > 0).fold(0, gcd);
    if g == 0 {
        return Vec::new();
    }
    let mut reduced: Vec<u64> = weights.iter().map(|w| w / g).collect();
    let total: u64 = reduced.iter().sum();
    if total > MAX_SCHEDULE {
        reduced = reduced.iter().map(|&w| if w == 0 { 0 } else { (w * MAX_SCHEDULE / total).max(1) }).collect();
    }
    let total: i64 = reduced.iter().sum::<u64>() as i64;
    let mut current = vec![0i64; reduced.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..reduced.len() {
            current[i] += reduced[i] as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best as u32);
    }
    out
}

fn build_ring(targets: &[Target]) -> Vec<(u64, u32)> {
    let mut ring = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        if t.weight == 0 {
            continue;
        }
        let vnodes = (t.weight.saturating_mul(VNODES_PER_WEIGHT) / 100).clamp(1, MAX_VNODES).max(VNODES_PER_WEIGHT);
        for v in 0..vnodes {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (&*t.label, v).hash(&mut h);
            ring.push((h.finish(), i as u32));
        }
    }
    ring.sort_unstable();
    ring
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxy_config::Target as WireTarget;

    fn upstream(algorithm: Algorithm, targets: &[(&str, u32)]) -> Upstream {
        let mut u: Upstream = serde_json::from_value(serde_json::json!({"name": "u", "algorithm": algorithm})).unwrap();
        u.targets = targets
            .iter()
            .map(|(t, w)| WireTarget { id: None, target: t.to_string(), weight: *w, tags: vec![] })
            .collect();
        u
    }

    fn ctx() -> (HeaderMap, IpAddr) {
        (HeaderMap::new(), IpAddr::from([127, 0, 0, 1]))
    }

    #[test]
    fn weighted_round_robin_splits_exactly_per_cycle() {
        let b = Balancer::build(
            &upstream(Algorithm::RoundRobin, &[("a:1", 80), ("b:1", 20), ("c:1", 0)]),
            &mut HealthRegistry::default(),
        );
        let (h, ip) = ctx();
        let mut counts = [0usize; 3];
        for _ in 0..1000 {
            counts[b.pick(&PickContext { headers: &h, client_ip: ip }, &[]).unwrap()] += 1;
        }
        assert_eq!(counts, [800, 200, 0]);
    }

    #[test]
    fn open_circuit_is_skipped_and_all_open_means_none() {
        let b = Balancer::build(
            &upstream(Algorithm::RoundRobin, &[("a:1", 100), ("b:1", 100)]),
            &mut HealthRegistry::default(),
        );
        let (h, ip) = ctx();
        let c = PickContext { headers: &h, client_ip: ip };
        b.record(0, Outcome::TcpFailure);
        for _ in 0..10 {
            assert_eq!(b.pick(&c, &[]), Some(1));
        }
        b.record(1, Outcome::TcpFailure);
        assert_eq!(b.pick(&c, &[]), None);
        b.record(0, Outcome::Success);
        assert_eq!(b.pick(&c, &[]), Some(0));
    }

    #[test]
    fn below_the_threshold_the_whole_upstream_is_unhealthy() {
        let mut u = upstream(Algorithm::RoundRobin, &[("a:1", 100), ("b:1", 100), ("c:1", 100)]);
        u.healthchecks = Some(proxy_config::Healthchecks { threshold: Some(50.0), ..Default::default() });
        let b = Balancer::build(&u, &mut HealthRegistry::default());
        let (h, ip) = ctx();
        let c = PickContext { headers: &h, client_ip: ip };
        b.record(0, Outcome::TcpFailure);
        assert!(b.pick(&c, &[]).is_some(), "2 of 3 healthy: 66% >= 50%");
        b.record(1, Outcome::TcpFailure);
        assert_eq!(b.pick(&c, &[]), None, "1 of 3 healthy: 33% < 50%");
    }

    #[test]
    fn retries_avoid_tried_targets() {
        let b = Balancer::build(
            &upstream(Algorithm::RoundRobin, &[("a:1", 100), ("b:1", 100)]),
            &mut HealthRegistry::default(),
        );
        let (h, ip) = ctx();
        let c = PickContext { headers: &h, client_ip: ip };
        let first = b.pick(&c, &[]).unwrap();
        assert_eq!(b.pick(&c, &[first]), Some(1 - first));
        assert_eq!(b.pick(&c, &[0, 1]), None);
    }

    #[test]
    fn least_connections_prefers_idle_target() {
        let b = Balancer::build(
            &upstream(Algorithm::LeastConnections, &[("a:1", 100), ("b:1", 100)]),
            &mut HealthRegistry::default(),
        );
        b.targets[0].health.active.store(5, Ordering::Relaxed);
        let (h, ip) = ctx();
        for _ in 0..5 {
            assert_eq!(b.pick(&PickContext { headers: &h, client_ip: ip }, &[]), Some(1));
        }
    }

    #[test]
    fn consistent_hashing_on_header_is_sticky() {
        let mut u = upstream(Algorithm::ConsistentHashing, &[("a:1", 100), ("b:1", 100), ("c:1", 100)]);
        u.hash_on = HashOn::Header;
        u.hash_on_header = Some("x-user".into());
        let b = Balancer::build(&u, &mut HealthRegistry::default());
        let ip = IpAddr::from([127, 0, 0, 1]);
        let mut seen = std::collections::HashSet::new();
        for user in 0..50 {
            let mut h = HeaderMap::new();
            h.insert("x-user", user.to_string().parse().unwrap());
            let first = b.pick(&PickContext { headers: &h, client_ip: ip }, &[]).unwrap();
            for _ in 0..5 {
                assert_eq!(b.pick(&PickContext { headers: &h, client_ip: ip }, &[]), Some(first));
            }
            seen.insert(first);
        }
        assert_eq!(seen.len(), 3, "50 users should spread over all 3 targets");
    }

    #[test]
    fn hash_fallback_is_used_when_the_hash_on_input_is_missing() {
        let mut u = upstream(Algorithm::ConsistentHashing, &[("a:1", 100), ("b:1", 100), ("c:1", 100)]);
        u.hash_on = HashOn::Header;
        u.hash_on_header = Some("x-user".into());
        u.hash_fallback = HashOn::Header;
        u.hash_fallback_header = Some("x-tenant".into());
        let b = Balancer::build(&u, &mut HealthRegistry::default());
        let ip = IpAddr::from([127, 0, 0, 1]);
        // Without x-user, x-tenant decides, and sticks: the same tenant always lands on one target,
        // where round-robin (the behaviour without a fallback) would cycle over all three.
        let mut seen = std::collections::HashSet::new();
        for tenant in 0..30 {
            let mut h = HeaderMap::new();
            h.insert("x-tenant", tenant.to_string().parse().unwrap());
            let first = b.pick(&PickContext { headers: &h, client_ip: ip }, &[]).unwrap();
            for _ in 0..6 {
                assert_eq!(b.pick(&PickContext { headers: &h, client_ip: ip }, &[]), Some(first));
            }
            seen.insert(first);
        }
        assert_eq!(seen.len(), 3, "30 tenants should spread over all 3 targets");
        // With neither header: round-robin.
        let h = HeaderMap::new();
        let picks: std::collections::HashSet<usize> =
            (0..3).map(|_| b.pick(&PickContext { headers: &h, client_ip: ip }, &[]).unwrap()).collect();
        assert_eq!(picks.len(), 3);
    }

    #[test]
    fn health_survives_rebuilds() {
        let mut reg = HealthRegistry::default();
        let u = upstream(Algorithm::RoundRobin, &[("a:1", 100)]);
        let b1 = Balancer::build(&u, &mut reg);
        b1.record(0, Outcome::TcpFailure);
        let b2 = Balancer::build(&u, &mut reg);
        assert!(!b2.targets[0].health.is_healthy());
    }
}
