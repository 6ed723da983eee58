//! Gateway API BackendTLSPolicy: which backend Services (or Service ports) are spoken to over TLS,
//! verified against which CA and under which name, and the policy statuses that go with it.
//!
//! [`analyse`] reads every policy once: its `targetRefs` (core Services; `sectionName` = a port
//! name), `validation.hostname` (the SNI sent and the name verified), and either
//! `validation.caCertificateRefs` (ConfigMaps or Secrets with a `ca.crt`, in the policy's
//! namespace) or `validation.wellKnownCACertificates: System` (the proxy's built-in web PKI roots).
//! Two policies on one target: the older (creation time, then namespace/name) wins and the other
//! is `Accepted: False, Conflicted`; a policy on a port wins over one on the whole Service.
//! What sluice does not implement (`subjectAltNames`, `options`) makes the policy
//! `Accepted: False, Invalid` with a message naming the field, never silently ignored.
//!
//! The gateway translation ([`super::translate`]) asks [`Policies::for_backend`] for the policy of
//! a rule's first backend: its Kong service becomes `https`/`grpcs` with `tls_verify`, the CA
//! certificates and the hostname as its upstream's `host_header` (the proxy sends and verifies it
//! as SNI). A policy whose CA references are all invalid makes its backends fail (no target, so
//! HTTP 503 / gRPC UNAVAILABLE), as the spec asks. Statuses go on the policy once per Gateway
//! (ancestor) whose routes use a targeted Service.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use gateway_api::apis::standard::backendtlspolicies::BackendTlsPolicy;
use k8s_openapi::api::core::v1::{Service, ServicePort};
use kube::ResourceExt;
use proxy_config::CaCertificate;

use super::hostnames;
use super::model::{Cond, ParentRefOut, ParentStatus, PolicyStatusModel};
use crate::snapshot::Snapshot;
use crate::translate::certificates::{check_certs, secret_value};
use crate::translate::{names, ObjectRef, Problem};

/// What a policy makes of the backends it targets.
#[derive(Debug, Clone)]
pub(crate) struct BackendTls {
    /// SNI and the name the backend's certificate must carry.
    pub hostname: String,
    /// The CA bundles to verify against; empty = the well-known (system) roots.
    pub cas: Vec<CaCertificate>,
    /// Every CA reference is invalid: connections to the backends must fail.
    pub no_valid_ca: bool,
}

/// One analysed policy.
#[derive(Debug)]
struct Entry {
    obj: ObjectRef,
    generation: Option<i64>,
    accepted: Cond,
    resolved: Cond,
    tls: Option<BackendTls>,
    /// Every target it names that exists (applied or not: its status goes to their Gateways).
    targets: Vec<Target>,
}

/// A target: Service namespace and name, and the port name (`None` = the whole Service).
type Target = (String, String, Option<String>);

/// Every policy of a snapshot, and which one applies to each target.
#[derive(Debug, Default)]
pub(crate) struct Policies {
    entries: Vec<Entry>,
    by_target: HashMap<Target, usize>,
}

impl Policies {
    /// The policy (its index) for a backend Service port: one on that port, else one on the
    /// whole Service.
    pub(crate) fn for_backend(&self, svc: &Service, port: &ServicePort) -> Option<usize> {
        let (ns, name) = (svc.namespace().unwrap_or_default(), svc.name_any());
        port.name
            .as_ref()
            .filter(|n| !n.is_empty())
            .and_then(|p| self.by_target.get(&(ns.clone(), name.clone(), Some(p.clone()))))
            .or_else(|| self.by_target.get(&(ns, name, None)))
            .copied()
    }

