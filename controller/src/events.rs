//! Problems → Kubernetes Events on the objects at fault (type Warning, KIC's reasons
//! `KongConfigurationTranslationFailed` / `KongConfigurationApplyFailed`, and
//! `KongStatusUpdateFailed` for a status write the API server refused), through kube-runtime's
//! [`Recorder`] (which also de-duplicates repeated events into counts).

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Client;

use crate::translate::{ObjectRef, Problem};

/// Events published per round at most: a cluster full of broken objects must not turn the
/// controller into an event storm.
pub(crate) const MAX_EVENTS_PER_ROUND: usize = 200;
/// The `reportingController` of our events.
pub(crate) const CONTROLLER: &str = "sluice-controller";

/// The `apiVersion` of a kind we translate.
pub(crate) fn api_version(kind: &str) -> Option<&'static str> {
    match kind {
        "Ingress" | "IngressClass" => Some("networking.k8s.io/v1"),
        "Service" | "Secret" => Some("v1"),
        "EndpointSlice" => Some("discovery.k8s.io/v1"),
        "GRPCRoute" | "HTTPRoute" | "Gateway" | "GatewayClass" => Some("gateway.networking.k8s.io/v1"),
        "ReferenceGrant" => Some("gateway.networking.k8s.io/v1beta1"),
        "KongPlugin" | "KongClusterPlugin" | "KongConsumer" => Some("configuration.konghq.com/v1"),
        _ => None,
    }
}

/// The reference an Event is attached to; `None` for things that are not API objects (files).
pub(crate) fn object_reference(o: &ObjectRef) -> Option<ObjectReference> {
    Some(ObjectReference {
        api_version: Some(api_version(&o.kind)?.to_string()),
        kind: Some(o.kind.clone()),
        name: Some(o.name.clone()),
        namespace: (!o.namespace.is_empty()).then(|| o.namespace.clone()),
        uid: (!o.uid.is_empty()).then(|| o.uid.clone()),
        ..Default::default()
    })
}

/// The Event for one problem.
pub(crate) fn event(reason: &str, p: &Problem) -> Event {
    let mut note = if p.field.is_empty() { p.message.clone() } else { format!("{}: {}", p.field, p.message) };
    if note.len() > 1000 {
        let mut cut = 1000;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
    }
    Event {
        type_: EventType::Warning,
        reason: reason.to_string(),
        note: Some(note),
        action: if reason.contains("Apply") {
            "Apply".into()
        } else if reason.contains("Status") {
            "UpdateStatus".into()
        } else {
            "Translate".into()
        },
        secondary: None,
    }
}

/// Publishes problems as Events in the background.
#[derive(Clone)]
pub(crate) struct EventPublisher {
    recorder: Recorder,
}

impl EventPublisher {
    pub(crate) fn new(client: Client, instance: Option<String>) -> Self {
        EventPublisher { recorder: Recorder::new(client, Reporter { controller: CONTROLLER.into(), instance }) }
    }

    /// Spawns one publication per problem (at most [`MAX_EVENTS_PER_ROUND`]).
    pub(crate) fn publish(&self, reason: &'static str, problems: &[Problem]) {
        for p in problems.iter().take(MAX_EVENTS_PER_ROUND) {
            let Some(reference) = object_reference(&p.object) else { continue };
            let recorder = self.recorder.clone();
            let ev = event(reason, p);
            tokio::spawn(async move {
                if let Err(e) = recorder.publish(&ev, &reference).await {
                    tracing::warn!(error = %e, "publishing an Event failed");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_name_the_object_and_field() {
        let o = ObjectRef { kind: "Ingress".into(), namespace: "ns".into(), name: "web".into(), uid: "u".into() };
        let r = object_reference(&o).unwrap();
        assert_eq!(r.api_version.as_deref(), Some("networking.k8s.io/v1"));
        assert_eq!(r.uid.as_deref(), Some("u"));
        let e = event("KongConfigurationTranslationFailed", &Problem::new(&o, "spec.x", "m".repeat(2000)));
        assert_eq!(e.type_, EventType::Warning);
        assert!(e.note.as_deref().unwrap().starts_with("spec.x: m") && e.note.unwrap().len() <= 1000);
        let file =
            ObjectRef { kind: "File".into(), namespace: String::new(), name: "x.yaml".into(), uid: String::new() };
        assert!(object_reference(&file).is_none());
    }
}
