//! Ingress `status.loadBalancer`: the proxy's addresses, from `--publish-status-address` or the
//! load-balancer status of `--publish-service`. Written only after the proxy accepted a config that
//! contains the Ingress, only by the leader, and only when it changes (merge patch on the status
//! subresource).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerIngress};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use thiserror::Error;
use tokio::sync::Mutex;

use crate::leader::Leadership;
use crate::settings::Settings;
use crate::translate::ObjectRef;

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
pub fn service_addresses(svc: &Service) -> Vec<IngressLoadBalancerIngress> {
    let lb: Vec<IngressLoadBalancerIngress> = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|list| {
            list.iter()
                .map(|i| IngressLoadBalancerIngress { ip: i.ip.clone(), hostname: i.hostname.clone(), ports: None })
                .collect()
        })
        .unwrap_or_default();
    if !lb.is_empty() {
        return lb;
    }
    let spec = svc.spec.as_ref();
    let external = spec.and_then(|s| s.external_ips.clone()).unwrap_or_default();
    let ips = if external.is_empty() { spec.and_then(|s| s.cluster_ips.clone()).unwrap_or_default() } else { external };
    ips.iter().filter(|ip| ip.as_str() != "None").map(|ip| address(ip)).collect()
}

/// Writes Ingress statuses.
pub struct StatusWriter {
    client: Client,
    settings: Arc<Settings>,
    leadership: Leadership,
    /// What we last wrote per Ingress.
    written: Mutex<HashMap<ObjectRef, Vec<IngressLoadBalancerIngress>>>,
}

impl StatusWriter {
    pub fn new(client: Client, settings: Arc<Settings>, leadership: Leadership) -> Self {
        StatusWriter { client, settings, leadership, written: Mutex::new(HashMap::new()) }
    }

    async fn addresses(&self) -> Result<Vec<IngressLoadBalancerIngress>, StatusError> {
        if !self.settings.publish_status_address.is_empty() {
            return Ok(self.settings.publish_status_address.iter().map(|a| address(a)).collect());
        }
        let Ok(Some((ns, name))) = self.settings.publish_service() else { return Ok(Vec::new()) };
        let svc = Api::<Service>::namespaced(self.client.clone(), &ns).get(&name).await?;
        Ok(service_addresses(&svc))
    }

    /// Sets the status of every given Ingress (translated and applied) when it changed.
    pub async fn update(&self, ingresses: &[ObjectRef]) -> Result<(), StatusError> {
        if !self.settings.update_status || !self.leadership.is_leader() {
            return Ok(());
        }
        let addresses = self.addresses().await?;
        if addresses.is_empty() {
            return Ok(());
        }
        let mut written = self.written.lock().await;
        written.retain(|k, _| ingresses.contains(k));
        for ing in ingresses {
            if written.get(ing) == Some(&addresses) {
                continue;
            }
            let api: Api<Ingress> = Api::namespaced(self.client.clone(), &ing.namespace);
            let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": addresses}}});
            match api.patch_status(&ing.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {
                    written.insert(ing.clone(), addresses.clone());
                }
                Err(e) => tracing::warn!(ingress = %ing, error = %e, "updating Ingress status failed"),
            }
        }
        Ok(())
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
        assert_eq!(service_addresses(&svc)[0].ip.as_deref(), Some("203.0.113.7"));
        let mut plain = svc.clone();
        plain.status = None;
        assert_eq!(service_addresses(&plain)[0].ip.as_deref(), Some("10.96.0.10"));
    }
}
