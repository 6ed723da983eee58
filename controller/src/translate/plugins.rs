//! Kong plugins from KongPlugin / KongClusterPlugin: which entity asks for which
//! plugin, and the top-level `plugins:` entities that come out.
//!
//! The sub-translators record a [`Request`] for every entity they build that asks for plugins: an
//! Ingress or Gateway API route for each of its Kong routes (`konghq.com/plugins`, and a rule's
//! `ExtensionRef` filters to a `configuration.konghq.com` KongPlugin — on GRPCRoute too, which KIC
//! ignores), a Kubernetes Service for each Kong service built from it (`konghq.com/plugins`, on
//! Ingress backends and Gateway API rule services alike, as KIC). [`attach`] resolves them once
//! every route and service exists:
//! - a name means the KongPlugin of that name in the referrer's namespace, else the
//!   KongClusterPlugin of that name (KIC's lookup); `ns:name` reaches a KongPlugin in another
//!   namespace only with a ReferenceGrant there from the referrer's group, kind and namespace;
//! - the plugin's config is built and checked by [`config`];
//! - fail closed: when any plugin an entity asked for cannot be used, the entity is left out (a
//!   route; a service with all its routes), with a problem on the referrer and, when the plugin
//!   exists, on the plugin: a route never goes live without a plugin it asked for;
//! - one instance per plugin name per entity: the same KongPlugin asked for twice (annotation and
//!   ExtensionRef) counts once, but two configurations of one plugin name on one entity — two
//!   plugins, or a plugin and a Gateway API filter that sluice itself turns into that plugin
//!   (RequestHeaderModifier → `request-transformer`, ResponseHeaderModifier →
//!   `response-transformer`, `request-termination` for rules that cannot forward) — are a
//!   conflict: the route is left out with a problem naming both, rather than one silently winning;
//! - KongClusterPlugins labelled `global: "true"` become global plugins; two of them for one
//!   plugin name → neither is applied (as KIC), with a problem on each;
//! - a KongConsumer's `konghq.com/plugins` scopes plugins to its consumer, combined with the
//!   route and service references of the same plugin as KIC combines them ([`consumer_scope`]);
//!   one instance per plugin name per (entity, consumer).
//!
//! Entities are named as KIC names them ([`naming`]).

pub(crate) mod config;
pub(crate) mod consumer_scope;
pub(crate) mod grpc_gateway_source;
pub(crate) mod naming;

pub(crate) use consumer_scope::ConsumerRequest;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use kube::ResourceExt;
use proxy_config::{EntityRef, Plugin, Protocol};
use thiserror::Error;

use super::annotations::{self, split_list};
use super::gateway::{refs, GATEWAY_GROUP};
use super::{Context, ObjectRef, Problem};
use crate::kong_plugins::{KongProtocol, PluginDef, GROUP};

/// A plugin named by a referrer: `name`, or `namespace:name` (another namespace).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PluginName {
    pub namespace: Option<String>,
    pub name: String,
}

impl PluginName {
    /// The names of a `konghq.com/plugins` value (comma list, trimmed, empty items skipped).
    pub fn parse_list(value: &str) -> Vec<PluginName> {
        split_list(value, ",")
            .map(|item| match item.split_once(':') {
                Some((ns, name)) => {
                    PluginName { namespace: Some(ns.trim().to_string()), name: name.trim().to_string() }
                }
                None => PluginName { namespace: None, name: item.to_string() },
            })
            .collect()
    }
}

impl fmt::Display for PluginName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}:{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// The Kong entity plugins attach to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Scope {
    Service(String),
    Route(String),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Service(s) => write!(f, "service {s} and its routes"),
            Scope::Route(r) => write!(f, "route {r}"),
        }
    }
}

/// One plugin asked for, and the field of the referrer that asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wanted {
    pub plugin: PluginName,
    pub field: String,
}

