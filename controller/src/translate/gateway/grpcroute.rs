//! GRPCRoute → [`RouteView`]: method matches become anchored regex paths on
//! `/<service>/<method>` (literals escaped, so `Echo` never matches `EchoTwo`), header matches
//! become case-sensitive regex header conditions, and every route also requires a gRPC
//! content-type so that it never captures plain HTTP requests meant for an HTTPRoute or Ingress on
//! the same host (Kong itself lets a GRPCRoute capture plain HTTP requests on a shared host).
//!
//! Regex dialect: the Rust `regex` crate (RE2-like), each regex applied to its own component and
//! anchored as a full match. Precedence counts the pattern length and ranks a regex below an Exact
//! of equal length.

use std::collections::BTreeMap;

use gateway_api::apis::standard::grpcroutes::{
    GrpcRoute, GrpcRouteRules, GrpcRouteRulesFiltersType, GrpcRouteRulesMatches, GrpcRouteRulesMatchesHeadersType,
    GrpcRouteRulesMatchesMethodType,
};
use proxy_config::patterns::compile_path_regex;

use super::filters::{header_value_exact, header_value_regex};
use super::model::{
    extension_ref, header_mods, route_view, rule_backends, rule_matches, Filters, MatchView, RouteKind, RouteView,
    RuleView,
};
use crate::translate::Problem;

/// The header every GRPCRoute route requires, and its condition (a gRPC content type).
pub(crate) const GRPC_CONTENT_TYPE: (&str, &str) = ("content-type", "~*^application/grpc");

/// Converts a GRPCRoute; problems name the fields that are ignored or dropped.
pub(crate) fn view(route: &GrpcRoute, problems: &mut Vec<Problem>) -> RouteView {
    route_view!(route, RouteKind::Grpc, problems, rule)
}

fn rule(namespace: &str, index: usize, r: &GrpcRouteRules) -> RuleView {
    let base = format!("spec.rules[{index}]");
    let (matches, dropped) = rule_matches(&base, r.matches.as_deref().unwrap_or_default(), match_all(0), convert_match);
    let mut filters = Filters::default();
    for (fi, f) in r.filters.iter().flatten().enumerate() {
        let field = format!("{base}.filters[{fi}]");
        match f.r#type {
            GrpcRouteRulesFiltersType::RequestHeaderModifier => {
                let m = f.request_header_modifier.as_ref();
                filters.request = Some(header_mods!(m));
            }
            GrpcRouteRulesFiltersType::ResponseHeaderModifier => {
                let m = f.response_header_modifier.as_ref();
                filters.response = Some(header_mods!(m));
            }
            GrpcRouteRulesFiltersType::RequestMirror => filters
                .ignored
                .push((field, "RequestMirror is not supported by sluice; requests are not mirrored".into())),
            GrpcRouteRulesFiltersType::ExtensionRef => {
                let target = f.extension_ref.as_ref().map(|e| (e.group.as_str(), e.kind.as_str(), e.name.as_str()));
                extension_ref(&mut filters, field, target);
            }
        }
    }
    let backends = rule_backends!(namespace, base, r, filters);
    RuleView { index, name: r.name.clone(), matches, filters, backends, timeouts: Default::default(), dropped }
}

fn match_all(index: usize) -> MatchView {
    MatchView { index, paths: Vec::new(), methods: Vec::new(), headers: grpc_guard(), rank: [0; 5] }
}

fn grpc_guard() -> BTreeMap<String, Vec<String>> {
    BTreeMap::from([(GRPC_CONTENT_TYPE.0.to_string(), vec![GRPC_CONTENT_TYPE.1.to_string()])])
}

/// Rank of one method component: `2 * length + 1` for Exact, `2 * length` for a regex; 0 = absent.
fn component_rank(value: Option<&str>, exact: bool) -> u64 {
    value.map_or(0, |v| 2 * v.len() as u64 + u64::from(exact))
}

