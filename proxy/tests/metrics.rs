//! `/metrics` on the status listener after known traffic (HTTP 200 and 404, gRPC OK,
//! UNIMPLEMENTED and UNAVAILABLE): exact counter values and label sets, Kong's histogram buckets,
//! target health and connection states, a Prometheus text-format parse of every scrape, bounded
//! label cardinality, and `/metrics` on a proxy port being routed like any other path.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use sluice_demo::echo::echo_client::EchoClient;
use sluice_demo::echo::EchoRequest;
use sluice_demo::hello::hello_service_client::HelloServiceClient;
use sluice_demo::hello::HelloRequest;
use sluice_demo::{spawn, BackendOptions};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// Kong's `kong_kong_latency_ms` buckets.
const KONG_BUCKETS: &[f64] =
    &[1.0, 2.0, 5.0, 7.0, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0, 200.0, 500.0, 750.0, 1000.0, 3000.0, 6000.0];
/// Kong's `kong_upstream_latency_ms` and `kong_request_latency_ms` buckets.
const UPSTREAM_BUCKETS: &[f64] =
    &[25.0, 50.0, 80.0, 100.0, 250.0, 400.0, 700.0, 1000.0, 2000.0, 5000.0, 10000.0, 30000.0, 60000.0];

type Labels = BTreeMap<String, String>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// One scrape, parsed with `prometheus-parse` and checked line by line.
struct Scraped {
    text: String,
    /// Counters, gauges and the `_sum`/`_count` lines of histograms: name -> labels -> value.
    values: BTreeMap<String, BTreeMap<Labels, f64>>,
    /// Histograms: name -> labels (without `le`) -> (le, cumulative count) in exposition order.
    histograms: BTreeMap<String, BTreeMap<Labels, Vec<(f64, f64)>>>,
}

impl Scraped {
    fn series(&self, name: &str) -> BTreeMap<Labels, f64> {
        self.values.get(name).cloned().unwrap_or_default()
    }

    fn value(&self, name: &str, pairs: &[(&str, &str)]) -> f64 {
        self.get(name, &labels(pairs))
    }

    fn get(&self, name: &str, l: &Labels) -> f64 {
        let series = self.values.get(name).unwrap_or_else(|| panic!("no {name} in\n{}", self.text));
        *series.get(l).unwrap_or_else(|| panic!("no {name}{l:?} in\n{}", self.text))
    }

    /// Every series as `name{labels}`, values left out.
    fn keys(&self) -> BTreeSet<String> {
        let values = self.values.iter().flat_map(|(n, m)| m.keys().map(move |l| format!("{n}{l:?}")));
        let hists = self.histograms.iter().flat_map(|(n, m)| m.keys().map(move |l| format!("{n}_bucket{l:?}")));
        values.chain(hists).collect()
    }
}

/// GET /metrics on the status listener; the text must parse completely.
async fn scrape(addr: SocketAddr) -> Scraped {
    let got = h1(addr, get("/metrics", "status")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    parse(got.body)
}

fn parse(text: String) -> Scraped {
    let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    // prometheus-parse skips lines it cannot read instead of failing: account for every sample
    // line so that a malformed one fails here.
    let sample_lines = text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')).count();
    let mut values: BTreeMap<String, BTreeMap<Labels, f64>> = BTreeMap::new();
    let mut histograms: BTreeMap<String, BTreeMap<Labels, Vec<(f64, f64)>>> = BTreeMap::new();
    let mut accounted = 0;
    for s in parsed.samples {
        let l: Labels = s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let dup = match s.value {
            prometheus_parse::Value::Histogram(buckets) => {
                accounted += buckets.len();
                let b = buckets.iter().map(|b| (b.less_than, b.count)).collect();
                histograms.entry(s.metric.clone()).or_default().insert(l.clone(), b)
            }
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => {
                accounted += 1;
                values.entry(s.metric.clone()).or_default().insert(l.clone(), v).map(|_| Vec::new())
            }
            prometheus_parse::Value::Summary(_) => panic!("no summaries are exported: {}", s.metric),
        };
        assert!(dup.is_none(), "series {}{l:?} appears twice", s.metric);
    }
    assert_eq!(accounted, sample_lines, "some sample lines did not parse:\n{text}");
    // Every family has exactly one HELP and one TYPE line.
    let mut types = BTreeMap::new();
    for l in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = l.split_whitespace().nth(2).unwrap().to_string();
        assert!(types.insert(name, ()).is_none(), "two TYPE lines: {l}");
    }
    let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
    assert_eq!(helps, types.len(), "HELP/TYPE mismatch:\n{text}");
    Scraped { text, values, histograms }
}

