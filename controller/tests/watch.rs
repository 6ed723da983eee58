//! Kubernetes mode against a scripted API server (tower-test mock service behind a real
//! `kube::Client`): nothing is pushed before every watch has synced; an Ingress added, changed and
//! deleted leads to the matching pushes; a restarted proxy gets the config again; the leader writes
//! the Ingress status after a successful push.

mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use controller::{app, Settings};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Value};
use support::FakeAdmin;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

type Body = UnsyncBoxBody<Bytes, Infallible>;

fn full(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())).boxed_unsync());
    *r.status_mut() = status;
    r
}

fn not_found() -> Response<Body> {
    full(
        StatusCode::NOT_FOUND,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
    )
}

/// A watch response whose events the test sends through the returned channel.
fn streaming() -> (mpsc::UnboundedSender<Bytes>, Response<Body>) {
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    (tx, Response::new(BodyExt::boxed_unsync(StreamBody::new(stream))))
}

fn ingress(name: &str, host: &str, rv: u32) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "resourceVersion": rv.to_string()},
        "spec": {"ingressClassName": "kong", "rules": [{"host": host, "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}
    })
}

fn service() -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default", "uid": "uid-svc", "resourceVersion": "1"},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
}

/// The scripted API server.
struct Api {
    /// Watch streams by resource path; kept open for the test's lifetime.
    watches: Mutex<HashMap<String, mpsc::UnboundedSender<Bytes>>>,
    watch_opened: Notify,
    /// Requests seen: (method, path).
    requests: Mutex<Vec<(String, String, String)>>,
    /// Query strings seen: (path, query).
    queries: Mutex<Vec<(String, String)>>,
    /// The Ingress list is answered only once this is true (to test "no push before sync").
    release_ingresses: tokio::sync::watch::Sender<bool>,
}

impl Api {
    fn ingress_watch(&self) -> Option<mpsc::UnboundedSender<Bytes>> {
        self.watches.lock().unwrap().get("/apis/networking.k8s.io/v1/ingresses").cloned()
    }

    fn send(&self, kind: &str, object: Value) {
        let tx = self.ingress_watch().expect("ingress watch open");
        tx.send(Bytes::from(format!("{}\n", json!({"type": kind, "object": object})))).unwrap();
    }

    fn requested(&self, method: &str, path: &str) -> Option<String> {
        self.requests.lock().unwrap().iter().find(|(m, p, _)| m == method && p == path).map(|(_, _, b)| b.clone())
    }

