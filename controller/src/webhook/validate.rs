//! What the admission webhook checks, and with what: only the translator's own parsers and checks,
//! so that the webhook and the translation can never disagree about an object.
//!
//! - KongPlugin / KongClusterPlugin: `translate::plugins::build`, the very function translation
//!   runs before a plugin is attached (unknown plugin, unknown config field, bad value, the CEL
//!   rules, unsupported fields, protocols), with the Secrets of `configFrom`/`configPatches` read
//!   and stripped as the watch strips them;
//! - Ingress (of our class) and Service: `konghq.com/*` annotations through
//!   `annotations::check_hostile` and `route_annotations` / `service_annotations`;
//! - HTTPRoute / GRPCRoute: the route's view as translation builds it (`httproute::view`,
//!   `grpcroute::view`): invalid hostnames, rules that cannot be implemented, ignored or
//!   unresolvable filters, and the route annotations, with what a route of that kind cannot
//!   honour (`gateway::route_settings`).
//!
//! What depends on other objects (a backend Service that does not exist yet, a parent Gateway, a
//! plugin named by an annotation) is not judged here: objects may be applied in any order, and
//! translation reports those as Events.
//!
//! Everything here is pure: what the checks need from the cluster comes in as [`Inputs`]
//! (fetched by the webhook's lookup).

use std::collections::{BTreeMap, HashMap};

use gateway_api::apis::standard::grpcroutes::GrpcRoute;
use gateway_api::apis::standard::httproutes::HttpRoute;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use thiserror::Error;

use crate::kong_plugins::{KongClusterPlugin, KongPlugin, PluginDef};
use crate::settings::Settings;
use crate::translate::gateway::model::RouteView;
use crate::translate::gateway::route_settings::route_settings;
use crate::translate::gateway::{grpcroute, httproute};
use crate::translate::plugins::grpc_gateway_source::{self, Store};
use crate::translate::plugins::{self, PluginError};
use crate::translate::{annotations, ingress, ObjectRef, Problem};

/// An object under review, typed.
#[derive(Debug, Clone)]
pub(super) enum Reviewed {
    KongPlugin(Box<KongPlugin>),
    KongClusterPlugin(Box<KongClusterPlugin>),
    Ingress(Box<Ingress>),
    Service(Box<Service>),
    HttpRoute(Box<HttpRoute>),
    GrpcRoute(Box<GrpcRoute>),
}

/// An object the webhook cannot read.
#[derive(Debug, Error)]
pub(super) enum ValidateError {
    #[error("{group}/{kind} is not validated by sluice")]
    UnknownKind { group: String, kind: String },
    #[error("{kind} {name}: cannot be read: {source}")]
    Unreadable { kind: String, name: String, source: serde_json::Error },
}

fn typed<T: DeserializeOwned>(kind: &str, object: serde_json::Value) -> Result<Box<T>, ValidateError> {
    let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
    serde_json::from_value(object).map(Box::new).map_err(|source| ValidateError::Unreadable {
        kind: kind.to_string(),
        name,
        source,
    })
}

impl Reviewed {
    /// Types `object` by its API group and kind.
    pub(super) fn parse(group: &str, kind: &str, object: serde_json::Value) -> Result<Reviewed, ValidateError> {
        Ok(match (group, kind) {
            (crate::kong_plugins::GROUP, "KongPlugin") => Reviewed::KongPlugin(typed(kind, object)?),
            (crate::kong_plugins::GROUP, "KongClusterPlugin") => Reviewed::KongClusterPlugin(typed(kind, object)?),
            ("networking.k8s.io", "Ingress") => Reviewed::Ingress(typed(kind, object)?),
            ("", "Service") => Reviewed::Service(typed(kind, object)?),
            (crate::translate::gateway::GATEWAY_GROUP, "HTTPRoute") => Reviewed::HttpRoute(typed(kind, object)?),
            (crate::translate::gateway::GATEWAY_GROUP, "GRPCRoute") => Reviewed::GrpcRoute(typed(kind, object)?),
            _ => return Err(ValidateError::UnknownKind { group: group.into(), kind: kind.into() }),
        })
    }

    /// The plugin definition, for the two plugin kinds.
    fn plugin(&self) -> Option<PluginDef> {
        match self {
            Reviewed::KongPlugin(p) => Some(PluginDef::of_plugin(p)),
            Reviewed::KongClusterPlugin(p) => Some(PluginDef::of_cluster_plugin(p)),
            _ => None,
        }
    }

