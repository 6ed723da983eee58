//! The Grafana dashboard (`manifests/grafana/sluice-dashboard.json`) cannot rot: it is a well-formed
//! dashboard on a Prometheus data-source variable, and every metric name its queries use is in a
//! live `/metrics` scrape after traffic that touches every family.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use serde_json::Value;
use sluice_demo::hello::hello_service_client::HelloServiceClient;
use sluice_demo::hello::HelloRequest;
use sluice_demo::{spawn, BackendOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn dashboard() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests/grafana/sluice-dashboard.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every PromQL expression: panel targets (rows included) and templating queries.
fn expressions(d: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut panels: Vec<&Value> = d["panels"].as_array().unwrap().iter().collect();
    while let Some(p) = panels.pop() {
        panels.extend(p["panels"].as_array().into_iter().flatten());
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(t["expr"].as_str().unwrap_or_else(|| panic!("target without expr in {}", p["title"])).to_string());
        }
    }
    for v in d["templating"]["list"].as_array().unwrap() {
        match &v["query"] {
            Value::String(q) if v["type"] == "query" => out.push(q.clone()),
            Value::Object(o) => out.push(o["query"].as_str().unwrap().to_string()),
            _ => {}
        }
    }
    out
}

/// Metric names in PromQL: our two prefixes are the only ones the proxy exports.
fn metric_names(exprs: &[String]) -> BTreeSet<String> {
    let re = regex::Regex::new(r"\b(?:kong|sluice)_[a-z0-9_]+\b").unwrap();
    exprs.iter().flat_map(|e| re.find_iter(e).map(|m| m.as_str().to_string()).collect::<Vec<_>>()).collect()
}

#[test]
fn dashboard_is_well_formed() {
    let d = dashboard();
    assert_eq!(d["schemaVersion"], 39);
    assert_eq!(d["uid"], "sluice-proxy");
    let vars = d["templating"]["list"].as_array().unwrap();
    let ds = vars.iter().find(|v| v["name"] == "datasource").expect("a datasource variable");
    assert_eq!((&ds["type"], &ds["query"]), (&Value::from("datasource"), &Value::from("prometheus")));
    let mut ids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate panel id {}", p["id"]);
        titles.insert(p["title"].as_str().unwrap().to_string());
        for k in ["h", "w", "x", "y"] {
            assert!(p["gridPos"][k].is_u64(), "{} gridPos.{k}", p["title"]);
        }
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{} has no query", p["title"]);
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        }
    }
    // What the dashboard is for: each family the issue names has a panel querying it.
    let names = metric_names(&expressions(&d));
    for family in [
        "kong_http_requests_total",
        "kong_request_latency_ms_bucket",
        "kong_upstream_latency_ms_bucket",
        "kong_kong_latency_ms_bucket",
        "kong_bandwidth_bytes",
        "kong_upstream_target_health",
        "kong_nginx_connections_total",
        "kong_nginx_requests_total",
        "kong_node_info",
        "kong_data_plane_config_hash",
        "sluice_grpc_requests_total",
        "sluice_config_pushes_total",
        "sluice_tls_handshake_failures_total",
        "sluice_rejected_connections_total",
        "sluice_accepted_connections_total",
        "sluice_h2_resets_total",
    ] {
        assert!(names.contains(family), "no panel queries {family}: {names:?}");
    }
    // Quantiles come from the histograms, for p50 and p99.
    let exprs = expressions(&d).join("\n");
    assert!(exprs.contains("histogram_quantile(0.5,") && exprs.contains("histogram_quantile(0.99,"), "{exprs}");
}

#[tokio::test]
async fn every_metric_in_the_dashboard_is_exported() {
    let web = echo_http("web").await;
    let grpc = spawn(BackendOptions::named("g1")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2, 127.0.0.1:0 http2 ssl", &[]).await;
    p.push_ok(&format!(
        r#"_format_version: "3.0"
services:
- name: web
  host: web.upstream
  routes:
  - name: web
    paths: ["/"]
- name: grpc
  protocol: grpc
  host: {gh}
  port: {gp}
  routes:
  - name: grpc
    protocols: [grpc]
    paths: ["/hello.HelloService/"]
upstreams:
- name: web.upstream
  targets:
  - target: {web}
"#,
        gh = grpc.addr().ip(),
        gp = grpc.addr().port(),
        web = web.addr,
    ))
    .await;
    assert_eq!(h1(p.addr(0), get("/", "x")).await.status, 200);
    let reply = HelloServiceClient::new(grpc_channel(p.addr(0), "x").await)
        .say_hello(HelloRequest { greeting: "d".into() })
        .await
        .unwrap();
    assert_eq!(reply.into_inner().reply, "hello d");
    // Plain text on the TLS port: the handshake fails and the proxy closes the connection after
    // counting it, so EOF here means the counter is up.
    let mut s = tokio::net::TcpStream::connect(p.addr(1)).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await.unwrap().unwrap_or_default();

    let got = h1(p.status_addr(), get("/metrics", "x")).await;
    assert_eq!(got.status, 200);
    let exported: BTreeSet<&str> = got
        .body
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split(['{', ' ']).next().unwrap())
        .collect();
    let used = metric_names(&expressions(&dashboard()));
    let missing: Vec<&String> = used.iter().filter(|n| !exported.contains(n.as_str())).collect();
    assert!(missing.is_empty(), "dashboard queries metrics /metrics lacks: {missing:?}\n{}", got.body);
    assert!(used.len() >= 16, "{used:?}");
}
