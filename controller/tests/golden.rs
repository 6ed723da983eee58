//! The golden tests of `translate`: ONE driver, one test per case, named `golden_<case>` after its
//! directory `testdata/translate/<case>/` (`-` written `_`), so
//! `cargo test -p controller --test golden golden_<case>` runs one case and a failure names it.
//!
//! A case holds `in.yaml` (Kubernetes manifests), optionally `args.txt` (controller flags, one per
//! line) and `rejected.yaml` (the proxy's 400 answer to the push of the full translation: the case
//! is then the fallback translation, without the objects that answer names, as the sync loop
//! builds it), and the expected
//! - `out.yaml`: the Kong config (which must itself pass `proxy_config::validate`);
//! - `problems.yaml`: the problems (Kubernetes Events);
//! - `status.yaml`: every status the controller writes (Ingress load balancer, GatewayClass,
//!   Gateway, GRPCRoute, HTTPRoute, BackendTLSPolicy) as `status::desired` computes it, at [`NOW`], with the proxy
//!   at the `--publish-status-address` of `args.txt`, else at [`ADDRESS`].
//!
//! Each case also checks that translation does not depend on the order in which objects arrive,
//! and that statuses written once are not written again (the desired statuses, merged into the
//! objects as the API server would, ask for no change). `UPDATE_GOLDEN=1` rewrites the expected
//! files; `golden_every_case_has_a_test` fails when a case directory has no test here.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Parser;
use controller::files::{parse_documents, Loaded};
use controller::status::{desired, StatusUpdate};
use controller::sync::rejected_objects;
use controller::translate::translate_excluding;
use controller::{Settings, Snapshot, Translation};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
use proxy_config::FlattenedError;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The time statuses are written at.
const NOW: &str = "2026-01-01T00:00:00Z";
/// The proxy's address when the case does not set `--publish-status-address` (TEST-NET-1).
const ADDRESS: &str = "192.0.2.10";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/translate")
}

macro_rules! golden {
    ($($test:ident,)*) => {
        $(
            #[test]
            fn $test() {
                run(stringify!($test));
            }
        )*
        /// The test names, for `golden_every_case_has_a_test`.
        const TESTS: &[&str] = &[$(stringify!($test)),*];
    };
}

golden! {
    golden_app_protocol,
    golden_backend_tls_policy,
    golden_backend_tls_policy_errors,
    golden_bad_objects_do_not_block_good_ones,
    golden_buffering_annotations,
    golden_class_filtering,
    golden_consumers_credentials,
    golden_consumers_plugins,
    golden_consumers_plugins_errors,
    golden_class_not_default,
    golden_client_cert,
    golden_default_backend,
    golden_empty_path,
    golden_endpointslice_targets,
    golden_external_name,
    golden_fallback_rejected_route,
    golden_force_ssl_redirect,
    golden_gateway_allowed_routes_selector,
    golden_gateway_https_listener,
    golden_gateway_listener_status,
    golden_gateway_rejected_certificate,
    golden_grpc_drops_methods_strip_path_and_path,
    golden_grpc_ingress_without_protocol,
    golden_grpc_web_plugin,
    golden_grpcroute_attachment,
    golden_grpcroute_exact_method_matching,
    golden_grpcroute_header_matching,
    golden_grpcroute_header_modifier,
    golden_grpcroute_hostname_intersection,
    golden_grpcroute_invalid_backends,
    golden_grpcroute_listener_hostname_matching,
    golden_grpcroute_no_backends,
    golden_grpcroute_plugins,
    golden_grpcroute_precedence,
    golden_grpcroute_referencegrant,
    golden_grpcroute_seed_apisix,
    golden_grpcroute_seed_gateway_api_guide,
    golden_grpcroute_seed_kgateway,
    golden_grpcroute_seed_kong,
    golden_grpcroute_weights,
    golden_headers_annotation,
    golden_hostless_rule,
    golden_httproute_and_grpcroute_same_host,
    golden_httproute_basic,
    golden_httproute_left_out,
    golden_httproute_plugins,
    golden_httproute_timeouts,
    golden_ingress_prefix_basic,
    golden_ipv6_targets,
    golden_multiple_ports_one_service,
    golden_pathtype_exact,
    golden_pathtype_implementation_specific,
    golden_pathtype_prefix,
    golden_plugins_cluster_plugins,
    golden_plugins_config_from_secret,
    golden_plugins_config_patches,
    golden_plugins_cross_namespace,
    golden_plugins_error_bad_config,
    golden_plugins_error_configmap,
    golden_plugins_error_conflict,
    golden_plugins_error_missing,
    golden_plugins_error_secrets,
    golden_plugins_error_unsupported_fields,
    golden_plugins_grpc_trailers,
    golden_plugins_grpc_gateway_configmap,
    golden_plugins_grpc_gateway_secret,
    golden_plugins_ingress_annotation,
    golden_plugins_prometheus,
    golden_plugins_service_annotation,
    golden_ports_by_name,
    golden_regex_prefix_annotation,
    golden_resource_backend_and_service_protocol_invalid,
    golden_route_annotations,
    golden_seed_grpc_ingress,
    golden_seed_grpcs_upstream,
    golden_service_annotations,
    golden_service_upstream,
    golden_single_service_multiple_ingresses,
    golden_snis_annotation,
    golden_tls,
    golden_tls_invalid_secret,
    golden_tls_verify_ca_configmaps,
    golden_tls_verify_ca_secrets,
    golden_unsupported_annotations,
    golden_watch_namespace,
    golden_wildcard_host,
}

