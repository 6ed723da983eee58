//! Ingress → Kong routes, as KIC builds them: class filtering, one route per Ingress × rule
//! host × backend (all paths of that combination merged), pathType mapping, the default backend of
//! the oldest Ingress, route annotations, and the gRPC corrections KIC gets wrong (methods and
//! strip-path on gRPC routes are dropped with a problem instead of making the proxy reject the push).

use std::collections::HashMap;

use k8s_openapi::api::networking::v1::Ingress;
use kube::ResourceExt;
use proxy_config::patterns::{compile_path_regex, valid_host_pattern};
use proxy_config::{Protocol, Route};

use super::annotations::{self, RouteAnnotations};
use super::plugins::{self, Scope};
use super::services::port_key;
use super::{app_protocol, certificates, names, Context, ObjectRef};

/// Annotation marking the cluster's default IngressClass.
pub(crate) const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// KIC's default marker of a regex path in an ImplementationSpecific Ingress path.
pub(crate) const DEFAULT_REGEX_PREFIX: &str = "/~";

/// Translates every Ingress of our class, then their TLS sections.
pub(crate) fn translate(ctx: &mut Context<'_>) {
    let class = ctx.settings.ingress_class.as_str();
    let default_class = ctx.snapshot.ingress_classes.iter().any(|c| {
        c.name_any() == class && c.annotations().get(DEFAULT_CLASS_ANNOTATION).map(String::as_str) == Some("true")
    });
    let mut ours: Vec<&Ingress> = ctx
        .snapshot
        .ingresses
        .iter()
        .map(AsRef::as_ref)
        .filter(|i| ctx.settings.watches_namespace(&i.namespace().unwrap_or_default()))
        .filter(|i| is_ours(i, class, default_class))
        .collect();
    // Oldest first: the oldest Ingress wins the default backend and contested TLS hosts (as in KIC).
    ours.sort_by_cached_key(|i| (i.creation_timestamp(), i.namespace(), i.name_any()));
    let mut default_backend: Option<ObjectRef> = None;
    let mut accepted = Vec::with_capacity(ours.len());
    for ing in ours {
        if translate_one(ctx, ing, &mut default_backend) {
            accepted.push(ing);
        }
    }
    certificates::translate(ctx, &accepted);
}

/// KIC's class rule: the legacy annotation wins, then `spec.ingressClassName`, else the Ingress is
/// ours only if our class is the cluster default.
pub(crate) fn is_ours(ing: &Ingress, class: &str, default_class: bool) -> bool {
    if let Some(c) = ing.annotations().get(annotations::INGRESS_CLASS).filter(|c| !c.is_empty()) {
        return c == class;
    }
    match ing.spec.as_ref().and_then(|s| s.ingress_class_name.as_deref()) {
        Some(c) => c == class,
        None => default_class,
    }
}

/// A route being assembled: one rule host + backend, possibly several paths.
struct Group {
    host: String,
    kong_service: String,
    service: String,
    port_key: String,
    paths: Vec<String>,
    broken: bool,
}