    /// `(namespace, name)` of the Secrets the checks read (`configFrom`, `configPatches`,
    /// grpc-gateway's `secretKeyRef`s).
    pub(super) fn secrets(&self) -> Vec<(String, String)> {
        let Some(def) = self.plugin() else { return Vec::new() };
        let refs =
            def.config_from.iter().map(|(_, r)| r.clone()).chain(def.config_patches.iter().map(|(_, _, r)| r.clone()));
        let sources = grpc_gateway_source::references(&def);
        let sources = sources.into_iter().filter(|(s, _)| *s == Store::Secret).map(|(_, r)| r);
        let mut out: Vec<(String, String)> = refs.chain(sources).map(|r| (r.namespace, r.name)).collect();
        out.sort();
        out.dedup();
        out
    }

    /// `(namespace, name)` of the ConfigMaps the checks read (grpc-gateway's `configMapKeyRef`s).
    pub(super) fn config_maps(&self) -> Vec<(String, String)> {
        let Some(def) = self.plugin() else { return Vec::new() };
        let refs = grpc_gateway_source::references(&def).into_iter().filter(|(s, _)| *s == Store::ConfigMap);
        let mut out: Vec<(String, String)> = refs.map(|(_, r)| (r.namespace, r.name)).collect();
        out.sort();
        out.dedup();
        out
    }

    /// The object's metadata.
    fn meta(&self) -> &ObjectMeta {
        match self {
            Reviewed::KongPlugin(o) => o.meta(),
            Reviewed::KongClusterPlugin(o) => o.meta(),
            Reviewed::Ingress(o) => o.meta(),
            Reviewed::Service(o) => o.meta(),
            Reviewed::HttpRoute(o) => o.meta(),
            Reviewed::GrpcRoute(o) => o.meta(),
        }
    }

    /// Whether the checks need to know if our IngressClass is the cluster default.
    pub(super) fn needs_default_class(&self) -> bool {
        matches!(self, Reviewed::Ingress(_))
    }
}

/// What the checks need from the cluster.
#[derive(Debug, Clone, Default)]
pub(super) struct Inputs {
    /// The Secrets of [`Reviewed::secrets`] that exist, stripped as the watch strips them.
    pub secrets: HashMap<(String, String), Secret>,
    /// The labelled ConfigMaps of [`Reviewed::config_maps`] that exist.
    pub config_maps: HashMap<(String, String), ConfigMap>,
    /// Whether the IngressClass named `--ingress-class` is the cluster default.
    pub default_class: bool,
}

/// Everything wrong with the object, as translation would report it (empty = allowed). Objects
/// translation does not read (namespaces outside `--watch-namespace`) and objects being deleted
/// are not judged.
pub(super) fn check(reviewed: &Reviewed, inputs: &Inputs, settings: &Settings) -> Vec<Problem> {
    let mut problems = Vec::new();
    let meta = reviewed.meta();
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    // Being deleted: its finalizers must stay removable.
    if meta.deletion_timestamp.is_some() || (!namespace.is_empty() && !settings.watches_namespace(namespace)) {
        return problems;
    }
    match reviewed {
        Reviewed::KongPlugin(_) | Reviewed::KongClusterPlugin(_) => {
            if let Some(def) = reviewed.plugin() {
                plugin(&def, inputs, &mut problems);
            }
        }
        Reviewed::Ingress(ing) => {
            if ingress::is_ours(ing, &settings.ingress_class, inputs.default_class) {
                route_annotations(&ObjectRef::of(ing.as_ref()), ing.annotations(), &mut problems);
            }
        }
        Reviewed::Service(svc) => {
            let object = ObjectRef::of(svc.as_ref());
            match annotations::check_hostile(&object, svc.annotations()) {
                Some(p) => problems.push(p),
                None => drop(annotations::service_annotations(&object, svc.annotations(), &mut problems)),
            }
        }
        Reviewed::HttpRoute(r) => {
            let view = httproute::view(r, &mut problems);
            route(&view, &mut problems);
        }
        Reviewed::GrpcRoute(r) => {
            let view = grpcroute::view(r, &mut problems);
            route(&view, &mut problems);
        }
    }
    problems.sort();
    problems.dedup();
    problems
}

