//! Kubernetes watches: one kube-runtime reflector per kind (and per namespace with
//! `--watch-namespace`), each feeding a [`Store`]; every event bumps a change counter that the sync
//! loop debounces. [`Stores::snapshot`] copies the stores into a [`Snapshot`];
//! [`Stores::wait_until_ready`] returns once every store has completed its first list, and nothing
//! is pushed before that.
//!
//! Gateway API kinds are watched only when the cluster serves the `gateway.networking.k8s.io` group
//! (otherwise their watches would never sync and nothing would ever be pushed).

use std::fmt::Debug;
use std::sync::Arc;

use futures_util::StreamExt;
use gateway_api::apis::standard::{
    backendtlspolicies::BackendTlsPolicy, gatewayclasses::GatewayClass, gateways::Gateway, grpcroutes::GrpcRoute,
    httproutes::HttpRoute, referencegrants::ReferenceGrant,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::kong_consumers::{KongConsumer, CREDENTIAL_LABEL};
use crate::kong_plugins::{KongClusterPlugin, KongPlugin, CONFIG_MAP_LABEL, SECRET_LABEL};
use crate::policy::KongUpstreamPolicy;
use crate::settings::Settings;
use crate::snapshot::Snapshot;

#[derive(Debug, Error)]
pub enum WatchError {
    #[error("a {0} reflector stopped before its first list completed")]
    NotReady(&'static str),
}

/// Reader side of every reflector.
#[derive(Clone, Default)]
pub struct Stores {
    pub ingresses: Vec<Store<Ingress>>,
    pub ingress_classes: Vec<Store<IngressClass>>,
    pub services: Vec<Store<Service>>,
    pub endpoint_slices: Vec<Store<EndpointSlice>>,
    pub secrets: Vec<Store<Secret>>,
    /// Every ConfigMap; those not labelled `konghq.com/configmap: "true"` keep only their `ca.crt`
    /// ([`strip_config_map`]).
    pub config_maps: Vec<Store<ConfigMap>>,
    pub gateway_classes: Vec<Store<GatewayClass>>,
    pub gateways: Vec<Store<Gateway>>,
    pub grpc_routes: Vec<Store<GrpcRoute>>,
    pub http_routes: Vec<Store<HttpRoute>>,
    pub reference_grants: Vec<Store<ReferenceGrant>>,
    /// Empty when the cluster does not serve BackendTLSPolicy (an optional CRD).
    pub backend_tls_policies: Vec<Store<BackendTlsPolicy>>,
    /// Not waited for: only `allowedRoutes.namespaces.from: Selector` reads it.
    pub namespaces: Vec<Store<Namespace>>,
    pub kong_upstream_policies: Vec<Store<KongUpstreamPolicy>>,
    pub kong_plugins: Vec<Store<KongPlugin>>,
    pub kong_cluster_plugins: Vec<Store<KongClusterPlugin>>,
    pub kong_consumers: Vec<Store<KongConsumer>>,
}

fn state<K: Resource<DynamicType = ()> + Clone>(stores: &[Store<K>]) -> Vec<Arc<K>> {
    stores.iter().flat_map(|s| s.state()).collect()
}

async fn ready<K: Resource<DynamicType = ()> + Clone>(
    stores: &[Store<K>],
    kind: &'static str,
) -> Result<(), WatchError> {
    for s in stores {
        s.wait_until_ready().await.map_err(|_| WatchError::NotReady(kind))?;
    }
    Ok(())
}

impl Stores {
    /// A sorted copy of everything the stores hold.
    pub fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot {
            ingresses: state(&self.ingresses),
            ingress_classes: state(&self.ingress_classes),
            services: state(&self.services),
            endpoint_slices: state(&self.endpoint_slices),
            secrets: state(&self.secrets),
            config_maps: state(&self.config_maps),
            gateway_classes: state(&self.gateway_classes),
            gateways: state(&self.gateways),
            grpc_routes: state(&self.grpc_routes),
            http_routes: state(&self.http_routes),
            reference_grants: state(&self.reference_grants),
            backend_tls_policies: state(&self.backend_tls_policies),
            namespaces: state(&self.namespaces),
            kong_upstream_policies: state(&self.kong_upstream_policies),
            kong_plugins: state(&self.kong_plugins),
            kong_cluster_plugins: state(&self.kong_cluster_plugins),
            kong_consumers: state(&self.kong_consumers),
        };
        s.sort();
        s
    }

    /// Waits until every store has completed its first list.
    pub async fn wait_until_ready(&self) -> Result<(), WatchError> {
        ready(&self.ingresses, "Ingress").await?;
        ready(&self.ingress_classes, "IngressClass").await?;
        ready(&self.services, "Service").await?;
        ready(&self.endpoint_slices, "EndpointSlice").await?;
        ready(&self.secrets, "Secret").await?;
        ready(&self.config_maps, "ConfigMap").await?;
        ready(&self.gateway_classes, "GatewayClass").await?;
        ready(&self.gateways, "Gateway").await?;
        ready(&self.grpc_routes, "GRPCRoute").await?;
        ready(&self.http_routes, "HTTPRoute").await?;
        ready(&self.reference_grants, "ReferenceGrant").await?;
        ready(&self.backend_tls_policies, "BackendTLSPolicy").await?;
        ready(&self.kong_upstream_policies, "KongUpstreamPolicy").await?;
        ready(&self.kong_plugins, "KongPlugin").await?;
        ready(&self.kong_cluster_plugins, "KongClusterPlugin").await?;
        ready(&self.kong_consumers, "KongConsumer").await
    }
}

/// Running watches: their stores, the change counter and the tasks driving them.
pub struct Watches {
    pub stores: Stores,
    pub changes: watch::Receiver<u64>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Watches {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts one reflector; `strip` trims each object before it is cached.
fn reflect<K>(api: Api<K>, changes: &watch::Sender<u64>, tasks: &mut Vec<JoinHandle<()>>, strip: fn(&mut K)) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(move |o: &mut K| {
            o.managed_fields_mut().clear();
            strip(o);
        })
        .reflect(writer);
    let changes = changes.clone();
    tasks.push(tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => changes.send_modify(|g| *g = g.wrapping_add(1)),
                Err(e) => tracing::warn!(kind = %K::kind(&()), error = %e, "watch error (retrying with backoff)"),
            }
        }
    }));
    reader
}

