//! The one Node the runner's Pods are bound to, Ready and never heartbeating (nothing here runs
//! the node lifecycle controller that would mark it unreachable).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use super::{now, PodRunnerError};

/// The node's InternalIP (Pods' hostIP): processes run on this host.
pub(super) const NODE_IP: &str = "127.0.0.1";

/// Creates the Node (if missing) and writes its status: Ready, InternalIP, capacity.
pub(super) async fn register(client: &Client, name: &str) -> Result<(), PodRunnerError> {
    let api: Api<Node> = Api::all(client.clone());
    let mut node = Node::default();
    node.metadata.name = Some(name.to_string());
    node.metadata.labels = Some(BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), name.to_string()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
    ]));
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(PodRunnerError::kube(format!("creating node {name}"))(e)),
    }
    let now = now();
    let capacity = BTreeMap::from([
        ("cpu".to_string(), Quantity("16".into())),
        ("memory".to_string(), Quantity("64Gi".into())),
        ("pods".to_string(), Quantity("250".into())),
    ]);
    let status = json!({"status": {
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "sluice pod runner", "lastHeartbeatTime": now, "lastTransitionTime": now}],
        "addresses": [{"type": "InternalIP", "address": NODE_IP}, {"type": "Hostname", "address": name}],
        "capacity": capacity, "allocatable": capacity,
    }});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .map_err(PodRunnerError::kube(format!("node {name} status")))?;
    Ok(())
}