fn plugin(def: &PluginDef, inputs: &Inputs, problems: &mut Vec<Problem>) {
    let secrets: HashMap<(String, String), &Secret> = inputs.secrets.iter().map(|(k, v)| (k.clone(), v)).collect();
    let config_maps: HashMap<(String, String), &ConfigMap> =
        inputs.config_maps.iter().map(|(k, v)| (k.clone(), v)).collect();
    match plugins::build(def, &secrets, &config_maps) {
        Ok(_) => {}
        Err(PluginError::Broken { plugin, errors }) => {
            problems.extend(errors.into_iter().map(|(field, message)| Problem::new(&plugin, field, message)));
        }
        Err(other) => problems.push(Problem::new(&def.object, "", other.to_string())),
    }
}

fn route_annotations(object: &ObjectRef, raw: &BTreeMap<String, String>, problems: &mut Vec<Problem>) {
    match annotations::check_hostile(object, raw) {
        Some(p) => problems.push(p),
        None => drop(annotations::route_annotations(object, raw, problems)),
    }
}

/// A route's rules as translation reports them, and its annotations.
fn route(view: &RouteView, problems: &mut Vec<Problem>) {
    for rule in &view.rules {
        if let Some((field, message)) = &rule.dropped {
            problems.push(Problem::new(&view.obj, field.clone(), format!("{message}; rule left out")));
        }
        for (field, message) in rule.filters.ignored.iter().chain(&rule.filters.unresolved) {
            problems.push(Problem::new(&view.obj, field.clone(), message.clone()));
        }
    }
    match annotations::check_hostile(&view.obj, &view.annotations) {
        Some(p) => problems.push(p),
        None => {
            let ann = annotations::route_annotations(&view.obj, &view.annotations, problems);
            route_settings(&view.obj, view.kind, &ann, problems);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(group: &str, kind: &str, object: serde_json::Value, inputs: &Inputs) -> Vec<String> {
        let reviewed = Reviewed::parse(group, kind, object).unwrap();
        check(&reviewed, inputs, &Settings::default()).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn plugins_get_the_translation_checks() {
        let good = json!({"metadata": {"name": "p", "namespace": "ns"}, "plugin": "request-transformer",
                          "config": {"add": {"headers": ["x:1"]}}});
        assert_eq!(problems("configuration.konghq.com", "KongPlugin", good, &Inputs::default()), Vec::<String>::new());
        let unknown = json!({"metadata": {"name": "p", "namespace": "ns"}, "plugin": "no-such-plugin"});
        let p = problems("configuration.konghq.com", "KongPlugin", unknown, &Inputs::default());
        assert!(p.len() == 1 && p[0].starts_with("KongPlugin ns/p: plugin: "), "{p:?}");
        let field = json!({"metadata": {"name": "c"}, "plugin": "request-transformer", "config": {"bogus": 1},
                           "protocols": ["tcp"]});
        let p = problems("configuration.konghq.com", "KongClusterPlugin", field, &Inputs::default());
        assert!(p.iter().any(|m| m.contains("bogus")), "{p:?}");
        assert!(p.iter().any(|m| m.starts_with("KongClusterPlugin c: protocols: ")), "{p:?}");
    }

    #[test]
    fn config_from_reads_the_secret_it_names() {
        let plugin = json!({"metadata": {"name": "p", "namespace": "ns"}, "plugin": "request-termination",
                            "configFrom": {"secretKeyRef": {"name": "conf", "key": "k"}}});
        let reviewed = Reviewed::parse("configuration.konghq.com", "KongPlugin", plugin.clone()).unwrap();
        assert_eq!(reviewed.secrets(), vec![("ns".to_string(), "conf".to_string())]);
        let p = problems("configuration.konghq.com", "KongPlugin", plugin.clone(), &Inputs::default());
        assert!(p.len() == 1 && p[0].contains("configFrom.secretKeyRef: Secret ns/conf not found"), "{p:?}");
        let secret: Secret = serde_json::from_value(json!({"metadata": {"name": "conf", "namespace": "ns"},
            "stringData": {"k": "{\"status_code\": 1000}"}}))
        .unwrap();
        let inputs = Inputs { secrets: [(("ns".into(), "conf".into()), secret)].into(), ..Default::default() };
        let p = problems("configuration.konghq.com", "KongPlugin", plugin, &inputs);
        assert!(p.len() == 1 && p[0].contains("status_code"), "{p:?}");
    }

    #[test]
    fn grpc_gateway_sources_are_fetched_and_read() {
        let plugin = json!({"metadata": {"name": "p", "namespace": "ns"}, "plugin": "grpc-gateway",
                            "config": {"proto_from": {"configMapKeyRef": {"name": "api", "key": "a.proto"}}}});
        let reviewed = Reviewed::parse("configuration.konghq.com", "KongPlugin", plugin.clone()).unwrap();
        assert_eq!(reviewed.config_maps(), vec![("ns".to_string(), "api".to_string())]);
        assert!(reviewed.secrets().is_empty());
        let p = problems("configuration.konghq.com", "KongPlugin", plugin.clone(), &Inputs::default());
        assert!(
            p.len() == 1 && p[0].contains("config.proto_from.configMapKeyRef: ConfigMap ns/api not found"),
            "{p:?}"
        );
        let proto = "syntax = \"proto3\";\npackage a;\nimport \"google/api/annotations.proto\";\nmessage M { string id = 1; }\n\
                     service S { rpc Get(M) returns (M) { option (google.api.http) = { get: \"/v1/{nope}\" }; } }\n";
        let map: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "api", "namespace": "ns"},
            "data": {"a.proto": proto}}))
        .unwrap();
        let inputs = Inputs { config_maps: [(("ns".into(), "api".into()), map)].into(), ..Default::default() };
        let p = problems("configuration.konghq.com", "KongPlugin", plugin, &inputs);
        assert!(p.len() == 1 && p[0].contains("config.proto_from: a.proto:5") && p[0].contains("'nope'"), "{p:?}");
        let secret = json!({"metadata": {"name": "p", "namespace": "ns"}, "plugin": "grpc-gateway",
                            "config": {"descriptor_set_from": {"secretKeyRef": {"name": "d", "key": "k"}}}});
        let reviewed = Reviewed::parse("configuration.konghq.com", "KongPlugin", secret).unwrap();
        assert_eq!(reviewed.secrets(), vec![("ns".to_string(), "d".to_string())]);
    }

    #[test]
    fn annotations_of_our_ingresses_and_of_services() {
        let ing = |class: &str| {
            json!({"metadata": {"name": "i", "namespace": "ns",
                   "annotations": {"konghq.com/strip-path": "maybe"}}, "spec": {"ingressClassName": class}})
        };
        let p = problems("networking.k8s.io", "Ingress", ing("kong"), &Inputs::default());
        assert!(p.len() == 1 && p[0].contains("metadata.annotations.konghq.com/strip-path"), "{p:?}");
        assert!(problems("networking.k8s.io", "Ingress", ing("other"), &Inputs::default()).is_empty());
        let svc = json!({"metadata": {"name": "s", "namespace": "ns",
                         "annotations": {"konghq.com/read-timeout": "-1", "konghq.com/protocol": "grpc"}}});
        let p = problems("", "Service", svc, &Inputs::default());
        assert!(
            p.len() == 1 && p[0].starts_with("Service ns/s: metadata.annotations.konghq.com/read-timeout"),
            "{p:?}"
        );
        let hostile =
            json!({"metadata": {"name": "s", "namespace": "ns", "annotations": {"konghq.com/path": "/a\"b"}}});
        assert_eq!(problems("", "Service", hostile, &Inputs::default()).len(), 1);
    }

    #[test]
    fn route_fields_sluice_cannot_honour() {
        let route = json!({"metadata": {"name": "r", "namespace": "ns"}, "spec": {"rules": [
            {"matches": [{"queryParams": [{"name": "q", "value": "1"}]}]},
            {"filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "m", "port": 80}}}]},
        ]}});
        let p = problems("gateway.networking.k8s.io", "HTTPRoute", route, &Inputs::default());
        assert!(p.iter().any(|m| m.starts_with("HTTPRoute ns/r: spec.rules[0]")), "{p:?}");
        assert!(p.iter().any(|m| m.starts_with("HTTPRoute ns/r: spec.rules[1].filters[0]")), "{p:?}");
        let good = json!({"metadata": {"name": "g", "namespace": "ns"}, "spec": {"rules": [
            {"matches": [{"method": {"service": "a.B", "method": "C"}}], "backendRefs": [{"name": "s", "port": 9}]}]}});
        assert!(problems("gateway.networking.k8s.io", "GRPCRoute", good, &Inputs::default()).is_empty());
    }

    #[test]
    fn unwatched_namespaces_and_deleted_objects_are_not_judged() {
        let svc = |extra: serde_json::Value| {
            let mut v = json!({"metadata": {"name": "s", "namespace": "ns",
                               "annotations": {"konghq.com/read-timeout": "-1"}}});
            v["metadata"].as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            Reviewed::parse("", "Service", v).unwrap()
        };
        let all = Settings::default();
        assert_eq!(check(&svc(json!({})), &Inputs::default(), &all).len(), 1);
        let others = Settings { watch_namespace: vec!["other".into()], ..Settings::default() };
        assert!(check(&svc(json!({})), &Inputs::default(), &others).is_empty());
        let deleting = svc(json!({"deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["x"]}));
        assert!(check(&deleting, &Inputs::default(), &all).is_empty());
    }

    /// The webhook and translation judge the same objects the same way: the same fields at fault
    /// (and for annotations, the same words), because they run the same code.
    #[test]
    fn webhook_and_translation_report_the_same_fields() {
        const WORLD: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default, annotations: {konghq.com/read-timeout: "-1", konghq.com/protocols: grpc}}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: default
  annotations: {konghq.com/strip-path: maybe, konghq.com/methods: "G3T", konghq.com/plugins: broken}
spec:
  ingressClassName: kong
  rules:
  - http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
---
apiVersion: configuration.konghq.com/v1
kind: KongPlugin
metadata: {name: broken, namespace: default}
plugin: request-transformer
config: {add: {headers: ["x:1"]}, nope: 1}
protocols: [tcp]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata:
  name: grpc
  namespace: default
  annotations: {konghq.com/strip-path: "true", konghq.com/methods: GET, konghq.com/protocols: http}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: web, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: http
  namespace: default
  annotations: {konghq.com/protocols: http, konghq.com/snis: b.example, konghq.com/host-aliases: a.example,
                konghq.com/regex-priority: "5", konghq.com/regex-prefix: "~", ingress.kubernetes.io/force-ssl-redirect: "true"}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: web, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: kong}
spec: {controllerName: konghq.com/kic-gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: kong
  listeners: [{name: http, port: 80, protocol: HTTP}]
"#;
        let mut loaded = crate::files::Loaded::default();
        crate::files::parse_documents(WORLD, "world", &mut loaded);
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        let settings = Settings::default();
        let translated = crate::translate::translate(&loaded.snapshot, &settings).problems;
        for doc in WORLD.split("\n---\n") {
            let value: serde_json::Value = serde_yaml_ng::from_str(doc).unwrap();
            let (api_version, kind) = (value["apiVersion"].as_str().unwrap(), value["kind"].as_str().unwrap());
            let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("").to_string();
            let kind = kind.to_string();
            let name = value["metadata"]["name"].as_str().unwrap().to_string();
            if kind.starts_with("Gateway") {
                continue; // the routes' parents, not judged by the webhook
            }
            let reviewed = Reviewed::parse(&group, &kind, value).unwrap();
            let admitted = check(&reviewed, &Inputs::default(), &settings);
            assert!(!admitted.is_empty(), "{kind}: the webhook finds nothing");
            for p in &admitted {
                let same = translated.iter().find(|t| t.object == p.object && t.field == p.field);
                let t = same.unwrap_or_else(|| panic!("translation does not report {p}: {translated:#?}"));
                if p.field.starts_with("metadata.annotations.") {
                    assert_eq!(t.message, p.message);
                }
            }
            let fields = |list: &[Problem]| {
                list.iter()
                    .filter(|t| t.object.kind == kind && t.object.name == name && !t.field.is_empty())
                    .map(|t| t.field.clone())
                    .collect::<std::collections::BTreeSet<_>>()
            };
            // Translation also reports what depends on other objects on the referrer (the
            // Ingress's plugins annotation naming the broken plugin): the webhook leaves that out.
            let mut expected = fields(&translated);
            expected.remove("metadata.annotations.konghq.com/plugins");
            assert_eq!(fields(&admitted), expected, "{kind}");
            let keys: &[&str] = match kind.as_str() {
                "GRPCRoute" => &["konghq.com/strip-path", "konghq.com/methods", "konghq.com/protocols"],
                "HTTPRoute" => &[
                    "konghq.com/snis",
                    "konghq.com/host-aliases",
                    "konghq.com/regex-priority",
                    "konghq.com/regex-prefix",
                    "ingress.kubernetes.io/force-ssl-redirect",
                ],
                _ => &[],
            };
            for key in keys {
                let field = annotations::field(key);
                assert!(fields(&admitted).contains(&field), "{kind}: {field} not refused: {admitted:#?}");
            }
        }
    }

    #[test]
    fn other_kinds_are_not_ours() {
        assert!(matches!(Reviewed::parse("apps", "Deployment", json!({})), Err(ValidateError::UnknownKind { .. })));
        let bad = Reviewed::parse("", "Service", json!({"metadata": {"name": "s"}, "spec": {"ports": "x"}}));
        assert!(matches!(bad, Err(ValidateError::Unreadable { .. })), "{bad:?}");
    }
}
