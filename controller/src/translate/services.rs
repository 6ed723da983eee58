//! Kubernetes Service + port → Kong service, named as KIC names it: name `<ns>.<svc>.<port>`, host =
//! the upstream name, KIC's defaults, then the Service's `konghq.com/*` annotations.
//!
//! A Service is resolved once per translation; its annotation problems are reported once, on the
//! Service, and every Ingress that points at a broken or missing Service gets its own problem.

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::networking::v1::IngressServiceBackend;
use kube::ResourceExt;
use proxy_config::Protocol;

use super::annotations::{self, ServiceAnnotations};
use super::plugins::{self, Scope};
use super::{certificates, names, upstreams, Context, KongService, ObjectRef};

/// Kong's defaults for a service.
const DEFAULT_TIMEOUT_MS: u64 = 60_000;
const DEFAULT_RETRIES: u32 = 5;

/// The port of an Ingress backend: KIC renders it as the number, or the port name.
pub(crate) fn port_key(backend: &IngressServiceBackend) -> Option<String> {
    let port = backend.port.as_ref()?;
    match (port.number, port.name.as_deref()) {
        (Some(n), _) if n > 0 => Some(n.to_string()),
        (_, Some(name)) if !name.is_empty() => Some(name.to_string()),
        _ => None,
    }
}

/// The effective service path: none for gRPC (Kong forbids it), else the annotation, else `/` when
/// an Ingress rule uses the service (KIC leaves default-backend-only services without a path).
pub(crate) fn final_path(
    service: &proxy_config::Service,
    used_by_rule: bool,
    annotated: Option<String>,
) -> Option<String> {
    if service.protocol.is_grpc() {
        None
    } else {
        annotated.or_else(|| used_by_rule.then(|| "/".to_string()))
    }
}

impl<'a> Context<'a> {
    /// Parsed annotations of a Service, or `None` when the Service is left out.
    pub(crate) fn annotations_of(&mut self, svc: &Service) -> Option<ServiceAnnotations> {
        let key = (svc.namespace().unwrap_or_default(), svc.name_any());
        if let Some(cached) = self.service_annotations.get(&key) {
            return cached.clone();
        }
        let object = ObjectRef::of(svc);
        let empty = Default::default();
        let raw = svc.metadata.annotations.as_ref().unwrap_or(&empty);
        let parsed = match annotations::check_hostile(&object, raw) {
            Some(p) => {
                self.problems.push(p);
                None
            }
            None => Some(annotations::service_annotations(&object, raw, &mut self.problems)),
        };
        self.service_annotations.insert(key, parsed.clone());
        parsed
    }

    /// Resolves an Ingress backend to a Kong service (creating it on first use) and returns its name.
    /// `None` (with a problem on `referrer`) when the backend cannot be used.
    pub(crate) fn backend(
        &mut self,
        namespace: &str,
        backend: &IngressServiceBackend,
        referrer: &ObjectRef,
        field: &str,
        from_rule: bool,
    ) -> Option<String> {
        let Some(port_key) = port_key(backend) else {
            self.problem(referrer, format!("{field}.port"), "backend service port has neither a number nor a name");
            return None;
        };
        let snapshot_svc = self.services_by_name.get(&(namespace.to_string(), backend.name.clone())).copied();
        let Some(svc) = snapshot_svc else {
            self.problem(referrer, format!("{field}.name"), format!("Service {namespace}/{} not found", backend.name));
            return None;
        };
        let svc_ref = ObjectRef::of(svc);
        if self.is_excluded(&svc_ref) {
            self.problem(
                referrer,
                format!("{field}.name"),
                format!("Service {namespace}/{} was rejected by the proxy; its routes are left out", backend.name),
            );
            return None;
        }
        let Some(ann) = self.annotations_of(svc) else {
            self.problem(
                referrer,
                format!("{field}.name"),
                format!("Service {namespace}/{} is left out (invalid annotations); so are its routes", backend.name),
            );
            return None;
        };
        let Some(port) = find_port(svc, backend) else {
            self.problem(
                referrer,
                format!("{field}.port"),
                format!("Service {namespace}/{} has no port {port_key}", backend.name),
            );
            return None;
        };
        let name = names::service_name(namespace, &backend.name, &port_key);
        if !self.kong_services.contains_key(&name) {
            let ks = self.build_service(svc, &svc_ref, &port, &ann, &name, &port_key);
            self.kong_services.insert(name.clone(), ks);
            self.want_plugins(Scope::Service(name.clone()), &svc_ref, plugins::from_annotation(&ann.plugins));
        }
        if let Some(ks) = self.kong_services.get_mut(&name) {
            ks.used_by_rule |= from_rule;
        }
        Some(name)
    }

