//! `KongUpstreamPolicy` (configuration.konghq.com/v1beta1), KIC's CRD for load-balancing settings,
//! referenced from a Service with the annotation `konghq.com/upstream-policy: <name>` (same
//! namespace). sluice reads the subset its proxy implements: `algorithm` (round-robin,
//! least-connections, consistent-hashing), `slots`, `hashOn`/`hashOnFallback` (`input: ip` or
//! `header`), and `healthchecks` (active probes and passive circuit breaking).
//!
//! The CRD YAML under `crds/` is generated from this type by the `crdgen` bin ([`crate::crds`]).

use std::collections::BTreeMap;

use kube::CustomResource;
use proxy_config::{
    ActiveHealthcheck, Algorithm, HashOn, Healthchecks, PassiveHealthcheck, PassiveHealthy, PassiveUnhealthy, Upstream,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The Service annotation naming a policy.
pub(crate) const ANNOTATION: &str = "konghq.com/upstream-policy";

/// Load-balancing settings for the upstreams of the Services that reference the policy.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "configuration.konghq.com",
    version = "v1beta1",
    kind = "KongUpstreamPolicy",
    plural = "kongupstreampolicies",
    shortname = "kup",
    namespaced,
    derive = "Default",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct KongUpstreamPolicySpec {
    /// `round-robin` (default), `least-connections` or `consistent-hashing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    /// Number of slots of the consistent-hashing ring (10..65536).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 65536))]
    pub slots: Option<u32>,
    /// What consistent hashing hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_on: Option<HashSpec>,
    /// What to hash when `hashOn` yields nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_on_fallback: Option<HashSpec>,
    /// Health checks of the targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthchecks: Option<HealthchecksSpec>,
}

/// One hashing input: `input: ip`, or `header: <name>`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HashSpec {
    /// `ip` (the client address). KIC's `consumer` and `path` are not supported by sluice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// A request header name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
}

/// Health checks (Kong's shape).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthchecksSpec {
    /// Active probing (Kong's fields in camelCase; `type` also `grpc`/`grpcs` with `grpcService`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object")]
    pub active: Option<BTreeMap<String, serde_json::Value>>,
    /// Passive checks (circuit breaking per target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passive: Option<PassiveSpec>,
    /// Percentage of healthy targets below which the upstream counts as unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
}

/// Passive health checks.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PassiveSpec {
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<PassiveHealthySpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy: Option<PassiveUnhealthySpec>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PassiveHealthySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_statuses: Option<Vec<u16>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successes: Option<u32>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PassiveUnhealthySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_statuses: Option<Vec<u16>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_failures: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_failures: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<u32>,
}

/// An object with any fields (structural schema: preserved as is).
fn free_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true })
}

/// Why a policy cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum PolicyError {
    #[error("unsupported algorithm '{0}' (round-robin, least-connections, consistent-hashing)")]
    Algorithm(String),
    #[error("unsupported hash input '{0}' (ip, or a header)")]
    HashInput(String),
    #[error("hashOn needs algorithm consistent-hashing")]
    HashWithoutConsistentHashing,
    #[error("slots must be between 10 and 65536")]
    Slots,
    #[error("healthchecks.active: {0}")]
    Active(String),
}

