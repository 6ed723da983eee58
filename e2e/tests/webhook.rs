//! The validating admission webhook against a real kube-apiserver: the shipped
//! ValidatingWebhookConfiguration (manifests/webhook/) registered with `clientConfig.url`
//! pointing at a real `sluice-controller --admission-webhook-listen` on loopback (TLS, a test CA
//! in `caBundle`, failurePolicy Fail so that a webhook that is not called cannot pass), and real
//! `kubectl apply`s refused with the message naming the field, or admitted.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use e2e::install::{install_manifests, repo, service_account_token, ELECTION_ID, SLUICE_NAMESPACE};
use e2e::{ControlPlane, Kubectl, KubectlError};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::ByteString;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio::process::{Child, Command};

/// How long the API server may take to start calling a newly registered webhook.
const REGISTER_BOUND: Duration = Duration::from_secs(20);

/// A test CA and a serving certificate for 127.0.0.1 signed by it: (CA PEM, cert path, key path).
fn pki(dir: &Path) -> (String, PathBuf, PathBuf) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    ca.distinguished_name.push(DnType::CommonName, "sluice webhook test CA");
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().signed_by(&key, &issuer).unwrap();
    let (cert_path, key_path) = (dir.join("webhook.crt"), dir.join("webhook.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (ca_pem, cert_path, key_path)
}

/// Waits for the controller's JSON log line saying where `what` listens.
async fn bound_address(log: &Path, what: &str) -> String {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            if v["fields"]["what"] == what {
                return v["fields"]["bound"].as_str().unwrap_or_default().to_string();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the controller did not report {what}; log:\n{}", std::fs::read_to_string(log).unwrap_or_default());
}

/// The shipped ValidatingWebhookConfiguration, pointed at `url` with `ca_pem` and failurePolicy Fail.
fn registration(url: &str, ca_pem: &str) -> String {
    let text = std::fs::read_to_string(repo().join("manifests/webhook/50-admission-webhook.yaml")).unwrap();
    let doc = text
        .split("\n---\n")
        .find(|d| d.contains("kind: ValidatingWebhookConfiguration"))
        .expect("the webhook manifest has a ValidatingWebhookConfiguration");
    let mut config: ValidatingWebhookConfiguration = serde_yaml_ng::from_str(doc).unwrap();
    for hook in config.webhooks.iter_mut().flatten() {
        assert_eq!(hook.failure_policy.as_deref(), Some("Ignore"), "the shipped policy is documented as Ignore");
        hook.failure_policy = Some("Fail".into());
        hook.client_config.service = None;
        hook.client_config.url = Some(url.to_string());
        hook.client_config.ca_bundle = Some(ByteString(ca_pem.as_bytes().to_vec()));
    }
    let mut value = serde_json::to_value(&config).unwrap();
    value["apiVersion"] = "admissionregistration.k8s.io/v1".into();
    value["kind"] = "ValidatingWebhookConfiguration".into();
    value.to_string()
}

struct Setup {
    _controller: Child,
    kubectl: Kubectl,
    log: PathBuf,
    _cp: ControlPlane,
    _dir: tempfile::TempDir,
}

impl Setup {
    /// Control plane + install manifests + the controller with its webhook, registered and answering.
    async fn start() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let cp = ControlPlane::start().await.unwrap_or_else(|e| panic!("starting the control plane: {e}"));
        let kubectl = Kubectl::new(cp.kubeconfig(), dir.path()).expect("kubectl is required by the e2e tests");
        install_manifests(&kubectl).await.unwrap_or_else(|e| panic!("installing the manifests: {e}"));
        let token = service_account_token(&kubectl).await.unwrap_or_else(|e| panic!("{e}"));
        let kubeconfig = dir.path().join("controller.kubeconfig");
        cp.write_kubeconfig(&kubeconfig, Some(&token)).unwrap();
        let (ca_pem, cert, key) = pki(dir.path());
        let log = dir.path().join("controller.log");
        let controller = Command::new(support::bin_dir().join("sluice-controller"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            // No proxy: pushes fail and are retried; the webhook does not depend on them.
            .arg(format!("--kong-admin-url=unix://{}", dir.path().join("no-proxy.sock").display()))
            .args([
                "--metrics-bind-address=127.0.0.1:0",
                "--health-probe-bind-address=127.0.0.1:0",
                "--admission-webhook-listen=127.0.0.1:0",
                "--log-format=json",
            ])
            .arg("--admission-webhook-cert-file")
            .arg(&cert)
            .arg("--admission-webhook-key-file")
            .arg(&key)
            .arg(format!("--election-namespace={SLUICE_NAMESPACE}"))
            .arg(format!("--election-id={ELECTION_ID}"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .kill_on_drop(true)
            .spawn()
            .expect("start sluice-controller");
        let addr = bound_address(&log, "--admission-webhook-listen").await;
        let url = format!("https://{addr}/validate");
        kubectl.apply(&registration(&url, &ca_pem), &[]).await.unwrap_or_else(|e| panic!("{e}"));
        let setup = Setup { _controller: controller, kubectl, log, _cp: cp, _dir: dir };
        setup.wait_until_called().await;
        setup
    }

    /// The API server loads webhook configurations asynchronously: retry a server-side dry run of a
    /// bad plugin until it is refused by the webhook.
    async fn wait_until_called(&self) {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < REGISTER_BOUND {
            match self.kubectl.apply(BAD_PLUGIN, &["--dry-run=server"]).await {
                Err(e) if e.to_string().contains("denied the request") => return,
                other => last = format!("{other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the webhook was not called within {REGISTER_BOUND:?}: {last}\nlog:\n{}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kubectl apply` that must be refused; returns kubectl's error output.
    async fn refused(&self, yaml: &str) -> String {
        match self.kubectl.apply(yaml, &[]).await {
            Err(KubectlError::Failed { stderr, .. }) => stderr,
            other => panic!("expected a refusal, got {other:?}\nlog:\n{}", self.log()),
        }
    }

    async fn admitted(&self, yaml: &str) {
        if let Err(e) = self.kubectl.apply(yaml, &[]).await {
            panic!("expected the object to be admitted: {e}\nlog:\n{}", self.log());
        }
    }
}

const BAD_PLUGIN: &str = "apiVersion: configuration.konghq.com/v1
kind: KongPlugin
metadata: {name: bad-plugin, namespace: default}
plugin: request-transformer
config: {add: {headers: ['x:1']}, bogus_field: 1}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_refuses_bad_objects_and_admits_good_ones() {
    let s = Setup::start().await;

    // KongPlugin: an unknown config field, an unknown plugin; a good one passes.
    let err = s.refused(BAD_PLUGIN).await;
    assert!(err.contains("denied the request") && err.contains("KongPlugin default/bad-plugin"), "{err}");
    assert!(err.contains("config.bogus_field"), "{err}");
    let err = s.refused(&BAD_PLUGIN.replace("request-transformer", "no-such-plugin")).await;
    assert!(err.contains("KongPlugin default/bad-plugin: plugin:"), "{err}");
    s.admitted(&BAD_PLUGIN.replace(", bogus_field: 1", "")).await;

    // configFrom: the Secret it names must exist (and be labelled so the controller reads it).
    let from_secret = "apiVersion: configuration.konghq.com/v1
kind: KongClusterPlugin
metadata: {name: from-secret}
plugin: request-termination
configFrom: {secretKeyRef: {name: term, namespace: default, key: config}}
";
    let err = s.refused(from_secret).await;
    assert!(err.contains("configFrom.secretKeyRef: Secret default/term not found"), "{err}");
    s.admitted(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: term, namespace: default, labels: {konghq.com/secret: 'true'}}\n\
         stringData: {config: '{\"status_code\": 418}'}\n",
    )
    .await;
    s.admitted(from_secret).await;

    // Annotations on an Ingress of our class and on a Service, through the translator's parser.
    let ingress = "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: default
  annotations: {konghq.com/strip-path: 'maybe'}
spec:
  ingressClassName: kong
  rules:
  - http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
";
    let err = s.refused(ingress).await;
    assert!(err.contains("Ingress default/web: metadata.annotations.konghq.com/strip-path"), "{err}");
    // Another controller's Ingress is not ours to judge.
    s.admitted(&ingress.replace("ingressClassName: kong", "ingressClassName: other")).await;
    s.admitted(&ingress.replace("'maybe'", "'true'")).await;
    let service = "apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
  annotations: {konghq.com/read-timeout: 'soon'}
spec:
  ports: [{port: 80}]
";
    let err = s.refused(service).await;
    assert!(err.contains("Service default/web: metadata.annotations.konghq.com/read-timeout"), "{err}");
    s.admitted(&service.replace("'soon'", "'5000'")).await;

    // Gateway API: a match sluice cannot express, a filter it does not implement.
    let route = "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: default}
spec:
  parentRefs: [{name: kong}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}, queryParams: [{name: q, value: '1'}]}]
    backendRefs: [{name: web, port: 80}]
";
    let err = s.refused(route).await;
    assert!(err.contains("HTTPRoute default/web: spec.rules[0].matches[0]"), "{err}");
    s.admitted(&route.replace(", queryParams: [{name: q, value: '1'}]", "")).await;
    let grpc = "apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: echo, namespace: default}
spec:
  parentRefs: [{name: kong}]
  rules:
  - filters: [{type: RequestMirror, requestMirror: {backendRef: {name: web, port: 80}}}]
    backendRefs: [{name: web, port: 80}]
";
    let err = s.refused(grpc).await;
    assert!(err.contains("GRPCRoute default/echo: spec.rules[0].filters[0]"), "{err}");
    let grpc = grpc.replace(
        "  - filters: [{type: RequestMirror, requestMirror: {backendRef: {name: web, port: 80}}}]\n    backendRefs",
        "  - backendRefs",
    );
    // A route annotation a GRPCRoute cannot honour, as translation reports it.
    let stripped =
        grpc.replace("namespace: default}", "namespace: default, annotations: {konghq.com/strip-path: 'true'}}");
    let err = s.refused(&stripped).await;
    assert!(err.contains("GRPCRoute default/echo: metadata.annotations.konghq.com/strip-path: dropped"), "{err}");
    s.admitted(&grpc).await;
}

/// The manifests' webhook add-on is accepted by the real API server as documented: the Deployment
/// patch, then the Service and the ValidatingWebhookConfiguration with the CA filled in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_manifests_apply_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start().await.unwrap_or_else(|e| panic!("starting the control plane: {e}"));
    let kubectl = Kubectl::new(cp.kubeconfig(), dir.path()).expect("kubectl");
    install_manifests(&kubectl).await.unwrap_or_else(|e| panic!("installing the manifests: {e}"));
    let root = repo();
    let patch = root.join("manifests/webhook/patches/deployment.yaml").display().to_string();
    let out = kubectl
        .ok(&["patch", "deployment", "sluice", "-n", "sluice", "--type", "json", "--patch-file", &patch, "-o", "json"])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let deployment: serde_json::Value = serde_json::from_str(&out).unwrap();
    let controller = &deployment["spec"]["template"]["spec"]["containers"][1];
    assert_eq!(controller["name"], "controller");
    // The patched arguments are real flags of sluice-controller, and turn the webhook on at :8080.
    let args = controller["args"].as_array().unwrap().iter().filter_map(|a| a.as_str());
    let settings =
        <controller::Settings as clap::Parser>::try_parse_from(std::iter::once("sluice-controller").chain(args))
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(settings.admission_webhook().unwrap().map(|a| a.port()), Some(8080));
    let mounts = controller["volumeMounts"].as_array().unwrap();
    let cert_dir = std::path::Path::new(controller::settings::DEFAULT_WEBHOOK_CERT).parent().unwrap();
    assert!(mounts.iter().any(|m| m["mountPath"] == cert_dir.to_str().unwrap()), "{mounts:?}");
    // As manifests/README.md: the CA put into `caBundle: ""` with sed, then applied.
    let file = std::fs::read_to_string(root.join("manifests/webhook/50-admission-webhook.yaml")).unwrap();
    assert_eq!(file.matches("caBundle: \"\"").count(), 1, "the README's sed expects one empty caBundle");
    let (ca_pem, _, _) = pki(dir.path());
    let base64 = serde_json::to_value(ByteString(ca_pem.clone().into_bytes())).unwrap();
    let filled = file.replace("caBundle: \"\"", &format!("caBundle: {}", base64.as_str().unwrap()));
    kubectl.apply(&filled, &[]).await.unwrap_or_else(|e| panic!("{e}"));
    let out = kubectl.ok(&["get", "validatingwebhookconfiguration", "sluice", "-o", "json"]).await.unwrap();
    let config: ValidatingWebhookConfiguration = serde_json::from_str(&out).unwrap();
    let hook = &config.webhooks.unwrap()[0];
    assert_eq!(hook.client_config.ca_bundle, Some(ByteString(ca_pem.into_bytes())));
    assert_eq!(hook.failure_policy.as_deref(), Some("Ignore"));
}
