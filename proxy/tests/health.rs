//! Upstream target health against real tonic backends whose `grpc.health.v1.Health` service
//! (tonic-health) flips between SERVING and NOT_SERVING and whose Echo service can be told to
//! answer UNAVAILABLE: active gRPC probes take a target out and bring it back, with no failed call
//! while another target is healthy; passive checks eject a target answering UNAVAILABLE; every
//! target down gives gRPC UNAVAILABLE; `/metrics` and `/status/upstreams/{u}/health` show each
//! state; probes survive config swaps and stop for removed targets. Probes of `http`, `https`
//! (with `https_sni` and `https_verify_certificate`) and `tcp` type against HTTP/1.1 targets do
//! the same for those kinds, and the backend sees the probe's headers.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::grpc_backends::Backend;
use common::upstream::{read_until, reply, Upstream};
use common::*;
use sluice_demo::echo::echo_client::EchoClient;
use sluice_demo::echo::EchoRequest;
use tokio::time::Instant;
use tonic::{Code, Status};

const INTERVAL: f64 = 0.2;
const FAILURES: u32 = 2;
const SUCCESSES: u32 = 2;

/// A gRPC service over upstream `u` with the given targets and `healthchecks` (YAML flow map).
fn config(targets: &[SocketAddr], healthchecks: &str) -> String {
    let targets: String = targets.iter().map(|t| format!("  - target: {t}\n")).collect();
    format!(
        "_format_version: '3.0'\nupstreams:\n- name: u\n  healthchecks: {healthchecks}\n  targets:\n{targets}\
         services:\n- name: g\n  protocol: grpc\n  host: u\n  port: 80\n  retries: 0\n  routes:\n  - name: g\n    \
         protocols: [grpc]\n    paths: ['/']\n"
    )
}

fn grpc_active() -> String {
    format!(
        "{{active: {{type: grpc, timeout: 1, healthy: {{interval: {INTERVAL}, successes: {SUCCESSES}}}, \
         unhealthy: {{interval: {INTERVAL}, http_failures: {FAILURES}, tcp_failures: 1, timeouts: 1}}}}}}"
    )
}

async fn proxy_with(config: &str) -> TestProxy {
    let proxy = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    proxy.push_ok(config).await;
    proxy
}

async fn echo(client: &mut EchoClient<tonic::transport::Channel>) -> Result<String, Status> {
    client.echo(EchoRequest { message: "hi".into(), ..Default::default() }).await.map(|r| r.into_inner().backend)
}

/// Kong's `GET /upstreams/u/health` states on the status listener, by target.
async fn health_states(proxy: &TestProxy) -> Vec<(String, String)> {
    let got = h1(proxy.status_addr(), get("/status/upstreams/u/health", "localhost")).await;
    assert_eq!(got.status, 200, "{}", got.body);
    let v: serde_json::Value = serde_json::from_str(&got.body).unwrap();
    let mut out: Vec<(String, String)> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["target"].as_str().unwrap().to_string(), t["health"].as_str().unwrap().to_string()))
        .collect();
    out.sort();
    out
}

/// The `kong_upstream_target_health` state set to 1 for `target`.
async fn metric_state(proxy: &TestProxy, target: SocketAddr) -> String {
    let got = h1(proxy.status_addr(), get("/metrics", "localhost")).await;
    let text = got.body;
    let prefix = format!("kong_upstream_target_health{{address=\"{target}\",");
    text.lines()
        .filter(|l| l.starts_with(&prefix) && l.ends_with(" 1"))
        .find_map(|l| l.split("state=\"").nth(1)?.split('"').next().map(str::to_string))
        .unwrap_or_else(|| panic!("no health series for {target}:\n{text}"))
}