fn translate_one(ctx: &mut Context<'_>, ing: &Ingress, default_backend: &mut Option<ObjectRef>) -> bool {
    let obj = ObjectRef::of(ing);
    if ctx.is_excluded(&obj) {
        ctx.problem(&obj, "", "rejected by the proxy; left out of the config");
        return false;
    }
    let empty = Default::default();
    let raw = ing.metadata.annotations.as_ref().unwrap_or(&empty);
    if let Some(p) = annotations::check_hostile(&obj, raw) {
        ctx.problems.push(p);
        return false;
    }
    let ann = annotations::route_annotations(&obj, raw, &mut ctx.problems);
    ctx.ingresses.push(obj.clone());
    let namespace = obj.namespace.clone();
    let regex_prefix = ann.regex_prefix.clone().unwrap_or_else(|| DEFAULT_REGEX_PREFIX.to_string());
    let Some(spec) = ing.spec.as_ref() else { return true };

    let mut groups: Vec<Group> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    for (ri, rule) in spec.rules.iter().flatten().enumerate() {
        let host = rule.host.clone().unwrap_or_default();
        if !host.is_empty() && (valid_host_pattern(&host).is_err() || host.contains(':')) {
            ctx.problem(&obj, format!("spec.rules[{ri}].host"), format!("invalid host '{host}'; rule left out"));
            continue;
        }
        let Some(http) = &rule.http else { continue };
        for (pi, path) in http.paths.iter().enumerate() {
            let field = format!("spec.rules[{ri}].http.paths[{pi}]");
            let Some(backend) = &path.backend.service else {
                ctx.problem(&obj, format!("{field}.backend"), "only Service backends are supported; path left out");
                continue;
            };
            let Some(kong_service) = ctx.backend(&namespace, backend, &obj, &format!("{field}.backend.service"), true)
            else {
                continue;
            };
            let port_key = port_key(backend).unwrap_or_default();
            let i = *index.entry((host.clone(), kong_service.clone())).or_insert_with(|| {
                groups.push(Group {
                    host: host.clone(),
                    kong_service,
                    service: backend.name.clone(),
                    port_key,
                    paths: Vec::new(),
                    broken: false,
                });
                groups.len() - 1
            });
            match ingress_paths(path.path.as_deref(), &path.path_type, &regex_prefix) {
                Ok(paths) => {
                    for p in paths {
                        if !groups[i].paths.contains(&p) {
                            groups[i].paths.push(p);
                        }
                    }
                }
                Err(e) => {
                    let g = &mut groups[i];
                    g.broken = true;
                    let route = names::route_name(&namespace, &obj.name, &g.service, &g.host, &g.port_key);
                    ctx.problem(&obj, format!("{field}.path"), format!("{e}; route {route} left out"));
                }
            }
        }
    }
    for g in groups.into_iter().filter(|g| !g.broken) {
        let name = names::route_name(&namespace, &obj.name, &g.service, &g.host, &g.port_key);
        let host = (!g.host.is_empty()).then_some(g.host.as_str());
        let route = build_route(ctx, &obj, &ann, name, host, g.paths);
        let k8s_service = format!("{namespace}/{}", g.service);
        app_protocol::check_grpc_upstream(ctx, &obj, &route, &g.kong_service, &k8s_service);
        if let Some(ks) = ctx.kong_services.get_mut(&g.kong_service) {
            ks.routes.push(route);
        }
    }

    if let Some(backend) = &spec.default_backend {
        if let Some(winner) = default_backend.as_ref() {
            ctx.problem(
                &obj,
                "spec.defaultBackend",
                format!("ignored: the default backend of the older {winner} wins"),
            );
        } else if let Some(svc) = &backend.service {
            if let Some(kong_service) = ctx.backend(&namespace, svc, &obj, "spec.defaultBackend.service", false) {
                let name = names::default_backend_route_name(&namespace, &obj.name);
                let route = build_route(ctx, &obj, &ann, name, None, vec!["/".to_string()]);
                let k8s_service = format!("{namespace}/{}", svc.name);
                app_protocol::check_grpc_upstream(ctx, &obj, &route, &kong_service, &k8s_service);
                if let Some(ks) = ctx.kong_services.get_mut(&kong_service) {
                    ks.routes.push(route);
                }
                *default_backend = Some(obj.clone());
            }
        } else {
            ctx.problem(&obj, "spec.defaultBackend", "only Service backends are supported; default backend ignored");
        }
    }
    true
}

/// A route with KIC's Ingress defaults, then the annotations, then the gRPC corrections.
fn build_route(
    ctx: &mut Context<'_>,
    obj: &ObjectRef,
    ann: &RouteAnnotations,
    name: String,
    host: Option<&str>,
    paths: Vec<String>,
) -> Route {
    let mut hosts: Vec<String> = host.map(str::to_string).into_iter().collect();
    for alias in &ann.host_aliases {
        if !hosts.contains(alias) {
            hosts.push(alias.clone());
        }
    }
    let mut protocols = ann.protocols.clone().unwrap_or_else(|| vec![Protocol::Http, Protocol::Https]);
    let mut redirect = ann.https_redirect_status_code;
    if ann.force_ssl_redirect {
        redirect = redirect.or(Some(302));
        if ann.protocols.is_none() {
            protocols = vec![Protocol::Https];
        }
    }
    ctx.want_plugins(Scope::Route(name.clone()), obj, plugins::from_annotation(&ann.plugins));
    let mut route = Route {
        id: None,
        name: Some(name),
        service: None,
        protocols,
        hosts,
        paths,
        methods: ann.methods.clone().unwrap_or_default(),
        headers: ann.headers.clone().unwrap_or_default(),
        snis: ann.snis.clone().unwrap_or_default(),
        strip_path: Some(ann.strip_path.unwrap_or(false)),
        preserve_host: ann.preserve_host.unwrap_or(true),
        regex_priority: ann.regex_priority.unwrap_or(0),
        priority: None,
        https_redirect_status_code: redirect.unwrap_or(426),
        path_handling: ann.path_handling.unwrap_or_default(),
        request_buffering: ann.request_buffering,
        response_buffering: ann.response_buffering,
        request_timeout: None,
        backend_request_timeout: None,
        tags: names::tags(obj, &ann.tags),
        plugins: Vec::new(),
    };
    annotations::drop_grpc_buffering(obj, &mut route, &mut ctx.problems);
    if route.is_grpc() {
        if ann.strip_path == Some(true) {
            ctx.problem(
                obj,
                annotations::field(annotations::STRIP_PATH),
                "dropped: gRPC routes cannot strip the path (Kong forbids strip_path on grpc/grpcs)",
            );
        }
        route.strip_path = None;
        if !route.methods.is_empty() {
            ctx.problem(
                obj,
                annotations::field(annotations::METHODS),
                "dropped: gRPC routes cannot match methods (Kong forbids methods on grpc/grpcs)",
            );
            route.methods.clear();
        }
    }
    if !route.snis.is_empty() && !route.protocols.iter().any(|p| matches!(p, Protocol::Https | Protocol::Grpcs)) {
        ctx.problem(obj, annotations::field(annotations::SNIS), "dropped: snis need protocols https or grpcs");
        route.snis.clear();
    }
    route
}