/// KongUpstreamPolicy's `healthchecks.active` (camelCase, as KIC writes it) as Kong's snake_case
/// block; an unknown field or a wrong type is an error naming it.
fn active_from_spec(spec: &BTreeMap<String, serde_json::Value>) -> Result<ActiveHealthcheck, PolicyError> {
    fn snake(key: &str) -> String {
        let mut out = String::with_capacity(key.len() + 4);
        for c in key.chars() {
            if c.is_ascii_uppercase() {
                out.push('_');
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        }
        out
    }
    fn convert(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => serde_json::Value::Object(
                m.iter()
                    .map(|(k, v)| {
                        // Header names are the user's, not field names.
                        let v = if k == "headers" { v.clone() } else { convert(v) };
                        (snake(k), v)
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    let value = convert(&serde_json::Value::Object(spec.clone().into_iter().collect()));
    serde_json::from_value(value).map_err(|e| PolicyError::Active(e.to_string()))
}

fn hash(spec: &HashSpec) -> Result<(HashOn, Option<String>), PolicyError> {
    match (spec.input.as_deref(), spec.header.as_deref()) {
        (_, Some(h)) if !h.is_empty() => Ok((HashOn::Header, Some(h.to_string()))),
        (Some("ip"), _) => Ok((HashOn::Ip, None)),
        (None, _) => Ok((HashOn::None, None)),
        (Some(other), _) => Err(PolicyError::HashInput(other.to_string())),
    }
}

/// Applies a policy to an upstream (algorithm, hashing, slots, health checks).
pub(crate) fn apply(spec: &KongUpstreamPolicySpec, upstream: &mut Upstream) -> Result<(), PolicyError> {
    let algorithm = match spec.algorithm.as_deref() {
        None | Some("round-robin") => Algorithm::RoundRobin,
        Some("least-connections") => Algorithm::LeastConnections,
        Some("consistent-hashing") => Algorithm::ConsistentHashing,
        Some(other) => return Err(PolicyError::Algorithm(other.to_string())),
    };
    let (hash_on, hash_on_header) = spec.hash_on.as_ref().map(hash).transpose()?.unwrap_or((HashOn::None, None));
    let (hash_fallback, hash_fallback_header) =
        spec.hash_on_fallback.as_ref().map(hash).transpose()?.unwrap_or((HashOn::None, None));
    if (hash_on != HashOn::None || hash_fallback != HashOn::None) && algorithm != Algorithm::ConsistentHashing {
        return Err(PolicyError::HashWithoutConsistentHashing);
    }
    if spec.slots.is_some_and(|s| !(10..=65_536).contains(&s)) {
        return Err(PolicyError::Slots);
    }
    upstream.algorithm = algorithm;
    upstream.hash_on = hash_on;
    upstream.hash_on_header = hash_on_header;
    upstream.hash_fallback = hash_fallback;
    upstream.hash_fallback_header = hash_fallback_header;
    if let Some(slots) = spec.slots {
        upstream.slots = slots;
    }
    if let Some(hc) = &spec.healthchecks {
        upstream.healthchecks = Some(Healthchecks {
            active: match &hc.active {
                Some(a) => Some(active_from_spec(a)?),
                None => None,
            },
            passive: hc.passive.as_ref().map(|p| PassiveHealthcheck {
                kind: p.kind.clone(),
                healthy: p
                    .healthy
                    .as_ref()
                    .map(|h| PassiveHealthy { http_statuses: h.http_statuses.clone(), successes: h.successes }),
                unhealthy: p.unhealthy.as_ref().map(|u| PassiveUnhealthy {
                    http_statuses: u.http_statuses.clone(),
                    http_failures: u.http_failures,
                    tcp_failures: u.tcp_failures,
                    timeouts: u.timeouts,
                    ..PassiveUnhealthy::default()
                }),
            }),
            threshold: hc.threshold,
        });
    }
    Ok(())
}

/// Applies the policy a Service names in `konghq.com/upstream-policy` (same namespace) to the
/// upstream built for it; a missing or unusable policy is reported on the Service and the
/// upstream keeps Kong's defaults.
pub(crate) fn apply_annotated(
    ctx: &mut crate::translate::Context<'_>,
    svc: &k8s_openapi::api::core::v1::Service,
    svc_ref: &crate::translate::ObjectRef,
    upstream: &mut Upstream,
) {
    use kube::ResourceExt;
    let Some(name) = svc.annotations().get(ANNOTATION).map(|n| n.trim().to_string()).filter(|n| !n.is_empty()) else {
        return;
    };
    let field = crate::translate::annotations::field(ANNOTATION);
    let policy = ctx
        .snapshot
        .kong_upstream_policies
        .iter()
        .find(|p| p.name_any() == name && p.namespace().as_deref() == Some(svc_ref.namespace.as_str()));
    let result = match policy {
        None => Err(format!("KongUpstreamPolicy {}/{name} not found", svc_ref.namespace)),
        Some(p) => {
            let mut candidate = upstream.clone();
            apply(&p.spec, &mut candidate)
                .map(|()| *upstream = candidate)
                .map_err(|e| format!("KongUpstreamPolicy {}/{name}: {e}", svc_ref.namespace))
        }
    };
    if let Err(message) = result {
        ctx.problem(svc_ref, field, format!("{message}; Kong's load-balancing defaults apply"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::upstreams::empty_upstream;

    fn spec(yaml: &str) -> KongUpstreamPolicySpec {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn kic_policy_applies() {
        let mut u = empty_upstream("u".into(), vec![]);
        let s = spec(
            "algorithm: consistent-hashing\nslots: 100\nhashOn: {header: x-user}\nhashOnFallback: {input: ip}\n\
             healthchecks: {passive: {unhealthy: {tcpFailures: 3, httpStatuses: [502]}}, active: {type: http}}\n",
        );
        apply(&s, &mut u).unwrap();
        assert_eq!(u.algorithm, Algorithm::ConsistentHashing);
        assert_eq!((u.hash_on, u.hash_on_header.as_deref()), (HashOn::Header, Some("x-user")));
        assert_eq!(u.hash_fallback, HashOn::Ip);
        assert_eq!(u.slots, 100);
        let hc = u.healthchecks.unwrap();
        assert_eq!(hc.passive.unwrap().unhealthy.unwrap().tcp_failures, Some(3));
        assert!(hc.active.is_some());
    }

    #[test]
    fn active_checks_translate_to_kong_fields_and_unknown_ones_are_errors() {
        let mut u = empty_upstream("u".into(), vec![]);
        let s = spec(
            "healthchecks: {active: {type: grpc, grpcService: echo, httpsVerifyCertificate: false, \
             headers: {X-Probe: [a]}, healthy: {interval: 2, successes: 1}, unhealthy: {interval: 1, httpFailures: 2}}}\n",
        );
        apply(&s, &mut u).unwrap();
        let a = u.healthchecks.clone().unwrap().active.unwrap();
        assert_eq!(a.kind, proxy_config::ActiveKind::Grpc);
        assert_eq!(a.grpc_service, "echo");
        assert!(!a.https_verify_certificate);
        assert_eq!(a.headers.get("X-Probe"), Some(&vec!["a".to_string()]));
        assert_eq!((a.healthy.interval, a.healthy.successes, a.unhealthy.http_failures), (2.0, 1, 2));
        let err = apply(&spec("healthchecks: {active: {httpPaht: /x}}"), &mut u).unwrap_err();
        assert!(err.to_string().contains("http_paht"), "{err}");
    }

    #[test]
    fn unsupported_policies_are_errors() {
        let mut u = empty_upstream("u".into(), vec![]);
        assert_eq!(apply(&spec("algorithm: latency"), &mut u), Err(PolicyError::Algorithm("latency".into())));
        assert_eq!(apply(&spec("hashOn: {input: ip}"), &mut u), Err(PolicyError::HashWithoutConsistentHashing));
        assert!(apply(&spec("algorithm: consistent-hashing\nhashOn: {input: path}"), &mut u).is_err());
        assert_eq!(apply(&spec("slots: 5"), &mut u), Err(PolicyError::Slots));
        assert_eq!(u.algorithm, Algorithm::RoundRobin, "a failed policy leaves the upstream alone");
    }
}
