//! Our GatewayClasses and Gateways, and what each listener accepts: the
//! protocol (HTTP and HTTPS; both serve HTTPRoute and GRPCRoute), the hostname, `allowedRoutes`
//! (kinds and namespaces), the TLS certificate of an HTTPS listener (`certificateRefs`, a
//! cross-namespace Secret needs a ReferenceGrant), and conflicts between listeners on one port.
//!
//! Gateway listeners do not open sockets: the proxy listens where `KONG_PROXY_LISTEN` says, and
//! every listener is served on every proxy port of its kind (see controller/GATEWAY.md).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use gateway_api::apis::standard::gatewayclasses::GatewayClass;
use gateway_api::apis::standard::gateways::{
    Gateway, GatewayListeners, GatewayListenersAllowedRoutesNamespacesFrom,
    GatewayListenersAllowedRoutesNamespacesSelector, GatewayListenersTlsMode,
};
use gateway_api::apis::standard::referencegrants::ReferenceGrant;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use super::model::{ClassStatus, Cond, RouteKind};
use super::{hostnames, refs, GATEWAY_GROUP};
use crate::translate::certificates::load_tls;
use crate::translate::{ObjectRef, Problem};

/// Which namespaces a listener accepts routes from.
#[derive(Debug, Clone)]
pub(crate) enum Namespaces {
    Same,
    All,
    Selector(GatewayListenersAllowedRoutesNamespacesSelector),
}

/// A TLS certificate of an HTTPS listener.
#[derive(Debug, Clone)]
pub(crate) struct ListenerCert {
    pub secret: ObjectRef,
    pub cert: String,
    pub key: String,
}

/// One listener, evaluated.
#[derive(Debug, Clone)]
pub(crate) struct Listener {
    pub name: String,
    pub protocol: String,
    pub port: i32,
    pub hostname: Option<String>,
    pub kinds: Vec<RouteKind>,
    pub namespaces: Namespaces,
    pub accepted: Cond,
    pub resolved_refs: Cond,
    pub conflicted: Cond,
    pub certificate: Option<ListenerCert>,
    /// Routes accepted on this listener (filled by the attachment step).
    pub attached: i32,
}

impl Listener {
    /// Routes may attach (accepted, not conflicted).
    pub(crate) fn usable(&self) -> bool {
        self.accepted.is_true() && !self.conflicted.is_true()
    }

    pub(crate) fn programmed(&self) -> Cond {
        if self.usable() && self.resolved_refs.is_true() {
            Cond::new("Programmed", true, "Programmed", "")
        } else {
            Cond::new("Programmed", false, "Invalid", "the listener is not valid; see its other conditions")
        }
    }

    /// Whether a route of this kind in this namespace may attach.
    pub(crate) fn allows(&self, kind: RouteKind, route_ns: &str, gateway_ns: &str, labels: &NamespaceLabels) -> bool {
        self.kinds.contains(&kind)
            && match &self.namespaces {
                Namespaces::Same => route_ns == gateway_ns,
                Namespaces::All => true,
                Namespaces::Selector(sel) => labels.get(route_ns).is_some_and(|l| selector_matches(sel, l)),
            }
    }
}

/// Labels of the namespaces the controller knows (for `allowedRoutes.namespaces.from: Selector`).
pub(crate) type NamespaceLabels = HashMap<String, BTreeMap<String, String>>;

/// One of our Gateways, evaluated.
#[derive(Debug, Clone)]
pub(crate) struct GatewayInfo {
    pub obj: ObjectRef,
    pub generation: Option<i64>,
    pub accepted: Cond,
    pub listeners: Vec<Listener>,
}

/// A label selector (`matchLabels` AND `matchExpressions`, Kubernetes semantics).
pub(crate) fn selector_matches(
    sel: &GatewayListenersAllowedRoutesNamespacesSelector,
    labels: &BTreeMap<String, String>,
) -> bool {
    let labels_ok = sel.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

/// Statuses of the GatewayClasses naming our controller, and the names of the accepted ones.
pub(crate) fn classes(list: &[Arc<GatewayClass>], controller: &str) -> (Vec<ClassStatus>, HashSet<String>) {
    let mut statuses = Vec::new();
    let mut accepted = HashSet::new();
    for c in list.iter().filter(|c| c.spec.controller_name == controller) {
        let cond = if c.spec.parameters_ref.is_some() {
            Cond::new("Accepted", false, "InvalidParameters", "sluice takes no GatewayClass parameters")
        } else {
            accepted.insert(c.name_any());
            Cond::new("Accepted", true, "Accepted", "")
        };
        statuses.push(ClassStatus { name: c.name_any(), generation: c.metadata.generation, conditions: vec![cond] });
    }
    (statuses, accepted)
}

/// Inputs the listener evaluation reads.
pub(crate) struct Inputs<'a> {
    pub secrets: &'a HashMap<(String, String), &'a Secret>,
    pub grants: &'a [Arc<ReferenceGrant>],
}

