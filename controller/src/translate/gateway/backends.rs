//! backendRefs: resolving each ref (kind, ReferenceGrant, Service, port,
//! protocol) into a Service port or a `ResolvedRefs` reason, and turning the refs of one rule into
//! one weighted Kong upstream.
//!
//! Weights: a backend's share is `weight / Σ weights`; it is split evenly over its endpoints with
//! exact integer arithmetic (per-target weight `w · L / n`, `L` the lcm of the endpoint counts,
//! then divided by the gcd of all weights), scaled down proportionally only past Kong's maximum
//! target weight. Weight 0 = no target at all.
//!
//! Invalid backends (and valid ones without ready endpoints) keep their share and answer it with
//! an error: when no backend of a rule is usable the upstream has no target (the proxy answers gRPC
//! UNAVAILABLE / HTTP 503); when only some are, their share goes to the target
//! [`INVALID_BACKEND_TARGET`], a name under the reserved `.invalid` TLD (RFC 6761) that never
//! resolves, so the proxy fails to connect and answers UNAVAILABLE (HTTP 502). For that share to
//! stay exact, such a rule's service gets `retries: 0` (a retry would send the request to a valid
//! target) and its upstream a passive `tcp_failures` threshold that never trips (an open circuit
//! would skip the invalid target and move its share to the valid ones).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use gateway_api::apis::standard::referencegrants::ReferenceGrant;
use k8s_openapi::api::core::v1::{Service, ServicePort};
use kube::ResourceExt;
use proxy_config::{Healthchecks, PassiveHealthcheck, PassiveUnhealthy, Target, Upstream};

use super::model::{BackendRef, RouteKind, RouteView};
use super::refs;
use crate::translate::annotations::{self, ServiceAnnotations};
use crate::translate::plugins::{self, Scope};
use crate::translate::{upstreams, Context, ObjectRef};

/// The target that carries the share of invalid backends (see the module documentation).
pub(crate) const INVALID_BACKEND_TARGET: &str = "invalid-backend.sluice.invalid:1";
/// Kong's maximum target weight.
const MAX_WEIGHT: u64 = 65_535;

/// What a backendRef resolves to.
#[derive(Debug, Clone)]
pub(crate) enum Resolution<'a> {
    Valid { svc: &'a Service, port: ServicePort },
    Invalid { reason: &'static str, message: String },
}

impl Resolution<'_> {
    fn invalid(reason: &'static str, message: String) -> Self {
        Resolution::Invalid { reason, message }
    }
}

/// Resolves one backendRef of `route`.
pub(crate) fn resolve<'a>(
    b: &BackendRef,
    route: &RouteView,
    services: &HashMap<(String, String), &'a Service>,
    grants: &[Arc<ReferenceGrant>],
) -> Resolution<'a> {
    let what = format!("{}/{}", b.namespace, b.name);
    if !b.group.is_empty() || b.kind != "Service" {
        return Resolution::invalid(
            "InvalidKind",
            format!("backend {what}: kind {}/{} is not supported (core Service only)", b.group, b.kind),
        );
    }
    let from = refs::From { kind: route.kind.kind(), namespace: &route.obj.namespace };
    let to = refs::To { group: "", kind: "Service", namespace: &b.namespace, name: &b.name };
    if !refs::permitted(grants, from, to) {
        return Resolution::invalid(
            "RefNotPermitted",
            format!("backend Service {what} is in another namespace and no ReferenceGrant allows it"),
        );
    }
    let Some(svc) = services.get(&(b.namespace.clone(), b.name.clone())).copied() else {
        return Resolution::invalid("BackendNotFound", format!("backend Service {what} not found"));
    };
    let Some(number) = b.port else {
        return Resolution::invalid("BackendNotFound", format!("backend Service {what}: a port is required"));
    };
    let Some(port) =
        svc.spec.as_ref().and_then(|s| s.ports.as_ref()).and_then(|ps| ps.iter().find(|p| p.port == number))
    else {
        return Resolution::invalid("BackendNotFound", format!("backend Service {what} has no port {number}"));
    };
    if route.kind == RouteKind::Grpc {
        let protocol = svc.annotations().get(annotations::PROTOCOL).map(|p| p.trim().to_string());
        if matches!(protocol.as_deref(), Some("http" | "https")) {
            return Resolution::invalid(
                "UnsupportedProtocol",
                format!(
                    "backend Service {what} is annotated konghq.com/protocol: {} but gRPC needs grpc or grpcs",
                    protocol.unwrap_or_default()
                ),
            );
        }
    }
    Resolution::Valid { svc, port: port.clone() }
}