#[test]
fn golden_every_case_has_a_test() {
    let dirs: HashSet<String> = std::fs::read_dir(root())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("in.yaml").exists())
        .map(|p| test_name(p.file_name().and_then(|n| n.to_str()).unwrap()))
        .collect();
    let tests: HashSet<String> = TESTS.iter().map(|t| t.to_string()).collect();
    let missing: Vec<&String> = dirs.difference(&tests).collect();
    let stale: Vec<&String> = tests.difference(&dirs).collect();
    assert!(missing.is_empty(), "golden cases without a test (add them to golden! in tests/golden.rs): {missing:?}");
    assert!(stale.is_empty(), "golden tests without a case directory: {stale:?}");
}

fn test_name(dir: &str) -> String {
    format!("golden_{}", dir.replace('-', "_"))
}

/// Runs the case of test `test`.
fn run(test: &str) {
    let case = test.strip_prefix("golden_").unwrap().replace('_', "-");
    let dir = root().join(&case);
    assert!(dir.join("in.yaml").exists(), "{test}: no case directory {}", dir.display());
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let snapshot = load(&dir);
    let settings = settings(&dir);
    let excluded = rejected(&dir);
    let t = translate_excluding(&snapshot, &settings, &excluded);
    let statuses = statuses(&t, &snapshot, &settings);

    let mut failures = Vec::new();
    if let Err(e) = proxy_config::validate(&t.config) {
        failures.push(format!("the translated config does not validate: {e}"));
    }
    failures.extend(check(&dir.join("out.yaml"), &yaml(&t.config), update));
    failures.extend(check(&dir.join("problems.yaml"), &yaml(&t.problems), update));
    failures.extend(check(&dir.join("status.yaml"), &yaml(&statuses), update));
    let expected = std::fs::read_to_string(dir.join("out.yaml")).unwrap_or_default();
    if let Err(e) = proxy_config::parse_and_validate(&expected) {
        failures.push(format!("out.yaml is not a valid config: {e}"));
    }

    let reversed = reversed(&snapshot);
    if translate_excluding(&reversed, &settings, &excluded) != t {
        failures.push("the translation depends on the order of the objects".into());
    }

    let written = written(&snapshot, &statuses);
    let again: Vec<String> =
        desired(&t.statuses, &written, &addresses(&settings), &settings.gateway_controller_name, &now())
            .into_iter()
            .filter(|u| u.changed)
            .map(|u| u.object.to_string())
            .collect();
    if !again.is_empty() {
        failures.push(format!("statuses written once would be written again: {again:?}"));
    }
    assert!(failures.is_empty(), "golden case {case} ({}):\n{}", dir.display(), failures.join("\n\n"));
}