/// The Kong path of a method match.
pub(crate) fn method_path(service: Option<&str>, method: Option<&str>, exact: bool) -> Result<Option<String>, String> {
    let service = service.filter(|s| !s.is_empty());
    let method = method.filter(|m| !m.is_empty());
    let path = match (service, method, exact) {
        (None, None, _) => return Err("one or both of 'service' or 'method' must be specified".into()),
        (Some(s), Some(m), true) => format!("~/{}/{}$", regex::escape(s), regex::escape(m)),
        (Some(s), None, true) => format!("~/{}/", regex::escape(s)),
        (None, Some(m), true) => format!("~/[^/]+/{}$", regex::escape(m)),
        (s, m, false) => {
            let part = |p: Option<&str>| p.map_or_else(|| "[^/]+".to_string(), |p| format!("(?:{p})"));
            format!("~/{}/{}$", part(s), part(m))
        }
    };
    if exact {
        let ident = |v: &str, service: bool| {
            let v = if service { v.strip_prefix('.').unwrap_or(v) } else { v };
            !v.is_empty()
                && v.split('.').all(|label| {
                    label.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                })
                && (service || !v.contains('.'))
        };
        if service.is_some_and(|s| !ident(s, true)) || method.is_some_and(|m| !ident(m, false)) {
            return Err("an Exact service must be a dotted identifier and an Exact method an identifier".into());
        }
    }
    if let Some(pattern) = path.strip_prefix('~') {
        compile_path_regex(pattern)?;
    }
    Ok(Some(path))
}

fn convert_match(index: usize, m: &GrpcRouteRulesMatches) -> Result<MatchView, (String, String)> {
    let mut paths = Vec::new();
    let mut rank = [0u64; 5];
    if let Some(method) = &m.method {
        let exact = !matches!(method.r#type, Some(GrpcRouteRulesMatchesMethodType::RegularExpression));
        let path = method_path(method.service.as_deref(), method.method.as_deref(), exact)
            .map_err(|e| (".method".to_string(), e))?;
        paths.extend(path);
        rank[0] = component_rank(method.service.as_deref().filter(|s| !s.is_empty()), exact);
        rank[1] = component_rank(method.method.as_deref().filter(|s| !s.is_empty()), exact);
    }
    let mut headers = grpc_guard();
    let mut named: Vec<String> = Vec::new();
    for (hi, h) in m.headers.iter().flatten().enumerate() {
        let name = h.name.to_ascii_lowercase();
        if named.contains(&name) {
            continue; // only the first entry of a name counts (spec)
        }
        let value = match h.r#type {
            Some(GrpcRouteRulesMatchesHeadersType::RegularExpression) => header_value_regex(&h.value),
            _ => header_value_exact(&h.value),
        }
        .map_err(|e| (format!(".headers[{hi}]"), e))?;
        if name == GRPC_CONTENT_TYPE.0 {
            headers.remove(&name);
        }
        headers.insert(name.clone(), vec![value]);
        named.push(name);
    }
    rank[2] = named.len() as u64;
    Ok(MatchView { index, paths, methods: Vec::new(), headers, rank })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxy_config::patterns::compile_path_regex;

    fn matches(path: &str, request: &str) -> bool {
        compile_path_regex(&path[1..]).unwrap().find(request).is_some_and(|m| m.start() == 0)
    }

    #[test]
    fn exact_method_is_anchored_and_escaped() {
        let p = method_path(Some("pkg.Echo"), Some("Echo"), true).unwrap().unwrap();
        assert_eq!(p, "~/pkg\\.Echo/Echo$");
        assert!(matches(&p, "/pkg.Echo/Echo"));
        assert!(!matches(&p, "/pkg.Echo/EchoTwo"));
        assert!(!matches(&p, "/pkgXEcho/Echo"));
    }

    #[test]
    fn service_only_is_a_segment_prefix() {
        let p = method_path(Some("Foo"), None, true).unwrap().unwrap();
        assert!(matches(&p, "/Foo/Bar"));
        assert!(!matches(&p, "/FooAdmin/Bar"));
    }

    #[test]
    fn method_only_and_regex() {
        let p = method_path(None, Some("Echo"), true).unwrap().unwrap();
        assert!(matches(&p, "/a.B/Echo") && !matches(&p, "/a.B/EchoTwo"));
        let r = method_path(Some("v[12]\\.Svc"), None, false).unwrap().unwrap();
        assert!(matches(&r, "/v1.Svc/Anything") && !matches(&r, "/v3.Svc/Anything"));
        let full = method_path(None, Some("Get|List"), false).unwrap().unwrap();
        assert!(matches(&full, "/x/List") && !matches(&full, "/x/Listing"));
    }

    #[test]
    fn invalid_method_matches() {
        assert!(method_path(None, None, true).is_err());
        assert!(method_path(Some("a/b"), Some("M"), true).is_err());
        assert!(method_path(Some("S"), Some("M.x"), true).is_err());
        assert!(method_path(Some("("), None, false).is_err());
    }
}