/// The plugins of a `konghq.com/plugins` annotation.
pub(crate) fn from_annotation(list: &[PluginName]) -> Vec<Wanted> {
    let field = annotations::field(annotations::PLUGINS);
    list.iter().map(|p| Wanted { plugin: p.clone(), field: field.clone() }).collect()
}

/// An entity that asks for plugins.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub scope: Scope,
    pub referrer: ObjectRef,
    pub wanted: Vec<Wanted>,
}

impl Context<'_> {
    /// Records that `scope`, built from `referrer`, asks for `wanted`.
    pub(crate) fn want_plugins(&mut self, scope: Scope, referrer: &ObjectRef, wanted: Vec<Wanted>) {
        if !wanted.is_empty() {
            self.plugin_requests.push(Request { scope, referrer: referrer.clone(), wanted });
        }
    }
}

/// Why a referrer cannot have a plugin it asked for.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum PluginError {
    #[error("referenced KongPlugin or KongClusterPlugin \"{0}\" does not exist")]
    NotFound(String),
    #[error("KongPlugin {namespace}/{name} is in another namespace and no ReferenceGrant in {namespace} allows it")]
    NotGranted { namespace: String, name: String },
    #[error("{0} was rejected by the proxy")]
    Rejected(Box<ObjectRef>),
    #[error("{plugin} cannot be used ({})", errors.iter().map(|(f, m)| format!("{f}: {m}")).collect::<Vec<_>>().join("; "))]
    Broken { plugin: Box<ObjectRef>, errors: Vec<(String, String)> },
    #[error("{plugin} configures '{name}', which {other} already configures on this entity")]
    Conflict { plugin: Box<ObjectRef>, name: String, other: String },
    #[error("{plugin} configures '{name}', which cannot be scoped to a consumer (Kong's no_consumer)")]
    NotConsumerScoped { plugin: Box<ObjectRef>, name: String },
}

impl PluginError {
    /// The plugin object the error is also reported on (when it exists), with `(field, message)`s.
    fn plugin(&self) -> Option<(&ObjectRef, Vec<(String, String)>)> {
        match self {
            PluginError::Broken { plugin, errors } => Some((plugin, errors.clone())),
            PluginError::Conflict { plugin, name, other } => Some((
                plugin,
                vec![("plugin".into(), format!("'{name}' is already configured by {other} on the same entity"))],
            )),
            _ => None,
        }
    }
}

/// A plugin ready to be emitted: its definition and final config.
#[derive(Debug, Clone)]
pub(crate) struct Ready {
    def: PluginDef,
    config: serde_json::Value,
    protocols: Option<Vec<Protocol>>,
}

/// The KongPlugins and KongClusterPlugins of the snapshot, indexed, with each one's resolution
/// computed once.
struct Catalog<'s> {
    plugins: HashMap<(String, String), PluginDef>,
    cluster: HashMap<String, PluginDef>,
    built: HashMap<ObjectRef, Result<Ready, PluginError>>,
    secrets: &'s config::Secrets<'s>,
    config_maps: &'s config::ConfigMaps<'s>,
}

impl Catalog<'_> {
    fn ready(&mut self, def: &PluginDef, excluded: bool) -> Result<Ready, PluginError> {
        if let Some(done) = self.built.get(&def.object) {
            return done.clone();
        }
        let result = if excluded {
            Err(PluginError::Rejected(Box::new(def.object.clone())))
        } else {
            build(def, self.secrets, self.config_maps)
        };
        self.built.insert(def.object.clone(), result.clone());
        result
    }
}

/// Builds and checks one plugin's protocols and config (translation, and the admission webhook).
pub(crate) fn build(
    def: &PluginDef,
    secrets: &config::Secrets<'_>,
    config_maps: &config::ConfigMaps<'_>,
) -> Result<Ready, PluginError> {
    let mut errors = Vec::new();
    let protocols = def.protocols.as_ref().and_then(|list| {
        list.iter().map(|p| protocol(*p)).collect::<Result<Vec<_>, _>>().map_err(|e| errors.push(e)).ok()
    });
    let config = config::build(def, secrets, config_maps).map_err(|e| errors.extend(e)).ok();
    match config {
        Some(config) if errors.is_empty() => Ok(Ready { def: def.clone(), config, protocols }),
        _ => Err(PluginError::Broken { plugin: Box::new(def.object.clone()), errors }),
    }
}

