//! `translate(&Snapshot, &Settings) -> Translation`: Kubernetes objects to Kong declarative config,
//! and the statuses of the Ingresses, GatewayClasses, Gateways and routes that config serves.
//!
//! Pure (no I/O, no clock) and deterministic: the same snapshot always gives byte-identical output,
//! every list sorted. A bad object costs only that object: it is left out and reported as a
//! [`Problem`] (which the sync loop turns into a Kubernetes Event), and everything else is kept.
//!
//! Pipeline, one module per stage (envoy-gateway style): [`ingress`] (Ingress rules, default
//! backends, class filter) asks [`services`] for Kong services (Kubernetes Service + port, with
//! [`annotations`]) whose targets come from [`upstreams`]; [`certificates`] turns Ingress TLS sections
//! into certificates; [`gateway`] is the hook for Gateway API routes. [`names`] holds KIC's naming.
//! Routes and services ask for Kong plugins on the way; [`plugins`] resolves them all at the end
//! (leaving out, fail closed, whatever asked for a plugin that cannot be used).
//! Finally the config is sorted and checked with `proxy_config::validate`, and any entity the
//! proxy would reject is removed (with a problem) so that a config we emit always validates.
//! The statuses are settled last, from that final config: a route that did not make it in is not
//! `Accepted`. Status writers ([`crate::status`]) write exactly these statuses, from the
//! translation the proxy runs (the fallback one after a rejected push), so no second evaluation
//! can disagree with what is routed.

pub mod annotations;
pub(crate) mod app_protocol;
pub(crate) mod certificates;
pub(crate) mod consumers;
pub(crate) mod gateway;
pub(crate) mod ingress;
pub(crate) mod names;
pub(crate) mod plugins;
pub(crate) mod services;
pub(crate) mod upstreams;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::{Resource, ResourceExt};
use proxy_config::{CaCertificate, Certificate, Config, EntityError, Route, Upstream};
use serde::{Deserialize, Serialize};

use self::gateway::model::{ClassStatus, GatewayStatusModel, GatewayStatuses, PolicyStatusModel, RouteStatusModel};
pub use self::gateway::REASON_REJECTED_BY_PROXY;
use crate::kong_plugins::CONFIG_MAP_LABEL;
use crate::settings::Settings;
use crate::snapshot::Snapshot;

/// Which Kubernetes object something came from. `uid` is empty for objects read from files.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectRef {
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