    /// Every policy naming a backend Service port (applied, conflicted or invalid): each reports
    /// its status to the Gateways of the routes using it.
    pub(crate) fn naming<'s>(&'s self, svc: &Service, port: &ServicePort) -> impl Iterator<Item = usize> + 's {
        let (ns, name) = (svc.namespace().unwrap_or_default(), svc.name_any());
        let port_name = port.name.clone().filter(|n| !n.is_empty());
        self.entries.iter().enumerate().filter_map(move |(i, e)| {
            e.targets
                .iter()
                .any(|(tns, tname, section)| {
                    *tns == ns && *tname == name && (section.is_none() || *section == port_name)
                })
                .then_some(i)
        })
    }

    /// The TLS settings of policy `i` (only accepted policies, and those without a valid CA,
    /// are ever returned by [`Policies::for_backend`]).
    pub(crate) fn tls(&self, i: usize) -> Option<&BackendTls> {
        self.entries.get(i).and_then(|e| e.tls.as_ref())
    }

    /// Policy statuses: one entry per Gateway in `ancestors` (policy index → Gateways), sorted,
    /// at most 16 as the API allows.
    pub(crate) fn statuses(&self, ancestors: &BTreeMap<usize, BTreeSet<(String, String)>>) -> Vec<PolicyStatusModel> {
        ancestors
            .iter()
            .filter_map(|(i, gateways)| {
                let e = self.entries.get(*i)?;
                let ancestors = gateways
                    .iter()
                    .take(16)
                    .map(|(ns, name)| ParentStatus {
                        parent_ref: ParentRefOut {
                            group: super::GATEWAY_GROUP.to_string(),
                            kind: "Gateway".to_string(),
                            namespace: Some(ns.clone()),
                            name: name.clone(),
                            section_name: None,
                            port: None,
                        },
                        conditions: vec![e.accepted.clone(), e.resolved.clone()],
                    })
                    .collect();
                Some(PolicyStatusModel { object: e.obj.clone(), generation: e.generation, ancestors })
            })
            .collect()
    }
}

/// Checks a policy's `hostname`: a DNS name, not a wildcard, not an IP address.
fn check_hostname(h: &str) -> Result<(), String> {
    if h.contains('*') || h.parse::<IpAddr>().is_ok() {
        return Err(format!("'{h}' must be a DNS name (no wildcard, no IP address)"));
    }
    hostnames::check(h)
}

/// Resolves one CA reference to a CA certificate entity, or `(reason, message)`.
fn ca_ref(
    snapshot: &Snapshot,
    ns: &str,
    group: &str,
    kind: &str,
    name: &str,
) -> Result<CaCertificate, (&'static str, String)> {
    let what = format!("{kind} {ns}/{name}");
    let (object, pem) = match (group, kind) {
        ("", "ConfigMap") => {
            let cm = snapshot
                .config_maps
                .iter()
                .find(|c| c.namespace().as_deref() == Some(ns) && c.name_any() == name)
                .ok_or_else(|| ("InvalidCACertificateRef", format!("{what} not found")))?;
            (ObjectRef::of(cm.as_ref()), cm.data.as_ref().and_then(|d| d.get("ca.crt")).map(|s| s.as_bytes().to_vec()))
        }
        ("", "Secret") => {
            let s = snapshot
                .secrets
                .iter()
                .find(|s| s.namespace().as_deref() == Some(ns) && s.name_any() == name)
                .ok_or_else(|| ("InvalidCACertificateRef", format!("{what} not found")))?;
            (ObjectRef::of(s.as_ref()), secret_value(s, "ca.crt"))
        }
        _ => {
            return Err(("InvalidKind", format!("{group}/{kind} {name}: only core ConfigMap and Secret are supported")))
        }
    };
    let pem = pem.ok_or_else(|| ("InvalidCACertificateRef", format!("{what} has no key ca.crt")))?;
    let cert = check_certs(&pem).map_err(|e| ("InvalidCACertificateRef", format!("{what}: ca.crt: {e}")))?;
    // A Secret gets the id its `konghq.com/ca-certificates-secret` use gives it (one entity).
    let key = if kind == "Secret" { format!("{ns}/{name}") } else { format!("configmap/{ns}/{name}") };
    let id = names::uuid("ca_certificate", &key);
    Ok(CaCertificate { id, cert, cert_digest: None, tags: names::tags(&object, &[]) })
}

