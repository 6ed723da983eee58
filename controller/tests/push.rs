//! The admin socket client against the fake proxy: 201, 304, 400 with flattened errors, /status,
//! and a missing socket.

mod support;

use std::time::Duration;

use bytes::Bytes;
use controller::push::{AdminClient, PushError, PushOutcome};
use proxy_config::{config_hash, EMPTY_HASH};
use support::FakeAdmin;

fn config_json() -> (Bytes, String) {
    let text = r#"{"_format_version":"3.0","services":[{"name":"s","host":"s.default.80.svc","routes":[{"name":"r","paths":["/"]}]}]}"#;
    let config = proxy_config::parse(text).unwrap();
    (Bytes::from(serde_json::to_vec(&config).unwrap()), config_hash(&config))
}

#[tokio::test]
async fn push_status_and_check_hash() {
    let admin = FakeAdmin::start().await;
    let client = AdminClient::new(&admin.socket, Duration::from_secs(5));
    assert_eq!(client.status().await.unwrap(), EMPTY_HASH);
    let (body, hash) = config_json();
    assert_eq!(client.push(body.clone()).await.unwrap(), PushOutcome::Applied { hash: hash.clone() });
    assert_eq!(client.status().await.unwrap(), hash);
    assert_eq!(client.push(body).await.unwrap(), PushOutcome::Unchanged);
    assert_eq!(admin.applied().len(), 1);
}

#[tokio::test]
async fn rejection_carries_flattened_errors() {
    let admin = FakeAdmin::start().await;
    let client = AdminClient::new(&admin.socket, Duration::from_secs(5));
    let bad = r#"{"_format_version":"3.0","services":[{"name":"s","host":"s","protocol":"grpc","path":"/x","tags":["k8s-kind:Service","k8s-name:s","k8s-namespace:default"]}]}"#;
    match client.push(Bytes::from(bad)).await {
        Err(e @ PushError::Rejected(_)) => {
            assert_eq!(e.failure_reason(), "conflict");
            let PushError::Rejected(f) = e else { unreachable!() };
            assert_eq!(f.flattened_errors[0].entity_type, "service");
            assert_eq!(f.flattened_errors[0].entity_tags.len(), 3);
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(admin.applied().is_empty());
}

#[tokio::test]
async fn missing_socket_is_a_network_error() {
    let dir = tempfile::tempdir().unwrap();
    let client = AdminClient::new(dir.path().join("nope.sock"), Duration::from_secs(1));
    let e = client.status().await.unwrap_err();
    assert_eq!(e.failure_reason(), "network");
}
