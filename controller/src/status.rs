//! The one status writer: the statuses of a [`Translation`] (Ingress `status.loadBalancer`,
//! GatewayClass, Gateway, GRPCRoute, HTTPRoute and BackendTLSPolicy) with the proxy's addresses and timestamps added,
//! written through the status subresource with a merge patch.
//!
//! [`StatusReporter`] triggers it once per sync round that ends with the proxy running a config,
//! with the translation of that config (the fallback translation after a rejected push, so a route
//! the proxy rejected is reported not `Accepted`). Only the leader writes, and only what differs
//! from what the object carries ([`desired`] is pure and says which statuses changed). A write the
//! API server refuses (schema or CEL validation, RBAC) is logged as an error and reported as a
//! [`REASON_STATUS`] Event on the object; a conflict (409, a concurrent writer) is retried next
//! round. Route `status.parents` entries of other controllers are kept ([`gateway_status`]); route
//! patches carry the `resourceVersion` the entries were read at, so a concurrent writer makes the
//! patch fail instead of being overwritten.
//!
//! [`gateway_status`]: crate::gateway_status

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use gateway_api::apis::standard::backendtlspolicies::BackendTlsPolicy;
use gateway_api::apis::standard::gatewayclasses::GatewayClass;
use gateway_api::apis::standard::gateways::Gateway;
use gateway_api::apis::standard::grpcroutes::GrpcRoute;
use gateway_api::apis::standard::httproutes::HttpRoute;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerIngress};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde_json::{json, Value};
use thiserror::Error;
use tokio::sync::Mutex;

use crate::gateway_status::{class_status, gateway_status, newer, policy_ancestors, route_parents};
use crate::leader::Leadership;
use crate::settings::Settings;
use crate::snapshot::Snapshot;
use crate::sync::Reporter;
use crate::translate::gateway::model::RouteKind;
use crate::translate::{ObjectRef, Problem, Statuses, Translation};

/// Event reason of a status write the API server refused.
pub const REASON_STATUS: &str = "KongStatusUpdateFailed";

#[derive(Debug, Error)]
pub enum StatusError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// One status address: an IP or a hostname.
pub fn address(value: &str) -> IngressLoadBalancerIngress {
    if value.parse::<IpAddr>().is_ok() {
        IngressLoadBalancerIngress { ip: Some(value.to_string()), ..Default::default() }
    } else {
        IngressLoadBalancerIngress { hostname: Some(value.to_string()), ..Default::default() }
    }
}

/// The addresses a publish Service exposes: its load-balancer ingress, else its external IPs,
/// else its cluster IPs.
pub(crate) fn service_addresses(svc: &Service) -> Vec<String> {
    let lb: Vec<String> = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|list| list.iter().filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone())).collect())
        .unwrap_or_default();
    if !lb.is_empty() {
        return lb;
    }
    let spec = svc.spec.as_ref();
    let external = spec.and_then(|s| s.external_ips.clone()).unwrap_or_default();
    let ips = if external.is_empty() { spec.and_then(|s| s.cluster_ips.clone()).unwrap_or_default() } else { external };
    ips.into_iter().filter(|ip| ip.as_str() != "None").collect()
}

/// The status one object should carry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusUpdate {
    pub object: ObjectRef,
    /// The `status` we want on the object.
    pub status: Value,
    /// Whether it differs from the status the object carries (only then is it written).
    #[serde(skip)]
    pub changed: bool,
    /// The `resourceVersion` the object was read at.
    #[serde(skip)]
    pub resource_version: Option<String>,
}

impl StatusUpdate {
    /// The merge patch that writes it. Route patches carry the `resourceVersion`: their
    /// `status.parents` list is shared with other controllers and replaced as a whole.
    pub fn patch(&self) -> Value {
        match self.object.kind.as_str() {
            "GRPCRoute" | "HTTPRoute" | "BackendTLSPolicy" => {
                json!({ "metadata": { "resourceVersion": self.resource_version }, "status": self.status })
            }
            _ => json!({ "status": self.status }),
        }
    }
}

