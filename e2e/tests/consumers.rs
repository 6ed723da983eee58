//! Consumers the way a KIC user sets them up: a KongConsumer naming a key-auth credential Secret
//! (`konghq.com/credential: key-auth`), a key-auth KongPlugin named in a GRPCRoute's
//! `konghq.com/plugins`. A call without the key fails UNAUTHENTICATED with Kong's message, a call
//! with it succeeds, and deleting the Secret revokes the key within the sync period. A
//! consumer-scoped rate-limiting KongPlugin (`konghq.com/plugins` on alice's KongConsumer) limits
//! alice and not bob on the same route.

mod support;

use support::*;

const AUTH: &str = r#"apiVersion: configuration.konghq.com/v1
kind: KongPlugin
metadata:
  name: key-auth
  namespace: default
plugin: key-auth
---
apiVersion: v1
kind: Secret
metadata:
  name: alice-key
  namespace: default
  labels:
    konghq.com/credential: key-auth
stringData:
  key: e2e-alice-key
---
apiVersion: configuration.konghq.com/v1
kind: KongConsumer
metadata:
  name: alice
  namespace: default
  annotations:
    kubernetes.io/ingress.class: kong
username: alice
credentials: [alice-key]
"#;

/// bob, and a limit of one call a minute scoped to alice.
const SCOPED: &str = r#"apiVersion: v1
kind: Secret
metadata:
  name: bob-key
  namespace: default
  labels:
    konghq.com/credential: key-auth
stringData:
  key: e2e-bob-key
---
apiVersion: configuration.konghq.com/v1
kind: KongConsumer
metadata:
  name: bob
  namespace: default
  annotations:
    kubernetes.io/ingress.class: kong
username: bob
credentials: [bob-key]
---
apiVersion: configuration.konghq.com/v1
kind: KongPlugin
metadata:
  name: alice-limit
  namespace: default
plugin: rate-limiting
config:
  minute: 1
  policy: local
"#;

const METHOD: &str = "hello.HelloService/SayHello";
const HELLO: &str = r#"{"greeting":"Kong"}"#;

/// Waits until a call with `headers` fails with the gRPC `code`; returns the error.
async fn refused(w: &World, what: &str, headers: &[&str], code: &str) -> String {
    w.eventually(what, CHANGE_BOUND, || async {
        match w.call(true, "example.com", METHOD, HELLO, headers).await {
            Err(e) if e.contains(code) => Ok(e),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kongconsumer_key_auth_on_a_grpcroute_and_revocation() {
    let mut w = World::start().await;
    // The KIC CRDs (KongPlugin, KongConsumer), then a controller that sees them.
    w.apply_file(&repo().join("crds/kongplugins.yaml")).await;
    for crd in ["crd/kongplugins.configuration.konghq.com", "crd/kongconsumers.configuration.konghq.com"] {
        w.kubectl(&["wait", "--for=condition=Established", crd, "--timeout=30s"]).await;
    }
    w.controller = None;
    w.start_controller().await;

    w.apply(&example("00-gateway/gateway.yaml")).await;
    let grpcbin = w.backend_named("grpcbin").await;
    w.apply(&example("01-grpcbin/grpcbin.yaml")).await;
    w.endpoints("grpcbin", "grpc", &[grpcbin.addr()]).await;
    w.eventually("GRPCRoute serves", CHANGE_BOUND, || async { w.call(true, "example.com", METHOD, HELLO, &[]).await })
        .await;

    w.apply(AUTH).await;
    w.kubectl(&["annotate", "grpcroute", "grpcbin", "konghq.com/plugins=key-auth"]).await;
    let err = refused(&w, "a call without the key is refused", &[], "Unauthenticated").await;
    assert!(err.contains("No API key found in request"), "{err}");
    let reply = w
        .eventually("a call with the key passes", CHANGE_BOUND, || async {
            w.call(true, "example.com", METHOD, HELLO, &["apikey: e2e-alice-key"]).await
        })
        .await;
    assert_eq!(reply, r#"{"reply":"hello Kong"}"#);

    // A consumer-scoped limit: alice is limited, bob on the same route is not.
    w.apply(SCOPED).await;
    w.kubectl(&["annotate", "kongconsumer", "alice", "konghq.com/plugins=alice-limit"]).await;
    let err = refused(&w, "alice is rate limited", &["apikey: e2e-alice-key"], "ResourceExhausted").await;
    assert!(err.contains("API rate limit exceeded"), "{err}");
    w.eventually("bob's key is served", CHANGE_BOUND, || async {
        w.call(true, "example.com", METHOD, HELLO, &["apikey: e2e-bob-key"]).await
    })
    .await;
    for i in 0..3 {
        let reply = w.call(true, "example.com", METHOD, HELLO, &["apikey: e2e-bob-key"]).await;
        assert_eq!(reply.as_deref(), Ok(r#"{"reply":"hello Kong"}"#), "bob's call {i}");
    }

    // Revocation: without its Secret the key names no consumer.
    w.kubectl(&["delete", "secret", "alice-key"]).await;
    let err = refused(&w, "the key is revoked", &["apikey: e2e-alice-key"], "Unauthenticated").await;
    assert!(err.contains("Unauthorized"), "{err}");
    // The KongConsumer now names a missing Secret: an Event says so, without any key.
    let note = w
        .eventually("Event on the KongConsumer", CHANGE_BOUND, || async {
            let events = w.get_json(&["events.events.k8s.io"]).await;
            let items = events["items"].as_array().cloned().unwrap_or_default();
            items
                .iter()
                .filter(|e| e["regarding"]["kind"] == "KongConsumer" && e["regarding"]["name"] == "alice")
                .filter_map(|e| e["note"].as_str().map(str::to_string))
                .find(|n| n.contains("alice-key"))
                .ok_or_else(|| format!("{items:?}"))
        })
        .await;
    assert!(note.contains("not found") && !note.contains("e2e-alice-key"), "{note}");
}
