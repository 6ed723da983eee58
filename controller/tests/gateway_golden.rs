//! Golden tests of the Gateway API translation and statuses: every
//! `testdata/translate/{gateway,grpcroute,httproute}-*/in.yaml` is translated and compared with
//! `out.yaml` (Kong config), `problems.yaml` and `status.yaml` (the statuses the controller would
//! write, before addresses and timestamps). `UPDATE_GOLDEN=1` rewrites the files of these cases
//! only. `tests/golden.rs` also runs these directories (config and problems).

mod golden_support;

use controller::translate;
use golden_support::{cases, check, load, settings};

const PREFIXES: [&str; 3] = ["gateway-", "grpcroute-", "httproute-"];

#[test]
fn gateway_golden() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let cases = cases(|name| PREFIXES.iter().any(|x| name.starts_with(x)));
    assert!(cases.len() >= 18, "expected at least 18 Gateway API golden cases, found {}", cases.len());
    let mut failures = Vec::new();
    for dir in &cases {
        let loaded = load(dir);
        let settings = settings(dir);
        let t = translate(&loaded.snapshot, &settings);
        let st = &t.statuses;
        let analysis = serde_json::json!({"classes": st.gateway_classes, "gateways": st.gateways, "routes": st.routes});
        if let Err(e) = proxy_config::validate(&t.config) {
            failures.push(format!("{}: translated config does not validate: {e}", dir.display()));
        }
        failures.extend(check(&dir.join("out.yaml"), &serde_yaml_ng::to_string(&t.config).unwrap(), update));
        failures.extend(check(&dir.join("problems.yaml"), &serde_yaml_ng::to_string(&t.problems).unwrap(), update));
        failures.extend(check(&dir.join("status.yaml"), &serde_yaml_ng::to_string(&analysis).unwrap(), update));

        // Arrival order must not matter.
        let mut reversed = loaded.snapshot.clone();
        reversed.services.reverse();
        reversed.endpoint_slices.reverse();
        reversed.gateway_classes.reverse();
        reversed.gateways.reverse();
        reversed.grpc_routes.reverse();
        reversed.http_routes.reverse();
        reversed.reference_grants.reverse();
        if translate(&reversed, &settings) != t {
            failures.push(format!("{}: translation depends on object order", dir.display()));
        }
    }
    assert!(failures.is_empty(), "{} golden failure(s):\n{}", failures.len(), failures.join("\n\n"));
}
