//! HTTPRoute → [`RouteView`]: path matches as KIC maps them (PathPrefix = segment prefix
//! `["/p/", "~/p$"]`, Exact = `~/p$`, literals escaped; RegularExpression anchored as a full
//! match), method, case-sensitive header matches. Query-parameter matches cannot be expressed in
//! Kong routes: such a match is dropped with a problem rather than matching more than written.
//!
//! Precedence after the hostname (Gateway API HTTPRoute rules): Exact path, then the longest
//! prefix (regex below prefix), then method, then header count.

use gateway_api::apis::standard::httproutes::{
    HttpRoute, HttpRouteRules, HttpRouteRulesFiltersType, HttpRouteRulesMatches, HttpRouteRulesMatchesHeadersType,
    HttpRouteRulesMatchesPathType,
};
use proxy_config::patterns::compile_path_regex;

use super::filters::{header_value_exact, header_value_regex};
use super::model::{
    extension_ref, header_mods, route_view, rule_backends, rule_matches, Filters, MatchView, RouteKind, RouteView,
    RuleView,
};
use crate::translate::Problem;

/// Converts an HTTPRoute; problems name the fields that are ignored or dropped.
pub(crate) fn view(route: &HttpRoute, problems: &mut Vec<Problem>) -> RouteView {
    route_view!(route, RouteKind::Http, problems, rule)
}

fn rule(namespace: &str, index: usize, r: &HttpRouteRules) -> RuleView {
    let base = format!("spec.rules[{index}]");
    let (matches, dropped) = rule_matches(
        &base,
        r.matches.as_deref().unwrap_or_default(),
        MatchView {
            index: 0,
            paths: vec!["/".into()],
            methods: Vec::new(),
            headers: Default::default(),
            rank: [1, 1, 0, 0, 0],
        },
        convert_match,
    );
    let mut filters = Filters::default();
    for (fi, f) in r.filters.iter().flatten().enumerate() {
        let field = format!("{base}.filters[{fi}]");
        match f.r#type {
            HttpRouteRulesFiltersType::RequestHeaderModifier => {
                let m = f.request_header_modifier.as_ref();
                filters.request = Some(header_mods!(m));
            }
            HttpRouteRulesFiltersType::ResponseHeaderModifier => {
                let m = f.response_header_modifier.as_ref();
                filters.response = Some(header_mods!(m));
            }
            HttpRouteRulesFiltersType::ExtensionRef => {
                let target = f.extension_ref.as_ref().map(|e| (e.group.as_str(), e.kind.as_str(), e.name.as_str()));
                extension_ref(&mut filters, field, target);
            }
            ref other => filters.ignored.push((field, format!("filter {other:?} is not supported by sluice; ignored"))),
        }
    }
    let timeouts = super::timeouts::rule_timeouts(&base, r.timeouts.as_ref(), &mut filters.ignored);
    let backends = rule_backends!(namespace, base, r, filters);
    RuleView { index, name: r.name.clone(), matches, filters, backends, timeouts, dropped }
}

/// Escapes regex metacharacters of a literal path.
fn escape(path: &str) -> String {
    regex::escape(path)
}

/// Kong paths and the (type, length) rank of an HTTPRoute path match.
pub(crate) fn paths(
    kind: Option<&HttpRouteRulesMatchesPathType>,
    value: Option<&str>,
) -> Result<(Vec<String>, [u64; 2]), String> {
    let value = value.filter(|v| !v.is_empty()).unwrap_or("/");
    let len = value.len() as u64;
    let out = match kind.unwrap_or(&HttpRouteRulesMatchesPathType::PathPrefix) {
        HttpRouteRulesMatchesPathType::Exact => {
            if !value.starts_with('/') {
                return Err(format!("path '{value}' must start with '/'"));
            }
            (vec![format!("~{}$", escape(value))], [3, len])
        }
        HttpRouteRulesMatchesPathType::PathPrefix => {
            if !value.starts_with('/') {
                return Err(format!("path '{value}' must start with '/'"));
            }
            let base = value.trim_end_matches('/');
            if base.is_empty() {
                (vec!["/".to_string()], [2, 1])
            } else {
                (vec![format!("{base}/"), format!("~{}$", escape(base))], [2, base.len() as u64])
            }
        }
        HttpRouteRulesMatchesPathType::RegularExpression => (vec![format!("~(?:{value})$")], [1, len]),
    };
    for p in &out.0 {
        if let Some(pattern) = p.strip_prefix('~') {
            compile_path_regex(pattern)?;
        }
    }
    Ok(out)
}

fn convert_match(index: usize, m: &HttpRouteRulesMatches) -> Result<MatchView, (String, String)> {
    if m.query_params.as_ref().is_some_and(|q| !q.is_empty()) {
        return Err((".queryParams".into(), "query parameter matches are not supported by sluice".into()));
    }
    let (paths, path_rank) =
        paths(m.path.as_ref().and_then(|p| p.r#type.as_ref()), m.path.as_ref().and_then(|p| p.value.as_deref()))
            .map_err(|e| (".path".to_string(), e))?;
    let methods: Vec<String> = m
        .method
        .as_ref()
        .and_then(|method| serde_json::to_value(method).ok())
        .and_then(|v| v.as_str().map(str::to_string))
        .into_iter()
        .collect();
    let mut headers = std::collections::BTreeMap::new();
    for (hi, h) in m.headers.iter().flatten().enumerate() {
        let name = h.name.to_ascii_lowercase();
        if headers.contains_key(&name) {
            continue;
        }
        if name == "host" {
            return Err((format!(".headers[{hi}]"), "the Host header cannot be matched; use hostnames".into()));
        }
        let value = match h.r#type {
            Some(HttpRouteRulesMatchesHeadersType::RegularExpression) => header_value_regex(&h.value),
            _ => header_value_exact(&h.value),
        }
        .map_err(|e| (format!(".headers[{hi}]"), e))?;
        headers.insert(name, vec![value]);
    }
    let rank = [path_rank[0], path_rank[1], u64::from(!methods.is_empty()), headers.len() as u64, 0];
    Ok(MatchView { index, paths, methods, headers, rank })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_types() {
        use HttpRouteRulesMatchesPathType as T;
        assert_eq!(paths(None, None).unwrap().0, vec!["/"]);
        assert_eq!(paths(Some(&T::PathPrefix), Some("/v1/")).unwrap().0, vec!["/v1/", "~/v1$"]);
        assert_eq!(paths(Some(&T::Exact), Some("/a.b")).unwrap().0, vec!["~/a\\.b$"]);
        assert_eq!(paths(Some(&T::RegularExpression), Some("/v[0-9]+")).unwrap().0, vec!["~(?:/v[0-9]+)$"]);
        assert!(paths(Some(&T::RegularExpression), Some("/(")).is_err());
        assert!(paths(Some(&T::Exact), Some("rel")).is_err());
        // Exact outranks any prefix; a longer prefix outranks a shorter one.
        assert!(paths(Some(&T::Exact), Some("/a")).unwrap().1 > paths(Some(&T::PathPrefix), Some("/abc")).unwrap().1);
        assert!(
            paths(Some(&T::PathPrefix), Some("/abc")).unwrap().1 > paths(Some(&T::PathPrefix), Some("/a")).unwrap().1
        );
    }
}
