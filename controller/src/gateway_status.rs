//! Gateway API statuses (grpcroute.md §9, §12): GatewayClass `Accepted`, Gateway
//! `Accepted`/`Programmed` + addresses + listener statuses, and route parent entries
//! (`Accepted`, `ResolvedRefs`, `PartiallyInvalid`).
//!
//! The desired statuses come from [`crate::translate::gateway::analyze`] (pure, the same plan the
//! translation uses). This module turns them into the API types (keeping `lastTransitionTime`
//! while a condition's status does not change, setting `observedGeneration`), and writes them
//! through the status subresource with a merge patch, only on the leader, only when they differ
//! from what the object carries. Route `status.parents` entries of other controllers are kept
//! untouched; ours are replaced. The patch carries the `resourceVersion` the entries were read at,
//! so a concurrent writer makes it fail (409) instead of being overwritten; the next round retries.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use gateway_api::apis::standard::gatewayclasses::{
    GatewayClass, GatewayClassStatus, GatewayClassStatusSupportedFeatures,
};
use gateway_api::apis::standard::gateways::{
    Gateway, GatewayStatus, GatewayStatusAddresses, GatewayStatusListeners, GatewayStatusListenersSupportedKinds,
};
use gateway_api::apis::standard::grpcroutes::GrpcRoute;
use gateway_api::apis::standard::httproutes::HttpRoute;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{json, Value};
use thiserror::Error;
use tokio::sync::Mutex;

use crate::leader::Leadership;
use crate::settings::Settings;
use crate::snapshot::Snapshot;
use crate::status::service_addresses;
use crate::sync::Reporter;
use crate::translate::gateway::model::{ClassStatus, Cond, GatewayStatusModel, RouteKind, RouteStatusModel};
use crate::translate::gateway::{analyze, GATEWAY_GROUP};
use crate::translate::{ObjectRef, Problem, Translation};

/// Gateway API features sluice claims (GatewayClass `status.supportedFeatures`, sorted).
pub const SUPPORTED_FEATURES: &[&str] = &["GRPCRoute", "Gateway", "HTTPRoute", "ReferenceGrant"];

#[derive(Debug, Error)]
pub enum GatewayStatusError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// Conditions in API form: `lastTransitionTime` kept from `current` while the status is unchanged.
pub fn conditions(desired: &[Cond], current: &[Condition], generation: Option<i64>, now: &Time) -> Vec<Condition> {
    desired
        .iter()
        .map(|d| {
            let previous = current.iter().find(|c| c.type_ == d.type_ && c.status == d.status);
            Condition {
                type_: d.type_.to_string(),
                status: d.status.to_string(),
                reason: d.reason.clone(),
                message: d.message.clone(),
                observed_generation: generation,
                last_transition_time: previous.map_or_else(|| now.clone(), |p| p.last_transition_time.clone()),
            }
        })
        .collect()
}

/// Whether the stored conditions were written for a newer generation than ours (stale snapshot).
fn newer(current: &[Condition], generation: Option<i64>) -> bool {
    generation.is_some_and(|g| current.iter().any(|c| c.observed_generation.is_some_and(|o| o > g)))
}

/// The GatewayClass status.
pub fn class_status(model: &ClassStatus, current: Option<&GatewayClassStatus>, now: &Time) -> GatewayClassStatus {
    let empty = Vec::new();
    let current = current.and_then(|c| c.conditions.as_ref()).unwrap_or(&empty);
    GatewayClassStatus {
        conditions: Some(conditions(&model.conditions, current, model.generation, now)),
        supported_features: Some(
            SUPPORTED_FEATURES.iter().map(|f| GatewayClassStatusSupportedFeatures { name: f.to_string() }).collect(),
        ),
    }
}