fn protocol(p: KongProtocol) -> Result<Protocol, (String, String)> {
    match p {
        KongProtocol::Http => Ok(Protocol::Http),
        KongProtocol::Https => Ok(Protocol::Https),
        KongProtocol::Grpc => Ok(Protocol::Grpc),
        KongProtocol::Grpcs => Ok(Protocol::Grpcs),
        other => Err((
            "protocols".into(),
            format!(
                "protocol '{}' is not served by sluice (http, https, grpc, grpcs)",
                serde_json::to_value(other).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
            ),
        )),
    }
}

/// The API group of a referrer kind (ReferenceGrant `from`).
fn group_of(kind: &str) -> &'static str {
    match kind {
        "Ingress" => "networking.k8s.io",
        "GRPCRoute" | "HTTPRoute" => GATEWAY_GROUP,
        "KongConsumer" => GROUP,
        _ => "",
    }
}

/// Finds the plugin a referrer names.
fn find<'c>(
    ctx: &Context<'_>,
    catalog: &'c Catalog<'_>,
    referrer: &ObjectRef,
    p: &PluginName,
) -> Result<&'c PluginDef, PluginError> {
    let namespace = p.namespace.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| referrer.namespace.clone());
    if let Some(def) = catalog.plugins.get(&(namespace.clone(), p.name.clone())) {
        let from = refs::From { kind: &referrer.kind, namespace: &referrer.namespace };
        let to = refs::To { group: GROUP, kind: "KongPlugin", namespace: &namespace, name: &p.name };
        if !refs::permitted_from_group(&ctx.snapshot.reference_grants, group_of(&referrer.kind), from, to) {
            return Err(PluginError::NotGranted { namespace, name: p.name.clone() });
        }
        return Ok(def);
    }
    catalog.cluster.get(&p.name).ok_or_else(|| PluginError::NotFound(p.to_string()))
}

/// Plugin names already set on an entity by the translator itself (Gateway API filters).
fn generated(ctx: &Context<'_>, scope: &Scope) -> Vec<String> {
    match scope {
        Scope::Route(name) => ctx
            .kong_services
            .values()
            .flat_map(|ks| ks.routes.iter())
            .filter(|r| r.name.as_deref() == Some(name.as_str()))
            .flat_map(|r| r.plugins.iter().map(|p| p.name.clone()))
            .collect(),
        Scope::Service(name) => ctx
            .kong_services
            .get(name)
            .map(|ks| ks.service.plugins.iter().map(|p| p.name.clone()).collect())
            .unwrap_or_default(),
    }
}

