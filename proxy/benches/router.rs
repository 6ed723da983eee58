//! Router lookup cost as the number of routes grows.
//!
//! - `hosts/10` and `hosts/10000`: one route per host (`host-N.example.com`, paths `/` and `/api/`),
//!   like one Ingress per host. Each iteration routes the same 10 requests, spread over the table
//!   (criterion reports the time of those 10 lookups; the throughput line is per lookup).
//!   Acceptance criterion of the project: `hosts/10000` costs at most 1.2x `hosts/10`.
//! - `one_host/1000_prefixes`: 1,000 routes under a single host with distinct plain prefixes
//!   (`/svc-N/`, 7 to 9 bytes). The host index cannot narrow these down; the host's bucket has a
//!   path filter instead (plain prefixes hashed by prefix; a lookup hashes the request path cut at
//!   each prefix length the bucket uses, here 3), so the cost follows the number of distinct prefix
//!   lengths, not the number of routes. Regex and path-less routes of such a bucket are still
//!   scanned in rank order. The 10 requests hit prefixes spread over the bucket.
//!
//! Run: `cargo bench -p proxy --bench router -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::HeaderMap;
use proxy::router::{RouteRequest, Router};
use proxy_config::Config;
use serde_json::{json, Value};

/// A config with one service and `routes`.
fn config(routes: Vec<Value>) -> Config {
    let config: Config = serde_json::from_value(json!({
        "_format_version": "3.0",
        "services": [{ "name": "svc", "host": "backend", "routes": routes }],
    }))
    .expect("bench config parses");
    proxy_config::validate(&config).expect("bench config is valid");
    config
}

fn per_host(n: usize) -> Config {
    config(
        (0..n)
            .map(|i| {
                json!({
                    "name": format!("default.ingress-{i}.svc.host-{i}.example.com.80"),
                    "hosts": [format!("host-{i}.example.com")],
                    "paths": ["/", "/api/"],
                })
            })
            .collect(),
    )
}

fn one_host(n: usize) -> Config {
    config(
        (0..n)
            .map(|i| json!({ "name": format!("r{i}"), "hosts": ["api.example.com"], "paths": [format!("/svc-{i}/")] }))
            .collect(),
    )
}

/// Routes 10 (host, path) pairs with `router`, checking each hits.
fn bench_lookups(c: &mut Criterion, name: &str, router: &Router, targets: &[(String, String)]) {
    let headers = HeaderMap::new();
    let requests: Vec<RouteRequest<'_>> = targets
        .iter()
        .map(|(host, path)| RouteRequest { host, path, method: "GET", headers: &headers, sni: None, grpc: false })
        .collect();
    for r in &requests {
        assert!(router.find(r).is_some(), "bench request {} {} must match", r.host, r.path);
    }
    let mut group = c.benchmark_group("router");
    group.throughput(Throughput::Elements(requests.len() as u64));
    group.bench_function(name, |b| {
        b.iter(|| {
            for r in &requests {
                black_box(router.find(black_box(r)));
            }
        })
    });
    group.finish();
}

fn lookup(c: &mut Criterion) {
    for n in [10usize, 10_000] {
        let router = Router::build(&per_host(n)).expect("router builds");
        let targets: Vec<(String, String)> = (0..10)
            .map(|k| (format!("host-{}.example.com:8000", k * n / 10 + n / 20), "/api/v1/users".to_string()))
            .collect();
        bench_lookups(c, &format!("hosts/{n}"), &router, &targets);
    }

    let n = 1_000;
    let router = Router::build(&one_host(n)).expect("router builds");
    let targets: Vec<(String, String)> =
        (0..10).map(|k| ("api.example.com".to_string(), format!("/svc-{}/method", k * n / 10 + 7))).collect();
    bench_lookups(c, "one_host/1000_prefixes", &router, &targets);
}

criterion_group!(benches, lookup);
criterion_main!(benches);