/// Evaluates every Gateway of an accepted class of ours.
pub(crate) fn gateways(
    list: &[Arc<Gateway>],
    classes: &HashSet<String>,
    inputs: &Inputs<'_>,
    problems: &mut Vec<Problem>,
) -> Vec<GatewayInfo> {
    let mut out = Vec::new();
    for g in list.iter().filter(|g| classes.contains(&g.spec.gateway_class_name)) {
        let obj = ObjectRef::of(g.as_ref());
        let mut listeners: Vec<Listener> =
            g.spec.listeners.iter().enumerate().map(|(i, l)| listener(&obj, i, l, inputs, problems)).collect();
        mark_conflicts(&mut listeners);
        let valid = listeners.iter().filter(|l| l.usable()).count();
        let accepted = if g.spec.addresses.as_ref().is_some_and(|a| !a.is_empty()) {
            Cond::new(
                "Accepted",
                false,
                "UnsupportedAddress",
                "sluice does not assign requested addresses; remove spec.addresses",
            )
        } else if valid == listeners.len() {
            Cond::new("Accepted", true, "Accepted", "")
        } else if valid > 0 {
            Cond::new("Accepted", true, "ListenersNotValid", "some listeners are not valid")
        } else {
            Cond::new("Accepted", false, "ListenersNotValid", "no listener is valid")
        };
        out.push(GatewayInfo { obj, generation: g.metadata.generation, accepted, listeners });
    }
    out
}