/// Waits until `/status/upstreams/u/health` says `state` for `target`; returns how long it took.
async fn wait_state(proxy: &TestProxy, target: SocketAddr, state: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let states = health_states(proxy).await;
        if states.iter().any(|(t, s)| t == &target.to_string() && s == state) {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "{target} not {state} within {within:?}: {states:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How long a state change may take: `interval × threshold`, plus one interval for the probe in
/// flight when the backend flipped, plus scheduling slack on a loaded machine.
fn flip_budget(threshold: u32) -> Duration {
    Duration::from_secs_f64(INTERVAL * f64::from(threshold + 1)) + Duration::from_millis(700)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_probes_take_a_not_serving_target_out_and_bring_it_back_without_failed_calls() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let proxy = proxy_with(&config(&[a.addr, b.addr], &grpc_active())).await;
    let mut client = EchoClient::new(grpc_channel(proxy.addr(0), "localhost").await);
    wait_state(&proxy, a.addr, "HEALTHY", Duration::from_secs(2)).await;
    assert_eq!(metric_state(&proxy, a.addr).await, "healthy");

    // Load runs through the whole flip; not one call may fail while b is healthy.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let mut client = client.clone();
        tokio::spawn(async move {
            let mut ok = 0usize;
            while !stop.load(Ordering::SeqCst) {
                echo(&mut client).await.expect("no call fails while another target is healthy");
                ok += 1;
            }
            ok
        })
    };
    a.serving(false).await;
    let took = wait_state(&proxy, a.addr, "UNHEALTHY", flip_budget(FAILURES)).await;
    assert_eq!(metric_state(&proxy, a.addr).await, "unhealthy");
    // Out of rotation: no call reaches a (one may have been in flight at the flip).
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = a.calls();
    for _ in 0..50 {
        assert_eq!(echo(&mut client).await.unwrap(), "b");
    }
    assert!(a.calls() <= before + 1, "traffic still reaches the unhealthy target");

    a.serving(true).await;
    wait_state(&proxy, a.addr, "HEALTHY", flip_budget(SUCCESSES)).await;
    assert_eq!(metric_state(&proxy, a.addr).await, "healthy");
    let mut seen_a = false;
    for _ in 0..20 {
        seen_a |= echo(&mut client).await.unwrap() == "a";
    }
    assert!(seen_a, "the recovered target is back in rotation");
    stop.store(true, Ordering::SeqCst);
    let ok = load.await.unwrap();
    assert!(ok > 0);
    eprintln!("unhealthy after {took:?}; {ok} calls under load, none failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_checks_eject_a_target_answering_unavailable() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    a.behaviour.unavailable.store(true, Ordering::SeqCst);
    let passive = "{passive: {unhealthy: {http_failures: 1}}}";
    let proxy = proxy_with(&config(&[a.addr, b.addr], passive)).await;
    let mut client = EchoClient::new(grpc_channel(proxy.addr(0), "localhost").await);
    // Round-robin: within two calls one reaches a and is answered UNAVAILABLE (passed through).
    let mut failed = 0;
    for _ in 0..2 {
        if let Err(s) = echo(&mut client).await {
            assert_eq!(s.code(), Code::Unavailable);
            failed += 1;
        }
    }
    assert_eq!(failed, 1);
    assert_eq!(a.calls(), 1);
    wait_state(&proxy, a.addr, "UNHEALTHY", Duration::from_secs(1)).await;
    assert_eq!(metric_state(&proxy, a.addr).await, "unhealthy");
    for _ in 0..50 {
        assert_eq!(echo(&mut client).await.unwrap(), "b");
    }
    assert_eq!(a.calls(), 1, "the ejected target gets no traffic");
    // b answered OK every time: it stays in.
    assert_eq!(health_states(&proxy).await.iter().filter(|(_, s)| s == "HEALTHY").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_target_unhealthy_is_grpc_unavailable_naming_the_balancer() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    a.serving(false).await;
    b.serving(false).await;
    let proxy = proxy_with(&config(&[a.addr, b.addr], &grpc_active())).await;
    wait_state(&proxy, a.addr, "UNHEALTHY", flip_budget(FAILURES)).await;
    wait_state(&proxy, b.addr, "UNHEALTHY", flip_budget(FAILURES)).await;
    let mut client = EchoClient::new(grpc_channel(proxy.addr(0), "localhost").await);
    let err = echo(&mut client).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(err.message(), "failure to get a peer from the ring-balancer");
    assert_eq!(a.calls() + b.calls(), 0);
    // /status lists the upstream's targets by state.
    let got = h1(proxy.status_addr(), get("/status", "localhost")).await;
    let v: serde_json::Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(v["upstreams"]["u"][a.addr.to_string()], "UNHEALTHY", "{v}");
    assert_eq!(v["upstreams"]["u"][b.addr.to_string()], "UNHEALTHY", "{v}");
    // Back when one recovers.
    b.serving(true).await;
    wait_state(&proxy, b.addr, "HEALTHY", flip_budget(SUCCESSES)).await;
    assert_eq!(echo(&mut client).await.unwrap(), "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_survive_config_swaps_and_stop_for_removed_targets() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    a.serving(false).await;
    let proxy = proxy_with(&config(&[a.addr, b.addr], &grpc_active())).await;
    assert_eq!(proxy.running().state.probed_targets(), 2);
    wait_state(&proxy, a.addr, "UNHEALTHY", flip_budget(FAILURES)).await;

    // An unrelated change (a second route): a stays unhealthy, its probes keep going.
    let swapped = config(&[a.addr, b.addr], &grpc_active()).replace(
        "    paths: ['/']\n",
        "    paths: ['/']\n  - name: other\n    protocols: [grpc]\n    paths: ['/other.Svc/']\n",
    );
    proxy.push_ok(&swapped).await;
    assert_eq!(health_states(&proxy).await.iter().find(|(t, _)| *t == a.addr.to_string()).unwrap().1, "UNHEALTHY");
    let probes = a.accepted.load(Ordering::SeqCst);
    a.serving(true).await;
    wait_state(&proxy, a.addr, "HEALTHY", flip_budget(SUCCESSES)).await;
    assert!(a.accepted.load(Ordering::SeqCst) > probes, "probes kept running across the swap");

    // a removed: its probes stop; b's go on.
    proxy.push_ok(&config(&[b.addr], &grpc_active())).await;
    assert_eq!(proxy.running().state.probed_targets(), 1);
    let (a_then, b_then) = (a.accepted.load(Ordering::SeqCst), b.accepted.load(Ordering::SeqCst));
    tokio::time::sleep(Duration::from_secs_f64(INTERVAL * 4.0)).await;
    assert!(a.accepted.load(Ordering::SeqCst) <= a_then + 1, "a removed target is not probed");
    assert!(b.accepted.load(Ordering::SeqCst) >= b_then + 2, "the remaining target still is");

    // Active checks off: no probes at all.
    proxy.push_ok(&config(&[b.addr], "{}")).await;
    assert_eq!(proxy.running().state.probed_targets(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_timeouts_eject_a_stalled_target() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    a.behaviour.stall.store(true, std::sync::atomic::Ordering::SeqCst);
    let passive = "{passive: {unhealthy: {timeouts: 1}}}";
    let proxy = proxy_with(
        &config(&[a.addr, b.addr], passive).replace("  retries: 0\n", "  retries: 0\n  read_timeout: 300\n"),
    )
    .await;
    let mut client = EchoClient::new(grpc_channel(proxy.addr(0), "localhost").await);
    let mut timed_out = 0;
    for _ in 0..2 {
        if let Err(s) = echo(&mut client).await {
            assert_eq!(s.code(), Code::DeadlineExceeded, "{s:?}"); // the read timeout (Kong's 504)
            timed_out += 1;
        }
    }
    assert_eq!(timed_out, 1);
    wait_state(&proxy, a.addr, "UNHEALTHY", Duration::from_secs(1)).await;
    for _ in 0..20 {
        assert_eq!(echo(&mut client).await.unwrap(), "b");
    }
    assert_eq!(a.calls(), 1);
}

// Active probes of `http`, `https` and `tcp` type, against HTTP/1.1 targets: the proxied service
// is `http`, so the same targets serve the probes and the traffic.

/// An HTTP service over upstream `u` with the given targets and `healthchecks` (YAML flow map);
/// passive connect failures do not count (`tcp_failures: 0`), so only the probes judge.
fn http_config(targets: &[SocketAddr], active: &str) -> String {
    let targets: String = targets.iter().map(|t| format!("  - target: {t}\n")).collect();
    format!(
        "_format_version: '3.0'\nupstreams:\n- name: u\n  healthchecks: {{active: {active}, passive: {{unhealthy: \
         {{tcp_failures: 0}}}}}}\n  targets:\n{targets}services:\n- name: h\n  protocol: http\n  host: u\n  \
         retries: 0\n  routes:\n  - name: h\n    protocols: [http]\n    paths: ['/']\n"
    )
}

/// `{type: KIND, ...}` probing `/healthz` every [`INTERVAL`] with the usual thresholds; `more`
/// adds fields.
fn probe(kind: &str, more: &str) -> String {
    format!(
        "{{type: {kind}, http_path: /healthz, timeout: 1, {more}healthy: {{interval: {INTERVAL}, successes: \
         {SUCCESSES}}}, unhealthy: {{interval: {INTERVAL}, http_failures: {FAILURES}, tcp_failures: 1, timeouts: 1}}}}"
    )
}

/// A scripted HTTP/1.1 target: `/healthz` answers 200 while `up`, else 503; anything else
/// answers 200 with the target's name as the body.
async fn http_target(name: &'static str, tls: Option<Arc<rustls::ServerConfig>>) -> (Upstream, Arc<AtomicBool>) {
    let up = Arc::new(AtomicBool::new(true));
    let flag = up.clone();
    let target = Upstream::start_tls(false, tls, move |seen| {
        let body = if seen.head.starts_with("GET /healthz ") {
            if flag.load(Ordering::SeqCst) {
                "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_string()
            } else {
                "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\ndown".to_string()
            }
        } else {
            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{name}", name.len())
        };
        reply(body)
    })
    .await;
    (target, up)
}

/// Which target answers `n` proxied requests, in order.
async fn answers(proxy: &TestProxy, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let got = h1(proxy.addr(0), get("/", "localhost")).await;
        assert_eq!(got.status, 200, "{}", got.body);
        out.push(got.body);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_probes_take_a_failing_target_out_and_back_and_send_their_headers() {
    let (a, a_up) = http_target("a", None).await;
    let (b, _) = http_target("b", None).await;
    let active = probe("http", "headers: {x-probe: [one, two]}, ");
    let proxy = proxy_with(&http_config(&[a.addr, b.addr], &active)).await;
    assert_eq!(proxy.running().state.probed_targets(), 2);
    a_up.store(false, Ordering::SeqCst);
    let took = wait_state(&proxy, a.addr, "UNHEALTHY", flip_budget(FAILURES)).await;
    assert_eq!(metric_state(&proxy, a.addr).await, "unhealthy");
    assert!(answers(&proxy, 10).await.iter().all(|t| t == "b"), "traffic left the unhealthy target");
    a_up.store(true, Ordering::SeqCst);
    wait_state(&proxy, a.addr, "HEALTHY", flip_budget(SUCCESSES)).await;
    assert!(answers(&proxy, 10).await.iter().any(|t| t == "a"), "the recovered target is back in rotation");
    // The probes: GET http_path with the configured headers (every value), on fresh connections.
    let probes: Vec<_> = a.seen().into_iter().filter(|s| s.head.starts_with("GET /healthz ")).collect();
    assert!(probes.len() >= (FAILURES + SUCCESSES) as usize, "{} probes", probes.len());
    for p in &probes {
        let values: Vec<&str> = p.head.lines().filter_map(|l| l.strip_prefix("x-probe: ")).collect();
        assert_eq!(values, ["one", "two"], "{}", p.head);
        assert_eq!(p.header("host"), Some(a.addr.to_string()));
    }
    eprintln!("unhealthy after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_probes_use_https_sni_and_verify_the_certificate_when_told() {
    install_provider();
    // The target has a certificate for probe.test only, from a CA the proxy does not trust, and
    // no certificate for any other name (a handshake without that SNI fails).
    let (_ca, cert, key) = ca_and_leaf(&["probe.test"]);
    let tls = {
        use rustls::pki_types::pem::PemObject;
        let certs = rustls::pki_types::CertificateDer::pem_slice_iter(cert.as_bytes()).map(Result::unwrap).collect();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let signing = provider.key_provider.load_private_key(key).unwrap();
        let mut by_sni = rustls::server::ResolvesServerCertUsingSni::new();
        by_sni.add("probe.test", rustls::sign::CertifiedKey::new(certs, signing)).unwrap();
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(by_sni));
        Some(Arc::new(cfg))
    };
    let (a, _) = http_target("a", tls).await;
    let (b, _) = http_target("b", None).await;
    let config = |more: &str| http_config(&[a.addr, b.addr], &probe("https", more));
    // With the SNI the certificate is for and verification off: a stays healthy, probed over TLS.
    let proxy = proxy_with(&config("https_sni: probe.test, https_verify_certificate: false, ")).await;
    let start = Instant::now();
    while a.seen().len() < 3 {
        assert!(start.elapsed() < flip_budget(3), "no https probe reached a");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(health_states(&proxy).await.iter().find(|(t, _)| *t == a.addr.to_string()).unwrap().1, "HEALTHY");
    // Verification on: the CA is unknown, the handshake fails, a goes out.
    proxy.push_ok(&config("https_sni: probe.test, https_verify_certificate: true, ")).await;
    wait_state(&proxy, a.addr, "UNHEALTHY", flip_budget(1)).await;
    assert!(answers(&proxy, 4).await.iter().all(|t| t == "b"));
    // Back with verification off; then without https_sni (the SNI would be the target's IP
    // address, which is never sent): no certificate, a goes out again.
    proxy.push_ok(&config("https_sni: probe.test, https_verify_certificate: false, ")).await;
    wait_state(&proxy, a.addr, "HEALTHY", flip_budget(SUCCESSES)).await;
    proxy.push_ok(&config("https_verify_certificate: false, ")).await;
    wait_state(&proxy, a.addr, "UNHEALTHY", flip_budget(1)).await;
}

/// An HTTP/1.1 target on `listener` answering every request 200 with `name`, until the handle
/// is aborted (its connections close with it).
fn plain_target(listener: tokio::net::TcpListener, name: &'static str) -> tokio::task::JoinHandle<()> {
    use tokio::io::AsyncWriteExt;
    tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((mut tcp, _)) = listener.accept().await {
            conns.spawn(async move {
                let mut buf = Vec::new();
                while let Some(end) = read_until(&mut tcp, &mut buf, b"\r\n\r\n").await {
                    buf.drain(..end + 4);
                    let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{name}", name.len());
                    if tcp.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_probes_follow_whether_the_target_accepts_connections() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a_addr = listener.local_addr().unwrap();
    let a = plain_target(listener, "a");
    let (b, _) = http_target("b", None).await;
    let proxy = proxy_with(&http_config(&[a_addr, b.addr], &probe("tcp", ""))).await;
    wait_state(&proxy, a_addr, "HEALTHY", Duration::from_secs(2)).await;
    assert!(answers(&proxy, 4).await.iter().any(|t| t == "a"));
    // a stops listening: refused connections take it out (tcp_failures: 1).
    a.abort();
    let _ = a.await;
    wait_state(&proxy, a_addr, "UNHEALTHY", flip_budget(1)).await;
    assert!(answers(&proxy, 6).await.iter().all(|t| t == "b"), "traffic left the closed target");
    // Listening again on the same port: a connect is a success; two bring it back.
    let a = plain_target(tokio::net::TcpListener::bind(a_addr).await.unwrap(), "a");
    wait_state(&proxy, a_addr, "HEALTHY", flip_budget(SUCCESSES)).await;
    assert!(answers(&proxy, 4).await.iter().any(|t| t == "a"));
    assert!(b.seen().iter().all(|s| !s.head.starts_with("GET /healthz")), "tcp probes send no request");
    a.abort();
}