/// An address as Gateway status wants it.
pub fn gateway_address(value: &str) -> GatewayStatusAddresses {
    let kind = if value.parse::<IpAddr>().is_ok() { "IPAddress" } else { "Hostname" };
    GatewayStatusAddresses { r#type: Some(kind.to_string()), value: value.to_string() }
}

/// The Gateway status: the model plus `Programmed` (needs an address) and the addresses.
pub fn gateway_status(
    model: &GatewayStatusModel,
    addresses: &[String],
    current: Option<&GatewayStatus>,
    now: &Time,
) -> GatewayStatus {
    let mut desired = model.conditions.clone();
    let accepted = desired.iter().any(|c| c.type_ == "Accepted" && c.is_true());
    desired.push(if !accepted {
        Cond::new("Programmed", false, "Invalid", "the Gateway is not accepted")
    } else if addresses.is_empty() {
        Cond::new(
            "Programmed",
            false,
            "AddressNotAssigned",
            "no address known: set --publish-service or --publish-status-address",
        )
    } else {
        Cond::new("Programmed", true, "Programmed", "")
    });
    let empty = Vec::new();
    let current_conditions = current.and_then(|c| c.conditions.as_ref()).unwrap_or(&empty);
    let no_listeners = Vec::new();
    let current_listeners: &Vec<GatewayStatusListeners> =
        current.and_then(|c| c.listeners.as_ref()).unwrap_or(&no_listeners);
    let listeners = model
        .listeners
        .iter()
        .map(|l| {
            let prev =
                current_listeners.iter().find(|c| c.name == l.name).map(|c| c.conditions.as_slice()).unwrap_or(&[]);
            GatewayStatusListeners {
                name: l.name.clone(),
                attached_routes: l.attached_routes,
                supported_kinds: (!l.supported_kinds.is_empty()).then(|| {
                    l.supported_kinds
                        .iter()
                        .map(|k| GatewayStatusListenersSupportedKinds {
                            group: Some(GATEWAY_GROUP.to_string()),
                            kind: k.to_string(),
                        })
                        .collect()
                }),
                conditions: conditions(&l.conditions, prev, model.generation, now),
            }
        })
        .collect();
    GatewayStatus {
        // Empty lists are omitted: the API server drops them, and a difference that can never
        // be written would make every round patch again.
        addresses: (!addresses.is_empty()).then(|| addresses.iter().map(|a| gateway_address(a)).collect()),
        attached_listener_sets: current.and_then(|c| c.attached_listener_sets),
        conditions: Some(conditions(&desired, current_conditions, model.generation, now)),
        listeners: Some(listeners),
    }
}

/// Route `status.parents`: other controllers' entries as they are, then ours.
pub fn route_parents(model: &RouteStatusModel, current: &[Value], controller: &str, now: &Time) -> Vec<Value> {
    let ours = |v: &Value| v.get("controllerName").and_then(Value::as_str) == Some(controller);
    let mut out: Vec<Value> = current.iter().filter(|v| !ours(v)).cloned().collect();
    for p in &model.parents {
        let parent_ref = serde_json::to_value(&p.parent_ref).unwrap_or(Value::Null);
        let previous: Vec<Condition> = current
            .iter()
            .filter(|v| ours(v) && v.get("parentRef") == Some(&parent_ref))
            .filter_map(|v| v.get("conditions").cloned())
            .filter_map(|c| serde_json::from_value::<Vec<Condition>>(c).ok())
            .next()
            .unwrap_or_default();
        out.push(json!({
            "parentRef": parent_ref,
            "controllerName": controller,
            "conditions": conditions(&p.conditions, &previous, model.generation, now),
        }));
    }
    out
}

/// Writes Gateway API statuses (leader only).
pub struct GatewayStatusWriter {
    client: Client,
    settings: Arc<Settings>,
    leadership: Leadership,
    /// Serializes rounds; a round that finds one running is skipped (the next sync round retries).
    running: Mutex<HashMap<ObjectRef, Value>>,
}

impl GatewayStatusWriter {
    pub fn new(client: Client, settings: Arc<Settings>, leadership: Leadership) -> Self {
        GatewayStatusWriter { client, settings, leadership, running: Mutex::new(HashMap::new()) }
    }

    async fn addresses(&self) -> Vec<String> {
        if !self.settings.publish_status_address.is_empty() {
            return self.settings.publish_status_address.clone();
        }
        let Ok(Some((ns, name))) = self.settings.publish_service() else { return Vec::new() };
        match Api::<Service>::namespaced(self.client.clone(), &ns).get(&name).await {
            Ok(svc) => service_addresses(&svc).into_iter().filter_map(|a| a.ip.or(a.hostname)).collect(),
            Err(e) => {
                tracing::warn!(service = %format!("{ns}/{name}"), error = %e, "reading the publish Service failed");
                Vec::new()
            }
        }
    }

    /// Brings every Gateway API status in line with the snapshot.
    pub async fn write(&self, snapshot: &Snapshot) -> Result<(), GatewayStatusError> {
        if !self.settings.update_status || !self.leadership.is_leader() {
            return Ok(());
        }
        let Ok(mut written) = self.running.try_lock() else { return Ok(()) };
        let analysis = analyze(snapshot, &self.settings);
        // Kubernetes keeps whole seconds.
        let now = k8s_openapi::jiff::Timestamp::from_second(k8s_openapi::jiff::Timestamp::now().as_second())
            .map(Time)
            .unwrap_or_else(|_| Time(k8s_openapi::jiff::Timestamp::now()));
        let controller = self.settings.gateway_controller_name.clone();
        let pp = PatchParams::default();

        for model in &analysis.classes {
            let Some(obj) = snapshot.gateway_classes.iter().find(|c| c.name_any() == model.name) else { continue };
            let current = obj.status.as_ref();
            if current.and_then(|c| c.conditions.as_deref()).is_some_and(|c| newer(c, model.generation)) {
                continue;
            }
            let desired = class_status(model, current, &now);
            if current != Some(&desired) {
                let api: Api<GatewayClass> = Api::all(self.client.clone());
                patch(&api, obj.as_ref(), &json!({ "status": desired }), &pp, &mut written).await;
            }
        }

        let addresses = if analysis.gateways.is_empty() { Vec::new() } else { self.addresses().await };
        for model in &analysis.gateways {
            let Some(obj) = find(&snapshot.gateways, &model.object) else { continue };
            let current = obj.status.as_ref();
            if current.and_then(|c| c.conditions.as_deref()).is_some_and(|c| newer(c, model.generation)) {
                continue;
            }
            let desired = gateway_status(model, &addresses, current, &now);
            if current != Some(&desired) {
                let api: Api<Gateway> = Api::namespaced(self.client.clone(), &model.object.namespace);
                patch(&api, obj.as_ref(), &json!({ "status": desired }), &pp, &mut written).await;
            }
        }

        for model in &analysis.routes {
            let (current, rv) = match model.kind {
                RouteKind::Grpc => match find(&snapshot.grpc_routes, &model.object) {
                    Some(r) => (r.status.as_ref().map(|s| serde_json::to_value(&s.parents)), r.resource_version()),
                    None => continue,
                },
                RouteKind::Http => match find(&snapshot.http_routes, &model.object) {
                    Some(r) => (r.status.as_ref().map(|s| serde_json::to_value(&s.parents)), r.resource_version()),
                    None => continue,
                },
            };
            let current: Vec<Value> =
                current.and_then(Result::ok).and_then(|v| v.as_array().cloned()).unwrap_or_default();
            let stale = current
                .iter()
                .filter(|v| v.get("controllerName").and_then(Value::as_str) == Some(controller.as_str()))
                .filter_map(|v| v.get("conditions").cloned())
                .filter_map(|c| serde_json::from_value::<Vec<Condition>>(c).ok())
                .any(|c| newer(&c, model.generation));
            if stale {
                continue;
            }
            let desired = route_parents(model, &current, &controller, &now);
            if desired == current {
                continue;
            }
            let body = json!({ "metadata": { "resourceVersion": rv }, "status": { "parents": desired } });
            match model.kind {
                RouteKind::Grpc => {
                    let api: Api<GrpcRoute> = Api::namespaced(self.client.clone(), &model.object.namespace);
                    patch_named(&api, &model.object, &body, &pp, &mut written).await;
                }
                RouteKind::Http => {
                    let api: Api<HttpRoute> = Api::namespaced(self.client.clone(), &model.object.namespace);
                    patch_named(&api, &model.object, &body, &pp, &mut written).await;
                }
            }
        }
        Ok(())
    }
}

fn find<'a, K: Resource<DynamicType = ()>>(list: &'a [Arc<K>], object: &ObjectRef) -> Option<&'a Arc<K>> {
    list.iter().find(|o| o.name_any() == object.name && o.namespace().unwrap_or_default() == object.namespace)
}

