//! How the proxy reaches its backends beyond plain routing: names under `.invalid` fail at once
//! (the controller's invalid-backend target), host names resolve through the DNS cache, and the
//! service fields that shape the upstream exchange (timeouts, TLS to the upstream).

mod common;

use std::time::{Duration, Instant};

use common::*;
use sluice_demo::hello::hello_service_client::HelloServiceClient;
use sluice_demo::hello::HelloRequest;

/// The target the controller gives the invalid-backend share of a Gateway API rule.
const INVALID_TARGET: &str = "invalid-backend.sluice.invalid:1";

#[tokio::test]
async fn invalid_backend_is_an_immediate_unavailable() {
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    p.push_ok(&format!(
        "_format_version: '3.0'\nupstreams:\n- name: u\n  targets:\n  - target: {INVALID_TARGET}\nservices:\n- name: g\n  protocol: grpc\n  host: u\n  routes:\n  - name: g\n    protocols: [grpc]\n    paths: ['/']\n"
    ))
    .await;
    let mut client = HelloServiceClient::new(grpc_channel(p.addr(0), "example.com").await);
    for _ in 0..20 {
        let started = Instant::now();
        let mut req = tonic::Request::new(HelloRequest { greeting: "x".into() });
        req.set_timeout(Duration::from_secs(5));
        let err = client.say_hello(req).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
        // Without a lookup the answer is local: far below any resolver timeout.
        assert!(started.elapsed() < Duration::from_millis(500), "took {:?}", started.elapsed());
    }
}

#[tokio::test]
async fn host_names_resolve_through_the_cache() {
    let backend = sluice_demo::spawn(sluice_demo::BackendOptions::named("b")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    // `localhost`, not an address: the proxy resolves it (once, then from the cache).
    p.push_ok(&grpc_config(backend.addr()).replace("host: 127.0.0.1", "host: localhost")).await;
    let mut client = HelloServiceClient::new(grpc_channel(p.addr(0), "example.com").await);
    let r = client.say_hello(HelloRequest { greeting: "dns".into() }).await.unwrap();
    assert_eq!(r.get_ref().reply, "hello dns");
}
