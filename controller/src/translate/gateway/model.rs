//! The kind-independent view of a Gateway API route (GRPCRoute and HTTPRoute share attachment,
//! backends, filters, precedence and statuses), and the status model the analysis produces.
//!
//! The typed `gateway-api` structs differ per kind only in their names; [`super::grpcroute`] and
//! [`super::httproute`] convert them into these views once, so the rest of the pipeline is written
//! once.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::translate::ObjectRef;

/// The route kinds sluice serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteKind {
    Grpc,
    Http,
}

impl RouteKind {
    pub fn kind(self) -> &'static str {
        match self {
            RouteKind::Grpc => "GRPCRoute",
            RouteKind::Http => "HTTPRoute",
        }
    }

    /// Prefix of the Kong entity names (`grpcroute.<ns>.<name>.<rule>`, as KIC).
    pub fn prefix(self) -> &'static str {
        match self {
            RouteKind::Grpc => "grpcroute",
            RouteKind::Http => "httproute",
        }
    }
}

/// A `parentRefs[]` entry with the defaults filled in (group, kind, namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParentRef {
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub section_name: Option<String>,
    pub port: Option<i32>,
}

/// A `backendRefs[]` entry with the defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BackendRef {
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub port: Option<i32>,
    pub weight: u32,
}

/// One header modifier filter (`set` overwrites, `add` appends, `remove` deletes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HeaderMods {
    pub set: Vec<(String, String)>,
    pub add: Vec<(String, String)>,
    pub remove: Vec<String>,
}

/// Builds [`HeaderMods`] from an optional header modifier filter of any route kind: the generated
/// types differ per route kind and per list, but share the field names `set`, `add` (name/value
/// pairs) and `remove`.
macro_rules! header_mods {
    ($modifier:expr) => {{
        let m = $modifier;
        $crate::translate::gateway::model::HeaderMods {
            set: m
                .and_then(|m| m.set.as_ref())
                .into_iter()
                .flatten()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
            add: m
                .and_then(|m| m.add.as_ref())
                .into_iter()
                .flatten()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
            remove: m.and_then(|m| m.remove.clone()).unwrap_or_default(),
        }
    }};
}
pub(crate) use header_mods;

/// The backend refs of a GRPCRoute or HTTPRoute rule `$rule` (resolved against `$namespace`);
/// per-backend filters are reported in `$filters` as ignored. The generated types differ per
/// route kind; their field names do not.
macro_rules! rule_backends {
    ($namespace:expr, $base:expr, $rule:expr, $filters:expr) => {{
        let mut backends = Vec::new();
        for (bi, b) in $rule.backend_refs.iter().flatten().enumerate() {
            if b.filters.as_ref().is_some_and(|f| !f.is_empty()) {
                $filters.ignored.push((
                    format!("{}.backendRefs[{bi}].filters", $base),
                    "per-backend filters are not supported by sluice; ignored".into(),
                ));
            }
            backends.push($crate::translate::gateway::backend_ref(
                $namespace,
                b.group.as_deref(),
                b.kind.as_deref(),
                b.namespace.as_deref(),
                &b.name,
                b.port,
                b.weight,
            ));
        }
        backends
    }};
}
pub(crate) use rule_backends;

/// The matches of a rule: `default` when it lists none. One match that cannot be converted makes
/// the rule match something other than written, so the rule is dropped: no matches, and the
/// `(field, message)` of the first bad match.
pub(crate) fn rule_matches<M>(
    base: &str,
    list: &[M],
    default: MatchView,
    convert: impl Fn(usize, &M) -> Result<MatchView, (String, String)>,
) -> (Vec<MatchView>, Option<(String, String)>) {
    if list.is_empty() {
        return (vec![default], None);
    }
    let mut matches = Vec::with_capacity(list.len());
    for (mi, m) in list.iter().enumerate() {
        match convert(mi, m) {
            Ok(v) => matches.push(v),
            Err((field, message)) => return (Vec::new(), Some((format!("{base}.matches[{mi}]{field}"), message))),
        }
    }
    (matches, None)
}

/// Builds the [`RouteView`] of a GRPCRoute or HTTPRoute: object, hostnames, parent refs and rules
/// (converted by `$rule(namespace, index, rule)`). The generated spec types differ per route kind;
/// their field names do not.
macro_rules! route_view {
    ($route:expr, $kind:expr, $problems:expr, $rule:path) => {{
        use kube::ResourceExt as _;
        let route = $route;
        let obj = $crate::translate::ObjectRef::of(route);
        let namespace = obj.namespace.clone();
        let spec = &route.spec;
        let hostnames =
            $crate::translate::gateway::hostnames_of(&obj, spec.hostnames.as_deref().unwrap_or_default(), $problems);
        let parent_refs = spec
            .parent_refs
            .iter()
            .flatten()
            .map(|p| {
                $crate::translate::gateway::parent_ref(
                    &namespace,
                    p.group.as_deref(),
                    p.kind.as_deref(),
                    p.namespace.as_deref(),
                    &p.name,
                    p.section_name.clone(),
                    p.port,
                )
            })
            .collect();
        let rules = spec.rules.iter().flatten().enumerate().map(|(i, r)| $rule(&namespace, i, r)).collect();
        $crate::translate::gateway::model::RouteView {
            kind: $kind,
            obj,
            generation: route.metadata.generation,
            created: route.creation_timestamp(),
            hostnames,
            parent_refs,
            rules,
            annotations: route.annotations().clone(),
        }
    }};
}
pub(crate) use route_view;

