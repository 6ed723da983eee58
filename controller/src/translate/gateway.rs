//! Gateway API → Kong entities (GRPCRoute, HTTPRoute), and the statuses that go with them.
//!
//! One pure [`plan`] gives both the entities and the statuses, so what is reported is what is
//! routed: our GatewayClasses and Gateways ([`listeners`]) → every route converted into a
//! kind-independent view ([`grpcroute`], [`httproute`], [`model`]) → attached to the listeners its
//! parentRefs select (kind, namespace, [`hostnames`] intersection) → backendRefs resolved
//! ([`backends`], [`refs`] for ReferenceGrants). [`translate`] then emits one Kong service and
//! upstream per rule (`<kind>.<ns>.<name>.<rule>`, as KIC) and one Kong route per match and
//! hostname class, with the Gateway API precedence encoded in `priority` ([`precedence`]) and the
//! header filters as plugins ([`filters`]); `konghq.com/plugins` and ExtensionRef filters to a
//! KongPlugin ask for plugins on the rule's routes ([`super::plugins`]). Once the config is final,
//! [`settle`] turns `Accepted` off for every route whose entities did not make it into it (rejected
//! by the proxy, or left out for a problem), and takes it off its listeners' `attachedRoutes`.

pub(crate) mod backend_tls;
pub(crate) mod backends;
pub(crate) mod filters;
pub(crate) mod grpcroute;
pub(crate) mod hostnames;
pub(crate) mod httproute;
pub(crate) mod listeners;
pub(crate) mod model;
pub(crate) mod precedence;
pub(crate) mod refs;
pub(crate) mod route_settings;
pub(crate) mod timeouts;

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::core::v1::{Secret, Service};
use kube::{Resource, ResourceExt};
use proxy_config::{Certificate, Protocol, Route, Sni};

use self::backends::Resolution;
use self::hostnames::Hosts;
use self::listeners::{GatewayInfo, NamespaceLabels};
use self::model::{
    BackendRef, Cond, GatewayStatusModel, GatewayStatuses, ListenerStatus, ParentRef, ParentRefOut, ParentStatus,
    RouteKind, RouteStatusModel, RouteView,
};
use self::route_settings::{route_settings, RouteSettings};
use super::annotations::{self, RouteAnnotations};
use super::{app_protocol, names, plugins, Context, KongService, ObjectRef, Problem};
use crate::settings::Settings;
use crate::snapshot::Snapshot;

/// The Gateway API group.
pub(crate) const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
/// KIC's controller name, the default of `--gateway-controller-name`.
pub(crate) const DEFAULT_CONTROLLER_NAME: &str = "konghq.com/kic-gateway-controller";
/// Tag KIC puts on entities of a named rule.
pub(crate) const TAG_NAMED_RULE: &str = "k8s-named-route-rule:";

/// Fills the defaults of a parentRef.
pub(crate) fn parent_ref(
    route_ns: &str,
    group: Option<&str>,
    kind: Option<&str>,
    namespace: Option<&str>,
    name: &str,
    section_name: Option<String>,
    port: Option<i32>,
) -> ParentRef {
    ParentRef {
        group: group.unwrap_or(GATEWAY_GROUP).to_string(),
        kind: kind.unwrap_or("Gateway").to_string(),
        namespace: namespace.filter(|n| !n.is_empty()).unwrap_or(route_ns).to_string(),
        name: name.to_string(),
        section_name: section_name.filter(|s| !s.is_empty()),
        port,
    }
}

/// Fills the defaults of a backendRef (core Service, the route's namespace, weight 1).
pub(crate) fn backend_ref(
    route_ns: &str,
    group: Option<&str>,
    kind: Option<&str>,
    namespace: Option<&str>,
    name: &str,
    port: Option<i32>,
    weight: Option<i32>,
) -> BackendRef {
    BackendRef {
        group: group.unwrap_or("").to_string(),
        kind: kind.unwrap_or("Service").to_string(),
        namespace: namespace.filter(|n| !n.is_empty()).unwrap_or(route_ns).to_string(),
        name: name.to_string(),
        port,
        weight: u32::try_from(weight.unwrap_or(1)).unwrap_or(0),
    }
}

