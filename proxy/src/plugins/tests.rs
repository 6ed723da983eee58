use std::sync::Arc;

use super::*;

/// A header map's fields as sorted (name, value) pairs, for comparing with [`sorted`].
pub(crate) fn header_pairs(h: &HeaderMap) -> Vec<(String, String)> {
    let mut v: Vec<_> = h.iter().map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string())).collect();
    v.sort();
    v
}

/// (name, value) pairs, owned and sorted.
pub(crate) fn sorted(v: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<_> = v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    v.sort();
    v
}

fn built(name: &str, config: serde_json::Value) -> Arc<dyn Plugin> {
    build(name, &config, ":").unwrap()
}

#[test]
fn one_instance_per_name_most_specific_wins() {
    let global = built("request-termination", serde_json::json!({"status_code": 503}));
    let route = built("request-termination", serde_json::json!({"status_code": 418}));
    let chain = PluginChain::resolve([(Scope::Route, route), (Scope::Global, global)]);
    assert_eq!(chain.names(), ["request-termination"]);
    assert!(format!("{:?}", chain.access()[0]).contains("418"));
}

#[test]
fn order_is_kong_priority_descending() {
    let chain = PluginChain::resolve([
        (Scope::Global, built("request-termination", serde_json::json!({}))),
        (Scope::Global, built("ip-restriction", serde_json::json!({"allow": ["10.0.0.0/8"]}))),
        (Scope::Global, built("cors", serde_json::json!({}))),
        (Scope::Global, built("correlation-id", serde_json::json!({}))),
        (Scope::Global, built("response-transformer", serde_json::json!({}))),
        (Scope::Global, built("request-transformer", serde_json::json!({}))),
    ]);
    assert_eq!(
        chain.names(),
        [
            "correlation-id",
            "cors",
            "ip-restriction",
            "request-transformer",
            "response-transformer",
            "request-termination"
        ]
    );
    assert_eq!(chain.header_filter().len(), 3);
}

#[test]
fn unknown_plugins_are_refused_by_name() {
    assert_eq!(build("nope", &serde_json::Value::Null, ":").unwrap_err().field, "name");
}
