//! `--manifests` mode end to end, in process: the sync loop pushes to a fake proxy, an edited file
//! is live within 2 s (with the default `--proxy-sync-seconds` of 3), a restarted proxy gets the
//! config again, entities the proxy rejects are left out of a fallback push, and an unavailable
//! proxy is retried.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use clap::Parser;
use controller::{app, Settings};
use support::FakeAdmin;
use tokio_util::sync::CancellationToken;

fn manifest(host: &str, ingress: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: {ingress}, namespace: default}}
spec:
  ingressClassName: kong
  rules:
  - host: {host}
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
"#
    )
}

fn settings(dir: &Path, admin: &FakeAdmin, extra: &[&str]) -> Settings {
    let mut args = vec![
        "sluice-controller".to_string(),
        "--manifests".into(),
        dir.display().to_string(),
        "--kong-admin-url".into(),
        admin.admin_url(),
        "--health-probe-bind-address".into(),
        "off".into(),
        "--metrics-bind-address".into(),
        "off".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Settings::try_parse_from(args).unwrap()
}

fn hosts(config: &proxy_config::Config) -> Vec<String> {
    config.services.iter().flat_map(|s| s.routes.iter().flat_map(|r| r.hosts.clone())).collect()
}

fn start(settings: Settings) -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move { app::run(settings, t).await.unwrap() });
    token
}

#[tokio::test]
async fn an_edited_file_is_live_within_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.yaml"), manifest("a.example.com", "web")).unwrap();
    let admin = FakeAdmin::start().await;
    let token = start(settings(dir.path(), &admin, &[]));
    let first = admin.wait_applied(1, Duration::from_secs(10)).await.expect("first push");
    assert_eq!(hosts(&first), vec!["a.example.com"]);

    let edited = Instant::now();
    std::fs::write(dir.path().join("app.yaml"), manifest("edited.example.com", "web")).unwrap();
    let second = admin.wait_applied(2, Duration::from_secs(2)).await.expect("edit not live within 2 s");
    assert_eq!(hosts(&second), vec!["edited.example.com"]);
    assert!(edited.elapsed() < Duration::from_secs(2));
    token.cancel();
}

#[tokio::test]
async fn a_restarted_proxy_gets_the_config_again() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.yaml"), manifest("a.example.com", "web")).unwrap();
    let admin = FakeAdmin::start().await;
    let token = start(settings(dir.path(), &admin, &["--proxy-sync-seconds", "0.05"]));
    let first = admin.wait_applied(1, Duration::from_secs(10)).await.expect("first push");
    let hash = admin.hash();
    admin.restart();
    let again = admin.wait_applied(2, Duration::from_secs(5)).await.expect("re-push after restart");
    assert_eq!(first, again);
    assert_eq!(admin.hash(), hash);
    token.cancel();
}

#[tokio::test]
async fn rejected_objects_are_left_out_of_a_fallback_push() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.yaml"), manifest("good.example.com", "good")).unwrap();
    std::fs::write(
        dir.path().join("broken.yaml"),
        manifest("broken.example.com", "broken").split("---").nth(1).unwrap(),
    )
    .unwrap();
    let admin = FakeAdmin::start().await;
    admin.reject_tag("k8s-name:broken");
    let token = start(settings(dir.path(), &admin, &["--proxy-sync-seconds", "0.05"]));
    let applied = admin.wait_applied(1, Duration::from_secs(10)).await.expect("fallback push");
    assert_eq!(hosts(&applied), vec!["good.example.com"]);
    let posted = admin.posted();
    assert!(hosts(&posted[0]).contains(&"broken.example.com".to_string()), "the full config is tried first");
    token.cancel();
}

#[tokio::test]
async fn an_unavailable_proxy_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.yaml"), manifest("a.example.com", "web")).unwrap();
    let admin = FakeAdmin::start().await;
    admin.set_unavailable(true);
    let token = start(settings(dir.path(), &admin, &["--proxy-sync-seconds", "0.05"]));
    assert!(admin.wait_applied(1, Duration::from_millis(300)).await.is_none());
    admin.set_unavailable(false);
    assert!(admin.wait_applied(1, Duration::from_secs(5)).await.is_some());
    token.cancel();
}