/// The valid hostnames of a route; invalid ones are reported and ignored.
pub(crate) fn hostnames_of(obj: &ObjectRef, list: &[String], problems: &mut Vec<Problem>) -> Vec<String> {
    let mut out = Vec::new();
    for (i, h) in list.iter().enumerate() {
        match hostnames::check(h) {
            Ok(()) if !out.contains(h) => out.push(h.clone()),
            Ok(()) => {}
            Err(e) => problems.push(Problem::new(obj, format!("spec.hostnames[{i}]"), format!("{e}; ignored"))),
        }
    }
    out
}

/// One route after attachment and backend resolution.
pub(crate) struct PlannedRoute<'a> {
    pub view: RouteView,
    /// The hosts it serves (union over its accepted listeners).
    pub hosts: Hosts,
    /// Attached to at least one listener and at least one rule is implemented.
    pub accepted: bool,
    /// Per rule, per backendRef.
    pub resolutions: Vec<Vec<(BackendRef, Resolution<'a>)>>,
    /// The listeners it attached to: (index in `Plan::gateways`, index in its listeners).
    pub attachments: Vec<(usize, usize)>,
}

/// The whole Gateway API picture of a snapshot.
pub(crate) struct Plan<'a> {
    /// The statuses, before [`settle`] looks at what made it into the config.
    pub statuses: GatewayStatuses,
    pub gateways: Vec<GatewayInfo>,
    pub routes: Vec<PlannedRoute<'a>>,
    pub policies: backend_tls::Policies,
    pub problems: Vec<Problem>,
}

/// A route [`translate`] meant to put into the config, with the listeners it attached to.
pub(crate) struct Routed {
    pub object: ObjectRef,
    pub attachments: Vec<(usize, usize)>,
}

/// `Accepted` reason of a route whose entities the proxy rejected (the fallback config leaves it out).
pub const REASON_REJECTED_BY_PROXY: &str = "RejectedByProxy";
/// `Accepted` reason of a route left out of the config for the problems its message lists.
pub(crate) const REASON_LEFT_OUT: &str = "UnsupportedValue";
/// The problem of a route the proxy rejected.
const PROBLEM_REJECTED: &str = "rejected by the proxy; left out of the config";
/// Longest condition message written (the API allows 32768; Events carry the full problems).
const MAX_MESSAGE: usize = 1024;