async fn patch<K>(api: &Api<K>, obj: &K, body: &Value, pp: &PatchParams, written: &mut HashMap<ObjectRef, Value>)
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    patch_named(api, &ObjectRef::of(obj), body, pp, written).await;
}

/// One status patch; skipped when this exact body was already written for this resourceVersion.
async fn patch_named<K>(
    api: &Api<K>,
    object: &ObjectRef,
    body: &Value,
    pp: &PatchParams,
    written: &mut HashMap<ObjectRef, Value>,
) where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if written.get(object) == Some(body) {
        return;
    }
    match api.patch_status(&object.name, pp, &Patch::Merge(body)).await {
        Ok(_) => {
            tracing::debug!(object = %object, "status updated");
            written.insert(object.clone(), body.clone());
        }
        Err(e) => tracing::warn!(object = %object, error = %e, "updating status failed (retried next round)"),
    }
}

/// A reporter that also writes Gateway API statuses after every successful sync round.
pub struct GatewayStatusReporter {
    inner: Arc<dyn Reporter>,
    writer: Arc<GatewayStatusWriter>,
}

/// Wraps `inner` so that Gateway API statuses are written after each successful sync.
pub fn wrap(inner: Arc<dyn Reporter>, writer: GatewayStatusWriter) -> Arc<dyn Reporter> {
    Arc::new(GatewayStatusReporter { inner, writer: Arc::new(writer) })
}

