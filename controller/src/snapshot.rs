//! The world as the translator sees it: owned copies of every watched object, one collection per
//! kind, filled by the reflectors ([`crate::watch`]) or the manifest loader ([`crate::files`]).
//! Objects left out after the proxy rejected them are not removed from it: the translation is told
//! which to leave out (`translate::translate_excluding`), so that it can report them.

use std::sync::Arc;

use gateway_api::apis::standard::{
    backendtlspolicies::BackendTlsPolicy, gatewayclasses::GatewayClass, gateways::Gateway, grpcroutes::GrpcRoute,
    httproutes::HttpRoute, referencegrants::ReferenceGrant,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::{Resource, ResourceExt};

use crate::kong_consumers::KongConsumer;
use crate::kong_plugins::{KongClusterPlugin, KongPlugin};
use crate::policy::KongUpstreamPolicy;

/// Every object the translator may read. Objects are shared (`Arc`) with the reflector stores, so
/// taking a snapshot copies pointers, not objects.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub ingresses: Vec<Arc<Ingress>>,
    pub ingress_classes: Vec<Arc<IngressClass>>,
    pub services: Vec<Arc<Service>>,
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
    pub secrets: Vec<Arc<Secret>>,
    /// ConfigMaps: whole when labelled `konghq.com/configmap: "true"` (grpc-gateway's
    /// `configMapKeyRef`), else only their `ca.crt` (BackendTLSPolicy CA bundles).
    pub config_maps: Vec<Arc<ConfigMap>>,
    pub gateway_classes: Vec<Arc<GatewayClass>>,
    pub gateways: Vec<Arc<Gateway>>,
    pub grpc_routes: Vec<Arc<GrpcRoute>>,
    pub http_routes: Vec<Arc<HttpRoute>>,
    pub reference_grants: Vec<Arc<ReferenceGrant>>,
    pub backend_tls_policies: Vec<Arc<BackendTlsPolicy>>,
    /// Namespaces (their labels select routes for Gateway listeners, `allowedRoutes` Selector).
    pub namespaces: Vec<Arc<Namespace>>,
    pub kong_upstream_policies: Vec<Arc<KongUpstreamPolicy>>,
    pub kong_plugins: Vec<Arc<KongPlugin>>,
    pub kong_cluster_plugins: Vec<Arc<KongClusterPlugin>>,
    pub kong_consumers: Vec<Arc<KongConsumer>>,
}

/// Sort key: namespace, then name (cluster-scoped objects have an empty namespace).
fn key<K: Resource>(o: &Arc<K>) -> (String, String) {
    (o.namespace().unwrap_or_default(), o.name_any())
}

fn sort<K: Resource>(v: &mut [Arc<K>]) {
    v.sort_by_cached_key(key);
}

impl Snapshot {
    /// Sorts every collection by namespace/name so that translation never depends on the order in
    /// which objects arrived.
    pub fn sort(&mut self) {
        sort(&mut self.ingresses);
        sort(&mut self.kong_consumers);
        sort(&mut self.ingress_classes);
        sort(&mut self.services);
        sort(&mut self.endpoint_slices);
        sort(&mut self.secrets);
        sort(&mut self.config_maps);
        sort(&mut self.gateway_classes);
        sort(&mut self.gateways);
        sort(&mut self.grpc_routes);
        sort(&mut self.http_routes);
        sort(&mut self.reference_grants);
        sort(&mut self.backend_tls_policies);
        sort(&mut self.namespaces);
        sort(&mut self.kong_upstream_policies);
        sort(&mut self.kong_plugins);
        sort(&mut self.kong_cluster_plugins);
    }

    /// Number of objects of all kinds.
    pub fn len(&self) -> usize {
        self.ingresses.len()
            + self.ingress_classes.len()
            + self.services.len()
            + self.endpoint_slices.len()
            + self.secrets.len()
            + self.config_maps.len()
            + self.gateway_classes.len()
            + self.gateways.len()
            + self.grpc_routes.len()
            + self.http_routes.len()
            + self.reference_grants.len()
            + self.backend_tls_policies.len()
            + self.namespaces.len()
            + self.kong_upstream_policies.len()
            + self.kong_plugins.len()
            + self.kong_cluster_plugins.len()
            + self.kong_consumers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