fn find<'a, K: Resource<DynamicType = ()>>(list: &'a [Arc<K>], object: &ObjectRef) -> Option<&'a Arc<K>> {
    list.iter().find(|o| o.name_any() == object.name && o.namespace().unwrap_or_default() == object.namespace)
}

fn update<K: Resource<DynamicType = ()>>(obj: &K, status: Value, changed: bool) -> StatusUpdate {
    StatusUpdate { object: ObjectRef::of(obj), status, changed, resource_version: obj.resource_version() }
}

/// Every status of a translation (`statuses`), as written with the proxy's `addresses` at `now`
/// (pure). Objects whose stored status was written for a newer generation than the snapshot's (a
/// stale snapshot) are skipped; so are Ingresses while no address is known.
pub fn desired(
    statuses: &Statuses,
    snapshot: &Snapshot,
    addresses: &[String],
    controller: &str,
    now: &Time,
) -> Vec<StatusUpdate> {
    let mut out = Vec::new();
    if !addresses.is_empty() {
        let lb: Vec<IngressLoadBalancerIngress> = addresses.iter().map(|a| address(a)).collect();
        for object in &statuses.ingresses {
            let Some(obj) = find(&snapshot.ingresses, object) else { continue };
            let current = obj.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|l| l.ingress.as_ref());
            let status = json!({ "loadBalancer": { "ingress": lb } });
            out.push(update(obj.as_ref(), status, current != Some(&lb)));
        }
    }
    for model in &statuses.gateway_classes {
        let Some(obj) = snapshot.gateway_classes.iter().find(|c| c.name_any() == model.name) else { continue };
        let current = obj.status.as_ref();
        if current.and_then(|c| c.conditions.as_deref()).is_some_and(|c| newer(c, model.generation)) {
            continue;
        }
        let desired = class_status(model, current, now);
        let changed = current != Some(&desired);
        out.push(update(obj.as_ref(), serde_json::to_value(&desired).unwrap_or_default(), changed));
    }
    for model in &statuses.gateways {
        let Some(obj) = find(&snapshot.gateways, &model.object) else { continue };
        let current = obj.status.as_ref();
        if current.and_then(|c| c.conditions.as_deref()).is_some_and(|c| newer(c, model.generation)) {
            continue;
        }
        let desired = gateway_status(model, addresses, current, now);
        let changed = current != Some(&desired);
        out.push(update(obj.as_ref(), serde_json::to_value(&desired).unwrap_or_default(), changed));
    }
    for model in &statuses.routes {
        let (current, u) = match model.kind {
            RouteKind::Grpc => match find(&snapshot.grpc_routes, &model.object) {
                Some(r) => (
                    r.status.as_ref().map(|s| serde_json::to_value(&s.parents)),
                    update(r.as_ref(), Value::Null, false),
                ),
                None => continue,
            },
            RouteKind::Http => match find(&snapshot.http_routes, &model.object) {
                Some(r) => (
                    r.status.as_ref().map(|s| serde_json::to_value(&s.parents)),
                    update(r.as_ref(), Value::Null, false),
                ),
                None => continue,
            },
        };
        let current: Vec<Value> = current.and_then(Result::ok).and_then(|v| v.as_array().cloned()).unwrap_or_default();
        if stale(&current, controller, model.generation) {
            continue;
        }
        let parents = route_parents(model, &current, controller, now);
        let changed = parents != current;
        out.push(StatusUpdate { status: json!({ "parents": parents }), changed, ..u });
    }
    for model in &statuses.backend_tls_policies {
        let Some(p) = find(&snapshot.backend_tls_policies, &model.object) else { continue };
        let current = p.status.as_ref().map(|s| serde_json::to_value(&s.ancestors));
        let current: Vec<Value> = current.and_then(Result::ok).and_then(|v| v.as_array().cloned()).unwrap_or_default();
        if stale(&current, controller, model.generation) {
            continue;
        }
        let ancestors = policy_ancestors(model, &current, controller, now);
        let changed = ancestors != current;
        out.push(StatusUpdate {
            status: json!({ "ancestors": ancestors }),
            changed,
            ..update(p.as_ref(), Value::Null, false)
        });
    }
    out
}