#[test]
#[should_panic(expected = "some sample lines did not parse")]
fn a_malformed_line_fails_the_parse() {
    // An unclosed label set: prometheus-parse skips the line, the accounting catches it.
    parse("# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\" 1\n".to_string());
}

#[test]
fn a_well_formed_text_parses() {
    let m = parse("# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n".to_string());
    assert_eq!(m.value("a_total", &[("x", "1")]), 3.0);
}

fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// web (HTTP, through upstream `web.upstream`), grpc (hello service, direct host) and down
/// (echo service, through upstream `down.upstream` whose only target refuses connections).
fn config(web: SocketAddr, grpc: SocketAddr, down: SocketAddr) -> String {
    format!(
        r#"_format_version: "3.0"
services:
- name: web
  protocol: http
  host: web.upstream
  port: 80
  routes:
  - name: web
    paths: ["/web"]
- name: grpc
  protocol: grpc
  host: {gh}
  port: {gp}
  routes:
  - name: grpc
    protocols: [grpc, grpcs]
    paths: ["/hello.HelloService/"]
- name: down
  protocol: grpc
  host: down.upstream
  port: 80
  routes:
  - name: down
    protocols: [grpc, grpcs]
    paths: ["/echo.Echo/"]
upstreams:
- name: web.upstream
  targets:
  - target: {web}
- name: down.upstream
  targets:
  - target: {down}
"#,
        gh = grpc.ip(),
        gp = grpc.port(),
    )
}

fn http_requests(service: &str, route: &str, code: &str, source: &str) -> Labels {
    labels(&[
        ("service", service),
        ("route", route),
        ("code", code),
        ("source", source),
        ("workspace", "default"),
        ("consumer", ""),
    ])
}

fn grpc_requests(service: &str, route: &str, grpc_service: &str, method: &str, status: &str) -> Labels {
    labels(&[
        ("service", service),
        ("route", route),
        ("grpc_service", grpc_service),
        ("grpc_method", method),
        ("grpc_status", status),
        ("client_protocol", "grpc"),
    ])
}

fn route_labels(service: &str, route: &str) -> Labels {
    labels(&[("service", service), ("route", route), ("workspace", "default")])
}

fn bandwidth(service: &str, route: &str, direction: &str) -> Labels {
    labels(&[
        ("service", service),
        ("route", route),
        ("direction", direction),
        ("workspace", "default"),
        ("consumer", ""),
    ])
}

fn target_health(upstream: &str, target: &str, current: &str) -> BTreeMap<Labels, f64> {
    ["healthchecks_off", "healthy", "unhealthy", "dns_error"]
        .into_iter()
        .map(|state| {
            let l = labels(&[
                ("upstream", upstream),
                ("target", target),
                ("address", target),
                ("state", state),
                ("subsystem", "http"),
            ]);
            (l, if state == current { 1.0 } else { 0.0 })
        })
        .collect()
}