fn keep<K>(_: &mut K) {}

/// Like [`reflect`], for a kind from an optional CRD: when the cluster does not serve
/// `(group, kind)`, the store is marked ready and stays empty (so it never blocks the first push).
fn reflect_optional<K>(
    client: Client,
    api: Api<K>,
    (group, kind): (&'static str, &'static str),
    changes: &watch::Sender<u64>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, mut writer) = reflector::store();
    let changes = changes.clone();
    tasks.push(tokio::spawn(async move {
        let served = match kube::discovery::group(&client, group).await {
            Ok(g) => g.recommended_resources().iter().any(|(r, _)| r.kind == kind),
            Err(_) => false,
        };
        if !served {
            tracing::info!(group, kind, "not served by the cluster; not watching it");
            writer.apply_watcher_event(&watcher::Event::Init);
            writer.apply_watcher_event(&watcher::Event::InitDone);
            return;
        }
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(|o: &mut K| o.managed_fields_mut().clear())
            .reflect(writer);
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => changes.send_modify(|g| *g = g.wrapping_add(1)),
                Err(e) => tracing::warn!(kind, error = %e, "watch error (retrying with backoff)"),
            }
        }
    }));
    reader
}

/// Only TLS Secrets, CA Secrets (`ca.crt`/`cert`) and Secrets labelled `konghq.com/secret: "true"`
/// (plugin configuration: KongPlugin `configFrom`/`configPatches`) keep their data: the controller
/// must not hold more secrets than it serves.
pub(crate) fn strip_secret(s: &mut Secret) {
    let tls = s.type_.as_deref() == Some("kubernetes.io/tls");
    let ca = s.data.as_ref().is_some_and(|d| d.contains_key("ca.crt") || d.contains_key("cert"));
    let labelled = s.labels().get(SECRET_LABEL).map(String::as_str) == Some("true");
    // Consumer credentials (key-auth, basic-auth, jwt, acl) are served as such.
    let credential = s.labels().contains_key(CREDENTIAL_LABEL);
    if !tls && !ca && !labelled && !credential {
        s.data = None;
        s.string_data = None;
    }
    s.annotations_mut().remove("kubectl.kubernetes.io/last-applied-configuration");
}