/// Makes the route statuses match the final config: a route in `routed` none of whose Kong routes
/// is in `config_routes` (the objects named by the tags of the config's routes) is not `Accepted`
/// by any parent, with a reason and a message naming why, and no longer counts in its listeners'
/// `attachedRoutes`.
pub(crate) fn settle(
    statuses: &mut GatewayStatuses,
    routed: &[Routed],
    config_routes: &HashSet<ObjectRef>,
    problems: &[Problem],
    excluded: &HashSet<ObjectRef>,
) {
    let same = |a: &ObjectRef, b: &ObjectRef| a.kind == b.kind && a.namespace == b.namespace && a.name == b.name;
    for r in routed {
        if config_routes.iter().any(|c| same(c, &r.object)) {
            continue;
        }
        let (reason, why) = if excluded.iter().any(|e| same(e, &r.object)) {
            (
                REASON_REJECTED_BY_PROXY,
                "the proxy rejected the configuration generated from this route (its answer is in the \
                 KongConfigurationApplyFailed Event); the route is left out until the configuration changes",
            )
        } else {
            (REASON_LEFT_OUT, "the route is left out of the configuration")
        };
        let details: Vec<String> = problems
            .iter()
            .filter(|p| same(&p.object, &r.object) && p.message != PROBLEM_REJECTED)
            .map(|p| if p.field.is_empty() { p.message.clone() } else { format!("{}: {}", p.field, p.message) })
            .collect();
        let mut message = if details.is_empty() { why.to_string() } else { format!("{why}: {}", details.join("; ")) };
        truncate(&mut message, MAX_MESSAGE);
        if let Some(status) = statuses.routes.iter_mut().find(|s| same(&s.object, &r.object)) {
            for parent in &mut status.parents {
                for c in parent.conditions.iter_mut().filter(|c| c.type_ == "Accepted" && c.is_true()) {
                    *c = Cond::new("Accepted", false, reason, message.clone());
                }
            }
        }
        for &(gi, li) in &r.attachments {
            if let Some(l) = statuses.gateways.get_mut(gi).and_then(|g| g.listeners.get_mut(li)) {
                l.attached_routes -= 1;
            }
        }
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

fn key_of<K: Resource>(o: &K) -> (String, String) {
    (o.namespace().unwrap_or_default(), o.name_any())
}

/// Builds the plan (see the module documentation).
pub(crate) fn plan<'a>(snapshot: &'a Snapshot, settings: &Settings) -> Plan<'a> {
    let mut problems = Vec::new();
    let watched = |ns: &str| settings.watches_namespace(ns);
    let services: HashMap<(String, String), &'a Service> =
        snapshot.services.iter().map(|s| (key_of(s.as_ref()), s.as_ref())).collect();
    let secrets: HashMap<(String, String), &'a Secret> =
        snapshot.secrets.iter().map(|s| (key_of(s.as_ref()), s.as_ref())).collect();
    let grants = &snapshot.reference_grants;
    let (classes, accepted_classes) = listeners::classes(&snapshot.gateway_classes, &settings.gateway_controller_name);
    let (mut classes, accepted_classes) = (classes, accepted_classes);
    classes.sort_by(|a, b| a.name.cmp(&b.name));
    let mut gateway_list: Vec<_> =
        snapshot.gateways.iter().filter(|g| watched(&g.namespace().unwrap_or_default())).cloned().collect();
    gateway_list.sort_by_cached_key(|g| key_of(g.as_ref()));
    let inputs = listeners::Inputs { secrets: &secrets, grants };
    let mut gateways = listeners::gateways(&gateway_list, &accepted_classes, &inputs, &mut problems);
    let policies = backend_tls::analyse(snapshot, watched, &mut problems);
    let labels: NamespaceLabels = snapshot.namespaces.iter().map(|n| (n.name_any(), n.labels().clone())).collect();

    let mut views: Vec<RouteView> = Vec::new();
    for r in snapshot.grpc_routes.iter().filter(|r| watched(&r.namespace().unwrap_or_default())) {
        views.push(grpcroute::view(r, &mut problems));
    }
    for r in snapshot.http_routes.iter().filter(|r| watched(&r.namespace().unwrap_or_default())) {
        views.push(httproute::view(r, &mut problems));
    }

    views.sort_by(|a, b| (a.kind, &a.obj).cmp(&(b.kind, &b.obj)));
    let mut routes = Vec::new();
    let mut route_statuses = Vec::new();
    for view in views {
        let rules_total = view.rules.len();
        let dropped: Vec<&(String, String)> = view.rules.iter().filter_map(|r| r.dropped.as_ref()).collect();
        for (field, message) in &dropped {
            problems.push(Problem::new(&view.obj, field.clone(), format!("{message}; rule left out")));
        }
        let implementable = rules_total == 0 || dropped.len() < rules_total;
        let resolutions: Vec<Vec<(BackendRef, Resolution<'a>)>> = view
            .rules
            .iter()
            .map(|rule| {
                rule.backends.iter().map(|b| (b.clone(), backends::resolve(b, &view, &services, grants))).collect()
            })
            .collect();
        let resolved = resolved_refs(&view, &resolutions);
        for (ri, rule) in resolutions.iter().enumerate() {
            for (bi, (_, r)) in rule.iter().enumerate() {
                if let Resolution::Invalid { reason, message } = r {
                    let field = format!("spec.rules[{ri}].backendRefs[{bi}]");
                    problems.push(Problem::new(
                        &view.obj,
                        field,
                        format!("{reason}: {message}; its share of traffic fails"),
                    ));
                }
            }
        }
        for (field, message) in view.rules.iter().flat_map(|r| r.filters.unresolved.iter()) {
            problems.push(Problem::new(&view.obj, field.clone(), format!("{message}; the rule answers with an error")));
        }
        let mut hosts = Hosts::empty();
        let mut parents = Vec::new();
        let mut attachments = Vec::new();
        for pref in &view.parent_refs {
            if pref.group != GATEWAY_GROUP || pref.kind != "Gateway" {
                continue;
            }
            let Some(gi) = gateways.iter().position(|g| g.obj.namespace == pref.namespace && g.obj.name == pref.name)
            else {
                continue; // not one of ours (or not there): no status entry
            };
            let (accepted, on) = attach(&view, pref, &gateways[gi], &labels);
            let accepted = if accepted.is_true() && !implementable {
                Cond::new("Accepted", false, "UnsupportedValue", "no rule of the route can be implemented")
            } else {
                accepted
            };
            if accepted.is_true() {
                for (li, h) in on {
                    hosts.extend(h);
                    gateways[gi].listeners[li].attached += 1;
                    attachments.push((gi, li));
                }
            } else {
                problems.push(Problem::new(
                    &view.obj,
                    "spec.parentRefs",
                    format!("{}/{}: {}", pref.namespace, pref.name, accepted.message),
                ));
            }
            let mut conditions = vec![accepted, resolved.clone()];
            if !dropped.is_empty() && implementable {
                let list: Vec<&str> = dropped.iter().map(|(f, _)| f.as_str()).collect();
                conditions.push(Cond::new(
                    "PartiallyInvalid",
                    true,
                    "UnsupportedValue",
                    format!("Dropped Rule(s): {}", list.join(", ")),
                ));
            }
            parents.push(ParentStatus { parent_ref: echo(pref), conditions });
        }
        route_statuses.push(RouteStatusModel {
            kind: view.kind,
            object: view.obj.clone(),
            generation: view.generation,
            parents,
        });
        routes.push(PlannedRoute { accepted: !attachments.is_empty(), hosts, resolutions, attachments, view });
    }

    // BackendTLSPolicy ancestors: the Gateways of the routes whose backends a policy targets.
    let mut ancestors: BTreeMap<usize, std::collections::BTreeSet<(String, String)>> = BTreeMap::new();
    for r in &routes {
        for (_, res) in r.resolutions.iter().flatten() {
            let Resolution::Valid { svc, port } = res else { continue };
            for i in policies.naming(svc, port) {
                for &(gi, _) in &r.attachments {
                    let g = &gateways[gi].obj;
                    ancestors.entry(i).or_default().insert((g.namespace.clone(), g.name.clone()));
                }
            }
        }
    }
    let policy_statuses = policies.statuses(&ancestors);
    let gateway_statuses = gateways
        .iter()
        .map(|g| GatewayStatusModel {
            object: g.obj.clone(),
            generation: g.generation,
            conditions: vec![g.accepted.clone()],
            listeners: g
                .listeners
                .iter()
                .map(|l| ListenerStatus {
                    name: l.name.clone(),
                    supported_kinds: l.kinds.iter().map(|k| k.kind()).collect(),
                    attached_routes: l.attached,
                    conditions: vec![l.accepted.clone(), l.programmed(), l.resolved_refs.clone(), l.conflicted.clone()],
                })
                .collect(),
        })
        .collect();
    Plan {
        statuses: GatewayStatuses {
            classes,
            gateways: gateway_statuses,
            routes: route_statuses,
            policies: policy_statuses,
        },
        gateways,
        routes,
        policies,
        problems,
    }
}

/// The parentRef as echoed in status, with group, kind and namespace always written (conformance
/// compares them field by field).
fn echo(p: &ParentRef) -> ParentRefOut {
    ParentRefOut {
        group: p.group.clone(),
        kind: p.kind.clone(),
        namespace: Some(p.namespace.clone()),
        name: p.name.clone(),
        section_name: p.section_name.clone(),
        port: p.port,
    }
}

/// The route's `Accepted` condition for one parent, and the listeners (with hosts) it attaches to.
fn attach(
    view: &RouteView,
    pref: &ParentRef,
    gw: &GatewayInfo,
    labels: &NamespaceLabels,
) -> (Cond, Vec<(usize, Hosts)>) {
    let selected: Vec<usize> = gw
        .listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            pref.section_name.as_deref().is_none_or(|s| s == l.name) && pref.port.is_none_or(|p| p == l.port)
        })
        .map(|(i, _)| i)
        .collect();
    if selected.is_empty() {
        return (
            Cond::new("Accepted", false, "NoMatchingParent", "no listener matches the parentRef's sectionName/port"),
            Vec::new(),
        );
    }
    let mut on = Vec::new();
    let mut hostname_miss = false;
    for li in selected {
        let l = &gw.listeners[li];
        if !l.usable() || !l.allows(view.kind, &view.obj.namespace, &gw.obj.namespace, labels) {
            continue;
        }
        let hosts = hostnames::effective(l.hostname.as_deref(), &view.hostnames);
        if hosts.is_empty() {
            hostname_miss = true;
            continue;
        }
        on.push((li, hosts));
    }
    let cond = if !on.is_empty() {
        Cond::new("Accepted", true, "Accepted", "")
    } else if hostname_miss {
        Cond::new(
            "Accepted",
            false,
            "NoMatchingListenerHostname",
            "no listener hostname intersects the route's hostnames",
        )
    } else {
        Cond::new(
            "Accepted",
            false,
            "NotAllowedByListeners",
            format!("no selected listener allows a {} from namespace {}", view.kind.kind(), view.obj.namespace),
        )
    };
    (cond, on)
}