    /// Waits (bounded) for a request; returns its body.
    async fn wait_requested(&self, method: &str, path: &str) -> Option<String> {
        for _ in 0..250 {
            if let Some(body) = self.requested(method, path) {
                return Some(body);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

async fn serve(api: Arc<Api>, mut handle: tower_test::mock::Handle<Request<kube::client::Body>, Response<Body>>) {
    while let Some((req, send)) = handle.next_request().await {
        let api = api.clone();
        tokio::spawn(async move {
            let method = req.method().to_string();
            let path = req.uri().path().to_string();
            let watch = req.uri().query().is_some_and(|q| q.contains("watch=true"));
            if let Some(q) = req.uri().query() {
                api.queries.lock().unwrap().push((path.clone(), q.to_string()));
            }
            let body = req.into_body().collect_bytes().await.unwrap_or_default();
            api.requests.lock().unwrap().push((method.clone(), path.clone(), String::from_utf8_lossy(&body).into()));
            let list = |kind: &str, items: Vec<Value>| {
                full(
                    StatusCode::OK,
                    &json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}),
                )
            };
            let resp = match (method.as_str(), path.as_str()) {
                ("GET", p) if watch => {
                    let (tx, resp) = streaming();
                    api.watches.lock().unwrap().insert(p.to_string(), tx);
                    api.watch_opened.notify_waiters();
                    resp
                }
                ("GET", "/apis/networking.k8s.io/v1/ingresses") => {
                    let mut released = api.release_ingresses.subscribe();
                    let _ = released.wait_for(|r| *r).await;
                    let mut broken = ingress("broken", "broken.example.com", 1);
                    broken["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] = json!("missing");
                    list("IngressList", vec![ingress("web", "a.example.com", 1), broken])
                }
                ("GET", "/api/v1/services") => list("ServiceList", vec![service()]),
                ("GET", "/apis/networking.k8s.io/v1/ingressclasses")
                | ("GET", "/apis/discovery.k8s.io/v1/endpointslices")
                | ("GET", "/api/v1/secrets")
                | ("GET", "/api/v1/configmaps") => list("List", vec![]),
                ("POST", p) if p.ends_with("/leases") => {
                    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    full(StatusCode::CREATED, &v)
                }
                ("PATCH", p) if p.ends_with("/status") => {
                    let name = p.trim_end_matches("/status").rsplit('/').next().unwrap_or_default().to_string();
                    full(StatusCode::OK, &ingress(&name, "x", 9))
                }
                _ => not_found(),
            };
            send.send_response(resp);
        });
    }
}

fn hosts(config: &proxy_config::Config) -> Vec<String> {
    let mut h: Vec<String> =
        config.services.iter().flat_map(|s| s.routes.iter().flat_map(|r| r.hosts.clone())).collect();
    h.sort();
    h
}

#[tokio::test]
async fn ingress_lifecycle_leads_to_matching_pushes() {
    let admin = FakeAdmin::start().await;
    let (mock, handle) = tower_test::mock::pair::<Request<kube::client::Body>, Response<Body>>();
    let client = kube::Client::new(mock, "default");
    let api = Arc::new(Api {
        watches: Mutex::default(),
        watch_opened: Notify::new(),
        requests: Mutex::default(),
        queries: Mutex::default(),
        release_ingresses: tokio::sync::watch::Sender::new(false),
    });
    tokio::spawn(serve(api.clone(), handle));

    let settings = Settings::try_parse_from([
        "sluice-controller",
        "--kong-admin-url",
        &admin.admin_url(),
        "--proxy-sync-seconds",
        "0.05",
        "--health-probe-bind-address",
        "off",
        "--metrics-bind-address",
        "off",
        "--publish-status-address",
        "203.0.113.9",
    ])
    .unwrap();
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move { app::run_with_client(client, Arc::new(settings), t).await });

    // Every other store syncs; the Ingress list is held back: nothing may be pushed.
    assert!(admin.wait_applied(1, Duration::from_millis(500)).await.is_none());
    assert!(admin.posted().is_empty(), "pushed before every store synced");
    api.release_ingresses.send_replace(true);
    let first = admin.wait_applied(1, Duration::from_secs(10)).await.expect("first push after sync");
    assert_eq!(hosts(&first), vec!["a.example.com"]);
    // ConfigMaps are listed and watched (grpc-gateway sources and BackendTLSPolicy CA bundles; what
    // is kept of each is strip_config_map's unit test).
    let queries = api.queries.lock().unwrap().clone();
    assert!(queries.iter().any(|(p, _)| p == "/api/v1/configmaps"), "{queries:?}");

    // The Ingress watch is open once the list is done (bounded wait).
    for _ in 0..100 {
        if api.ingress_watch().is_some() {
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), api.watch_opened.notified()).await;
    }
    api.send("MODIFIED", ingress("web", "b.example.com", 2));
    let changed = admin.wait_applied(2, Duration::from_secs(5)).await.expect("push after change");
    assert_eq!(hosts(&changed), vec!["b.example.com"]);

    api.send("ADDED", ingress("web2", "c.example.com", 3));
    let added = admin.wait_applied(3, Duration::from_secs(5)).await.expect("push after add");
    assert_eq!(hosts(&added), vec!["b.example.com", "c.example.com"]);

    api.send("DELETED", ingress("web", "b.example.com", 4));
    let deleted = admin.wait_applied(4, Duration::from_secs(5)).await.expect("push after delete");
    assert_eq!(hosts(&deleted), vec!["c.example.com"]);

    admin.restart();
    let again = admin.wait_applied(5, Duration::from_secs(5)).await.expect("re-push after proxy restart");
    assert_eq!(again, deleted);

    // The leader (the Lease was created) wrote web2's status with the publish address.
    let path = "/apis/networking.k8s.io/v1/namespaces/default/ingresses/web2/status";
    let patch = api.wait_requested("PATCH", path).await.expect("status patch for web2");
    assert!(patch.contains("203.0.113.9"), "{patch}");

    // The broken Ingress got a Warning Event naming it and the reason, and never blocked the others.
    let event = api.wait_requested("POST", "/apis/events.k8s.io/v1/namespaces/default/events").await.expect("an Event");
    assert!(event.contains("KongConfigurationTranslationFailed") && event.contains("\"broken\""), "{event}");
    assert!(event.contains("Service default/missing not found"), "{event}");
    token.cancel();
}
