//! Gateway API behaviour checked end to end through `translate` and the statuses it returns (no cluster):
//! weighted splits, ReferenceGrant grant/revoke, the configurable controller name, and the
//! gRPC-only guard of GRPCRoute routes.

use std::collections::BTreeMap;

use clap::Parser;
use controller::files::{parse_documents, Loaded};
use controller::translate::Statuses;
use controller::{translate, Settings, Snapshot};

fn statuses(s: &Snapshot, settings: &Settings) -> Statuses {
    translate(s, settings).statuses
}

const BASE: &str = r#"
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

fn backend(name: &str, ns: &str, ips: &[&str]) -> String {
    let endpoints: String =
        ips.iter().map(|ip| format!("- addresses: [\"{ip}\"]\n  conditions: {{ready: true}}\n")).collect();
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  ports: [{{port: 8080, targetPort: 3000}}]\n\
         ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-x\n  namespace: {ns}\n  labels: {{kubernetes.io/service-name: {name}}}\n\
         addressType: IPv4\nports: [{{port: 3000}}]\nendpoints:\n{endpoints}"
    )
}

fn snapshot(yaml: &str) -> Snapshot {
    let mut loaded = Loaded::default();
    parse_documents(yaml, "test.yaml", &mut loaded);
    assert!(loaded.problems.is_empty(), "{:#?}", loaded.problems);
    loaded.snapshot.sort();
    loaded.snapshot
}

fn settings(args: &[&str]) -> Settings {
    Settings::try_parse_from(std::iter::once("sluice-controller").chain(args.iter().copied())).unwrap()
}

/// Target weights of one upstream, by target.
fn weights(s: &Snapshot, upstream: &str) -> BTreeMap<String, u32> {
    let t = translate(s, &settings(&[]));
    let u = t.config.upstreams.iter().find(|u| u.name == upstream).unwrap_or_else(|| panic!("no upstream {upstream}"));
    u.targets.iter().map(|t| (t.target.clone(), t.weight)).collect()
}

fn share(w: &BTreeMap<String, u32>, prefix: &str) -> f64 {
    let total: u32 = w.values().sum();
    f64::from(w.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, v)| *v).sum::<u32>()) / f64::from(total)
}

#[test]
fn ninety_ten_weights_split_ninety_ten() {
    // Endpoint counts that do not divide the weights evenly (KIC's integer division skews them).
    let yaml = format!(
        "{BASE}{}{}---\napiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {{name: canary, namespace: default}}\n\
         spec:\n  parentRefs: [{{name: gw}}]\n  rules:\n  - backendRefs:\n    - {{name: stable, port: 8080, weight: 90}}\n    - {{name: canary, port: 8080, weight: 10}}\n",
        backend("stable", "default", &["10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.1.4"]),
        backend("canary", "default", &["10.0.2.1", "10.0.2.2", "10.0.2.3"]),
    );
    let w = weights(&snapshot(&yaml), "grpcroute.default.canary.0");
    assert_eq!(w.len(), 7);
    assert!((share(&w, "10.0.1.") - 0.9).abs() < 1e-12, "{w:?}");
    assert!((share(&w, "10.0.2.") - 0.1).abs() < 1e-12, "{w:?}");
    // Endpoints of one backend share its weight evenly.
    assert!(w.iter().filter(|(k, _)| k.starts_with("10.0.1.")).all(|(_, v)| *v == w["10.0.1.1:3000"]));
}

fn grant_case(with_grant: bool) -> String {
    let grant = "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: g, namespace: backends}\n\
                 spec:\n  from: [{group: gateway.networking.k8s.io, kind: GRPCRoute, namespace: default}]\n  to: [{group: \"\", kind: Service}]\n";
    format!(
        "{BASE}{}{}---\napiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {{name: x, namespace: default}}\n\
         spec:\n  parentRefs: [{{name: gw}}]\n  rules:\n  - backendRefs: [{{name: echo, namespace: backends, port: 8080}}]\n",
        backend("echo", "backends", &["10.9.0.1"]),
        if with_grant { grant } else { "" },
    )
}

fn resolved_refs(a: &Statuses) -> (String, String) {
    let c = a.routes[0].parents[0].conditions.iter().find(|c| c.type_ == "ResolvedRefs").unwrap();
    (c.status.to_string(), c.reason.clone())
}

#[test]
fn reference_grant_grants_and_revokes() {
    let settings = settings(&[]);
    let denied = snapshot(&grant_case(false));
    assert_eq!(resolved_refs(&statuses(&denied, &settings)), ("False".into(), "RefNotPermitted".into()));
    assert!(weights(&denied, "grpcroute.default.x.0").is_empty(), "no target without a grant: UNAVAILABLE");

    let granted = snapshot(&grant_case(true));
    assert_eq!(resolved_refs(&statuses(&granted, &settings)), ("True".into(), "ResolvedRefs".into()));
    assert_eq!(weights(&granted, "grpcroute.default.x.0").keys().collect::<Vec<_>>(), vec!["10.9.0.1:3000"]);

    // Deleting the grant (the next snapshot) revokes access again.
    let mut revoked = granted.clone();
    revoked.reference_grants.clear();
    assert_eq!(resolved_refs(&statuses(&revoked, &settings)), ("False".into(), "RefNotPermitted".into()));
    // The route stays Accepted: only its refs are unresolved.
    let accepted = statuses(&revoked, &settings).routes[0].parents[0].conditions[0].clone();
    assert_eq!((accepted.type_, accepted.status), ("Accepted", "True"));
}

#[test]
fn controller_name_is_configurable() {
    let s = snapshot(&grant_case(true));
    assert_eq!(statuses(&s, &settings(&[])).gateways.len(), 1);
    let other = statuses(&s, &settings(&["--gateway-controller-name=example.com/other"]));
    assert!(other.gateway_classes.is_empty() && other.gateways.is_empty() && other.routes[0].parents.is_empty());
    assert!(translate(&s, &settings(&["--gateway-controller-name=example.com/other"])).config.services.is_empty());
}

#[test]
fn grpcroute_routes_only_match_grpc_requests() {
    let t = translate(&snapshot(&grant_case(true)), &settings(&[]));
    let routes: Vec<_> = t.config.services.iter().flat_map(|s| s.routes.iter()).collect();
    assert!(!routes.is_empty());
    for r in routes {
        assert!(r.is_grpc());
        assert_eq!(r.headers.get("content-type"), Some(&vec!["~*^application/grpc".to_string()]));
        assert!(r.priority.is_some());
    }
}