impl ObjectRef {
    /// The reference of a typed object.
    pub fn of<K: Resource<DynamicType = ()>>(o: &K) -> Self {
        ObjectRef {
            kind: K::kind(&()).into_owned(),
            namespace: o.namespace().unwrap_or_default(),
            name: o.name_any(),
            uid: o.uid().unwrap_or_default(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// Something wrong with one object: what was left out and why.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Problem {
    pub object: ObjectRef,
    /// The field at fault, as a JSON path into the object (`metadata.annotations.konghq.com/methods`).
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn new(object: &ObjectRef, field: impl Into<String>, message: impl Into<String>) -> Self {
        Problem { object: object.clone(), field: field.into(), message: message.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.object, self.field, self.message)
    }
}

/// The result of a translation.
#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    /// The Kong config; always passes `proxy_config::validate`.
    pub config: Config,
    /// Sorted, without duplicates.
    pub problems: Vec<Problem>,
    /// The statuses of the objects this config serves.
    pub statuses: Statuses,
}

/// The statuses a translation calls for, before the proxy's addresses and timestamps (which the
/// status writer adds).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Statuses {
    /// Ingresses of our class in the config (their status gets the proxy's address), sorted.
    pub ingresses: Vec<ObjectRef>,
    pub gateway_classes: Vec<ClassStatus>,
    pub gateways: Vec<GatewayStatusModel>,
    /// GRPCRoutes then HTTPRoutes, each sorted by namespace/name.
    pub routes: Vec<RouteStatusModel>,
    /// BackendTLSPolicies naming a backend of our routes, oldest first.
    pub backend_tls_policies: Vec<PolicyStatusModel>,
}

/// Translates the snapshot. See the module documentation.
pub fn translate(snapshot: &Snapshot, settings: &Settings) -> Translation {
    translate_excluding(snapshot, settings, &HashSet::new())
}

/// Translates the snapshot as if the `excluded` objects were broken: they are left out, and so is
/// whatever depends on them, each with a problem. This builds the fallback config after the proxy
/// rejected some entities.
pub fn translate_excluding(snapshot: &Snapshot, settings: &Settings, excluded: &HashSet<ObjectRef>) -> Translation {
    let mut ctx = Context::new(snapshot, settings, excluded);
    ingress::translate(&mut ctx);
    gateway::translate(&mut ctx);
    ctx.finish()
}

/// A Kong service being built, with its routes and upstream.
#[derive(Debug)]
pub(crate) struct KongService {
    pub service: proxy_config::Service,
    pub routes: Vec<Route>,
    pub upstream: Upstream,
    /// Whether an Ingress rule (not only a default backend) uses it: KIC then sets `path: /`.
    pub used_by_rule: bool,
    /// Set by `konghq.com/path`.
    pub annotated_path: Option<String>,
}

type Key = (String, String);

/// State shared by the sub-translators during one translation.
pub(crate) struct Context<'a> {
    pub snapshot: &'a Snapshot,
    pub settings: &'a Settings,
    pub excluded: &'a HashSet<ObjectRef>,
    pub services_by_name: HashMap<Key, &'a Service>,
    pub slices_by_service: HashMap<Key, Vec<&'a EndpointSlice>>,
    pub secrets_by_name: HashMap<Key, &'a Secret>,
    /// The ConfigMaps labelled `konghq.com/configmap: "true"` (the only ones plugins may read).
    pub config_maps_by_name: HashMap<Key, &'a ConfigMap>,
    /// Parsed Service annotations; `None` = the Service is left out (hostile annotation).
    pub service_annotations: HashMap<Key, Option<annotations::ServiceAnnotations>>,
    pub kong_services: BTreeMap<String, KongService>,
    pub certificates: BTreeMap<String, Certificate>,
    pub ca_certificates: BTreeMap<String, CaCertificate>,
    pub problems: Vec<Problem>,
    pub ingresses: Vec<ObjectRef>,
    /// The entities that ask for KongPlugins (resolved in [`plugins::attach`]).
    pub plugin_requests: Vec<plugins::Request>,
    /// The consumers that ask for KongPlugins (resolved in [`plugins::attach`]).
    pub consumer_plugin_requests: Vec<plugins::ConsumerRequest>,
    /// The Kong consumers ([`consumers::translate`]); [`plugins::attach`] nests their plugins.
    pub consumers: Vec<proxy_config::Consumer>,
    /// Set by [`gateway::translate`]; settled against the final config in [`Context::finish`].
    pub gateway_statuses: GatewayStatuses,
    /// The Gateway API routes meant to be in the config.
    pub routed: Vec<gateway::Routed>,
}

fn key_of<K: Resource>(o: &K) -> Key {
    (o.namespace().unwrap_or_default(), o.name_any())
}