/// Whether our entries of a shared list (route parents, policy ancestors) were written for a newer
/// generation than the snapshot's.
fn stale(current: &[Value], controller: &str, generation: Option<i64>) -> bool {
    current
        .iter()
        .filter(|v| v.get("controllerName").and_then(Value::as_str) == Some(controller))
        .filter_map(|v| v.get("conditions").cloned())
        .filter_map(|c| serde_json::from_value::<Vec<Condition>>(c).ok())
        .any(|c| newer(&c, generation))
}

/// `now` as Kubernetes stores it (whole seconds), so that a written time reads back unchanged.
pub fn now() -> Time {
    let now = k8s_openapi::jiff::Timestamp::now();
    k8s_openapi::jiff::Timestamp::from_second(now.as_second()).map(Time).unwrap_or(Time(now))
}

/// Writes statuses (leader only).
pub(crate) struct StatusWriter {
    client: Client,
    settings: Arc<Settings>,
    leadership: Leadership,
    /// The last patch written per object, with the `resourceVersion` it was computed from: the
    /// snapshot may not show our write yet, and the same patch is not sent twice for one version.
    /// Held for a whole round; a round that finds it held is skipped (the next round retries).
    written: Mutex<HashMap<ObjectRef, (Option<String>, Value)>>,
}

impl StatusWriter {
    pub(crate) fn new(client: Client, settings: Arc<Settings>, leadership: Leadership) -> Self {
        StatusWriter { client, settings, leadership, written: Mutex::new(HashMap::new()) }
    }

    /// The proxy's addresses: `--publish-status-address`, else those of `--publish-service`.
    async fn addresses(&self) -> Result<Vec<String>, StatusError> {
        if !self.settings.publish_status_address.is_empty() {
            return Ok(self.settings.publish_status_address.clone());
        }
        let Ok(Some((ns, name))) = self.settings.publish_service() else { return Ok(Vec::new()) };
        let svc = Api::<Service>::namespaced(self.client.clone(), &ns).get(&name).await?;
        Ok(service_addresses(&svc))
    }

    /// Brings every status of a translation in line; returns one problem per write the API server
    /// refused (conflicts are not problems: the next round retries them), or `None` when this
    /// round writes nothing (not the leader, `--update-status=false`, another round running).
    pub(crate) async fn write(&self, statuses: &Statuses, snapshot: &Snapshot) -> Option<Vec<Problem>> {
        if !self.settings.update_status || !self.leadership.is_leader() {
            return None;
        }
        let mut written = self.written.try_lock().ok()?;
        let addresses = match self.addresses().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "reading the publish Service failed; statuses are written without addresses");
                Vec::new()
            }
        };
        let controller = self.settings.gateway_controller_name.as_str();
        let mut failures = Vec::new();
        let updates = desired(statuses, snapshot, &addresses, controller, &now());
        written.retain(|object, _| updates.iter().any(|u| u.object == *object));
        for u in updates {
            if !u.changed {
                continue;
            }
            let body = u.patch();
            let key = (u.resource_version.clone(), body.clone());
            if written.get(&u.object) == Some(&key) {
                continue;
            }
            match self.patch(&u.object, &body).await {
                Ok(()) => {
                    tracing::debug!(object = %u.object, "status updated");
                    written.insert(u.object.clone(), key);
                }
                Err(kube::Error::Api(s)) if s.is_conflict() => {
                    tracing::debug!(object = %u.object, "status changed meanwhile; retried next round");
                }
                Err(e) => {
                    tracing::error!(object = %u.object, error = %e, "writing the status failed");
                    failures.push(Problem::new(&u.object, "status", format!("writing the status failed: {e}")));
                }
            }
        }
        Some(failures)
    }

    async fn patch(&self, object: &ObjectRef, body: &Value) -> Result<(), kube::Error> {
        let (c, ns, name, pp, patch) = (
            self.client.clone(),
            object.namespace.as_str(),
            object.name.as_str(),
            PatchParams::default(),
            Patch::Merge(body),
        );
        match object.kind.as_str() {
            "Ingress" => Api::<Ingress>::namespaced(c, ns).patch_status(name, &pp, &patch).await.map(drop),
            "GatewayClass" => Api::<GatewayClass>::all(c).patch_status(name, &pp, &patch).await.map(drop),
            "Gateway" => Api::<Gateway>::namespaced(c, ns).patch_status(name, &pp, &patch).await.map(drop),
            "GRPCRoute" => Api::<GrpcRoute>::namespaced(c, ns).patch_status(name, &pp, &patch).await.map(drop),
            "HTTPRoute" => Api::<HttpRoute>::namespaced(c, ns).patch_status(name, &pp, &patch).await.map(drop),
            "BackendTLSPolicy" => {
                Api::<BackendTlsPolicy>::namespaced(c, ns).patch_status(name, &pp, &patch).await.map(drop)
            }
            _ => Ok(()),
        }
    }
}