    fn build_service(
        &mut self,
        svc: &Service,
        svc_ref: &ObjectRef,
        port: &ServicePort,
        ann: &ServiceAnnotations,
        name: &str,
        port_key: &str,
    ) -> KongService {
        let namespace = svc_ref.namespace.as_str();
        let host = names::upstream_name(namespace, &svc_ref.name, port_key);
        let tags = names::tags(svc_ref, &ann.tags);
        let protocol = ann.protocol.unwrap_or(Protocol::Http);
        let mut annotated_path = ann.path.clone();
        if protocol.is_grpc() && annotated_path.is_some() {
            self.problem(
                svc_ref,
                annotations::field(annotations::PATH),
                format!("dropped: a {protocol} service cannot have a path (Kong forbids it)"),
            );
            annotated_path = None;
        }
        let ca_ids = certificates::upstream_ca_ids(self, namespace, ann, svc_ref, protocol.is_tls());
        let client_certificate = match ann.client_cert.as_deref() {
            Some(secret) if protocol.is_tls() => certificates::client_certificate(self, namespace, secret, svc_ref),
            Some(_) => {
                self.problem(
                    svc_ref,
                    annotations::field(annotations::CLIENT_CERT),
                    "ignored: a client certificate needs protocol https or grpcs",
                );
                None
            }
            None => None,
        };
        let upstream = upstreams::upstream(self, svc, svc_ref, port, ann, host.clone(), tags.clone());
        let service = proxy_config::Service {
            id: None,
            url: None,
            name: Some(name.to_string()),
            protocol,
            host,
            port: u16::try_from(port.port).ok().filter(|p| *p > 0).unwrap_or(80),
            path: None,
            connect_timeout: ann.connect_timeout.unwrap_or(DEFAULT_TIMEOUT_MS),
            read_timeout: ann.read_timeout.unwrap_or(DEFAULT_TIMEOUT_MS),
            write_timeout: ann.write_timeout.unwrap_or(DEFAULT_TIMEOUT_MS),
            retries: ann.retries.unwrap_or(DEFAULT_RETRIES),
            retry_on_unavailable: None,
            retry_buffer_size: None,
            tls_verify: ann.tls_verify,
            tls_verify_depth: ann.tls_verify_depth,
            ca_certificates: (!ca_ids.is_empty()).then_some(ca_ids),
            client_certificate,
            enabled: true,
            tags,
            routes: Vec::new(),
            plugins: Vec::new(),
        };
        KongService { service, routes: Vec::new(), upstream, used_by_rule: false, annotated_path }
    }
}

/// The Service port an Ingress backend names (by number or by name). An ExternalName Service may
/// declare no ports: a numbered backend port is then taken as is.
fn find_port(svc: &Service, backend: &IngressServiceBackend) -> Option<ServicePort> {
    let spec = svc.spec.as_ref()?;
    let wanted = backend.port.as_ref()?;
    let ports = spec.ports.as_deref().unwrap_or_default();
    let found = match (wanted.number, wanted.name.as_deref()) {
        (Some(n), _) if n > 0 => ports.iter().find(|p| p.port == n),
        (_, Some(name)) => ports.iter().find(|p| p.name.as_deref() == Some(name)),
        _ => None,
    };
    match found {
        Some(p) => Some(p.clone()),
        None if spec.type_.as_deref() == Some("ExternalName") => {
            wanted.number.filter(|n| *n > 0).map(|n| ServicePort { port: n, ..Default::default() })
        }
        None => None,
    }
}
