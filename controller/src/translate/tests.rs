//! Unit tests of the translator as a whole (the per-feature cases are golden tests in
//! `tests/golden.rs`): fallback exclusion, the validation guarantee, purity.

use std::collections::HashSet;

use super::*;
use crate::files::{parse_documents, Loaded};

const WORLD: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default, uid: svc-uid}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: default, uid: api-uid}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: default, uid: ing-uid}
spec:
  ingressClassName: kong
  rules:
  - host: web.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
      - {path: /api, pathType: Prefix, backend: {service: {name: api, port: {number: 80}}}}
"#;

fn world() -> Snapshot {
    let mut loaded = Loaded::default();
    parse_documents(WORLD, "world", &mut loaded);
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    loaded.snapshot.sort();
    loaded.snapshot
}

#[test]
fn excluded_service_takes_only_its_routes_along() {
    let s = world();
    let settings = Settings::default();
    let full = translate(&s, &settings);
    assert_eq!(full.config.services.len(), 2);
    assert!(full.problems.is_empty());

    let api =
        ObjectRef { kind: "Service".into(), namespace: "default".into(), name: "api".into(), uid: "api-uid".into() };
    let fallback = translate_excluding(&s, &settings, &HashSet::from([api]));
    assert_eq!(fallback.config.services.len(), 1);
    assert_eq!(fallback.config.services[0].name.as_deref(), Some("default.web.80"));
    assert_eq!(fallback.problems.len(), 1);
    assert!(fallback.problems[0].message.contains("rejected by the proxy"), "{:?}", fallback.problems);
    assert_eq!(fallback.statuses.ingresses.len(), 1);
}

#[test]
fn excluded_ingress_is_left_out() {
    let s = world();
    let ing =
        ObjectRef { kind: "Ingress".into(), namespace: "default".into(), name: "web".into(), uid: "ing-uid".into() };
    let t = translate_excluding(&s, &Settings::default(), &HashSet::from([ing.clone()]));
    assert!(t.config.services.is_empty());
    assert_eq!(t.problems[0].object, ing);
    assert!(t.statuses.ingresses.is_empty());
}

#[test]
fn entities_that_fail_validation_are_removed_with_a_problem() {
    let t = translate(&world(), &Settings::default());
    let mut config = t.config.clone();
    // Simulate a translation bug: a duplicate route name.
    let dup = config.services[0].routes[0].clone();
    config.services[1].routes.push(dup);
    let mut problems = Vec::new();
    enforce_valid(&mut config, &mut problems);
    assert!(proxy_config::validate(&config).is_ok());
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].object.kind, "Ingress");
}

#[test]
fn translation_is_pure() {
    let s = world();
    let settings = Settings::default();
    let a = serde_json::to_string(&translate(&s, &settings).config).unwrap();
    let b = serde_json::to_string(&translate(&s, &settings).config).unwrap();
    assert_eq!(a, b);
}

#[test]
fn escaped_literals_are_recognised_and_compile() {
    for p in ["~/v1/api$", "~/v1\\.0$", "~/a\\+b", "~/echo\\.Echo/Echo$", "~/$"] {
        assert!(is_escaped_literal_regex(p), "{p}");
        assert!(proxy_config::patterns::compile_path_regex(&p[1..]).is_ok(), "{p}");
    }
    for p in ["/plain", "~/v1.0$", "~/a+", "~/x\\d", "~/(a)", "~/a b"] {
        assert!(!is_escaped_literal_regex(p), "{p}");
    }
    assert!(!is_escaped_literal_regex(&format!("~/{}", "a".repeat(5000))));
}

#[test]
fn validation_gate_still_sees_paths_after_the_stash() {
    let mut config = translate(&world(), &Settings::default()).config;
    let before = config.clone();
    let stashed = stash_literal_regexes(&mut config);
    assert!(!stashed.is_empty());
    restore_paths(&mut config, stashed);
    assert_eq!(config, before);
}

#[test]
fn a_plugin_rejected_by_the_proxy_takes_its_routes_along() {
    let text = format!(
        "{WORLD}---\napiVersion: configuration.konghq.com/v1\nkind: KongPlugin\n\
         metadata: {{name: add, namespace: default, uid: kp-uid}}\nplugin: request-transformer\n\
         config: {{add: {{headers: ['x:1']}}}}\n"
    )
    .replace(
        "metadata: {name: web, namespace: default, uid: ing-uid}",
        "metadata: {name: web, namespace: default, uid: ing-uid, annotations: {konghq.com/plugins: add}}",
    );
    let mut loaded = Loaded::default();
    parse_documents(&text, "world", &mut loaded);
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    loaded.snapshot.sort();
    let settings = Settings::default();
    let full = translate(&loaded.snapshot, &settings);
    assert_eq!(full.config.plugins.len(), 2, "one per route of the Ingress");
    assert!(full.problems.is_empty(), "{:?}", full.problems);
    // The push fallback maps a rejected plugin entity back to its KongPlugin through the tags.
    let plugin = names::object_from_tags(&full.config.plugins[0].tags).unwrap();
    assert_eq!((plugin.kind.as_str(), plugin.uid.as_str()), ("KongPlugin", "kp-uid"));
    let fallback = translate_excluding(&loaded.snapshot, &settings, &HashSet::from([plugin]));
    assert!(fallback.config.plugins.is_empty());
    assert!(fallback.config.services.iter().all(|s| s.routes.is_empty()), "fail closed: no route without its plugin");
    assert!(fallback.problems.iter().any(|p| p.message.contains("rejected by the proxy")), "{:?}", fallback.problems);
}
