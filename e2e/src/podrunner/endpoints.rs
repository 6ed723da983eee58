//! The EndpointSlice controller's part: one slice per Service with a selector, listing the Ready
//! Pods it selects (address = podIP, Kubernetes-style conditions and target references) and the
//! Service's ports resolved to the Pods' container ports. Written with server-side apply, only when
//! it differs from what is stored; slices of deleted Services are removed.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};

use super::replicas::is_ready;
use super::{PodRunnerError, MANAGER};

const SERVICE_LABEL: &str = "kubernetes.io/service-name";
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";

fn slice_name(service: &str) -> String {
    format!("{service}-podrunner")
}

fn selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.labels();
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The container port a Service port targets on `pod` (a named `targetPort` is looked up in the
/// Pod's containers).
fn target_port(port: &ServicePort, pod: Option<&Pod>) -> Option<i32> {
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(p)) => Some(*p),
        Some(IntOrString::String(name)) => pod?
            .spec
            .as_ref()?
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port),
    }
}

/// The slice's `endpoints` and `ports` for `svc`.
fn desired(svc: &Service, pods: &[&Pod], node: &str) -> Value {
    let endpoints: Vec<Value> = pods
        .iter()
        .map(|p| {
            let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default();
            json!({"addresses": [ip],
                "conditions": {"ready": true, "serving": true, "terminating": false},
                "nodeName": node,
                "targetRef": {"kind": "Pod", "namespace": p.namespace(), "name": p.name_any(), "uid": p.uid()}})
        })
        .collect();
    let ports: Vec<Value> = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|sp| {
            let port = target_port(sp, pods.first().copied())?;
            Some(json!({"name": sp.name.clone().unwrap_or_default(), "port": port,
                "protocol": sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                "appProtocol": sp.app_protocol}))
        })
        .collect();
    json!({"endpoints": endpoints, "ports": ports})
}

/// What is stored, in the shape of [`desired`] (for comparison).
fn stored(slice: &EndpointSlice) -> Value {
    let endpoints: Vec<Value> = slice
        .endpoints
        .iter()
        .flatten()
        .map(|e| {
            let c = e.conditions.clone().unwrap_or_default();
            let t = e.target_ref.clone().unwrap_or_default();
            json!({"addresses": e.addresses,
                "conditions": {"ready": c.ready, "serving": c.serving, "terminating": c.terminating},
                "nodeName": e.node_name,
                "targetRef": {"kind": t.kind, "namespace": t.namespace, "name": t.name, "uid": t.uid}})
        })
        .collect();
    let ports: Vec<Value> = slice
        .ports
        .iter()
        .flatten()
        .map(|p| {
            json!({"name": p.name.clone().unwrap_or_default(), "port": p.port, "protocol": p.protocol,
                "appProtocol": p.app_protocol})
        })
        .collect();
    json!({"endpoints": endpoints, "ports": ports})
}

/// One pass over all Services.
pub(super) async fn reconcile(client: &Client, node: &str) -> Result<(), PodRunnerError> {
    let services = Api::<Service>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(PodRunnerError::kube("listing services"))?;
    let pods = Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(PodRunnerError::kube("listing pods"))?;
    let slices = Api::<EndpointSlice>::all(client.clone())
        .list(&ListParams::default().labels(&format!("{MANAGED_BY}={MANAGER}")))
        .await
        .map_err(PodRunnerError::kube("listing endpoint slices"))?;
    let mut wanted = HashSet::new();
    for svc in &services {
        let Some(selector) = svc.spec.as_ref().and_then(|s| s.selector.clone()).filter(|s| !s.is_empty()) else {
            continue;
        };
        let (ns, name) = (svc.namespace().unwrap_or_default(), svc.name_any());
        let mut ready: Vec<&Pod> = pods
            .iter()
            .filter(|p| p.namespace().as_deref() == Some(ns.as_str()) && p.metadata.deletion_timestamp.is_none())
            .filter(|p| selects(&selector, p) && is_ready(p))
            .filter(|p| p.status.as_ref().is_some_and(|s| s.pod_ip.is_some()))
            .collect();
        ready.sort_by_key(|p| p.name_any());
        let slice = slice_name(&name);
        wanted.insert((ns.clone(), slice.clone()));
        let want = desired(svc, &ready, node);
        let current = slices.iter().find(|s| s.namespace().as_deref() == Some(ns.as_str()) && s.name_any() == slice);
        if current.is_some_and(|c| stored(c) == want) {
            continue;
        }
        let body = json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": slice, "namespace": ns,
                "labels": {SERVICE_LABEL: name, MANAGED_BY: MANAGER},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": name, "uid": svc.uid(),
                    "controller": true, "blockOwnerDeletion": true}]},
            "addressType": "IPv4",
            "endpoints": want["endpoints"], "ports": want["ports"],
        });
        Api::<EndpointSlice>::namespaced(client.clone(), &ns)
            .patch(&slice, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&body))
            .await
            .map_err(PodRunnerError::kube(format!("endpoint slice {ns}/{slice}")))?;
    }
    for s in &slices {
        let (ns, name) = (s.namespace().unwrap_or_default(), s.name_any());
        if wanted.contains(&(ns.clone(), name.clone())) {
            continue;
        }
        match Api::<EndpointSlice>::namespaced(client.clone(), &ns).delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(PodRunnerError::kube(format!("deleting endpoint slice {ns}/{name}"))(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_ports_resolve_numbers_names_and_defaults() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "ports": [{"name": "grpc", "containerPort": 3001}]}]}}))
        .unwrap();
        let port = |target: serde_json::Value| -> ServicePort {
            serde_json::from_value(json!({"port": 8080, "targetPort": target})).unwrap()
        };
        assert_eq!(target_port(&port(json!(3000)), Some(&pod)), Some(3000));
        assert_eq!(target_port(&port(json!("grpc")), Some(&pod)), Some(3001));
        assert_eq!(target_port(&port(json!("http")), Some(&pod)), None);
        let default: ServicePort = serde_json::from_value(json!({"port": 8080})).unwrap();
        assert_eq!(target_port(&default, None), Some(8080));
    }

    #[test]
    fn stored_slices_compare_equal_to_what_was_written() {
        let svc: Service = serde_json::from_value(json!({"metadata": {"name": "s", "namespace": "n"},
            "spec": {"selector": {"app": "a"}, "ports": [{"name": "h2c", "port": 8080, "targetPort": 3000,
                "appProtocol": "kubernetes.io/h2c"}]}}))
        .unwrap();
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "n", "uid": "u",
            "labels": {"app": "a"}}, "spec": {"containers": []}, "status": {"podIP": "10.199.0.2"}}))
        .unwrap();
        assert!(selects(svc.spec.as_ref().unwrap().selector.as_ref().unwrap(), &pod));
        let want = desired(&svc, &[&pod], "node");
        let slice: EndpointSlice = serde_json::from_value(json!({"metadata": {"name": "s-podrunner"},
            "addressType": "IPv4", "endpoints": want["endpoints"], "ports": want["ports"]}))
        .unwrap();
        assert_eq!(stored(&slice), want);
    }
}