impl<'a> Context<'a> {
    fn new(snapshot: &'a Snapshot, settings: &'a Settings, excluded: &'a HashSet<ObjectRef>) -> Self {
        let services_by_name = snapshot.services.iter().map(|s| (key_of(s.as_ref()), s.as_ref())).collect();
        let secrets_by_name = snapshot.secrets.iter().map(|s| (key_of(s.as_ref()), s.as_ref())).collect();
        let config_maps_by_name = snapshot
            .config_maps
            .iter()
            .filter(|c| c.labels().get(CONFIG_MAP_LABEL).map(String::as_str) == Some("true"))
            .map(|c| (key_of(c.as_ref()), c.as_ref()))
            .collect();
        let mut slices_by_service: HashMap<Key, Vec<&EndpointSlice>> = HashMap::new();
        for slice in &snapshot.endpoint_slices {
            if let Some(svc) = slice.labels().get("kubernetes.io/service-name") {
                slices_by_service
                    .entry((slice.namespace().unwrap_or_default(), svc.clone()))
                    .or_default()
                    .push(slice.as_ref());
            }
        }
        Context {
            snapshot,
            settings,
            excluded,
            services_by_name,
            slices_by_service,
            secrets_by_name,
            config_maps_by_name,
            service_annotations: HashMap::new(),
            kong_services: BTreeMap::new(),
            certificates: BTreeMap::new(),
            ca_certificates: BTreeMap::new(),
            problems: Vec::new(),
            ingresses: Vec::new(),
            plugin_requests: Vec::new(),
            consumer_plugin_requests: Vec::new(),
            consumers: Vec::new(),
            gateway_statuses: GatewayStatuses::default(),
            routed: Vec::new(),
        }
    }

    pub(crate) fn problem(&mut self, object: &ObjectRef, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(object, field, message));
    }

    /// Whether the object was rejected by the proxy (fallback translation).
    pub(crate) fn is_excluded(&self, object: &ObjectRef) -> bool {
        !self.excluded.is_empty() && self.excluded.contains(object)
    }

    fn finish(mut self) -> Translation {
        self.consumers = consumers::translate(&mut self);
        let plugins = plugins::attach(&mut self);
        let Context {
            kong_services,
            certificates,
            ca_certificates,
            mut problems,
            mut ingresses,
            mut gateway_statuses,
            routed,
            excluded,
            consumers,
            ..
        } = self;
        let mut config = Config::empty();
        for (_, mut ks) in kong_services {
            ks.routes.sort_by(|a, b| a.name.cmp(&b.name));
            let mut service = ks.service;
            service.path = services::final_path(&service, ks.used_by_rule, ks.annotated_path);
            service.routes = ks.routes;
            config.services.push(service);
            config.upstreams.push(ks.upstream);
        }
        config.upstreams.sort_by(|a, b| a.name.cmp(&b.name));
        config.certificates = certificates.into_values().collect();
        config.ca_certificates = ca_certificates.into_values().collect();
        config.plugins = plugins;
        config.consumers = consumers;
        enforce_valid(&mut config, &mut problems);
        problems.sort();
        problems.dedup();
        ingresses.sort();
        ingresses.dedup();
        if !routed.is_empty() {
            let config_routes: HashSet<ObjectRef> = config
                .services
                .iter()
                .flat_map(|s| &s.routes)
                .chain(&config.routes)
                .filter_map(|r| names::object_from_tags(&r.tags))
                .collect();
            gateway::settle(&mut gateway_statuses, &routed, &config_routes, &problems, excluded);
        }
        let GatewayStatuses { classes, gateways, routes, policies } = gateway_statuses;
        let statuses =
            Statuses { ingresses, gateway_classes: classes, gateways, routes, backend_tls_policies: policies };
        Translation { config, problems, statuses }
    }
}

/// Removes every entity `proxy_config::validate` rejects (a problem per entity, on the object its
/// tags name). Translation already avoids these; this is the guarantee, not the mechanism.
fn enforce_valid(config: &mut Config, problems: &mut Vec<Problem>) {
    for _ in 0..4 {
        // Compiling regexes dominates validation; escaped literals always compile, so they are
        // swapped for a plain path while validating and put back afterwards.
        let stashed = stash_literal_regexes(config);
        let result = proxy_config::validate(config);
        restore_paths(config, stashed);
        let Err(err) = result else { return };
        for e in &err.flattened_errors {
            if let Some(object) = names::object_from_tags(&e.entity_tags) {
                let message = e.errors.iter().map(|f| format!("{}: {}", f.field, f.message)).collect::<Vec<_>>();
                problems.push(Problem::new(
                    &object,
                    "",
                    format!("{} '{}' left out: {}", e.entity_type, e.entity_name, message.join("; ")),
                ));
            }
            remove_entity(config, e);
        }
    }
    if proxy_config::validate(config).is_err() {
        // Unreachable in practice (every entity kind is removable); never emit an invalid config.
        *config = Config::empty();
    }
}