/// Escapes the regex metacharacters of a literal path (KIC does not, so `.` matched anything).
fn escape_literal(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if "\\.+*?()|[]{}^$#".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Collapses repeated slashes (`//a///b` → `/a/b`), as KIC does before translating.
fn flatten_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

/// Kong paths of one Ingress path (KIC's pathType mapping), with regexes checked against the proxy's dialect.
pub(crate) fn ingress_paths(path: Option<&str>, path_type: &str, regex_prefix: &str) -> Result<Vec<String>, String> {
    let raw = path.unwrap_or("");
    let p = if raw.is_empty() { "/".to_string() } else { flatten_slashes(raw) };
    let is_regex = matches!(path_type, "ImplementationSpecific" | "") && !regex_prefix.is_empty();
    if !(p.starts_with('/') || (is_regex && p.starts_with(regex_prefix))) {
        return Err(format!("invalid path '{raw}': it must start with '/'"));
    }
    let paths = match path_type {
        "Exact" if p == "/" => vec!["~/$".to_string()],
        "Exact" => vec![format!("~{}$", escape_literal(&p))],
        "Prefix" if p == "/" => vec!["/".to_string()],
        "Prefix" => {
            let base = p.trim_end_matches('/');
            vec![format!("{base}/"), format!("~{}$", escape_literal(base))]
        }
        "ImplementationSpecific" | "" => match p.strip_prefix(regex_prefix) {
            Some(regex) if !regex_prefix.is_empty() => vec![format!("~{regex}")],
            _ => vec![p.clone()],
        },
        other => return Err(format!("unknown pathType '{other}'")),
    };
    // Only a user-written regex can be invalid: the regex forms of Exact/Prefix are escaped literals.
    if is_regex && p.starts_with(regex_prefix) {
        for kong_path in &paths {
            if let Some(pattern) = kong_path.strip_prefix('~') {
                compile_path_regex(pattern)?;
            }
        }
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(p: &str, t: &str) -> Vec<String> {
        ingress_paths(Some(p), t, DEFAULT_REGEX_PREFIX).unwrap()
    }

    #[test]
    fn path_types_like_kic() {
        assert_eq!(paths("/", "Prefix"), vec!["/"]);
        assert_eq!(paths("", "Prefix"), vec!["/"]);
        assert_eq!(paths("/v1/api", "Prefix"), vec!["/v1/api/", "~/v1/api$"]);
        assert_eq!(paths("/v1/api/", "Prefix"), vec!["/v1/api/", "~/v1/api$"]);
        assert_eq!(paths("/v1/api", "Exact"), vec!["~/v1/api$"]);
        assert_eq!(paths("/v1/api/", "Exact"), vec!["~/v1/api/$"]);
        assert_eq!(paths("/", "Exact"), vec!["~/$"]);
        assert_eq!(paths("/foo", "ImplementationSpecific"), vec!["/foo"]);
        assert_eq!(paths("/~/foo/\\d{3}", "ImplementationSpecific"), vec!["~/foo/\\d{3}"]);
        assert_eq!(paths("//a///b", "ImplementationSpecific"), vec!["/a/b"]);
        assert_eq!(ingress_paths(None, "ImplementationSpecific", "/~").unwrap(), vec!["/"]);
    }

    #[test]
    fn literals_are_escaped_in_regex_forms() {
        assert_eq!(paths("/v1.0", "Exact"), vec!["~/v1\\.0$"]);
        assert_eq!(paths("/a+b", "Prefix"), vec!["/a+b/", "~/a\\+b$"]);
    }

    #[test]
    fn custom_regex_prefix() {
        assert_eq!(ingress_paths(Some("##/x\\d"), "ImplementationSpecific", "##").unwrap(), vec!["~/x\\d"]);
    }

    #[test]
    fn bad_paths_are_errors() {
        assert!(ingress_paths(Some("/~/(unclosed"), "ImplementationSpecific", "/~").is_err());
        assert!(ingress_paths(Some("/~/(?=lookahead)"), "ImplementationSpecific", "/~").is_err());
        assert!(ingress_paths(Some("relative"), "Prefix", "/~").is_err());
        assert!(ingress_paths(Some("/x"), "Weird", "/~").is_err());
    }
}