/// The result of reading one policy before conflicts are resolved.
struct Read {
    accepted: Cond,
    resolved: Cond,
    tls: Option<BackendTls>,
    targets: Vec<Target>,
}

/// Reads one policy; problems (Events) name the policy and the field.
fn read(p: &BackendTlsPolicy, snapshot: &Snapshot, problems: &mut Vec<Problem>) -> Read {
    let obj = ObjectRef::of(p);
    let ns = obj.namespace.clone();
    let mut problem = |field: String, message: String| problems.push(Problem::new(&obj, field, message));
    let mut targets = Vec::new();
    for (i, t) in p.spec.target_refs.iter().enumerate() {
        let field = format!("spec.targetRefs[{i}]");
        if !t.group.is_empty() || t.kind != "Service" {
            problem(field, format!("{}/{} {}: only core Services are supported; ignored", t.group, t.kind, t.name));
            continue;
        }
        let svc = snapshot.services.iter().find(|s| s.namespace().as_deref() == Some(&ns) && s.name_any() == t.name);
        let Some(svc) = svc else {
            problem(field, format!("Service {ns}/{} not found", t.name));
            continue;
        };
        let section = t.section_name.clone().filter(|s| !s.is_empty());
        if let Some(s) = &section {
            let ports = svc.spec.as_ref().and_then(|s| s.ports.as_ref());
            if !ports.into_iter().flatten().any(|port| port.name.as_deref() == Some(s)) {
                problem(format!("{field}.sectionName"), format!("Service {ns}/{} has no port named {s}", t.name));
                continue;
            }
        }
        targets.push((ns.clone(), t.name.clone(), section));
    }
    let v = &p.spec.validation;
    let invalid = |field: &str, message: String| Cond::new("Accepted", false, "Invalid", format!("{field}: {message}"));
    let ok_resolved = Cond::new("ResolvedRefs", true, "ResolvedRefs", "");
    let refs = v.ca_certificate_refs.as_deref().unwrap_or_default();
    let well_known = v.well_known_ca_certificates.as_deref().filter(|w| !w.is_empty());
    let rejection = if p.spec.options.as_ref().is_some_and(|o| !o.is_empty()) {
        Some(invalid("spec.options", "sluice implements no options".into()))
    } else if v.subject_alt_names.as_ref().is_some_and(|s| !s.is_empty()) {
        Some(invalid("spec.validation.subjectAltNames", "not supported by sluice".into()))
    } else if let Err(e) = check_hostname(&v.hostname) {
        Some(invalid("spec.validation.hostname", e))
    } else if !refs.is_empty() && well_known.is_some() {
        Some(invalid("spec.validation", "caCertificateRefs and wellKnownCACertificates are exclusive".into()))
    } else if refs.is_empty() && well_known.is_none() {
        Some(invalid("spec.validation", "caCertificateRefs or wellKnownCACertificates is required".into()))
    } else if well_known.is_some_and(|w| w != "System") {
        let w = well_known.unwrap_or_default();
        Some(invalid("spec.validation.wellKnownCACertificates", format!("'{w}' is not supported (System)")))
    } else {
        None
    };
    if let Some(accepted) = rejection {
        problem(String::new(), format!("{}; the policy is not applied", accepted.message));
        return Read { accepted, resolved: ok_resolved, tls: None, targets };
    }
    let mut cas = Vec::new();
    let mut resolved = ok_resolved;
    for (i, r) in refs.iter().enumerate() {
        match ca_ref(snapshot, &ns, &r.group, &r.kind, &r.name) {
            Ok(ca) => cas.push(ca),
            Err((reason, message)) => {
                problem(format!("spec.validation.caCertificateRefs[{i}]"), format!("{reason}: {message}"));
                if resolved.is_true() {
                    resolved = Cond::new("ResolvedRefs", false, reason, message);
                }
            }
        }
    }
    let no_valid_ca = !refs.is_empty() && cas.is_empty();
    let accepted = if no_valid_ca {
        let message = "no valid CA certificate; connections to the targeted backends fail";
        problem("spec.validation.caCertificateRefs".into(), message.into());
        Cond::new("Accepted", false, "NoValidCACertificate", message)
    } else {
        Cond::new("Accepted", true, "Accepted", "")
    };
    let tls = BackendTls { hostname: v.hostname.clone(), cas, no_valid_ca };
    Read { accepted, resolved, tls: Some(tls), targets }
}