/// Settings taken from the first usable backend Service of a rule.
#[derive(Debug, Clone)]
pub(crate) struct RuleBackends {
    pub upstream: Upstream,
    /// Annotations and port of the first usable backend (service settings), if any.
    pub first: Option<(ServiceAnnotations, u16)>,
    /// The `appProtocol` of that backend's Service port (GEP-1911).
    pub first_app_protocol: Option<String>,
    /// That backend's Service (where its `konghq.com/client-cert` Secret lives).
    pub first_service: Option<ObjectRef>,
    /// Some share goes to an invalid backend while other shares are valid.
    pub partially_invalid: bool,
    /// No share can be served.
    pub none_usable: bool,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Per-target weights of weighted groups of addresses (see the module documentation).
pub(crate) fn split(groups: &[(u32, Vec<String>)]) -> BTreeMap<String, u64> {
    let groups: Vec<&(u32, Vec<String>)> = groups.iter().filter(|(w, a)| *w > 0 && !a.is_empty()).collect();
    let mut lcm: u64 = 1;
    for (_, addrs) in &groups {
        let n = addrs.len() as u64;
        lcm = lcm / gcd(lcm, n) * n;
        if lcm > 1 << 20 {
            lcm = 1 << 20; // beyond this the split is approximate anyway
        }
    }
    let mut weights: BTreeMap<String, u64> = BTreeMap::new();
    for (w, addrs) in &groups {
        let per = (u64::from(*w) * lcm / addrs.len() as u64).max(1);
        for a in addrs {
            *weights.entry(a.clone()).or_insert(0) += per;
        }
    }
    let g = weights.values().copied().fold(0, gcd);
    if g > 1 {
        weights.values_mut().for_each(|v| *v /= g);
    }
    let max = weights.values().copied().max().unwrap_or(0);
    if max > MAX_WEIGHT {
        weights.values_mut().for_each(|v| *v = (*v * MAX_WEIGHT).div_ceil(max).max(1));
    }
    weights
}

/// The upstream of one rule.
pub(crate) fn rule_upstream(
    ctx: &mut Context<'_>,
    resolutions: &[(BackendRef, Resolution<'_>)],
    name: &str,
    tags: &[String],
) -> RuleBackends {
    let mut groups: Vec<(u32, Vec<String>)> = Vec::new();
    let mut invalid_weight: u64 = 0;
    let mut template: Option<Upstream> = None;
    let mut first = None;
    let mut first_app_protocol = None;
    let mut first_service = None;
    for (b, r) in resolutions {
        if b.weight == 0 {
            continue;
        }
        let usable = match r {
            Resolution::Valid { svc, port } => {
                let svc_ref = ObjectRef::of(*svc);
                let ann = if ctx.is_excluded(&svc_ref) { None } else { ctx.annotations_of(svc) };
                match ann {
                    Some(ann) => {
                        let wanted = plugins::from_annotation(&ann.plugins);
                        ctx.want_plugins(Scope::Service(name.to_string()), &svc_ref, wanted);
                        let u = upstreams::upstream(ctx, svc, &svc_ref, port, &ann, name.to_string(), tags.to_vec());
                        let addrs: Vec<String> = u.targets.iter().map(|t| t.target.clone()).collect();
                        if first.is_none() {
                            first = Some((ann, u16::try_from(port.port).unwrap_or(80)));
                            first_app_protocol = port.app_protocol.clone();
                            first_service = Some(svc_ref.clone());
                            template = Some(u);
                        }
                        if addrs.is_empty() {
                            false
                        } else {
                            groups.push((b.weight, addrs));
                            true
                        }
                    }
                    None => false,
                }
            }
            Resolution::Invalid { .. } => false,
        };
        if !usable {
            invalid_weight += u64::from(b.weight);
        }
    }
    let none_usable = groups.is_empty();
    let partially_invalid = !none_usable && invalid_weight > 0;
    if partially_invalid {
        groups.push((u32::try_from(invalid_weight).unwrap_or(u32::MAX), vec![INVALID_BACKEND_TARGET.to_string()]));
    }
    let mut upstream = template.unwrap_or_else(|| upstreams::empty_upstream(name.to_string(), tags.to_vec()));
    upstream.name = name.to_string();
    upstream.tags = tags.to_vec();
    upstream.targets = if none_usable {
        Vec::new()
    } else {
        split(&groups)
            .into_iter()
            .map(|(target, weight)| Target { id: None, target, weight: weight as u32, tags: Vec::new() })
            .collect()
    };
    if partially_invalid {
        let mut hc = upstream.healthchecks.take().unwrap_or_default();
        let passive = hc.passive.get_or_insert_with(PassiveHealthcheck::default);
        let unhealthy = passive.unhealthy.get_or_insert_with(PassiveUnhealthy::default);
        unhealthy.tcp_failures = Some(u32::MAX);
        upstream.healthchecks = Some(Healthchecks { ..hc });
    }
    RuleBackends { upstream, first, first_app_protocol, first_service, partially_invalid, none_usable }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}:80")).collect()
    }

    fn share(w: &BTreeMap<String, u64>, prefix: &str) -> f64 {
        let total: u64 = w.values().sum();
        w.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, v)| *v).sum::<u64>() as f64 / total as f64
    }

    #[test]
    fn ninety_ten_is_exact_whatever_the_endpoint_counts() {
        for (n1, n2) in [(1, 1), (2, 1), (3, 7), (5, 2), (10, 3)] {
            let w = split(&[(90, addrs("10.0.1.", n1)), (10, addrs("10.0.2.", n2))]);
            assert!((share(&w, "10.0.1.") - 0.9).abs() < 1e-9, "{n1}/{n2}: {w:?}");
            assert!(w.values().all(|v| *v >= 1 && *v <= MAX_WEIGHT));
        }
    }

    #[test]
    fn zero_weight_gets_nothing_and_shared_pods_add_up() {
        let w = split(&[(1, addrs("a", 1)), (0, addrs("b", 2))]);
        assert_eq!(w.len(), 1);
        let w = split(&[(1, vec!["p:80".into()]), (1, vec!["p:80".into(), "q:80".into()])]);
        assert_eq!(w["p:80"], 3);
        assert_eq!(w["q:80"], 1);
    }

    #[test]
    fn large_weights_are_scaled() {
        let w = split(&[(1_000_000, addrs("a", 1)), (1, addrs("b", 1))]);
        assert_eq!(w["a0:80"], MAX_WEIGHT);
        assert_eq!(w["b0:80"], 1);
    }
}