/// A reporter that also writes statuses at the end of every sync round that leaves the proxy
/// running a config, and reports refused writes through the inner reporter (Events).
pub(crate) struct StatusReporter {
    inner: Arc<dyn Reporter>,
    writer: Arc<StatusWriter>,
    /// Refused writes already reported, so that a write refused every round gives one Event.
    reported: Arc<std::sync::Mutex<HashSet<Problem>>>,
}

/// Wraps `inner` so that statuses are written after each successful sync round.
pub(crate) fn wrap(inner: Arc<dyn Reporter>, writer: StatusWriter) -> Arc<dyn Reporter> {
    Arc::new(StatusReporter { inner, writer: Arc::new(writer), reported: Default::default() })
}

impl Reporter for StatusReporter {
    fn problems(&self, reason: &'static str, problems: &[Problem]) {
        self.inner.problems(reason, problems);
    }

    fn applied(&self, translation: &Translation) {
        self.inner.applied(translation);
    }

    fn synced(&self, translation: &Translation, snapshot: &Snapshot) {
        self.inner.synced(translation, snapshot);
        let (inner, writer, reported) = (self.inner.clone(), self.writer.clone(), self.reported.clone());
        // The statuses only: the config can be large, and the snapshot is shared pointers.
        let (statuses, snapshot) = (translation.statuses.clone(), snapshot.clone());
        tokio::spawn(async move {
            let Some(failures) = writer.write(&statuses, &snapshot).await else { return };
            let new: Vec<Problem> = {
                let mut seen = reported.lock().unwrap_or_else(|e| e.into_inner());
                let new = failures.iter().filter(|p| !seen.contains(*p)).cloned().collect();
                *seen = failures.into_iter().collect();
                new
            };
            if !new.is_empty() {
                inner.problems(REASON_STATUS, &new);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_ips_or_hostnames() {
        assert_eq!(address("10.0.0.1").ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(address("fd00::1").ip.as_deref(), Some("fd00::1"));
        assert_eq!(address("lb.example.com").hostname.as_deref(), Some("lb.example.com"));
    }

    #[test]
    fn service_addresses_prefer_the_load_balancer() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "proxy"},
            "spec": {"clusterIPs": ["10.96.0.10"]},
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}
        }))
        .unwrap();
        assert_eq!(service_addresses(&svc), ["203.0.113.7"]);
        let mut plain = svc.clone();
        plain.status = None;
        assert_eq!(service_addresses(&plain), ["10.96.0.10"]);
    }
}
