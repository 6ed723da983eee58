//! The Helm chart (charts/sluice) with the real helm (built from its Go module by
//! scripts/helm-tools.sh, pinned in tools/helm/go.mod) and a real kube-apiserver:
//! - `helm lint --strict` with the default values and with every optional part on;
//! - the chart's copies of the CRDs are those of crds/ and manifests/ (`make crds` writes both);
//! - `helm template` output is accepted by the API server (`kubectl apply --dry-run=server`), and
//!   the rendered controller arguments are real flags of sluice-controller;
//! - `helm install` into the API server, then (no nodes run pods) the controller and the proxy run
//!   here with the chart's ServiceAccount token, and a route applied with kubectl is served.

mod support;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use e2e::install::repo;
use e2e::{ControlPlane, Kubectl};
use support::{World, CHANGE_BOUND};

/// The helm binary, built on first use (reused from the cache afterwards).
fn helm_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = std::process::Command::new(repo().join("scripts/helm-tools.sh"))
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("run scripts/helm-tools.sh");
        assert!(out.status.success(), "scripts/helm-tools.sh failed (it needs go and the Go module proxy)");
        let text = String::from_utf8_lossy(&out.stdout);
        PathBuf::from(text.lines().last().expect("helm-tools.sh prints the bin directory").trim()).join("helm")
    })
}

fn chart() -> String {
    repo().join("charts/sluice").display().to_string()
}

/// helm with its state in `home` (never the user's).
async fn helm_output(home: &Path, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(helm_bin())
        .args(args)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .await
        .expect("run helm")
}