impl Reporter for GatewayStatusReporter {
    fn problems(&self, reason: &'static str, problems: &[Problem]) {
        self.inner.problems(reason, problems);
    }

    fn applied(&self, translation: &Translation) {
        self.inner.applied(translation);
    }

    fn synced(&self, snapshot: &Snapshot) {
        self.inner.synced(snapshot);
        let writer = self.writer.clone();
        let snapshot = snapshot.clone();
        tokio::spawn(async move {
            if let Err(e) = writer.write(&snapshot).await {
                tracing::warn!(error = %e, "updating Gateway API statuses failed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::gateway::model::{ListenerStatus, ParentRefOut, ParentStatus};

    fn t(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    #[test]
    fn transition_time_is_kept_while_status_is_unchanged() {
        let old = t("2020-01-01T00:00:00Z");
        let now = t("2026-01-01T00:00:00Z");
        let current = vec![Condition {
            type_: "Accepted".into(),
            status: "True".into(),
            reason: "Accepted".into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: old.clone(),
        }];
        let same = conditions(&[Cond::new("Accepted", true, "Accepted", "")], &current, Some(2), &now);
        assert_eq!(same[0].last_transition_time, old);
        assert_eq!(same[0].observed_generation, Some(2));
        let flipped = conditions(&[Cond::new("Accepted", false, "NoMatchingParent", "x")], &current, Some(2), &now);
        assert_eq!(flipped[0].last_transition_time, now);
        assert!(newer(&current, Some(0)) && !newer(&current, Some(1)));
    }

    #[test]
    fn foreign_parent_entries_are_kept() {
        let now = t("2026-01-01T00:00:00Z");
        let model = RouteStatusModel {
            kind: RouteKind::Grpc,
            object: ObjectRef {
                kind: "GRPCRoute".into(),
                namespace: "default".into(),
                name: "r".into(),
                uid: String::new(),
            },
            generation: Some(3),
            parents: vec![ParentStatus {
                parent_ref: ParentRefOut {
                    group: GATEWAY_GROUP.into(),
                    kind: "Gateway".into(),
                    namespace: None,
                    name: "gw".into(),
                    section_name: None,
                    port: None,
                },
                conditions: vec![Cond::new("Accepted", true, "Accepted", "")],
            }],
        };
        let foreign = json!({"controllerName": "example.com/other", "parentRef": {"name": "x"}, "conditions": []});
        let stale_ours = json!({"controllerName": "ours", "parentRef": {"name": "gone"}, "conditions": []});
        let out = route_parents(&model, &[foreign.clone(), stale_ours], "ours", &now);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], foreign);
        assert_eq!(out[1]["parentRef"], json!({"group": GATEWAY_GROUP, "kind": "Gateway", "name": "gw"}));
        assert_eq!(out[1]["conditions"][0]["observedGeneration"], 3);
        // Idempotent: feeding the output back changes nothing.
        assert_eq!(route_parents(&model, &out, "ours", &now), out);
    }

    #[test]
    fn gateway_is_programmed_only_with_an_address() {
        let now = t("2026-01-01T00:00:00Z");
        let model = GatewayStatusModel {
            object: ObjectRef {
                kind: "Gateway".into(),
                namespace: "default".into(),
                name: "gw".into(),
                uid: String::new(),
            },
            generation: Some(1),
            conditions: vec![Cond::new("Accepted", true, "Accepted", "")],
            listeners: vec![ListenerStatus {
                name: "http".into(),
                supported_kinds: vec!["HTTPRoute", "GRPCRoute"],
                attached_routes: 2,
                conditions: vec![Cond::new("Accepted", true, "Accepted", "")],
            }],
        };
        let none = gateway_status(&model, &[], None, &now);
        let programmed = |s: &GatewayStatus| {
            s.conditions.as_ref().unwrap().iter().find(|c| c.type_ == "Programmed").unwrap().status.clone()
        };
        assert_eq!(programmed(&none), "False");
        let some = gateway_status(&model, &["10.0.0.1".into(), "lb.example.com".into()], Some(&none), &now);
        assert_eq!(programmed(&some), "True");
        let addresses = some.addresses.as_ref().unwrap();
        assert_eq!(addresses[0].r#type.as_deref(), Some("IPAddress"));
        assert_eq!(addresses[1].r#type.as_deref(), Some("Hostname"));
        let listener = &some.listeners.as_ref().unwrap()[0];
        assert_eq!(listener.attached_routes, 2);
        assert_eq!(listener.supported_kinds.as_ref().unwrap().len(), 2);
        // Unchanged input → identical status (no write).
        assert_eq!(gateway_status(&model, &["10.0.0.1".into(), "lb.example.com".into()], Some(&some), &now), some);
    }
}