/// Scrapes until every connection but the scrape's own has closed and no request is in flight
/// (every finished request is recorded); also returns how many scrapes that took.
async fn scrape_when_idle(status: SocketAddr) -> (Scraped, usize) {
    let mut scrapes = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = scrape(status).await;
        scrapes += 1;
        let state =
            |s: &str| m.series("kong_nginx_connections_total").iter().find(|(l, _)| l["state"] == s).map(|(_, v)| *v);
        if state("active") == Some(1.0) && state("writing") == Some(0.0) {
            return (m, scrapes);
        }
        assert!(tokio::time::Instant::now() < deadline, "connections never drained:\n{}", m.text);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn known_traffic_gives_exact_series() {
    let web = echo_http("web").await;
    let grpc = spawn(BackendOptions::named("g1")).await.unwrap();
    let down = closed_port();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    p.push_ok(&config(web.addr, grpc.addr(), down)).await;

    // HTTP 200 from the upstream, HTTP 404 from the proxy.
    let ok = h1(p.addr(0), get("/web/x", "example.com")).await;
    assert_eq!(ok.status, 200);
    assert_eq!(h1(p.addr(0), get("/nothing", "example.com")).await.status, 404);
    // gRPC OK, UNIMPLEMENTED (no route) and UNAVAILABLE (the target refuses), on one connection.
    let channel = grpc_channel(p.addr(0), "example.com").await;
    let reply = HelloServiceClient::new(channel.clone()).say_hello(HelloRequest { greeting: "x".into() }).await;
    assert_eq!(reply.unwrap().into_inner().reply, "hello x");
    let err = HealthClient::new(channel.clone()).check(HealthCheckRequest { service: String::new() }).await;
    assert_eq!(err.unwrap_err().code(), tonic::Code::Unimplemented);
    let err = EchoClient::new(channel.clone()).echo(EchoRequest { message: "m".into(), payload: vec![] }).await;
    assert_eq!(err.unwrap_err().code(), tonic::Code::Unavailable);
    drop(channel);

    let (m, scrapes) = scrape_when_idle(p.status_addr()).await;

    let mut expected = BTreeMap::new();
    expected.insert(http_requests("web", "web", "200", "service"), 1.0);
    expected.insert(http_requests("", "", "404", "kong"), 1.0);
    expected.insert(http_requests("grpc", "grpc", "200", "service"), 1.0);
    // gRPC errors are HTTP 200 (trailers-only): Kong's code label cannot tell them apart.
    expected.insert(http_requests("", "", "200", "kong"), 1.0);
    expected.insert(http_requests("down", "down", "200", "kong"), 1.0);
    // Each route's most common series is created with the config.
    expected.insert(http_requests("down", "down", "200", "service"), 0.0);
    assert_eq!(m.series("kong_http_requests_total"), expected, "{}", m.text);

    let mut expected = BTreeMap::new();
    expected.insert(grpc_requests("grpc", "grpc", "hello.HelloService", "SayHello", "0"), 1.0);
    expected.insert(grpc_requests("", "", "", "", "12"), 1.0);
    expected.insert(grpc_requests("down", "down", "echo.Echo", "Echo", "14"), 1.0);
    assert_eq!(m.series("sluice_grpc_requests_total"), expected, "{}", m.text);

    assert_eq!(m.value("kong_nginx_requests_total", &[("node_id", &node_id(&m)), ("subsystem", "http")]), 5.0);

    // Histograms: one series per route, Kong's buckets, one observation per routed request.
    for (name, buckets) in [
        ("kong_kong_latency_ms", KONG_BUCKETS),
        ("kong_upstream_latency_ms", UPSTREAM_BUCKETS),
        ("kong_request_latency_ms", UPSTREAM_BUCKETS),
    ] {
        let h = &m.histograms[name];
        let routes: BTreeSet<Labels> = h.keys().cloned().collect();
        let want: BTreeSet<Labels> =
            [route_labels("web", "web"), route_labels("grpc", "grpc"), route_labels("down", "down")].into();
        assert_eq!(routes, want, "{name}");
        for (l, b) in h {
            let les: Vec<f64> = b.iter().map(|(le, _)| *le).collect();
            let mut want = buckets.to_vec();
            want.push(f64::INFINITY);
            assert_eq!(les, want, "{name}{l:?}");
            // The +Inf bucket equals _count.
            assert_eq!(b.last().unwrap().1, m.get(&format!("{name}_count"), l), "{name}{l:?}");
        }
    }
    let count = |name: &str, route: &str| m.get(&format!("{name}_count"), &route_labels(route, route));
    for route in ["web", "grpc", "down"] {
        assert_eq!(count("kong_request_latency_ms", route), 1.0, "{route}");
        assert_eq!(count("kong_kong_latency_ms", route), 1.0, "{route}");
    }
    // The refused call never got an upstream response.
    assert_eq!(count("kong_upstream_latency_ms", "web"), 1.0);
    assert_eq!(count("kong_upstream_latency_ms", "grpc"), 1.0);
    assert_eq!(count("kong_upstream_latency_ms", "down"), 0.0);

    // Bandwidth: request and response body bytes (gRPC: 5-byte frame header + message).
    let mut expected = BTreeMap::new();
    expected.insert(bandwidth("web", "web", "ingress"), 0.0);
    expected.insert(bandwidth("web", "web", "egress"), ok.body.len() as f64);
    expected.insert(bandwidth("grpc", "grpc", "ingress"), 8.0);
    expected.insert(bandwidth("grpc", "grpc", "egress"), 14.0);
    expected.insert(bandwidth("down", "down", "ingress"), 0.0);
    expected.insert(bandwidth("down", "down", "egress"), 0.0);
    assert_eq!(m.series("kong_bandwidth_bytes"), expected, "{}", m.text);

    // Target health: the echo target answered, the closed port opened its circuit.
    let mut expected = target_health("web.upstream", &web.addr.to_string(), "healthy");
    expected.extend(target_health("down.upstream", &down.to_string(), "unhealthy"));
    assert_eq!(m.series("kong_upstream_target_health"), expected, "{}", m.text);

    // Connections: 2 HTTP/1.1 + 1 gRPC channel + the scrapes, all served; 5 requests.
    let node = node_id(&m);
    let conn = |state: &str| labels(&[("node_id", &node), ("subsystem", "http"), ("state", state)]);
    let accepted = 3.0 + scrapes as f64;
    let expected: BTreeMap<Labels, f64> = [
        (conn("accepted"), accepted),
        (conn("handled"), accepted),
        (conn("total"), 5.0),
        (conn("active"), 1.0),
        (conn("reading"), 0.0),
        (conn("writing"), 0.0),
        (conn("waiting"), 1.0),
    ]
    .into();
    assert_eq!(m.series("kong_nginx_connections_total"), expected, "{}", m.text);
    assert_eq!(m.value("sluice_accepted_connections_total", &[]), accepted);

    // Config pushes, rejections and node info.
    let pushes: BTreeMap<Labels, f64> = [
        (labels(&[("result", "accepted")]), 1.0),
        (labels(&[("result", "rejected")]), 0.0),
        (labels(&[("result", "unchanged")]), 0.0),
    ]
    .into();
    assert_eq!(m.series("sluice_config_pushes_total"), pushes);
    let rejected: BTreeMap<Labels, f64> = [
        (labels(&[("reason", "handshake_timeout")]), 0.0),
        (labels(&[("reason", "listener_limit")]), 0.0),
        (labels(&[("reason", "proxy_protocol")]), 0.0),
    ]
    .into();
    assert_eq!(m.series("sluice_rejected_connections_total"), rejected);
    assert_eq!(m.series("sluice_h2_resets_total"), [(labels(&[("reason", "rapid_reset")]), 0.0)].into());
    assert_eq!(m.value("kong_node_info", &[("node_id", &node), ("version", env!("CARGO_PKG_VERSION"))]), 1.0);
    let hash = p.running().state.hash();
    let expected_hash = u64::from_str_radix(&hash[..13], 16).unwrap() as f64;
    assert_eq!(m.value("kong_data_plane_config_hash", &[("node_id", &node)]), expected_hash);
}

fn node_id(m: &Scraped) -> String {
    let info = m.series("kong_node_info");
    assert_eq!(info.len(), 1, "{}", m.text);
    info.keys().next().unwrap()["node_id"].clone()
}

#[tokio::test]
async fn metrics_path_on_a_proxy_port_is_routed_like_any_path() {
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    let web = echo_http("web").await;
    p.push_ok(&format!(
        "_format_version: '3.0'\nservices:\n- name: web\n  host: {}\n  port: {}\n  routes:\n  - name: web\n    paths: ['/web']\n",
        web.addr.ip(),
        web.addr.port()
    ))
    .await;
    let got = h1(p.addr(0), get("/metrics", "example.com")).await;
    assert_eq!(got.status, 404);
    assert_eq!(got.body, r#"{"message":"no Route matched with those values"}"#);
    let got = h2c(p.addr(0), get("/metrics", "example.com")).await.unwrap();
    assert_eq!(got.status, 404);
    assert_eq!(got.body, r#"{"message":"no Route matched with those values"}"#);

    let m = scrape(p.status_addr()).await;
    assert!(!m.text.contains("/metrics"), "a request path became a label:\n{}", m.text);
    let mut expected = BTreeMap::new();
    expected.insert(http_requests("", "", "404", "kong"), 2.0);
    // A route's series appear with its first request (as in Kong), so `web` has none yet.
    assert_eq!(m.series("kong_http_requests_total"), expected, "{}", m.text);
    // The status listener answers nothing but its own paths.
    assert_eq!(h1(p.status_addr(), get("/web", "example.com")).await.status, 404);
}

/// xorshift64: deterministic "random" paths without a dependency.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[tokio::test]
async fn random_unrouted_paths_add_no_series() {
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    let grpc = spawn(BackendOptions::named("g1")).await.unwrap();
    p.push_ok(&format!(
        "_format_version: '3.0'\nservices:\n- name: g\n  protocol: grpc\n  host: {}\n  port: {}\n  routes:\n  - name: g\n    protocols: [grpc]\n    paths: ['/hello.HelloService/']\n",
        grpc.addr().ip(),
        grpc.addr().port()
    ))
    .await;
    // One unrouted request of each kind creates the bounded series.
    let stream = tokio::net::TcpStream::connect(p.addr(0)).await.unwrap();
    let (mut h1c, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let channel = grpc_channel(p.addr(0), "example.com").await;
    let mut health = HealthClient::new(channel.clone());
    let unrouted_grpc = |s: String| HealthCheckRequest { service: s };
    h1c.ready().await.unwrap();
    let resp = h1c.send_request(get("/first", "a.example")).await.unwrap();
    assert_eq!(resp.status(), 404);
    resp.into_body().collect().await.unwrap();
    health.check(unrouted_grpc(String::new())).await.unwrap_err();
    let before = scrape(p.status_addr()).await;

    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..500 {
        let path = format!("/{:x}/{:x}?q={i}", next(&mut seed), next(&mut seed));
        let host = format!("h{:x}.example", next(&mut seed) % 1000);
        let method = ["GET", "POST", "DELETE", "PATCH"][i % 4];
        let req = Request::builder().method(method).uri(&path).header("host", host).body(Full::new(Bytes::new()));
        h1c.ready().await.unwrap();
        let resp = h1c.send_request(req.unwrap()).await.unwrap();
        assert_eq!(resp.status(), 404, "{path}");
        resp.into_body().collect().await.unwrap();
    }
    // Unrouted gRPC calls with random service/method paths, through a raw h2 client.
    let stream = tokio::net::TcpStream::connect(p.addr(0)).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    for _ in 0..100 {
        let path = format!("/pkg{:x}.Svc/M{:x}", next(&mut seed), next(&mut seed));
        let req = Request::builder()
            .method("POST")
            .uri(format!("http://example.com{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
            .unwrap();
        let resp = h2.send_request(req).await.unwrap();
        assert_eq!(resp.headers()["grpc-status"], "12", "{path}");
        resp.into_body().collect().await.unwrap();
    }
    health.check(unrouted_grpc("x".into())).await.unwrap_err();

    let after = scrape(p.status_addr()).await;
    assert_eq!(before.keys(), after.keys(), "new series appeared:\n{}", after.text);
    assert_eq!(after.get("kong_http_requests_total", &http_requests("", "", "404", "kong")), 501.0);
    assert_eq!(after.get("sluice_grpc_requests_total", &grpc_requests("", "", "", "", "12")), 102.0);
    assert!(!after.text.contains("pkg") && !after.text.contains(".example"), "{}", after.text);
}

#[tokio::test]
async fn tls_handshake_failures_are_counted_per_listener() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let p = TestProxy::start("127.0.0.1:0 http2, 127.0.0.1:0 http2 ssl", &[]).await;
    for _ in 0..2 {
        // Plain text on the TLS port: the proxy counts the failure, then closes (EOF here).
        let mut s = tokio::net::TcpStream::connect(p.addr(1)).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await.unwrap().unwrap_or_default();
    }
    // A plaintext port never counts as a TLS failure.
    assert_eq!(h1(p.addr(0), get("/", "x")).await.status, 404);
    let m = scrape(p.status_addr()).await;
    // The listener label is the KONG_PROXY_LISTEN entry as configured (stable across restarts).
    let expected: BTreeMap<Labels, f64> = [(labels(&[("listener", "127.0.0.1:0 ssl http2")]), 2.0)].into();
    assert_eq!(m.series("sluice_tls_handshake_failures_total"), expected, "{}", m.text);
}

/// Kong's prometheus plugin: once configured its flags are exact per route (a global instance
/// with status codes only, the grpc route's own instance with latency and bandwidth only), the
/// consumer label stays empty with `per_consumer` (no consumer authenticated), and target health is
/// exported only when an instance asks for it.
#[tokio::test]
async fn prometheus_plugin_flags_choose_the_families() {
    let web = echo_http("web").await;
    let grpc = spawn(BackendOptions::named("g1")).await.unwrap();
    let down = closed_port();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    let plugins = |global: &str| {
        format!(
            "{}plugins:\n- name: prometheus\n  config: {{{global}}}\n- name: prometheus\n  route: grpc\n  config: {{latency_metrics: true, bandwidth_metrics: true}}\n",
            config(web.addr, grpc.addr(), down)
        )
    };
    p.push_ok(&plugins("status_code_metrics: true, per_consumer: true")).await;

    assert_eq!(h1(p.addr(0), get("/web/x", "example.com")).await.status, 200);
    assert_eq!(h1(p.addr(0), get("/nothing", "example.com")).await.status, 404);
    let channel = grpc_channel(p.addr(0), "example.com").await;
    let reply = HelloServiceClient::new(channel.clone()).say_hello(HelloRequest { greeting: "x".into() }).await;
    assert_eq!(reply.unwrap().into_inner().reply, "hello x");
    drop(channel);
    let (m, _) = scrape_when_idle(p.status_addr()).await;

    // Status codes: the global instance's routes and unrouted requests; not the grpc route.
    let expected: BTreeMap<Labels, f64> =
        [(http_requests("web", "web", "200", "service"), 1.0), (http_requests("", "", "404", "kong"), 1.0)].into();
    assert_eq!(m.series("kong_http_requests_total"), expected, "{}", m.text);
    assert!(m.series("sluice_grpc_requests_total").is_empty(), "{}", m.text);
    // Latency and bandwidth: only the grpc route.
    for name in ["kong_kong_latency_ms", "kong_upstream_latency_ms", "kong_request_latency_ms"] {
        let routes: Vec<Labels> = m.histograms.get(name).map(|h| h.keys().cloned().collect()).unwrap_or_default();
        assert_eq!(routes, [route_labels("grpc", "grpc")], "{name}\n{}", m.text);
    }
    let expected: BTreeMap<Labels, f64> =
        [(bandwidth("grpc", "grpc", "ingress"), 8.0), (bandwidth("grpc", "grpc", "egress"), 14.0)].into();
    assert_eq!(m.series("kong_bandwidth_bytes"), expected, "{}", m.text);
    // No instance asks for target health; node-level families stay.
    assert!(m.series("kong_upstream_target_health").is_empty(), "{}", m.text);
    assert_eq!(m.value("kong_nginx_requests_total", &[("node_id", &node_id(&m)), ("subsystem", "http")]), 3.0);

    // upstream_health_metrics on the global instance: target health is back; nothing else moved.
    p.push_ok(&plugins("upstream_health_metrics: true")).await;
    let (m2, _) = scrape_when_idle(p.status_addr()).await;
    let mut expected = target_health("web.upstream", &web.addr.to_string(), "healthy");
    expected.extend(target_health("down.upstream", &down.to_string(), "healthy"));
    assert_eq!(m2.series("kong_upstream_target_health"), expected, "{}", m2.text);
    assert_eq!(h1(p.addr(0), get("/nothing", "example.com")).await.status, 404);
    let (m3, _) = scrape_when_idle(p.status_addr()).await;
    assert_eq!(m3.series("kong_http_requests_total"), m.series("kong_http_requests_total"), "status codes now off");
}