/// Resolves every request, leaves out the entities whose plugins cannot be used, and returns the
/// plugin entities (global ones included). See the module documentation.
pub(crate) fn attach(ctx: &mut Context<'_>) -> Vec<Plugin> {
    let requests = std::mem::take(&mut ctx.plugin_requests);
    let consumer_requests = std::mem::take(&mut ctx.consumer_plugin_requests);
    let watched = |ns: &str| ctx.settings.watches_namespace(ns);
    let mut catalog = Catalog {
        plugins: ctx
            .snapshot
            .kong_plugins
            .iter()
            .filter(|p| watched(&p.namespace().unwrap_or_default()))
            .map(|p| ((p.namespace().unwrap_or_default(), p.name_any()), PluginDef::of_plugin(p)))
            .collect(),
        cluster: ctx
            .snapshot
            .kong_cluster_plugins
            .iter()
            .map(|p| (p.name_any(), PluginDef::of_cluster_plugin(p)))
            .collect(),
        built: HashMap::new(),
        secrets: &ctx.secrets_by_name,
        config_maps: &ctx.config_maps_by_name,
    };

    let mut by_scope: BTreeMap<Scope, Vec<(ObjectRef, Wanted)>> = BTreeMap::new();
    for r in requests {
        let entry = by_scope.entry(r.scope).or_default();
        entry.extend(r.wanted.into_iter().map(|w| (r.referrer.clone(), w)));
    }
    let mut problems = Vec::new();
    let mut scoped = consumer_scope::resolve(ctx, &mut catalog, consumer_requests, &mut problems);
    let mut failed = BTreeSet::new();
    let mut chosen: Vec<(Scope, Option<String>, Ready)> = Vec::new();
    for (scope, items) in by_scope {
        let taken = generated(ctx, &scope);
        let mut names: BTreeMap<(String, Option<String>), ObjectRef> = BTreeMap::new();
        let mut ok = Vec::new();
        for (referrer, wanted) in items {
            let result = find(ctx, &catalog, &referrer, &wanted.plugin).cloned().and_then(|def| {
                let excluded = ctx.is_excluded(&def.object);
                catalog.ready(&def, excluded)
            });
            let result = result.and_then(|ready| {
                let mut fresh = Vec::new();
                for consumer in scoped.consumers_for(&referrer, &ready.def.object) {
                    let conflict = |other: String| PluginError::Conflict {
                        plugin: Box::new(ready.def.object.clone()),
                        name: ready.def.plugin.clone(),
                        other,
                    };
                    let slot = (ready.def.plugin.clone(), consumer.clone());
                    match names.get(&slot) {
                        Some(o) if *o == ready.def.object => {}
                        Some(o) => return Err(conflict(o.to_string())),
                        None if consumer.is_none() && taken.contains(&ready.def.plugin) => {
                            return Err(conflict(format!("a filter of {referrer}")))
                        }
                        None => {
                            names.insert(slot, ready.def.object.clone());
                            fresh.push(consumer);
                        }
                    }
                }
                Ok((ready, fresh))
            });
            match result {
                Ok((ready, fresh)) => ok.extend(fresh.into_iter().map(|c| (c, ready.clone()))),
                Err(e) => {
                    problems.push(Problem::new(&referrer, wanted.field.clone(), format!("{e}; {scope} left out")));
                    if let Some((plugin, errors)) = e.plugin() {
                        for (field, message) in errors {
                            problems.push(Problem::new(
                                plugin,
                                field,
                                format!("{message}; {scope} of {referrer} left out"),
                            ));
                        }
                    }
                    failed.insert(scope.clone());
                }
            }
        }
        if !failed.contains(&scope) {
            chosen.extend(ok.into_iter().map(|(c, r)| (scope.clone(), c, r)));
        }
    }
    let consumer_only = scoped.consumer_only(&mut problems);

    for scope in &failed {
        match scope {
            Scope::Service(name) => {
                ctx.kong_services.remove(name);
            }
            Scope::Route(name) => {
                for ks in ctx.kong_services.values_mut() {
                    ks.routes.retain(|r| r.name.as_deref() != Some(name.as_str()));
                }
            }
        }
    }
    let routes: BTreeSet<String> =
        ctx.kong_services.values().flat_map(|ks| ks.routes.iter().filter_map(|r| r.name.clone())).collect();
    let live = chosen.into_iter().filter(|(scope, _, _)| match scope {
        Scope::Service(s) => ctx.kong_services.contains_key(s),
        Scope::Route(r) => routes.contains(r),
    });
    let mut out = Vec::new();
    let mut nested: BTreeMap<String, Vec<Plugin>> = BTreeMap::new();
    for (scope, consumer, ready) in live {
        match consumer {
            None => out.push(entity(&ready, Some(&scope), None)),
            Some(c) => nested.entry(c.clone()).or_default().push(entity(&ready, Some(&scope), Some(&c))),
        }
    }
    for (c, ready) in consumer_only {
        nested.entry(c.clone()).or_default().push(entity(&ready, None, Some(&c)));
    }
    ctx.consumers.retain(|c| !scoped.failed.contains(c.display_name()));
    for c in &mut ctx.consumers {
        if let Some(mut plugins) = nested.remove(c.display_name()) {
            plugins.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
            c.plugins = plugins;
        }
    }
    out.extend(globals(ctx, &mut catalog, &mut problems));
    ctx.problems.extend(problems);
    out.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    out
}