/// Runs helm; returns stdout, panics with stderr.
async fn helm(home: &Path, args: &[&str]) -> String {
    let out = helm_output(home, args).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "helm {args:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// Every optional part of the chart turned on.
const ALL_ON: &str =
    "webhook.enabled=true,gatewayAPI.installCRDs=true,metrics.serviceMonitor.enabled=true,ingressClass.default=true";

#[tokio::test]
async fn chart_lints() {
    let home = tempfile::tempdir().unwrap();
    let chart = chart();
    helm(home.path(), &["lint", "--strict", &chart]).await;
    helm(home.path(), &["lint", "--strict", &chart, "--set", ALL_ON]).await;
    helm(home.path(), &["lint", "--strict", &chart, "--set", "webhook.enabled=false,metrics.service.enabled=false"])
        .await;
}

#[tokio::test]
async fn chart_values_reject_unknown_keys_and_bad_combinations() {
    let home = tempfile::tempdir().unwrap();
    let chart = chart();
    for (set, expected) in [
        ("replica=2", "replica"),
        ("webhook.failurePolicy=Sometimes", "failurePolicy"),
        ("webhook.certificate.generate=false", "webhook.certificate.secretName"),
        ("metrics.service.enabled=false,metrics.serviceMonitor.enabled=true", "metrics.service.enabled"),
    ] {
        let out = helm_output(home.path(), &["template", "sluice", &chart, "--set", set]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(expected), "--set {set}: {stderr}");
    }
}

#[test]
fn chart_crds_are_the_generated_ones() {
    let root = repo();
    for (copy, original) in [
        ("charts/sluice/crds/kongplugins.yaml", "crds/kongplugins.yaml"),
        ("charts/sluice/crds/kongupstreampolicies.yaml", "crds/kongupstreampolicies.yaml"),
        ("charts/sluice/charts/gateway-api-crds/crds/gateway-api-crds.yaml", "manifests/gateway-api-crds.yaml"),
    ] {
        let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert!(read(copy) == read(original), "{copy} differs from {original}: run `make crds`");
    }
    let chart_crds = std::fs::read_dir(root.join("charts/sluice/crds")).unwrap().count();
    assert_eq!(chart_crds, std::fs::read_dir(root.join("crds")).unwrap().count(), "charts/sluice/crds vs crds/");
}

fn documents(yaml: &str) -> Vec<serde_json::Value> {
    yaml.split("\n---")
        .filter_map(|d| serde_yaml_ng::from_str::<serde_json::Value>(d).ok())
        .filter(|v| v.is_object())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_templates_are_accepted_by_the_api_server() {
    let home = tempfile::tempdir().unwrap();
    let rendered = helm(
        home.path(),
        &["template", "sluice", &chart(), "-n", "sluice", "--include-crds", "--set", "gatewayAPI.installCRDs=true"],
    )
    .await;
    let docs = documents(&rendered);
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    for kind in ["Deployment", "ValidatingWebhookConfiguration", "Secret", "GatewayClass", "IngressClass", "Role"] {
        assert!(kinds.contains(&kind), "{kind} not rendered: {kinds:?}");
    }
    let crds = docs.iter().filter(|d| d["kind"] == "CustomResourceDefinition").count();
    assert!(crds > 5, "Kong and Gateway API CRDs are rendered with --include-crds ({crds})");

    // The rendered controller arguments are real flags, and turn the webhook on.
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let containers = deployment["spec"]["template"]["spec"]["containers"].as_array().unwrap();
    let controller = containers.iter().find(|c| c["name"] == "controller").unwrap();
    let args = controller["args"].as_array().unwrap().iter().filter_map(|a| a.as_str());
    let settings =
        <controller::Settings as clap::Parser>::try_parse_from(std::iter::once("sluice-controller").chain(args))
            .unwrap_or_else(|e| panic!("{e}"));
    settings.validate().unwrap();
    assert_eq!(settings.admission_webhook().unwrap().map(|a| a.port()), Some(8080));
    assert_eq!(settings.publish_service().unwrap(), Some(("sluice".into(), "sluice-proxy".into())));

    // RBAC: the same rules as the install manifests (least privilege is tested there).
    let manifests = documents(&std::fs::read_to_string(repo().join("manifests/10-rbac.yaml")).unwrap());
    for kind in ["ClusterRole", "Role"] {
        let rules = |docs: &[serde_json::Value]| docs.iter().find(|d| d["kind"] == kind).map(|d| d["rules"].clone());
        assert_eq!(rules(&docs), rules(&manifests), "{kind} rules differ from manifests/10-rbac.yaml");
    }

    // The generated webhook certificate: what the controller loads, for the Service's DNS name,
    // and its CA is the webhook's caBundle.
    let secret = docs.iter().find(|d| d["kind"] == "Secret").unwrap();
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(secret.clone()).unwrap();
    let data = secret.data.unwrap();
    let certs = tempfile::tempdir().unwrap();
    let (crt, key) = (certs.path().join("tls.crt"), certs.path().join("tls.key"));
    std::fs::write(&crt, &data["tls.crt"].0).unwrap();
    std::fs::write(&key, &data["tls.key"].0).unwrap();
    controller::webhook::tls::load(&crt, &key).unwrap_or_else(|e| panic!("the generated certificate: {e}"));
    let hooks = docs.iter().find(|d| d["kind"] == "ValidatingWebhookConfiguration").unwrap();
    let ca_bundle = hooks["webhooks"][0]["clientConfig"]["caBundle"].as_str().unwrap();
    let ca: k8s_openapi::ByteString = serde_json::from_value(serde_json::json!(ca_bundle)).unwrap();
    assert_eq!(ca, data["ca.crt"], "caBundle is the Secret's ca.crt");
    assert!(String::from_utf8_lossy(&ca.0).starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(hooks["webhooks"][0]["clientConfig"]["service"]["name"], "sluice-admission-webhook");

    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start().await.unwrap_or_else(|e| panic!("starting the control plane: {e}"));
    let kubectl = Kubectl::new(cp.kubeconfig(), dir.path()).expect("kubectl");
    kubectl.ok(&["create", "namespace", "sluice"]).await.unwrap();
    // CRDs for real first (a dry run does not register kinds): the chart's own files, which
    // --include-crds rendered above; then everything as a server dry run.
    let root = repo();
    let (own, gateway) = (root.join("charts/sluice/crds"), root.join("charts/sluice/charts/gateway-api-crds/crds"));
    let (own, gateway) = (own.display().to_string(), gateway.display().to_string());
    kubectl.ok(&["apply", "-f", &own, "-f", &gateway]).await.unwrap_or_else(|e| panic!("{e}"));
    kubectl
        .ok(&["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let out = kubectl.apply(&rendered, &["--dry-run=server"]).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(out.contains("validatingwebhookconfiguration.admissionregistration.k8s.io/sluice"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_then_the_controller_serves_a_route() {
    let home = tempfile::tempdir().unwrap();
    let home_path = home.path().to_path_buf();
    let w = World::start_installed(|_kubectl, kubeconfig| async move {
        let kc = kubeconfig.display().to_string();
        // The webhook needs a pod behind its Service, and this cluster runs no pods: with
        // failurePolicy Ignore it would only add a failed call to every write.
        let set = "gatewayAPI.installCRDs=true,webhook.enabled=false";
        let args =
            ["install", "sluice", &chart(), "-n", "sluice", "--create-namespace", "--kubeconfig", &kc, "--set", set];
        helm(&home_path, &args).await;
        Ok(())
    })
    .await;
    let status = helm(
        home.path(),
        &["status", "sluice", "-n", "sluice", "--kubeconfig", &w.kubeconfig.display().to_string(), "-o", "json"],
    )
    .await;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["info"]["status"], "deployed", "{status}");

    let grpcbin = w.backend_named("grpcbin").await;
    w.apply(&support::example("01-grpcbin/grpcbin.yaml")).await;
    w.endpoints("grpcbin", "grpc", &[grpcbin.addr()]).await;
    let reply = w
        .eventually("route through the Helm-installed controller", CHANGE_BOUND, || async {
            w.call(false, "grpcbin.local", "hello.HelloService/SayHello", r#"{"greeting":"helm"}"#, &[]).await
        })
        .await;
    assert_eq!(reply, r#"{"reply":"hello helm"}"#);
}

/// The webhook on (the default): `helm upgrade` keeps the certificate the install generated (Helm's
/// `lookup`), so the API server's caBundle and the controller's mounted Secret never disagree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_upgrade_keeps_the_generated_webhook_certificate() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start().await.unwrap_or_else(|e| panic!("starting the control plane: {e}"));
    let kubectl = Kubectl::new(cp.kubeconfig(), dir.path()).expect("kubectl");
    let kc = cp.kubeconfig().display().to_string();
    let chart = chart();
    let install = ["install", "sluice", &chart, "-n", "sluice", "--create-namespace", "--kubeconfig", &kc];
    helm(home.path(), &install).await;
    let secret = |k: Kubectl| async move {
        let out = k.ok(&["get", "secret", "sluice-admission-webhook", "-n", "sluice", "-o", "json"]).await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        (v["data"]["tls.crt"].clone(), v["data"]["ca.crt"].clone())
    };
    let before = secret(kubectl.clone()).await;
    assert!(before.0.is_string() && before.1.is_string(), "{before:?}");
    let upgrade = ["upgrade", "sluice", &chart, "-n", "sluice", "--kubeconfig", &kc, "--set", "replicas=2"];
    helm(home.path(), &upgrade).await;
    assert_eq!(secret(kubectl.clone()).await, before, "the upgrade reused the generated certificate");
    let hooks = kubectl.ok(&["get", "validatingwebhookconfiguration", "sluice", "-o", "json"]).await.unwrap();
    let hooks: serde_json::Value = serde_json::from_str(&hooks).unwrap();
    assert_eq!(hooks["webhooks"][0]["clientConfig"]["caBundle"], before.1);
    assert_eq!(hooks["webhooks"][0]["failurePolicy"], "Ignore");
}