/// A ConfigMap labelled `konghq.com/configmap: "true"` (grpc-gateway's `configMapKeyRef`) is kept
/// whole; of any other only `ca.crt` is kept (the CA bundles BackendTLSPolicies reference), so the
/// controller does not hold every ConfigMap of the cluster in memory.
pub(crate) fn strip_config_map(c: &mut ConfigMap) {
    if c.labels().get(CONFIG_MAP_LABEL).map(String::as_str) != Some("true") {
        let ca = c.data.as_ref().and_then(|d| d.get("ca.crt")).cloned();
        c.data = ca.map(|v| [("ca.crt".to_string(), v)].into_iter().collect());
        c.binary_data = None;
    }
    c.annotations_mut().remove("kubectl.kubernetes.io/last-applied-configuration");
}

/// One `Api` per watched namespace (or one for all namespaces).
fn namespaced<K>(client: &Client, settings: &Settings) -> Vec<Api<K>>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    if settings.watch_namespace.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        settings.watch_namespace.iter().map(|ns| Api::namespaced(client.clone(), ns)).collect()
    }
}

/// Starts every watch. `gateway_api`: also watch the Gateway API kinds.
pub fn start(client: &Client, settings: &Settings, gateway_api: bool) -> Watches {
    let (tx, changes) = watch::channel(0u64);
    let mut tasks = Vec::new();
    let mut stores = Stores::default();
    for api in namespaced::<Ingress>(client, settings) {
        stores.ingresses.push(reflect(api, &tx, &mut tasks, keep));
    }
    stores.ingress_classes.push(reflect(Api::<IngressClass>::all(client.clone()), &tx, &mut tasks, keep));
    for api in namespaced::<Service>(client, settings) {
        stores.services.push(reflect(api, &tx, &mut tasks, keep));
    }
    for api in namespaced::<EndpointSlice>(client, settings) {
        stores.endpoint_slices.push(reflect(api, &tx, &mut tasks, keep));
    }
    for api in namespaced::<Secret>(client, settings) {
        stores.secrets.push(reflect(api, &tx, &mut tasks, strip_secret));
    }
    // ConfigMaps: grpc-gateway's `configMapKeyRef` (labelled ones, whole) and BackendTLSPolicy CA
    // bundles (any, `ca.crt` only; see strip_config_map).
    for api in namespaced::<ConfigMap>(client, settings) {
        stores.config_maps.push(reflect(api, &tx, &mut tasks, strip_config_map));
    }
    if gateway_api {
        stores.gateway_classes.push(reflect(Api::<GatewayClass>::all(client.clone()), &tx, &mut tasks, keep));
        for api in namespaced::<Gateway>(client, settings) {
            stores.gateways.push(reflect(api, &tx, &mut tasks, keep));
        }
        for api in namespaced::<GrpcRoute>(client, settings) {
            stores.grpc_routes.push(reflect(api, &tx, &mut tasks, keep));
        }
        for api in namespaced::<HttpRoute>(client, settings) {
            stores.http_routes.push(reflect(api, &tx, &mut tasks, keep));
        }
        for api in namespaced::<ReferenceGrant>(client, settings) {
            stores.reference_grants.push(reflect(api, &tx, &mut tasks, keep));
        }
        stores.namespaces.push(reflect(Api::<Namespace>::all(client.clone()), &tx, &mut tasks, keep));
        for api in namespaced::<BackendTlsPolicy>(client, settings) {
            let kind = (crate::translate::gateway::GATEWAY_GROUP, "BackendTLSPolicy");
            stores.backend_tls_policies.push(reflect_optional(client.clone(), api, kind, &tx, &mut tasks));
        }
    }
    for api in namespaced::<KongUpstreamPolicy>(client, settings) {
        let store =
            reflect_optional(client.clone(), api, ("configuration.konghq.com", "KongUpstreamPolicy"), &tx, &mut tasks);
        stores.kong_upstream_policies.push(store);
    }
    for api in namespaced::<KongPlugin>(client, settings) {
        let store = reflect_optional(client.clone(), api, (crate::kong_plugins::GROUP, "KongPlugin"), &tx, &mut tasks);
        stores.kong_plugins.push(store);
    }
    let api = Api::<KongClusterPlugin>::all(client.clone());
    let store =
        reflect_optional(client.clone(), api, (crate::kong_plugins::GROUP, "KongClusterPlugin"), &tx, &mut tasks);
    stores.kong_cluster_plugins.push(store);
    for api in namespaced::<KongConsumer>(client, settings) {
        let store =
            reflect_optional(client.clone(), api, (crate::kong_plugins::GROUP, "KongConsumer"), &tx, &mut tasks);
        stores.kong_consumers.push(store);
    }
    Watches { stores, changes, tasks }
}

