//! `rate-limiting` end to end: real clients (hyper, tonic) through the proxy, counters in the
//! proxy (`local`) and in a real `redis-server` (`redis`) shared by two `sluice-proxy`
//! processes, Redis killed and brought back, a Redis that never answers, and Redis over TLS.
//!
//! The counting tests use the `year` window (or check that they stayed inside one window), so
//! that no request depends on where the wall clock is within a second or a minute.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::redis::RedisServer;
use common::{echo_http, grpc_channel, h1, TestProxy};
use http::Request;
use http_body_util::Full;
use serde_json::{json, Value};
use sluice_demo::hello::hello_service_client::HelloServiceClient;
use sluice_demo::hello::HelloRequest;
use sluice_demo::{spawn, BackendOptions};

const WINDOW_NAMES: [&str; 6] = ["Second", "Minute", "Hour", "Day", "Month", "Year"];

/// An HTTP service at `backend` with one route per (name, plugin config) at `/<name>`.
fn http_config(backend: SocketAddr, routes: &[(&str, Value)]) -> String {
    let routes: Vec<Value> = routes
        .iter()
        .map(|(name, cfg)| {
            json!({"name": name, "paths": [format!("/{name}")],
                   "plugins": [{"name": "rate-limiting", "config": cfg}]})
        })
        .collect();
    json!({"_format_version": "3.0", "services": [{"name": "web", "protocol": "http",
           "host": backend.ip().to_string(), "port": backend.port(), "routes": routes}]})
    .to_string()
}

/// GET `path` as client `ip` (X-Real-IP from a trusted peer) with extra headers.
async fn get(proxy: SocketAddr, path: &str, ip: &str, headers: &[(&str, &str)]) -> common::Got {
    let mut req = Request::builder().uri(path).header("host", "example.com").header("x-real-ip", ip);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    h1(proxy, req.body(Full::new(Bytes::new())).unwrap()).await
}

fn header(got: &common::Got, name: &str) -> Option<String> {
    got.headers.get(name).map(|v| v.to_str().unwrap().to_string())
}

async fn local_proxy() -> TestProxy {
    TestProxy::start("127.0.0.1:0", &[("KONG_TRUSTED_IPS", "127.0.0.1")]).await
}

#[tokio::test]
async fn kong_headers_name_every_window() {
    let b = echo_http("web").await;
    let p = local_proxy().await;
    let all: serde_json::Map<String, Value> = WINDOW_NAMES.iter().map(|w| (w.to_lowercase(), json!(50))).collect();
    let mut cfg = Value::Object(all);
    cfg["limit_by"] = json!("ip");
    p.push_ok(&http_config(b.addr, &[("windows", cfg)])).await;
    let got = get(p.addr(0), "/windows", "10.1.0.1", &[]).await;
    assert_eq!(got.status, 200, "{}", got.body);
    for w in WINDOW_NAMES {
        assert_eq!(header(&got, &format!("x-ratelimit-limit-{w}")).as_deref(), Some("50"), "{w}");
        assert_eq!(header(&got, &format!("x-ratelimit-remaining-{w}")).as_deref(), Some("49"), "{w}");
    }
    assert_eq!(header(&got, "ratelimit-limit").as_deref(), Some("50"));
    assert_eq!(header(&got, "ratelimit-remaining").as_deref(), Some("49"));
    // Equal remaining counts: Kong reports the longest window, the year.
    let reset: u64 = header(&got, "ratelimit-reset").unwrap().parse().unwrap();
    assert!((1..=366 * 86_400).contains(&reset), "{reset}");
    assert!(header(&got, "retry-after").is_none());
}