/// Reads every policy of the snapshot and resolves conflicts (see the module documentation).
pub(crate) fn analyse(snapshot: &Snapshot, watched: impl Fn(&str) -> bool, problems: &mut Vec<Problem>) -> Policies {
    let mut list: Vec<&BackendTlsPolicy> = snapshot
        .backend_tls_policies
        .iter()
        .map(AsRef::as_ref)
        .filter(|p| watched(&p.namespace().unwrap_or_default()))
        .collect();
    list.sort_by_cached_key(|p| (p.creation_timestamp(), p.namespace().unwrap_or_default(), p.name_any()));
    let mut out = Policies::default();
    for p in list {
        let obj = ObjectRef::of(p);
        let Read { mut accepted, resolved, tls, targets } = read(p, snapshot, problems);
        let index = out.entries.len();
        if tls.is_some() {
            let taken: Vec<String> = targets
                .iter()
                .filter_map(|t| {
                    out.by_target
                        .get(t)
                        .map(|&w| format!("{}/{}", out.entries[w].obj.namespace, out.entries[w].obj.name))
                })
                .collect();
            if taken.is_empty() {
                for t in &targets {
                    out.by_target.insert(t.clone(), index);
                }
            } else {
                let message = format!("an older BackendTLSPolicy ({}) targets the same Service port", taken.join(", "));
                problems.push(Problem::new(&obj, "spec.targetRefs", format!("{message}; the policy is not applied")));
                accepted = Cond::new("Accepted", false, "Conflicted", message);
            }
        }
        let tls = if accepted.is_true() || accepted.reason == "NoValidCACertificate" { tls } else { None };
        out.entries.push(Entry { obj, generation: p.metadata.generation, accepted, resolved, tls, targets });
    }
    out
}

/// The TLS settings for one rule: the policy of its first usable backend. Other backends of the
/// rule with another (or no) policy are reported on the route: one rule is one Kong service, so
/// one TLS setting.
pub(crate) fn policy_of_rule<'p>(
    policies: &'p Policies,
    resolutions: &[(super::model::BackendRef, super::backends::Resolution<'_>)],
    route: &ObjectRef,
    field: &str,
    problems: &mut Vec<Problem>,
) -> Option<&'p BackendTls> {
    let mut found: Vec<Option<usize>> = resolutions
        .iter()
        .filter(|(b, _)| b.weight > 0)
        .filter_map(|(_, r)| match r {
            super::backends::Resolution::Valid { svc, port } => Some(policies.for_backend(svc, port)),
            super::backends::Resolution::Invalid { .. } => None,
        })
        .collect();
    let first = *found.first()?;
    found.dedup();
    if found.len() > 1 {
        let message =
            "the backends of this rule differ in BackendTLSPolicy; the first backend's TLS setting applies to all";
        problems.push(Problem::new(route, field, message));
    }
    policies.tls(first?)
}

/// The TLS form of an upstream protocol (`http` → `https`, `grpc` → `grpcs`, `ws` → `wss`).
pub(crate) fn tls_protocol(p: proxy_config::Protocol) -> proxy_config::Protocol {
    use proxy_config::Protocol::*;
    match p {
        Http => Https,
        Grpc => Grpcs,
        Ws => Wss,
        other => other,
    }
}
