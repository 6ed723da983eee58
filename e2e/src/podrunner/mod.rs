//! A local stand-in for kubelet, scheduler and the workload controllers, for running the Gateway
//! API conformance suite against the real kube-apiserver without a container runtime.
//!
//! The suite deploys Deployments and Services of its echo backend and waits for their Pods to be
//! Ready; the controller under test then needs EndpointSlices with the Pods' addresses. On a real
//! cluster kube-controller-manager (Deployments, EndpointSlices), kube-scheduler and kubelet do
//! that. Here the runner does it, reacting to watch events:
//! - [`node`]: registers one Ready [`Node`](k8s_openapi::api::core::v1::Node) the Pods are bound to;
//! - [`replicas`]: keeps `spec.replicas` Pods of each Deployment's template (what the Deployment and
//!   ReplicaSet controllers do, without the intermediate ReplicaSet), and deletes Pods whose owner
//!   is gone (the garbage collector's part);
//! - [`pods`]: binds pending Pods to the node, runs each one's container as a local process (the
//!   image mapped to a local binary, see [`Images`]) in its own network namespace with a private
//!   address ([`crate::netns::BackendNet`]), writes its status once the process accepts TCP
//!   connections, and finishes deletions (stops the process, removes the namespace, deletes the
//!   Pod with grace 0);
//! - [`endpoints`]: writes one EndpointSlice per selector Service with its Ready Pods.
//!
//! Everything it starts is stopped when the [`PodRunner`] is stopped or dropped.

mod endpoints;
mod node;
mod pods;
mod replicas;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The field manager / `managed-by` value of what the runner writes.
pub(crate) const MANAGER: &str = "sluice-podrunner";

/// Failures of the runner's API calls and processes.
#[derive(Debug, thiserror::Error)]
pub enum PodRunnerError {
    #[error("Kubernetes API ({what}): {source}")]
    Kube { what: String, source: kube::Error },
    #[error("pod {pod}: {detail}")]
    Pod { pod: String, detail: String },
    /// Something the Pod needs does not exist yet (retried on the next event).
    #[error("waiting for {0}")]
    Waiting(String),
    #[error(transparent)]
    Netns(#[from] crate::netns::NetnsError),
}

impl PodRunnerError {
    pub(crate) fn kube(what: impl Into<String>) -> impl FnOnce(kube::Error) -> PodRunnerError {
        let what = what.into();
        move |source| PodRunnerError::Kube { what, source }
    }
}

/// Which local binary runs a container image (by substring of the image name). An image mapped
/// to `None` gets an address and is reported Ready without a process (a backend no test reaches
/// over the proxy, such as the suite's DNS server for UDPRoute).
#[derive(Debug, Clone, Default)]
pub struct Images {
    pub map: Vec<(String, Option<PathBuf>)>,
}

impl Images {
    /// The binary for `image`; `Err` for an image with no mapping.
    pub fn binary(&self, image: &str) -> Result<Option<PathBuf>, String> {
        self.map
            .iter()
            .find(|(pattern, _)| image.contains(pattern.as_str()))
            .map(|(_, bin)| bin.clone())
            .ok_or_else(|| format!("image {image} has no local binary (known: {:?})", self.patterns()))
    }

    fn patterns(&self) -> Vec<&str> {
        self.map.iter().map(|(p, _)| p.as_str()).collect()
    }
}

/// What the runner needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Node's name.
    pub node: String,
    /// Image to binary map.
    pub images: Images,
    /// Where Pods' files (Secret volumes, logs) go.
    pub dir: PathBuf,
    /// Namespaces whose Deployments and Pods the runner leaves alone (e.g. sluice's own, whose
    /// controller and proxy run as local processes already).
    pub skip_namespaces: Vec<String>,
}

/// The running runner; [`PodRunner::stop`] (or drop) stops every process and removes every
/// network namespace it created.
pub struct PodRunner {
    task: Option<JoinHandle<()>>,
    watchers: Vec<JoinHandle<()>>,
}

impl PodRunner {
    /// Registers the node and starts reconciling.
    pub async fn start(client: Client, config: Config) -> Result<PodRunner, PodRunnerError> {
        node::register(&client, &config.node).await?;
        let notify = Arc::new(Notify::new());
        let watchers = vec![
            watch::<Pod>(Api::all(client.clone()), notify.clone()),
            watch::<Deployment>(Api::all(client.clone()), notify.clone()),
            watch::<Service>(Api::all(client.clone()), notify.clone()),
            // Secret volumes: a Pod waits for its Secret.
            watch::<Secret>(Api::all(client.clone()), notify.clone()),
        ];
        let task = tokio::spawn(async move {
            let mut running = pods::Running::new(client.clone(), config.clone());
            loop {
                notify.notified().await;
                if let Err(e) = replicas::reconcile(&client, &config.skip_namespaces).await {
                    tracing::warn!(error = %e, "deployments");
                }
                if let Err(e) = running.reconcile().await {
                    tracing::warn!(error = %e, "pods");
                }
                if let Err(e) = endpoints::reconcile(&client, &config.node).await {
                    tracing::warn!(error = %e, "endpoint slices");
                }
            }
        });
        Ok(PodRunner { task: Some(task), watchers })
    }

    /// Stops reconciling; the processes and namespaces go with the reconciler's state.
    pub async fn stop(mut self) {
        for w in &self.watchers {
            w.abort();
        }
        if let Some(task) = self.task.take() {
            task.abort();
            // Aborted at an await point: the reconciler's state (processes, namespaces) is dropped.
            let _ = task.await;
        }
    }
}

impl Drop for PodRunner {
    fn drop(&mut self) {
        for w in &self.watchers {
            w.abort();
        }
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Wakes the reconciler on every watch event of `api` (the reconciler lists what it needs).
fn watch<K>(api: Api<K>, notify: Arc<Notify>) -> JoinHandle<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default,
{
    tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default()).default_backoff().boxed();
        while let Some(event) = events.next().await {
            if let Err(e) = event {
                tracing::debug!(error = %e, "watch");
            }
            notify.notify_one();
        }
    })
}

/// Pods by `namespace/name`, the key the reconcilers share.
pub(crate) fn key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

pub(crate) type ByKey<T> = HashMap<String, T>;

/// The current time as the API writes it (RFC 3339, whole seconds).
pub(crate) fn now() -> String {
    let t = k8s_openapi::jiff::Timestamp::now();
    k8s_openapi::jiff::Timestamp::from_second(t.as_second()).unwrap_or(t).to_string()
}