/// Regex metacharacters (those `ingress::escape_literal` escapes).
const REGEX_META: &str = "\\.+*?()|[]{}^$#";
/// Longest escaped literal trusted without compiling (the regex size limit is far above it).
const MAX_TRUSTED_LITERAL: usize = 2048;

/// Whether a Kong path is `~` + a literal whose every regex metacharacter is escaped (+ an optional
/// `$`): such a regex always compiles.
pub(crate) fn is_escaped_literal_regex(path: &str) -> bool {
    let Some(body) = path.strip_prefix('~') else { return false };
    let body = body.strip_suffix('$').unwrap_or(body);
    if body.len() > MAX_TRUSTED_LITERAL {
        return false;
    }
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n) if REGEX_META.contains(n) => {}
                _ => return false,
            }
        } else if REGEX_META.contains(c) || c.is_whitespace() {
            return false;
        }
    }
    true
}

/// Location of a path inside the config: (service index or `usize::MAX` for top-level routes,
/// route index, path index, original path).
type Stashed = Vec<(usize, usize, usize, String)>;

fn stash_literal_regexes(config: &mut Config) -> Stashed {
    let mut out = Vec::new();
    let mut stash = |si: usize, routes: &mut [Route]| {
        for (ri, r) in routes.iter_mut().enumerate() {
            for (pi, p) in r.paths.iter_mut().enumerate() {
                if is_escaped_literal_regex(p) {
                    out.push((si, ri, pi, std::mem::replace(p, "/".to_string())));
                }
            }
        }
    };
    for (si, s) in config.services.iter_mut().enumerate() {
        stash(si, &mut s.routes);
    }
    stash(usize::MAX, &mut config.routes);
    out
}

fn restore_paths(config: &mut Config, stashed: Stashed) {
    for (si, ri, pi, original) in stashed {
        let routes = if si == usize::MAX {
            Some(&mut config.routes)
        } else {
            config.services.get_mut(si).map(|s| &mut s.routes)
        };
        if let Some(p) = routes.and_then(|r| r.get_mut(ri)).and_then(|r| r.paths.get_mut(pi)) {
            *p = original;
        }
    }
}

/// Removes the entity an error names (and whatever can no longer stand without it).
pub(crate) fn remove_entity(config: &mut Config, e: &EntityError) {
    let name = e.entity_name.as_str();
    match e.entity_type.as_str() {
        "service" => {
            let removed: Vec<String> =
                config.services.iter().filter(|s| s.display_name() == name).map(|s| s.host.clone()).collect();
            config.services.retain(|s| s.display_name() != name);
            config.upstreams.retain(|u| !removed.contains(&u.name) || config.services.iter().any(|s| s.host == u.name));
        }
        "route" => {
            for s in &mut config.services {
                s.routes.retain(|r| r.display_name() != name);
            }
            config.routes.retain(|r| r.display_name() != name);
        }
        "upstream" => {
            config.upstreams.retain(|u| u.name != name);
            config.services.retain(|s| s.host != name);
        }
        "target" => {
            for u in &mut config.upstreams {
                u.targets.retain(|t| t.target != name);
            }
        }
        "certificate" => config.certificates.retain(|c| c.display_name() != name),
        "ca_certificate" => {
            config.ca_certificates.retain(|c| c.id != name);
            for s in &mut config.services {
                if let Some(cas) = &mut s.ca_certificates {
                    cas.retain(|id| id != name);
                }
            }
        }
        "plugin" => {
            config.plugins.retain(|p| p.display_name() != name);
            for c in &mut config.consumers {
                c.plugins.retain(|p| p.display_name() != name);
            }
        }
        "consumer" => config.consumers.retain(|c| c.display_name() != name),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