fn listener(
    gw: &ObjectRef,
    index: usize,
    l: &GatewayListeners,
    inputs: &Inputs<'_>,
    problems: &mut Vec<Problem>,
) -> Listener {
    let field = format!("spec.listeners[{index}]");
    let mut accepted = Cond::new("Accepted", true, "Accepted", "");
    let mut resolved_refs = Cond::new("ResolvedRefs", true, "ResolvedRefs", "");
    let http_like = matches!(l.protocol.as_str(), "HTTP" | "HTTPS");
    if !http_like {
        accepted = Cond::new(
            "Accepted",
            false,
            "UnsupportedProtocol",
            format!("protocol {} is not supported by sluice (HTTP, HTTPS)", l.protocol),
        );
    }
    let hostname = l.hostname.clone().filter(|h| !h.is_empty());
    if let Some(h) = &hostname {
        if let Err(e) = hostnames::check(h) {
            accepted = Cond::new("Accepted", false, "UnsupportedValue", e);
        }
    }
    // Kinds: derived from the protocol unless listed; unsupported listed kinds are reported.
    let mut kinds = Vec::new();
    match l.allowed_routes.as_ref().and_then(|a| a.kinds.as_ref()).filter(|k| !k.is_empty()) {
        None if http_like => kinds = vec![RouteKind::Http, RouteKind::Grpc],
        None => {}
        Some(list) => {
            let mut invalid = Vec::new();
            for k in list {
                let group_ok = k.group.as_deref().is_none_or(|g| g == GATEWAY_GROUP);
                match (group_ok && http_like, k.kind.as_str()) {
                    (true, "HTTPRoute") => kinds.push(RouteKind::Http),
                    (true, "GRPCRoute") => kinds.push(RouteKind::Grpc),
                    _ => invalid.push(k.kind.clone()),
                }
            }
            kinds.sort();
            kinds.dedup();
            if !invalid.is_empty() {
                resolved_refs = Cond::new(
                    "ResolvedRefs",
                    false,
                    "InvalidRouteKinds",
                    format!("route kinds not supported on this listener: {}", invalid.join(", ")),
                );
            }
        }
    }
    let namespaces = match l.allowed_routes.as_ref().and_then(|a| a.namespaces.as_ref()) {
        None => Namespaces::Same,
        Some(n) => match n.from {
            None | Some(GatewayListenersAllowedRoutesNamespacesFrom::Same) => Namespaces::Same,
            Some(GatewayListenersAllowedRoutesNamespacesFrom::All) => Namespaces::All,
            Some(GatewayListenersAllowedRoutesNamespacesFrom::Selector) => {
                Namespaces::Selector(n.selector.clone().unwrap_or_default())
            }
        },
    };
    let mut certificate = None;
    if l.protocol == "HTTPS" {
        let tls = l.tls.as_ref();
        if matches!(tls.and_then(|t| t.mode.as_ref()), Some(GatewayListenersTlsMode::Passthrough)) {
            accepted = Cond::new(
                "Accepted",
                false,
                "UnsupportedValue",
                "TLS mode Passthrough is not supported on HTTPS listeners",
            );
        }
        match tls.and_then(|t| t.certificate_refs.as_ref()).and_then(|r| r.first()) {
            None => {
                resolved_refs = Cond::new(
                    "ResolvedRefs",
                    false,
                    "InvalidCertificateRef",
                    "an HTTPS listener needs tls.certificateRefs",
                );
            }
            Some(r) => {
                let ns = r.namespace.clone().unwrap_or_else(|| gw.namespace.clone());
                let kind_ok =
                    r.group.as_deref().unwrap_or("").is_empty() && r.kind.as_deref().unwrap_or("Secret") == "Secret";
                let to = refs::To { group: "", kind: "Secret", namespace: &ns, name: &r.name };
                let secret = inputs.secrets.get(&(ns.clone(), r.name.clone())).copied();
                if !kind_ok {
                    resolved_refs = Cond::new(
                        "ResolvedRefs",
                        false,
                        "InvalidCertificateRef",
                        "certificateRefs must name a core Secret",
                    );
                } else if !refs::permitted(inputs.grants, refs::From { kind: "Gateway", namespace: &gw.namespace }, to)
                {
                    resolved_refs = Cond::new(
                        "ResolvedRefs",
                        false,
                        "RefNotPermitted",
                        format!("Secret {ns}/{} is in another namespace and no ReferenceGrant allows it", r.name),
                    );
                } else {
                    match secret.map(|s| (s, load_tls(s))) {
                        Some((s, Ok((cert, key)))) => {
                            certificate = Some(ListenerCert { secret: ObjectRef::of(s), cert, key })
                        }
                        Some((_, Err((f, e)))) => {
                            resolved_refs = Cond::new(
                                "ResolvedRefs",
                                false,
                                "InvalidCertificateRef",
                                format!("Secret {ns}/{} is not a valid TLS Secret ({f}: {e})", r.name),
                            )
                        }
                        None => {
                            resolved_refs = Cond::new(
                                "ResolvedRefs",
                                false,
                                "InvalidCertificateRef",
                                format!("Secret {ns}/{} not found", r.name),
                            )
                        }
                    }
                }
            }
        }
    }
    for c in [&accepted, &resolved_refs] {
        if !c.is_true() {
            problems.push(Problem::new(gw, field.clone(), format!("listener {}: {}", l.name, c.message)));
        }
    }
    Listener {
        name: l.name.clone(),
        protocol: l.protocol.clone(),
        port: l.port,
        hostname,
        kinds,
        namespaces,
        accepted,
        resolved_refs,
        conflicted: Cond::new("Conflicted", false, "NoConflicts", ""),
        certificate,
        attached: 0,
    }
}

/// Listeners sharing a port must share a protocol (else ProtocolConflict) and differ by hostname
/// (else HostnameConflict).
fn mark_conflicts(listeners: &mut [Listener]) {
    let n = listeners.len();
    for i in 0..n {
        for j in 0..n {
            if i == j || listeners[i].port != listeners[j].port {
                continue;
            }
            if listeners[i].protocol != listeners[j].protocol {
                listeners[i].conflicted = Cond::new(
                    "Conflicted",
                    true,
                    "ProtocolConflict",
                    format!("port {} is used with another protocol", listeners[i].port),
                );
            } else if listeners[i].hostname == listeners[j].hostname && !listeners[i].conflicted.is_true() {
                listeners[i].conflicted = Cond::new(
                    "Conflicted",
                    true,
                    "HostnameConflict",
                    "another listener has the same port and hostname",
                );
            }
        }
    }
}