fn settings(dir: &Path) -> Settings {
    let mut args = vec!["sluice-controller".to_string()];
    if let Ok(text) = std::fs::read_to_string(dir.join("args.txt")) {
        args.extend(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string));
    }
    Settings::try_parse_from(args).unwrap()
}

fn load(dir: &Path) -> Snapshot {
    let text = std::fs::read_to_string(dir.join("in.yaml")).unwrap();
    let mut loaded = Loaded::default();
    parse_documents(&text, "in.yaml", &mut loaded);
    assert!(loaded.problems.is_empty(), "{}: in.yaml does not parse: {:#?}", dir.display(), loaded.problems);
    loaded.snapshot.sort();
    loaded.snapshot
}

/// The objects the proxy's answer in `rejected.yaml` names (none without the file).
fn rejected(dir: &Path) -> HashSet<controller::ObjectRef> {
    let Ok(text) = std::fs::read_to_string(dir.join("rejected.yaml")) else { return HashSet::new() };
    let answer: FlattenedError = serde_yaml_ng::from_str(&text).unwrap();
    let (objects, _) = rejected_objects(&answer);
    assert!(!objects.is_empty(), "{}: rejected.yaml names no object", dir.display());
    objects
}

fn addresses(settings: &Settings) -> Vec<String> {
    if settings.publish_status_address.is_empty() {
        vec![ADDRESS.to_string()]
    } else {
        settings.publish_status_address.clone()
    }
}

fn now() -> Time {
    Time(NOW.parse().unwrap())
}

fn statuses(t: &Translation, snapshot: &Snapshot, settings: &Settings) -> Vec<StatusUpdate> {
    desired(&t.statuses, snapshot, &addresses(settings), &settings.gateway_controller_name, &now())
}

fn yaml<T: Serialize>(value: &T) -> String {
    serde_yaml_ng::to_string(value).unwrap()
}

/// Every collection reversed.
fn reversed(s: &Snapshot) -> Snapshot {
    let mut r = s.clone();
    r.ingresses.reverse();
    r.ingress_classes.reverse();
    r.services.reverse();
    r.endpoint_slices.reverse();
    r.secrets.reverse();
    r.gateway_classes.reverse();
    r.gateways.reverse();
    r.grpc_routes.reverse();
    r.http_routes.reverse();
    r.reference_grants.reverse();
    r.backend_tls_policies.reverse();
    r.config_maps.reverse();
    r.namespaces.reverse();
    r.kong_upstream_policies.reverse();
    r.kong_plugins.reverse();
    r.kong_cluster_plugins.reverse();
    r.kong_consumers.reverse();
    r
}

/// The snapshot after the API server applied the status patches (JSON merge patches).
fn written(s: &Snapshot, updates: &[StatusUpdate]) -> Snapshot {
    let mut w = s.clone();
    apply(&mut w.ingresses, updates);
    apply(&mut w.gateway_classes, updates);
    apply(&mut w.gateways, updates);
    apply(&mut w.grpc_routes, updates);
    apply(&mut w.http_routes, updates);
    apply(&mut w.backend_tls_policies, updates);
    w
}

fn apply<K>(list: &mut [Arc<K>], updates: &[StatusUpdate])
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned,
{
    for o in list.iter_mut() {
        let object = controller::ObjectRef::of(o.as_ref());
        let Some(u) = updates.iter().find(|u| u.object == object) else { continue };
        let mut value = serde_json::to_value(o.as_ref()).unwrap();
        json_patch::merge(&mut value, &serde_json::json!({ "status": u.status }));
        *o = Arc::new(serde_json::from_value(value).unwrap());
    }
}

/// Compares (or rewrites) one golden file; returns a failure description.
fn check(path: &Path, actual: &str, update: bool) -> Option<String> {
    if update {
        std::fs::write(path, actual).unwrap();
        return None;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    (expected != actual).then(|| format!("{} differs:\n--- expected\n{expected}\n--- actual\n{actual}", path.display()))
}