/// Whether the cluster serves the Gateway API kinds sluice reads.
pub(crate) async fn gateway_api_available(client: &Client) -> bool {
    match kube::discovery::group(client, crate::translate::gateway::GATEWAY_GROUP).await {
        Ok(group) => {
            let kinds: Vec<String> = group.recommended_resources().into_iter().map(|(r, _)| r.kind).collect();
            ["GRPCRoute", "HTTPRoute", "Gateway", "GatewayClass", "ReferenceGrant"]
                .iter()
                .all(|k| kinds.iter().any(|have| have == k))
        }
        Err(e) => {
            tracing::info!(error = %e, "Gateway API not served by the cluster; not watching it");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(v: serde_json::Value) -> Secret {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn only_tls_and_ca_secrets_keep_their_data() {
        let data = serde_json::json!({"tls.crt": "eA==", "tls.key": "eA=="});
        let mut tls = secret(serde_json::json!({"metadata": {"name": "t"}, "type": "kubernetes.io/tls", "data": data}));
        strip_secret(&mut tls);
        assert!(tls.data.is_some());
        let mut ca =
            secret(serde_json::json!({"metadata": {"name": "c"}, "type": "Opaque", "data": {"ca.crt": "eA=="}}));
        strip_secret(&mut ca);
        assert!(ca.data.is_some());
        let mut other =
            secret(serde_json::json!({"metadata": {"name": "o"}, "type": "Opaque", "data": {"password": "eA=="}}));
        strip_secret(&mut other);
        assert!(other.data.is_none());
        let mut labelled = secret(serde_json::json!({"metadata": {"name": "p", "labels": {SECRET_LABEL: "true"}},
            "type": "Opaque", "data": {"config": "eA=="}}));
        strip_secret(&mut labelled);
        assert!(labelled.data.is_some());
    }

    #[test]
    fn config_maps_keep_only_their_ca_bundle() {
        let cm = |data: serde_json::Value| -> ConfigMap {
            serde_json::from_value(serde_json::json!({"metadata": {"name": "c"}, "data": data})).unwrap()
        };
        let mut ca = cm(serde_json::json!({"ca.crt": "PEM", "other": "big"}));
        strip_config_map(&mut ca);
        assert_eq!(ca.data.unwrap().into_iter().collect::<Vec<_>>(), [("ca.crt".to_string(), "PEM".to_string())]);
        let mut other = cm(serde_json::json!({"other": "big"}));
        strip_config_map(&mut other);
        assert!(other.data.is_none());
        let mut labelled: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "labels": {CONFIG_MAP_LABEL: "true"}}, "data": {"api.proto": "syntax"}}))
        .unwrap();
        strip_config_map(&mut labelled);
        assert_eq!(labelled.data.unwrap().len(), 1, "a labelled ConfigMap is kept whole");
    }
}
