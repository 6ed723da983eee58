//! The committed CRD manifests must be exactly what the code generates (CI fails when stale).

use std::path::Path;

use controller::crds::{
    gateway_api_crds, own_crds, plugin_crds, GATEWAY_API_CRDS_PATH, OWN_CRDS_PATH, PLUGIN_CRDS_PATH, REGENERATE,
};

fn check(path: &str, generated: &str) {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    let committed = std::fs::read_to_string(&full).unwrap_or_default();
    assert!(committed == generated, "{path} is stale (or missing): regenerate it with `{REGENERATE}`");
}

#[test]
fn own_crds_are_fresh() {
    check(OWN_CRDS_PATH, &own_crds().unwrap());
}

#[test]
fn plugin_crds_are_fresh() {
    let generated = plugin_crds().unwrap();
    for kind in ["KongPlugin", "KongClusterPlugin"] {
        assert!(generated.contains(&format!("kind: {kind}\n")), "{kind} missing");
    }
    check(PLUGIN_CRDS_PATH, &generated);
}

#[test]
fn gateway_api_crds_are_fresh() {
    let generated = gateway_api_crds().unwrap();
    for kind in ["GatewayClass", "Gateway", "GRPCRoute", "HTTPRoute", "ReferenceGrant"] {
        assert!(generated.contains(&format!("kind: {kind}\n")), "{kind} missing");
    }
    check(GATEWAY_API_CRDS_PATH, &generated);
}
