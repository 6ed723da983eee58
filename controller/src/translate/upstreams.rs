//! Kong upstream and targets of a Kubernetes Service port, as KIC builds them: pod addresses from
//! EndpointSlices, the ExternalName, or the Service's own DNS name with
//! `ingress.kubernetes.io/service-upstream`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use proxy_config::patterns::valid_host_pattern;
use proxy_config::{Target, Upstream};

use super::annotations::ServiceAnnotations;
use super::{Context, ObjectRef};

/// Weight of one endpoint (Kong's default target weight).
pub(crate) const DEFAULT_WEIGHT: u32 = 100;
/// Kong's maximum target weight.
const MAX_WEIGHT: u32 = 65_535;

/// An empty round-robin upstream (Kong's defaults).
pub(crate) fn empty_upstream(name: String, tags: Vec<String>) -> Upstream {
    Upstream {
        id: None,
        name,
        algorithm: Default::default(),
        hash_on: Default::default(),
        hash_on_header: None,
        hash_fallback: Default::default(),
        hash_fallback_header: None,
        slots: 10_000,
        host_header: None,
        healthchecks: None,
        targets: Vec::new(),
        tags,
    }
}

/// Builds the upstream of a Service port.
pub(crate) fn upstream(
    ctx: &mut Context<'_>,
    svc: &Service,
    svc_ref: &ObjectRef,
    port: &ServicePort,
    ann: &ServiceAnnotations,
    name: String,
    tags: Vec<String>,
) -> Upstream {
    let mut u = empty_upstream(name, tags);
    u.host_header = ann.host_header.clone();
    let mut weights: BTreeMap<String, u32> = BTreeMap::new();
    let spec = svc.spec.as_ref();
    let service_port = u16::try_from(port.port).unwrap_or(0);
    if ann.service_upstream {
        let domain = &ctx.settings.cluster_domain;
        let host = if domain.is_empty() {
            format!("{}.{}.svc", svc_ref.name, svc_ref.namespace)
        } else {
            format!("{}.{}.svc.{domain}", svc_ref.name, svc_ref.namespace)
        };
        weights.insert(format!("{host}:{service_port}"), DEFAULT_WEIGHT);
    } else if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
        let external = spec.and_then(|s| s.external_name.clone()).unwrap_or_default();
        let target_port = match &port.target_port {
            Some(IntOrString::Int(n)) if *n > 0 => u16::try_from(*n).unwrap_or(service_port),
            _ => service_port,
        };
        if external.is_empty() || valid_host_pattern(&external).is_err() || external.contains(['*', ':']) {
            ctx.problem(svc_ref, "spec.externalName", format!("invalid externalName '{external}': no target"));
        } else {
            weights.insert(format!("{external}:{target_port}"), DEFAULT_WEIGHT);
        }
    } else {
        endpoint_targets(ctx, svc_ref, port, &mut weights);
    }
    u.targets = weights
        .into_iter()
        .map(|(target, weight)| Target { id: None, target, weight: weight.min(MAX_WEIGHT), tags: Vec::new() })
        .collect();
    crate::policy::apply_annotated(ctx, svc, svc_ref, &mut u);
    u
}

/// Pod targets from the Service's EndpointSlices: the slice port named like the Service port (and of
/// the same protocol), endpoints ready or of unknown readiness, terminating ones dropped, IPv6 in
/// brackets, duplicates merged with their weights summed.
fn endpoint_targets(ctx: &Context<'_>, svc_ref: &ObjectRef, port: &ServicePort, weights: &mut BTreeMap<String, u32>) {
    let key = (svc_ref.namespace.clone(), svc_ref.name.clone());
    let Some(slices) = ctx.slices_by_service.get(&key) else { return };
    let want_name = port.name.as_deref().unwrap_or("");
    let want_protocol = port.protocol.as_deref().unwrap_or("TCP");
    for slice in slices {
        let Some(slice_port) = slice.ports.as_deref().unwrap_or_default().iter().find(|p| {
            p.name.as_deref().unwrap_or("") == want_name && p.protocol.as_deref().unwrap_or("TCP") == want_protocol
        }) else {
            continue;
        };
        let Some(number) = slice_port.port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0) else { continue };
        let ipv6 = slice.address_type == "IPv6";
        for endpoint in slice.endpoints.as_deref().unwrap_or_default() {
            let conditions = endpoint.conditions.as_ref();
            if conditions.and_then(|c| c.terminating) == Some(true) || conditions.and_then(|c| c.ready) == Some(false) {
                continue;
            }
            let Some(address) = endpoint.addresses.first() else { continue };
            let target = if ipv6 { format!("[{address}]:{number}") } else { format!("{address}:{number}") };
            let w = weights.entry(target).or_insert(0);
            *w = w.saturating_add(DEFAULT_WEIGHT);
        }
    }
}