#[tokio::test]
async fn header_values_are_counted_apart_and_the_refusal_is_kongs() {
    let b = echo_http("web").await;
    let p = local_proxy().await;
    let cfg = json!({"year": 3, "limit_by": "header", "header_name": "X-Client"});
    p.push_ok(&http_config(b.addr, &[("hdr", cfg)])).await;
    for left in ["2", "1", "0"] {
        let got = get(p.addr(0), "/hdr", "10.2.0.1", &[("x-client", "a")]).await;
        assert_eq!(got.status, 200, "{}", got.body);
        assert_eq!(header(&got, "x-ratelimit-remaining-year").as_deref(), Some(left));
    }
    let refused = get(p.addr(0), "/hdr", "10.2.0.1", &[("x-client", "a")]).await;
    assert_eq!(refused.status, 429);
    assert_eq!(serde_json::from_str::<Value>(&refused.body).unwrap()["message"], "API rate limit exceeded");
    assert_eq!(header(&refused, "x-ratelimit-remaining-year").as_deref(), Some("0"));
    assert_eq!(header(&refused, "retry-after"), header(&refused, "ratelimit-reset"));
    assert!(header(&refused, "retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    // Another value, and no header at all (the client address instead), have their own counters.
    assert_eq!(get(p.addr(0), "/hdr", "10.2.0.1", &[("x-client", "b")]).await.status, 200);
    assert_eq!(get(p.addr(0), "/hdr", "10.2.0.1", &[]).await.status, 200);
}

#[tokio::test]
async fn ip_service_path_and_the_consumer_fallback() {
    let b = echo_http("web").await;
    let p = local_proxy().await;
    let routes = [
        ("by-ip", json!({"year": 2, "limit_by": "ip"})),
        // Without an authenticated consumer or credential, Kong falls back to the address.
        ("by-consumer", json!({"year": 2})),
        ("by-credential", json!({"year": 2, "limit_by": "credential"})),
        ("by-service", json!({"year": 2, "limit_by": "service"})),
    ];
    p.push_ok(&http_config(b.addr, &routes)).await;
    for route in ["/by-ip", "/by-consumer", "/by-credential"] {
        for _ in 0..2 {
            assert_eq!(get(p.addr(0), route, "10.3.0.1", &[]).await.status, 200, "{route}");
        }
        assert_eq!(get(p.addr(0), route, "10.3.0.1", &[]).await.status, 429, "{route}");
        assert_eq!(get(p.addr(0), route, "10.3.0.2", &[]).await.status, 200, "{route}: another address");
    }
    // One counter for the whole service, whatever the address.
    assert_eq!(get(p.addr(0), "/by-service", "10.3.0.1", &[]).await.status, 200);
    assert_eq!(get(p.addr(0), "/by-service", "10.3.0.2", &[]).await.status, 200);
    assert_eq!(get(p.addr(0), "/by-service", "10.3.0.3", &[]).await.status, 429);
}

#[tokio::test]
async fn path_limits_one_path_for_everyone_and_other_paths_per_address() {
    let b = echo_http("web").await;
    let p = local_proxy().await;
    let cfg = json!({"year": 1, "limit_by": "path", "path": "/by-path/limited"});
    p.push_ok(&http_config(b.addr, &[("by-path", cfg)])).await;
    assert_eq!(get(p.addr(0), "/by-path/limited", "10.4.0.1", &[]).await.status, 200);
    assert_eq!(get(p.addr(0), "/by-path/limited", "10.4.0.2", &[]).await.status, 429);
    // Kong's fallback: another path of the route is counted per client address.
    assert_eq!(get(p.addr(0), "/by-path/other", "10.4.0.1", &[]).await.status, 200);
    assert_eq!(get(p.addr(0), "/by-path/other", "10.4.0.1", &[]).await.status, 429);
    assert_eq!(get(p.addr(0), "/by-path/other", "10.4.0.2", &[]).await.status, 200);
}

#[tokio::test]
async fn a_service_plugin_counts_all_its_routes_together() {
    let b = echo_http("web").await;
    let p = local_proxy().await;
    let config = json!({"_format_version": "3.0", "services": [{"name": "shared-svc", "protocol": "http",
        "host": b.addr.ip().to_string(), "port": b.addr.port(),
        "plugins": [{"name": "rate-limiting", "config": {"year": 2, "limit_by": "ip"}}],
        "routes": [{"name": "one", "paths": ["/one"]}, {"name": "two", "paths": ["/two"]}]}]});
    p.push_ok(&config.to_string()).await;
    assert_eq!(get(p.addr(0), "/one", "10.5.0.1", &[]).await.status, 200);
    assert_eq!(get(p.addr(0), "/two", "10.5.0.1", &[]).await.status, 200);
    assert_eq!(get(p.addr(0), "/one", "10.5.0.1", &[]).await.status, 429);
    // A config push keeps the counts (Kong's shared dictionary survives a reload too).
    p.push_ok(&config.to_string()).await;
    assert_eq!(get(p.addr(0), "/two", "10.5.0.1", &[]).await.status, 429);
}

#[tokio::test]
async fn hidden_headers_and_a_custom_refusal() {
    let b = echo_http("web").await;
    let p = local_proxy().await;
    let cfg = json!({"year": 1, "limit_by": "ip", "hide_client_headers": true,
                     "error_code": 403, "error_message": "slow down"});
    p.push_ok(&http_config(b.addr, &[("hidden", cfg)])).await;
    let ok = get(p.addr(0), "/hidden", "10.6.0.1", &[]).await;
    assert_eq!(ok.status, 200);
    let refused = get(p.addr(0), "/hidden", "10.6.0.1", &[]).await;
    assert_eq!(refused.status, 403);
    assert_eq!(serde_json::from_str::<Value>(&refused.body).unwrap()["message"], "slow down");
    for got in [&ok, &refused] {
        let names: Vec<&str> = got.headers.keys().map(|k| k.as_str()).collect();
        assert!(!names.iter().any(|n| n.contains("ratelimit") || *n == "retry-after"), "{names:?}");
    }
}

#[tokio::test]
async fn a_bad_config_is_refused_naming_the_field() {
    let b = echo_http("web").await;
    let p = local_proxy().await;
    for (cfg, field) in [
        (json!({"minute": 10, "policy": "cluster"}), "config.policy"),
        (json!({"minute": 10, "sync_rate": 1}), "config.sync_rate"),
        (json!({"minute": 10, "policy": "redis"}), "config.redis.host"),
        (json!({"minute": 10, "redis": {"host": "h", "ssl": true, "server_name": "i"}}), "config.redis.server_name"),
        (json!({"minute": 10, "redis": {"host": "h", "sentinel_master": "m"}}), "config.redis.sentinel_master"),
        (json!({"minute": 10, "redis_host": "h"}), "config.redis_host"),
        (json!({"minute": 10, "limit_by": "header"}), "config.header_name"),
    ] {
        let (status, body) = p.push(&http_config(b.addr, &[("bad", cfg.clone())])).await;
        assert_eq!(status, 400, "{cfg}: {body}");
        assert!(body.contains(field), "{cfg}: {body}");
    }
}

fn grpc_routes_config(backend: SocketAddr, cfg: Value) -> String {
    json!({"_format_version": "3.0", "services": [{"name": "g", "protocol": "grpc",
        "host": backend.ip().to_string(), "port": backend.port(),
        "routes": [{"name": "g", "protocols": ["grpc", "grpcs"], "paths": ["/"],
                    "plugins": [{"name": "rate-limiting", "config": cfg}]}]}]})
    .to_string()
}

#[tokio::test]
async fn grpc_method_limit_is_resource_exhausted_with_the_headers_as_metadata() {
    let backend = spawn(BackendOptions::named("g")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    let cfg = json!({"year": 2, "limit_by": "path", "path": "/hello.HelloService/SayHello"});
    p.push_ok(&grpc_routes_config(backend.addr(), cfg)).await;
    let mut client = HelloServiceClient::new(grpc_channel(p.addr(0), "grpc.example.com").await);
    let hello = || tonic::Request::new(HelloRequest { greeting: "x".into() });
    for left in ["1", "0"] {
        let ok = client.say_hello(hello()).await.unwrap();
        assert_eq!(ok.metadata().get("x-ratelimit-remaining-year").unwrap(), left);
    }
    let status = client.say_hello(hello()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert_eq!(status.message(), "API rate limit exceeded");
    let md = status.metadata();
    assert_eq!(md.get("x-ratelimit-limit-year").unwrap(), "2");
    assert_eq!(md.get("x-ratelimit-remaining-year").unwrap(), "0");
    assert_eq!(md.get("ratelimit-remaining").unwrap(), "0");
    assert!(md.get("retry-after").is_some());
    // Another method of the same service is not that method's counter.
    let stream = client.lots_of_replies(hello()).await;
    assert!(stream.is_ok(), "{stream:?}");
}

/// A `sluice-proxy` process serving `config` on 127.0.0.1 (h1 + h2c), trusting 127.0.0.1.
struct ProxyProcess {
    _child: tokio::process::Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

async fn proxy_process(config: &str) -> ProxyProcess {
    proxy_process_with(config, &[]).await
}

/// [`proxy_process`] with more environment variables.
async fn proxy_process_with(config: &str, env: &[(&str, &std::path::Path)]) -> ProxyProcess {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kong.json");
    std::fs::write(&path, config).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice-proxy"))
        .env_clear()
        .env("KONG_PROXY_LISTEN", "127.0.0.1:0")
        .env("KONG_STATUS_LISTEN", "127.0.0.1:0")
        .env("SLUICE_ADMIN_SOCKET", dir.path().join("admin.sock"))
        .env("KONG_DECLARATIVE_CONFIG", &path)
        .env("KONG_PROXY_ACCESS_LOG", "off")
        .env("KONG_TRUSTED_IPS", "127.0.0.1")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addrs = common::process::started_addrs(&mut child, Duration::from_secs(20)).await;
    ProxyProcess { _child: child, addr: addrs[0], _dir: dir }
}

fn redis_cfg(redis: SocketAddr, extra: Value) -> Value {
    let mut cfg = json!({"policy": "redis", "limit_by": "header", "header_name": "X-Client",
        "redis": {"host": redis.ip().to_string(), "port": redis.port(), "timeout": 500}});
    for (k, v) in extra.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    cfg
}

#[tokio::test]
async fn two_proxies_sharing_redis_enforce_one_limit() {
    const LIMIT: usize = 10;
    let redis = RedisServer::start().await;
    let b = echo_http("web").await;
    let config = http_config(b.addr, &[("shared", redis_cfg(redis.addr, json!({"year": LIMIT})))]);
    let (p1, p2) = tokio::join!(proxy_process(&config), proxy_process(&config));
    // 3 × limit requests, spread over both proxies, all in flight at once.
    let calls = (0..3 * LIMIT).map(|i| {
        let addr = if i % 2 == 0 { p1.addr } else { p2.addr };
        async move { get(addr, "/shared", "10.7.0.1", &[("x-client", "tenant")]).await.status }
    });
    let statuses = futures_util::future::join_all(calls).await;
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((ok, refused), (LIMIT, 2 * LIMIT), "{statuses:?}");
    // One counter in Redis for both: the plugin's scope (its route; a route plugin has no service,
    // as in Kong's key), the identifier, the window's start and its name.
    let keys = redis.command("KEYS ratelimit:*").await;
    assert!(keys.starts_with("*1\r\n") && keys.contains("ratelimit:shared::tenant:"), "{keys}");
    assert!(keys.trim_end().ends_with(":year"), "{keys}");
}

#[tokio::test]
async fn redis_outage_follows_fault_tolerant_and_limits_return_with_redis() {
    let mut redis = RedisServer::start().await;
    let b = echo_http("web").await;
    let grpc_backend = spawn(BackendOptions::named("g")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0, 127.0.0.1:0 http2", &[("KONG_TRUSTED_IPS", "127.0.0.1")]).await;
    let strict = redis_cfg(redis.addr, json!({"year": 3, "fault_tolerant": false}));
    let tolerant = redis_cfg(redis.addr, json!({"year": 3}));
    let mut config: Value =
        serde_json::from_str(&http_config(b.addr, &[("strict", strict.clone()), ("tolerant", tolerant)])).unwrap();
    let grpc: Value = serde_json::from_str(&grpc_routes_config(grpc_backend.addr(), strict)).unwrap();
    config["services"].as_array_mut().unwrap().push(grpc["services"][0].clone());
    p.push_ok(&config.to_string()).await;

    for _ in 0..3 {
        assert_eq!(get(p.addr(0), "/strict", "10.8.0.1", &[("x-client", "a")]).await.status, 200);
    }
    assert_eq!(get(p.addr(0), "/strict", "10.8.0.1", &[("x-client", "a")]).await.status, 429);

    redis.stop();
    let started = Instant::now();
    let passed = get(p.addr(0), "/tolerant", "10.8.0.1", &[("x-client", "a")]).await;
    assert_eq!(passed.status, 200, "fault_tolerant passes while Redis is down: {}", passed.body);
    assert!(header(&passed, "x-ratelimit-limit-year").is_none());
    let failed = get(p.addr(0), "/strict", "10.8.0.1", &[("x-client", "a")]).await;
    assert_eq!(failed.status, 500);
    assert_eq!(serde_json::from_str::<Value>(&failed.body).unwrap()["message"], "An unexpected error occurred");
    // Both answers came within the configured timeout (500 ms) and some scheduling slack.
    assert!(started.elapsed() < Duration::from_millis(2 * 500 + 500), "{:?}", started.elapsed());
    let mut client = HelloServiceClient::new(grpc_channel(p.addr(1), "grpc.example.com").await);
    let hello = || {
        let mut r = tonic::Request::new(HelloRequest { greeting: "x".into() });
        r.metadata_mut().insert("x-client", "g".parse().unwrap());
        r
    };
    let status = client.say_hello(hello()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");

    // Redis back (empty): the proxy reconnects by itself; a probe client finds it ready.
    redis.restart().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(p.addr(0), "/strict", "10.8.0.1", &[("x-client", "probe")]).await.status != 200 {
        assert!(Instant::now() < deadline, "the proxy did not reconnect to Redis within 10 s");
    }
    for _ in 0..3 {
        assert_eq!(get(p.addr(0), "/strict", "10.8.0.1", &[("x-client", "a")]).await.status, 200);
    }
    assert_eq!(get(p.addr(0), "/strict", "10.8.0.1", &[("x-client", "a")]).await.status, 429);
    assert_eq!(client.say_hello(hello()).await.unwrap().get_ref().reply, "hello x");
}

#[tokio::test]
async fn a_redis_that_never_answers_costs_at_most_the_timeout() {
    // Accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            open.push(s);
        }
    });
    let b = echo_http("web").await;
    let p = local_proxy().await;
    let mut strict = redis_cfg(addr, json!({"year": 3, "fault_tolerant": false}));
    strict["redis"]["timeout"] = json!(200);
    let mut tolerant = strict.clone();
    tolerant["fault_tolerant"] = json!(true);
    p.push_ok(&http_config(b.addr, &[("silent-strict", strict), ("silent-tolerant", tolerant)])).await;
    for (path, status) in [("/silent-strict", 500), ("/silent-tolerant", 200)] {
        let started = Instant::now();
        assert_eq!(get(p.addr(0), path, "10.9.0.1", &[("x-client", "a")]).await.status, status, "{path}");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(150) && took < Duration::from_millis(1200), "{path}: {took:?}");
    }
}

/// `redis.ssl` against a real TLS redis-server with a CA made here: verified against
/// `KONG_LUA_SSL_TRUSTED_CERTIFICATE`, or unverified with `ssl_verify: false`; a proxy trusting
/// another CA cannot reach Redis, and `fault_tolerant` decides.
#[tokio::test]
async fn redis_over_tls_verifies_the_server_against_the_trusted_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = common::ca_and_leaf(&["127.0.0.1"]);
    let (other_ca, _, _) = common::ca_and_leaf(&["127.0.0.1"]);
    let file = |name: &str, pem: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    let (ca, other_ca) = (file("ca.pem", &ca), file("other-ca.pem", &other_ca));
    let redis = RedisServer::start_tls(file("redis.pem", &cert), file("redis.key", &key)).await;
    let tls_addr = redis.tls.as_ref().unwrap().0;
    let tls = |verify: bool, extra: Value| {
        let mut cfg = redis_cfg(tls_addr, extra);
        cfg["redis"]["ssl"] = json!(true);
        cfg["redis"]["ssl_verify"] = json!(verify);
        cfg["redis"]["server_name"] = json!("127.0.0.1");
        cfg
    };
    let b = echo_http("web").await;
    let config = http_config(
        b.addr,
        &[
            ("verified", tls(true, json!({"year": 2, "fault_tolerant": false}))),
            ("unverified", tls(false, json!({"year": 1, "fault_tolerant": false}))),
            ("tolerant", tls(true, json!({"year": 1}))),
        ],
    );
    let var = "KONG_LUA_SSL_TRUSTED_CERTIFICATE";
    let (trust_ca, trust_other) = ([(var, ca.as_path())], [(var, other_ca.as_path())]);
    let (trusting, other) =
        tokio::join!(proxy_process_with(&config, &trust_ca), proxy_process_with(&config, &trust_other));

    for left in ["1", "0"] {
        let got = get(trusting.addr, "/verified", "10.10.0.1", &[("x-client", "a")]).await;
        assert_eq!(got.status, 200, "{}", got.body);
        assert_eq!(header(&got, "x-ratelimit-remaining-year").as_deref(), Some(left));
    }
    assert_eq!(get(trusting.addr, "/verified", "10.10.0.1", &[("x-client", "a")]).await.status, 429);
    assert_eq!(get(trusting.addr, "/unverified", "10.10.0.1", &[("x-client", "a")]).await.status, 200);
    assert_eq!(get(trusting.addr, "/unverified", "10.10.0.1", &[("x-client", "a")]).await.status, 429);
    // The counters are in Redis (read over its plain port).
    let keys = redis.command("KEYS ratelimit:*").await;
    assert!(keys.starts_with("*2\r\n") && keys.contains("ratelimit:verified::a:"), "{keys}");

    // Trusting another CA: the handshake fails, as a Redis error.
    let failed = get(other.addr, "/verified", "10.10.0.1", &[("x-client", "b")]).await;
    assert_eq!(failed.status, 500, "{}", failed.body);
    let passed = get(other.addr, "/tolerant", "10.10.0.1", &[("x-client", "b")]).await;
    assert_eq!(passed.status, 200, "fault_tolerant passes: {}", passed.body);
    assert!(header(&passed, "x-ratelimit-limit-year").is_none());
    // ssl_verify false does not look at the chain.
    assert_eq!(get(other.addr, "/unverified", "10.10.0.1", &[("x-client", "b")]).await.status, 200);
}
