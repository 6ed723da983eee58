//! Gateway API match precedence encoded into the route `priority` field, in the order the Gateway API specifies for
//! GRPCRoute and HTTPRoute.
//!
//! Every Kong route generated from a Gateway API route gets a [`Key`]: (1) characters of the
//! matching non-wildcard hostname, (2) characters of the matching hostname, (3–5) the kind's match
//! ranks (GRPCRoute: service, method, header count; HTTPRoute: path type and length, method,
//! header count), (6) the oldest route, (7) `{namespace}/{name}` alphabetically, (8) the first rule.
//! One Kong route carries hostnames of one (1, 2) class only, so the key is exact per request.
//!
//! All keys of one kind are sorted and numbered densely: `priority = base + level`, where the
//! best key has the highest level. GRPCRoute routes live above every HTTPRoute route (their base
//! is higher), and both above Ingress routes (which set no priority): a gRPC request is routed by
//! GRPCRoute rules first, everything else by HTTPRoute rules, then Ingress rules.

use std::cmp::Reverse;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Priority base of HTTPRoute routes.
pub(crate) const HTTP_BASE: u64 = 1_000_000_000;
/// Priority base of GRPCRoute routes.
pub(crate) const GRPC_BASE: u64 = 2_000_000_000;

/// The precedence of one generated Kong route; greater = wins.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key {
    pub host_exact: usize,
    pub host_len: usize,
    pub rank: [u64; 5],
    /// Older first: a missing timestamp (manifest files) counts as oldest.
    pub created: Reverse<Option<Time>>,
    pub name: Reverse<String>,
    pub rule: Reverse<usize>,
}

/// Priorities for `keys` (same order): `base + level`, the greatest key getting the top level;
/// equal keys share a priority.
pub(crate) fn assign(keys: &[Key], base: u64) -> Vec<u64> {
    let mut sorted: Vec<&Key> = keys.iter().collect();
    sorted.sort();
    sorted.dedup();
    keys.iter()
        .map(|k| {
            let level = sorted.partition_point(|s| *s < k) as u64 + 1;
            base + level
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(host_exact: usize, host_len: usize, rank: [u64; 5], name: &str, rule: usize) -> Key {
        Key { host_exact, host_len, rank, created: Reverse(None), name: Reverse(name.into()), rule: Reverse(rule) }
    }

    #[test]
    fn spec_order() {
        let keys = vec![
            key(0, 0, [0, 0, 3, 0, 0], "a/r", 0),   // 0: no host, 3 headers
            key(0, 0, [9, 0, 0, 0, 0], "a/r", 1),   // 1: no host, service
            key(11, 11, [0, 0, 0, 0, 0], "a/r", 2), // 2: exact host beats any match
            key(0, 9, [99, 99, 9, 0, 0], "a/r", 3), // 3: wildcard host beats no host
            key(0, 0, [9, 0, 0, 0, 0], "a/b", 0),   // 4: same as 1, earlier name wins
            key(0, 0, [9, 0, 0, 0, 0], "a/r", 1),   // 5: equal to 1
        ];
        let p = assign(&keys, 100);
        assert!(p[2] > p[3] && p[3] > p[4] && p[4] > p[1] && p[1] > p[0]);
        assert_eq!(p[1], p[5]);
        assert_eq!(*p.iter().min().unwrap(), 101);
    }

    #[test]
    fn older_routes_win_ties() {
        let ts = |s: &str| Some(Time(s.parse().unwrap()));
        let mut old = key(0, 0, [1, 0, 0, 0, 0], "z/z", 0);
        old.created = Reverse(ts("2020-01-01T00:00:00Z"));
        let mut new = key(0, 0, [1, 0, 0, 0, 0], "a/a", 0);
        new.created = Reverse(ts("2024-01-01T00:00:00Z"));
        let p = assign(&[old, new], 0);
        assert!(p[0] > p[1]);
    }
}
