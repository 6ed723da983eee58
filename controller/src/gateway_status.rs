//! Gateway API statuses in API form: GatewayClass `Accepted` + supported features, Gateway
//! `Accepted`/`Programmed` + addresses + listener statuses, and route parent entries (`Accepted`,
//! `ResolvedRefs`, `PartiallyInvalid`).
//!
//! The conditions come from the translation ([`crate::translate::Statuses`]); these pure functions
//! add what only the writer ([`crate::status`]) knows: the proxy's addresses, `lastTransitionTime`
//! (kept while a condition's status does not change) and `observedGeneration`. Feeding a result
//! back as the current status gives the same result, so an unchanged status is never rewritten.
//! Route `status.parents` entries of other controllers are kept untouched; ours are replaced.

use std::net::IpAddr;

use gateway_api::apis::standard::gatewayclasses::{GatewayClassStatus, GatewayClassStatusSupportedFeatures};
use gateway_api::apis::standard::gateways::{
    GatewayStatus, GatewayStatusAddresses, GatewayStatusListeners, GatewayStatusListenersSupportedKinds,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde_json::{json, Value};

use crate::translate::gateway::model::{
    ClassStatus, Cond, GatewayStatusModel, ParentStatus, PolicyStatusModel, RouteStatusModel,
};
use crate::translate::gateway::GATEWAY_GROUP;

/// Gateway API features sluice claims (GatewayClass `status.supportedFeatures`, sorted).
pub(crate) const SUPPORTED_FEATURES: &[&str] = &["GRPCRoute", "Gateway", "HTTPRoute", "ReferenceGrant"];

/// Conditions in API form: `lastTransitionTime` kept from `current` while the status is unchanged.
pub(crate) fn conditions(
    desired: &[Cond],
    current: &[Condition],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
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
pub(crate) fn newer(current: &[Condition], generation: Option<i64>) -> bool {
    generation.is_some_and(|g| current.iter().any(|c| c.observed_generation.is_some_and(|o| o > g)))
}

/// The GatewayClass status.
pub(crate) fn class_status(
    model: &ClassStatus,
    current: Option<&GatewayClassStatus>,
    now: &Time,
) -> GatewayClassStatus {
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
pub(crate) fn gateway_address(value: &str) -> GatewayStatusAddresses {
    let kind = if value.parse::<IpAddr>().is_ok() { "IPAddress" } else { "Hostname" };
    GatewayStatusAddresses { r#type: Some(kind.to_string()), value: value.to_string() }
}

/// The Gateway status: the model plus `Programmed` (needs an address) and the addresses.
pub(crate) fn gateway_status(
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
pub(crate) fn route_parents(model: &RouteStatusModel, current: &[Value], controller: &str, now: &Time) -> Vec<Value> {
    entries("parentRef", &model.parents, model.generation, current, controller, now)
}

/// BackendTLSPolicy `status.ancestors`: other controllers' entries as they are, then ours.
pub(crate) fn policy_ancestors(
    model: &PolicyStatusModel,
    current: &[Value],
    controller: &str,
    now: &Time,
) -> Vec<Value> {
    entries("ancestorRef", &model.ancestors, model.generation, current, controller, now)
}

/// A list of per-parent entries keyed by `key` (`parentRef`, `ancestorRef`) and `controllerName`.
fn entries(
    key: &str,
    parents: &[ParentStatus],
    generation: Option<i64>,
    current: &[Value],
    controller: &str,
    now: &Time,
) -> Vec<Value> {
    let ours = |v: &Value| v.get("controllerName").and_then(Value::as_str) == Some(controller);
    let mut out: Vec<Value> = current.iter().filter(|v| !ours(v)).cloned().collect();
    for p in parents {
        let parent_ref = serde_json::to_value(&p.parent_ref).unwrap_or(Value::Null);
        let previous: Vec<Condition> = current
            .iter()
            .filter(|v| ours(v) && v.get(key) == Some(&parent_ref))
            .filter_map(|v| v.get("conditions").cloned())
            .filter_map(|c| serde_json::from_value::<Vec<Condition>>(c).ok())
            .next()
            .unwrap_or_default();
        out.push(json!({
            key: parent_ref,
            "controllerName": controller,
            "conditions": conditions(&p.conditions, &previous, generation, now),
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::gateway::model::{ListenerStatus, ParentRefOut, ParentStatus, RouteKind};
    use crate::translate::ObjectRef;

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