/// The filters of a rule that sluice acts on, and what it cannot do (reported, never silent).
#[derive(Debug, Clone, Default)]
pub(crate) struct Filters {
    pub request: Option<HeaderMods>,
    pub response: Option<HeaderMods>,
    /// `(field, message)` of filters that are ignored.
    pub ignored: Vec<(String, String)>,
    /// `(field, message)` of ExtensionRef filters: they cannot be resolved, and the spec forbids
    /// skipping them, so the rule answers with an error instead.
    pub unresolved: Vec<(String, String)>,
    /// `(field, name)` of ExtensionRef filters to a KongPlugin: plugins on the rule's routes.
    pub plugins: Vec<(String, String)>,
}

/// The group of KongPlugin, the one ExtensionRef kind sluice resolves.
pub(crate) const KONG_PLUGIN_GROUP: &str = "configuration.konghq.com";

/// Sorts one ExtensionRef filter (its `group`, `kind`, `name`): a KongPlugin becomes a plugin of
/// the rule, anything else cannot be resolved.
pub(crate) fn extension_ref(filters: &mut Filters, field: String, target: Option<(&str, &str, &str)>) {
    match target {
        Some((group, kind, name)) if group == KONG_PLUGIN_GROUP && kind == "KongPlugin" => {
            filters.plugins.push((field, name.to_string()));
        }
        Some((group, kind, name)) => {
            filters.unresolved.push((field, format!("ExtensionRef {group}/{kind} {name} cannot be resolved by sluice")))
        }
        None => filters.unresolved.push((field, "ExtensionRef  cannot be resolved by sluice".into())),
    }
}

/// One match of a rule, already in Kong terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MatchView {
    pub index: usize,
    pub paths: Vec<String>,
    pub methods: Vec<String>,
    pub headers: BTreeMap<String, Vec<String>>,
    /// The kind-specific precedence of the match (after the hostname), higher first.
    pub rank: [u64; 5],
}

/// One rule.
#[derive(Debug, Clone)]
pub(crate) struct RuleView {
    pub index: usize,
    pub name: Option<String>,
    /// Empty only when the rule is dropped (`dropped` says why).
    pub matches: Vec<MatchView>,
    pub filters: Filters,
    pub backends: Vec<BackendRef>,
    /// HTTPRoute `timeouts` (GRPCRoute has none).
    pub timeouts: super::timeouts::RuleTimeouts,
    /// `(field, message)` when the rule cannot be implemented at all.
    pub dropped: Option<(String, String)>,
}

/// A route of either kind.
#[derive(Debug, Clone)]
pub(crate) struct RouteView {
    pub kind: RouteKind,
    pub obj: ObjectRef,
    pub generation: Option<i64>,
    pub created: Option<Time>,
    /// Valid hostnames only (invalid ones are reported and ignored).
    pub hostnames: Vec<String>,
    pub parent_refs: Vec<ParentRef>,
    pub rules: Vec<RuleView>,
    pub annotations: BTreeMap<String, String>,
}

/// A status condition without its timestamp (the writer keeps or sets `lastTransitionTime`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Cond {
    #[serde(rename = "type")]
    pub type_: &'static str,
    pub status: &'static str,
    pub reason: String,
    pub message: String,
}

impl Cond {
    pub fn new(type_: &'static str, ok: bool, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Cond { type_, status: if ok { "True" } else { "False" }, reason: reason.into(), message: message.into() }
    }

    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// Status of one of our GatewayClasses.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ClassStatus {
    pub name: String,
    #[serde(skip)]
    pub generation: Option<i64>,
    pub conditions: Vec<Cond>,
}

/// Status of one listener.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    pub name: String,
    pub supported_kinds: Vec<&'static str>,
    pub attached_routes: i32,
    pub conditions: Vec<Cond>,
}

/// Status of one of our Gateways (`Programmed` and addresses are added by the writer, which knows
/// the proxy's addresses).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GatewayStatusModel {
    pub object: ObjectRef,
    #[serde(skip)]
    pub generation: Option<i64>,
    pub conditions: Vec<Cond>,
    pub listeners: Vec<ListenerStatus>,
}

/// Our entry for one parent of a route.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentStatus {
    pub parent_ref: ParentRefOut,
    pub conditions: Vec<Cond>,
}

/// The parentRef as echoed in status: group and kind always written (conformance compares them).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentRefOut {
    pub group: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

/// Status of one route: our parent entries.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RouteStatusModel {
    #[serde(skip)]
    pub kind: RouteKind,
    pub object: ObjectRef,
    #[serde(skip)]
    pub generation: Option<i64>,
    pub parents: Vec<ParentStatus>,
}

/// Status of one BackendTLSPolicy: our entry per ancestor Gateway.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PolicyStatusModel {
    pub object: ObjectRef,
    #[serde(skip)]
    pub generation: Option<i64>,
    pub ancestors: Vec<ParentStatus>,
}

/// The Gateway API statuses of a translation (pure; the status writer adds addresses and times).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub(crate) struct GatewayStatuses {
    pub classes: Vec<ClassStatus>,
    pub gateways: Vec<GatewayStatusModel>,
    pub routes: Vec<RouteStatusModel>,
    pub policies: Vec<PolicyStatusModel>,
}
