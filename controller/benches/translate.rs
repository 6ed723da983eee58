//! Translation cost at scale: 5,000 Ingresses, each to its own Service (with a 3-endpoint
//! EndpointSlice), half of them with TLS-free gRPC annotations. The target is < 500 ms per
//! translation. Run: `cargo bench -p controller --bench translate`.

use std::sync::Arc;

use controller::{translate, Settings, Snapshot};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;

const N: usize = 5_000;

fn snapshot() -> Snapshot {
    let mut s = Snapshot::default();
    for i in 0..N {
        let ns = format!("ns-{}", i % 50);
        let name = format!("app-{i}");
        let grpc = i % 2 == 0;
        let svc_annotations = if grpc { json!({"konghq.com/protocol": "grpc"}) } else { json!({}) };
        let ing_annotations = if grpc {
            json!({"konghq.com/protocols": "grpc,grpcs"})
        } else {
            json!({"konghq.com/strip-path": "true", "konghq.com/methods": "GET,POST"})
        };
        s.services.push(Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": ns, "annotations": svc_annotations},
                "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
            }))
            .unwrap(),
        ));
        s.endpoint_slices.push(Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": format!("{name}-x"), "namespace": ns, "labels": {"kubernetes.io/service-name": name}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": [
                    {"addresses": [format!("10.{}.{}.1", i / 250, i % 250)]},
                    {"addresses": [format!("10.{}.{}.2", i / 250, i % 250)]},
                    {"addresses": [format!("10.{}.{}.3", i / 250, i % 250)], "conditions": {"ready": false}}
                ]
            }))
            .unwrap(),
        ));
        s.ingresses.push(Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"name": name, "namespace": ns, "annotations": ing_annotations},
                "spec": {"ingressClassName": "kong", "rules": [{"host": format!("{name}.example.com"), "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": name, "port": {"number": 80}}}},
                    {"path": format!("/api/v{i}"), "pathType": "Prefix", "backend": {"service": {"name": name, "port": {"name": "http"}}}}
                ]}}]}
            }))
            .unwrap(),
        ));
    }
    s.sort();
    s
}

fn bench(c: &mut Criterion) {
    let s = snapshot();
    let settings = Settings::default();
    let t = translate(&s, &settings);
    assert_eq!(t.config.services.len(), 2 * N);
    assert!(proxy_config::validate(&t.config).is_ok());
    let mut group = c.benchmark_group("translate");
    group.sample_size(10);
    group.bench_function("5000_ingresses_5000_services", |b| b.iter(|| translate(&s, &settings)));
    // The share of `proxy_config::validate` (run inside translate as the last step).
    group.bench_function("validate_only", |b| b.iter(|| proxy_config::validate(&t.config)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