/// `ResolvedRefs` of a route: the first unresolvable backendRef or ExtensionRef.
fn resolved_refs(view: &RouteView, resolutions: &[Vec<(BackendRef, Resolution<'_>)>]) -> Cond {
    for rule in resolutions {
        for (_, r) in rule {
            if let Resolution::Invalid { reason, message } = r {
                return Cond::new("ResolvedRefs", false, *reason, message.clone());
            }
        }
    }
    if let Some((_, message)) = view.rules.iter().flat_map(|r| r.filters.unresolved.iter()).next() {
        return Cond::new("ResolvedRefs", false, "InvalidKind", message.clone());
    }
    Cond::new("ResolvedRefs", true, "ResolvedRefs", "")
}

/// A generated Kong route waiting for its priority.
struct Pending {
    kind: RouteKind,
    service: String,
    route: Route,
    key: precedence::Key,
}

/// Translates Gateway API objects into the context.
pub(crate) fn translate(ctx: &mut Context<'_>) {
    let Plan { statuses, gateways, routes, policies, problems } = plan(ctx.snapshot, ctx.settings);
    ctx.problems.extend(problems);
    ctx.gateway_statuses = statuses;
    certificates(ctx, &gateways);
    let mut pending = Vec::new();
    for route in &routes {
        if !route.accepted || route.hosts.is_empty() {
            continue;
        }
        // A route without rules to implement is accepted with nothing to route; every other one
        // is checked against the final config by `settle`.
        if route.view.rules.iter().any(|r| r.dropped.is_none()) {
            ctx.routed.push(Routed { object: route.view.obj.clone(), attachments: route.attachments.clone() });
        }
        if ctx.is_excluded(&route.view.obj) {
            ctx.problem(&route.view.obj, "", PROBLEM_REJECTED);
            continue;
        }
        if let Some(p) = annotations::check_hostile(&route.view.obj, &route.view.annotations) {
            ctx.problems.push(p);
            continue;
        }
        let ann = annotations::route_annotations(&route.view.obj, &route.view.annotations, &mut ctx.problems);
        translate_route(ctx, route, &ann, &policies, &mut pending);
    }
    for kind in [RouteKind::Grpc, RouteKind::Http] {
        let base = if kind == RouteKind::Grpc { precedence::GRPC_BASE } else { precedence::HTTP_BASE };
        let group: Vec<&mut Pending> = pending.iter_mut().filter(|p| p.kind == kind).collect();
        let keys: Vec<precedence::Key> = group.iter().map(|p| p.key.clone()).collect();
        for (p, priority) in group.into_iter().zip(precedence::assign(&keys, base)) {
            p.route.priority = Some(priority);
        }
    }
    for p in pending {
        if let Some(ks) = ctx.kong_services.get_mut(&p.service) {
            ks.routes.push(p.route);
        }
    }
}

/// Hostname classes of a route's hosts: hostnames of equal precedence share one Kong route.
fn host_groups(hosts: &Hosts) -> Vec<(Vec<String>, (usize, usize))> {
    match hosts {
        Hosts::Any => vec![(Vec::new(), (0, 0))],
        Hosts::Names(names) => {
            let mut groups: BTreeMap<Reverse<(usize, usize)>, Vec<String>> = BTreeMap::new();
            for h in names {
                groups.entry(Reverse(hostnames::precedence(Some(h)))).or_default().push(h.clone());
            }
            groups.into_iter().map(|(Reverse(k), v)| (v, k)).collect()
        }
    }
}

fn translate_route(
    ctx: &mut Context<'_>,
    route: &PlannedRoute<'_>,
    ann: &RouteAnnotations,
    policies: &backend_tls::Policies,
    pending: &mut Vec<Pending>,
) {
    let view = &route.view;
    let obj = &view.obj;
    let kind = view.kind;
    let grpc = kind == RouteKind::Grpc;
    let RouteSettings { protocols, snis } = route_settings(obj, kind, ann, &mut ctx.problems);
    let groups = host_groups(&route.hosts);
    let ns_name = format!("{}/{}", obj.namespace, obj.name);
    for (rule, resolutions) in view.rules.iter().zip(&route.resolutions) {
        if rule.dropped.is_some() {
            continue;
        }
        let mut extra_tags = ann.tags.clone();
        if let Some(n) = &rule.name {
            extra_tags.push(format!("{TAG_NAMED_RULE}{n}"));
        }
        let tags = names::tags(obj, &extra_tags);
        for (field, message) in &rule.filters.ignored {
            ctx.problem(obj, field.clone(), message.clone());
        }
        let mut plugins = Vec::new();
        let mut broken = false;
        for (mods, plugin_name, field) in [
            (&rule.filters.request, "request-transformer", "RequestHeaderModifier"),
            (&rule.filters.response, "response-transformer", "ResponseHeaderModifier"),
        ] {
            if let Some(m) = mods {
                match filters::transformer(plugin_name, m, &tags) {
                    Ok(p) => plugins.push(p),
                    Err(e) => {
                        ctx.problem(
                            obj,
                            format!("spec.rules[{}].filters", rule.index),
                            format!("{field}: {e}; rule left out"),
                        );
                        broken = true;
                    }
                }
            }
        }
        if broken {
            continue;
        }
        let service_name = format!("{}.{}.{}.{}", kind.prefix(), obj.namespace, obj.name, rule.index);
        let mut rb = backends::rule_upstream(ctx, resolutions, &service_name, &tags);
        // Rules that cannot forward answer with an error, as the Gateway API asks: gRPC with
        // 404 (UNIMPLEMENTED) without backendRefs, 503 for an unresolvable filter; HTTP with 500.
        let termination = if !rule.filters.unresolved.is_empty() {
            Some((if grpc { 503 } else { 500 }, "an ExtensionRef filter of this rule cannot be resolved"))
        } else if rule.backends.is_empty() {
            Some((if grpc { 404 } else { 500 }, "no backendRefs"))
        } else if rb.none_usable && !grpc {
            Some((500, "no valid backendRef"))
        } else {
            None
        };
        if let Some((code, message)) = termination {
            plugins.push(filters::termination(code, message, &tags));
        }
        let (ann_service, port) = rb.first.clone().unwrap_or_default();
        // konghq.com/protocol first, then the port's appProtocol (GEP-1911), then the default.
        let app = match app_protocol::from_app_protocol(rb.first_app_protocol.as_deref(), grpc) {
            Ok(p) => p,
            Err(message) => {
                ctx.problem(obj, format!("spec.rules[{}].backendRefs", rule.index), message);
                None
            }
        };
        let protocol = match (ann_service.protocol, app) {
            (Some(p), _) if grpc && p.is_grpc() => p,
            (Some(p), _) if !grpc => p,
            (_, Some(p)) => p,
            _ if grpc => Protocol::Grpc,
            _ => Protocol::Http,
        };
        let client_certificate = match (ann_service.client_cert.as_deref(), &rb.first_service) {
            (Some(secret), Some(svc_ref)) if protocol.is_tls() => {
                super::certificates::client_certificate(ctx, &svc_ref.namespace, secret, svc_ref)
            }
            (Some(_), Some(svc_ref)) => {
                let field = annotations::field(annotations::CLIENT_CERT);
                ctx.problem(svc_ref, field, "ignored: a client certificate needs protocol https or grpcs");
                None
            }
            _ => None,
        };
        let mut ca_ids = match &rb.first_service {
            Some(svc_ref) => {
                super::certificates::upstream_ca_ids(ctx, &svc_ref.namespace, &ann_service, svc_ref, protocol.is_tls())
            }
            None => Vec::new(),
        };
        let mut tls_verify = ann_service.tls_verify;
        let mut protocol = protocol;
        let field = format!("spec.rules[{}].backendRefs", rule.index);
        if let Some(tls) = backend_tls::policy_of_rule(policies, resolutions, obj, &field, &mut ctx.problems) {
            protocol = backend_tls::tls_protocol(protocol);
            tls_verify = Some(true);
            ca_ids = tls.cas.iter().map(|c| c.id.clone()).collect();
            for ca in &tls.cas {
                ctx.ca_certificates.entry(ca.id.clone()).or_insert_with(|| ca.clone());
            }
            rb.upstream.host_header = Some(tls.hostname.clone());
            if tls.no_valid_ca {
                rb.upstream.targets.clear();
            }
        }
        let service = proxy_config::Service {
            id: None,
            url: None,
            name: Some(service_name.clone()),
            protocol,
            host: service_name.clone(),
            port: if port == 0 { 80 } else { port },
            path: None,
            connect_timeout: ann_service.connect_timeout.unwrap_or(60_000),
            read_timeout: ann_service.read_timeout.unwrap_or(60_000),
            write_timeout: ann_service.write_timeout.unwrap_or(60_000),
            retries: if rb.partially_invalid { 0 } else { ann_service.retries.unwrap_or(5) },
            retry_on_unavailable: None,
            retry_buffer_size: None,
            tls_verify,
            tls_verify_depth: ann_service.tls_verify_depth,
            ca_certificates: (!ca_ids.is_empty()).then_some(ca_ids),
            client_certificate,
            enabled: true,
            tags: tags.clone(),
            routes: Vec::new(),
            plugins: Vec::new(),
        };
        ctx.kong_services.insert(
            service_name.clone(),
            KongService {
                service,
                routes: Vec::new(),
                upstream: rb.upstream,
                used_by_rule: !grpc,
                annotated_path: if protocol.is_grpc() { None } else { ann_service.path.clone() },
            },
        );
        for m in &rule.matches {
            for (gi, (hosts, host_key)) in groups.iter().enumerate() {
                let name = if groups.len() == 1 {
                    format!("{service_name}.{}", m.index)
                } else {
                    format!("{service_name}.{}.{gi}", m.index)
                };
                let mut wanted = plugins::from_annotation(&ann.plugins);
                wanted.extend(rule.filters.plugins.iter().map(|(field, name)| plugins::Wanted {
                    plugin: plugins::PluginName { namespace: None, name: name.clone() },
                    field: field.clone(),
                }));
                ctx.want_plugins(plugins::Scope::Route(name.clone()), obj, wanted);
                let mut headers = ann.headers.clone().unwrap_or_default();
                headers.retain(|k, _| !m.headers.keys().any(|h| h.eq_ignore_ascii_case(k)));
                headers.extend(m.headers.clone());
                let route_entity = Route {
                    id: None,
                    name: Some(name),
                    service: None,
                    protocols: protocols.clone(),
                    hosts: hosts.clone(),
                    paths: m.paths.clone(),
                    methods: if grpc { Vec::new() } else { m.methods.clone() },
                    headers,
                    snis: snis.clone(),
                    strip_path: if grpc { None } else { Some(ann.strip_path.unwrap_or(false)) },
                    preserve_host: ann.preserve_host.unwrap_or(true),
                    regex_priority: 0,
                    priority: None,
                    https_redirect_status_code: ann.https_redirect_status_code.unwrap_or(426),
                    path_handling: ann.path_handling.unwrap_or_default(),
                    request_buffering: ann.request_buffering,
                    response_buffering: ann.response_buffering,
                    request_timeout: rule.timeouts.request,
                    backend_request_timeout: rule.timeouts.backend_request,
                    tags: tags.clone(),
                    plugins: plugins.clone(),
                };
                let mut route_entity = route_entity;
                annotations::drop_grpc_buffering(obj, &mut route_entity, &mut ctx.problems);
                let key = precedence::Key {
                    host_exact: host_key.0,
                    host_len: host_key.1,
                    rank: m.rank,
                    created: Reverse(view.created.clone()),
                    name: Reverse(ns_name.clone()),
                    rule: Reverse(rule.index),
                };
                pending.push(Pending { kind, service: service_name.clone(), route: route_entity, key });
            }
        }
    }
}

/// Certificates of the HTTPS listeners, with the listener hostname as SNI. A hostname already
/// served by another certificate (an Ingress's, or an earlier listener's) keeps that one. A
/// certificate the proxy rejected (its Secret excluded) is left out, and its listener reports
/// `ResolvedRefs` and `Programmed` False.
fn certificates(ctx: &mut Context<'_>, gateways: &[GatewayInfo]) {
    for (gi, g) in gateways.iter().enumerate() {
        if ctx.is_excluded(&g.obj) {
            continue;
        }
        for (li, l) in g.listeners.iter().enumerate().filter(|(_, l)| l.usable()) {
            let Some(cert) = &l.certificate else { continue };
            if ctx.is_excluded(&cert.secret) {
                let message = format!(
                    "the proxy rejected the certificate of Secret {}/{}; left out, the proxy's default certificate is served",
                    cert.secret.namespace, cert.secret.name
                );
                ctx.problem(&g.obj, format!("spec.listeners[{li}].tls.certificateRefs"), message.clone());
                if let Some(status) = ctx.gateway_statuses.gateways.get_mut(gi).and_then(|s| s.listeners.get_mut(li)) {
                    for c in &mut status.conditions {
                        match c.type_ {
                            "ResolvedRefs" => {
                                *c = Cond::new("ResolvedRefs", false, "InvalidCertificateRef", message.clone())
                            }
                            "Programmed" => *c = Cond::new("Programmed", false, "Invalid", message.clone()),
                            _ => {}
                        }
                    }
                }
                continue;
            }
            let Some(host) = &l.hostname else {
                ctx.problem(
                    &g.obj,
                    format!("spec.listeners[{li}].hostname"),
                    "an HTTPS listener without hostname cannot select its certificate by SNI; the proxy's default certificate (KONG_SSL_CERT) is served",
                );
                continue;
            };
            let id = names::uuid("certificate", &format!("{}/{}", cert.secret.namespace, cert.secret.name));
            let taken = ctx
                .certificates
                .iter()
                .any(|(other, c)| *other != id && c.snis.iter().any(|s| s.name().eq_ignore_ascii_case(host)));
            if taken {
                ctx.problem(
                    &g.obj,
                    format!("spec.listeners[{li}]"),
                    format!("SNI {host} is already served by another certificate"),
                );
                continue;
            }
            let entry = ctx.certificates.entry(id.clone()).or_insert_with(|| Certificate {
                id: Some(id),
                cert: cert.cert.clone(),
                key: cert.key.clone(),
                snis: Vec::new(),
                tags: names::tags(&cert.secret, &[]),
            });
            if !entry.snis.iter().any(|s| s.name() == host) {
                entry.snis.push(Sni::Name(host.clone()));
                entry.snis.sort_by(|a, b| a.name().cmp(b.name()));
            }
        }
    }
}
