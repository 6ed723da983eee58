//! The Deployment and ReplicaSet controllers' part, folded into one step: each Deployment keeps
//! `spec.replicas` Pods of its current template (labelled `pod-template-hash`, owned by the
//! Deployment); Pods of an older template are deleted, as are Pods whose owning Deployment is gone
//! (the garbage collector's part). The Deployment's status counts them.
//!
//! Two parts of kube-controller-manager's job come with it: the namespace's `default`
//! ServiceAccount, which Pod admission requires (the ServiceAccount controller's part), is created
//! before the first Pod; and Pods get `automountServiceAccountToken: false` unless their template
//! says otherwise, since the token volume admission would add needs the root CA ConfigMap that
//! only kube-controller-manager publishes, and the runner mounts only Secret volumes.

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::{now, PodRunnerError};

const HASH_LABEL: &str = "pod-template-hash";

/// The owning Deployment's UID of a Pod the runner created.
fn owner(pod: &Pod) -> Option<&str> {
    pod.owner_references().iter().find(|o| o.kind == "Deployment" && o.controller == Some(true)).map(|o| o.uid.as_str())
}

/// A stable short hash of the Pod template (FNV-1a of its JSON).
fn template_hash(d: &Deployment) -> String {
    let text = serde_json::to_string(&d.spec.as_ref().map(|s| &s.template)).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    format!("{:08x}", h as u32)
}

pub(crate) fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// One pass over all Deployments (outside `skip` namespaces) and the Pods they own.
pub(super) async fn reconcile(client: &Client, skip: &[String]) -> Result<(), PodRunnerError> {
    let deployments = Api::<Deployment>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(PodRunnerError::kube("listing deployments"))?;
    let pods = Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(PodRunnerError::kube("listing pods"))?;
    let uids: HashSet<String> = deployments.iter().filter_map(|d| d.uid()).collect();
    let mut owned: HashMap<&str, Vec<&Pod>> = HashMap::new();
    let skipped = |ns: Option<String>| ns.is_some_and(|ns| skip.contains(&ns));
    for pod in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none() && !skipped(p.namespace())) {
        let Some(uid) = owner(pod) else { continue };
        if uids.contains(uid) {
            owned.entry(uid).or_default().push(pod);
        } else {
            delete(client, pod).await?;
        }
    }
    for d in deployments.iter().filter(|d| d.metadata.deletion_timestamp.is_none() && !skipped(d.namespace())) {
        let uid = d.uid().unwrap_or_default();
        let hash = template_hash(d);
        let mut current = Vec::new();
        for pod in owned.remove(uid.as_str()).unwrap_or_default() {
            if pod.labels().get(HASH_LABEL) == Some(&hash) {
                current.push(pod);
            } else {
                delete(client, pod).await?;
            }
        }
        current.sort_by_key(|p| p.name_any());
        let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0) as usize;
        for pod in current.iter().skip(desired) {
            delete(client, pod).await?;
        }
        if current.len() < desired {
            default_service_account(client, &d.namespace().unwrap_or_default()).await?;
        }
        for _ in current.len()..desired {
            create(client, d, &hash).await?;
        }
        let kept = &current[..current.len().min(desired)];
        write_status(client, d, kept.len(), kept.iter().filter(|p| is_ready(p)).count()).await?;
    }
    Ok(())
}

async fn delete(client: &Client, pod: &Pod) -> Result<(), PodRunnerError> {
    let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
    match Api::<Pod>::namespaced(client.clone(), &ns).delete(&name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(PodRunnerError::kube(format!("deleting pod {ns}/{name}"))(e)),
    }
}

/// The namespace's `default` ServiceAccount (Pod admission rejects Pods without it).
async fn default_service_account(client: &Client, ns: &str) -> Result<(), PodRunnerError> {
    let mut sa = ServiceAccount::default();
    sa.metadata.name = Some("default".into());
    match Api::<ServiceAccount>::namespaced(client.clone(), ns).create(&PostParams::default(), &sa).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(PodRunnerError::kube(format!("creating serviceaccount {ns}/default"))(e)),
    }
}

async fn create(client: &Client, d: &Deployment, hash: &str) -> Result<(), PodRunnerError> {
    let (ns, name) = (d.namespace().unwrap_or_default(), d.name_any());
    let template = d.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut labels: BTreeMap<String, String> = meta.labels.unwrap_or_default();
    labels.insert(HASH_LABEL.to_string(), hash.to_string());
    let mut spec = template.spec.unwrap_or_default();
    spec.automount_service_account_token.get_or_insert(false);
    let mut pod = Pod { spec: Some(spec), ..Pod::default() };
    pod.metadata.generate_name = Some(format!("{name}-{hash}-"));
    pod.metadata.labels = Some(labels);
    pod.metadata.annotations = meta.annotations;
    pod.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        name: name.clone(),
        uid: d.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    Api::<Pod>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &pod)
        .await
        .map_err(PodRunnerError::kube(format!("creating a pod of deployment {ns}/{name}")))?;
    Ok(())
}

/// Writes replica counts and `Available` when they changed.
async fn write_status(client: &Client, d: &Deployment, replicas: usize, ready: usize) -> Result<(), PodRunnerError> {
    let (ns, name) = (d.namespace().unwrap_or_default(), d.name_any());
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let (replicas, ready) = (replicas as i32, ready as i32);
    let current = d.status.clone().unwrap_or_default();
    if current.replicas == Some(replicas)
        && current.ready_replicas.unwrap_or(0) == ready
        && current.observed_generation == d.metadata.generation
    {
        return Ok(());
    }
    let available = if ready >= desired { "True" } else { "False" };
    let now = now();
    let status = json!({"status": {
        "observedGeneration": d.metadata.generation,
        "replicas": replicas, "updatedReplicas": replicas, "readyReplicas": ready, "availableReplicas": ready,
        "unavailableReplicas": (desired - ready).max(0),
        "conditions": [{"type": "Available", "status": available, "reason": "SluicePodRunner",
            "lastUpdateTime": now, "lastTransitionTime": now}],
    }});
    Api::<Deployment>::namespaced(client.clone(), &ns)
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .map_err(PodRunnerError::kube(format!("status of deployment {ns}/{name}")))?;
    Ok(())
}