/// Global KongClusterPlugins: one per plugin name, or none when two claim it (KIC).
fn globals(ctx: &Context<'_>, catalog: &mut Catalog<'_>, problems: &mut Vec<Problem>) -> Vec<Plugin> {
    let mut defs: Vec<PluginDef> = catalog.cluster.values().filter(|d| d.is_global()).cloned().collect();
    defs.sort_by(|a, b| a.object.name.cmp(&b.object.name));
    let mut by_name: BTreeMap<String, Vec<PluginDef>> = BTreeMap::new();
    for d in defs {
        by_name.entry(d.plugin.clone()).or_default().push(d);
    }
    let mut out = Vec::new();
    for (name, list) in by_name {
        if list.len() > 1 {
            let all: Vec<String> = list.iter().map(|d| d.object.name.clone()).collect();
            for d in &list {
                problems.push(Problem::new(
                    &d.object,
                    "metadata.labels.global",
                    format!(
                        "global KongClusterPlugins {} all configure '{name}'; none of them is applied",
                        all.join(", ")
                    ),
                ));
            }
            continue;
        }
        let def = &list[0];
        match catalog.ready(def, ctx.is_excluded(&def.object)) {
            Ok(ready) => out.push(entity(&ready, None, None)),
            Err(e) => {
                let errors = match e.plugin() {
                    Some((_, errors)) => errors,
                    None => vec![(String::new(), e.to_string())],
                };
                for (field, message) in errors {
                    problems.push(Problem::new(
                        &def.object,
                        field,
                        format!("{message}; the global plugin is not applied"),
                    ));
                }
            }
        }
    }
    out
}

/// The Kong entity of a plugin on `scope` and `consumer` (both `None` = global). A
/// consumer-scoped one is nested under its consumer, so its `consumer` field stays empty.
fn entity(ready: &Ready, scope: Option<&Scope>, consumer: Option<&str>) -> Plugin {
    let def = &ready.def;
    let (route, service) = match scope {
        Some(Scope::Route(r)) => (Some(r.as_str()), None),
        Some(Scope::Service(s)) => (None, Some(s.as_str())),
        None => (None, None),
    };
    Plugin {
        id: Some(naming::plugin_id(&def.plugin, service, route, consumer)),
        name: def.plugin.clone(),
        instance_name: def.instance_name.as_deref().map(|n| naming::instance_name(n, service, route, consumer)),
        route: route.map(|r| EntityRef::Name(r.to_string())),
        service: service.map(|s| EntityRef::Name(s.to_string())),
        consumer: None,
        enabled: !def.disabled,
        protocols: ready.protocols.clone(),
        config: ready.config.clone(),
        tags: naming::tags(&def.object),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotation_lists() {
        let list = PluginName::parse_list(" a, b ,,other:c ");
        assert_eq!(
            list,
            vec![
                PluginName { namespace: None, name: "a".into() },
                PluginName { namespace: None, name: "b".into() },
                PluginName { namespace: Some("other".into()), name: "c".into() },
            ]
        );
        assert_eq!(list[2].to_string(), "other:c");
        assert!(PluginName::parse_list("").is_empty());
    }

    #[test]
    fn only_http_and_grpc_protocols() {
        assert_eq!(protocol(KongProtocol::Grpcs), Ok(Protocol::Grpcs));
        let (field, message) = protocol(KongProtocol::Tcp).unwrap_err();
        assert_eq!(field, "protocols");
        assert!(message.contains("'tcp'"), "{message}");
    }
}
