//! The product the way users use it: real `kubectl annotate` / `apply` / `delete` against a real
//! kube-apiserver (the shipped CRDs and install manifests applied, the controller running as the
//! manifests' ServiceAccount), real `sluice-controller` and `sluice-proxy` processes, real gRPC calls
//! through the proxy's plaintext (h2c) and TLS ports. Every status the controller writes must pass
//! the real API server's validation, or the status checks here time out.

mod support;

use sluice_demo::BackendOptions;
use std::collections::BTreeSet;
use std::time::Duration;
use support::*;

fn backend_of(reply: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(reply).unwrap_or_default();
    v["backend"].as_str().unwrap_or_default().to_string()
}

/// Kong's gRPC guide: annotate the Service, route with an Ingress and a GRPCRoute, call on both ports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_1_kong_grpc_guide() {
    let w = World::start().await;
    w.apply(&example("00-gateway/gateway.yaml")).await;
    let grpcbin = w.backend_named("grpcbin").await;
    // The Service as users first create it: no protocol annotation yet.
    let unannotated = example("01-grpcbin/grpcbin.yaml").replace("  annotations:\n    konghq.com/protocol: grpc\n", "");
    assert!(!unannotated.contains("konghq.com/protocol: grpc"));
    w.apply(&unannotated).await;
    w.endpoints("grpcbin", "grpc", &[grpcbin.addr()]).await;

    // Without the annotation the upstream is HTTP/1.1 and gRPC cannot work (as in Kong).
    let err = w
        .eventually("routes pushed", CHANGE_BOUND, || async {
            match w.call(false, "grpcbin.local", "hello.HelloService/SayHello", r#"{"greeting":"Kong"}"#, &[]).await {
                Err(e) if !e.contains("Unimplemented") => Ok(e),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    assert!(!err.is_empty());

    w.kubectl(&["annotate", "service", "grpcbin", "konghq.com/protocol=grpc"]).await;
    let reply = w
        .eventually("annotation takes effect", CHANGE_BOUND, || async {
            w.call(false, "grpcbin.local", "hello.HelloService/SayHello", r#"{"greeting":"Kong"}"#, &[]).await
        })
        .await;
    assert_eq!(reply, r#"{"reply":"hello Kong"}"#);

    // TLS port, GRPCRoute for example.com (Gateway HTTPS listener, ALPN h2).
    let reply = w
        .eventually("GRPCRoute over TLS", CHANGE_BOUND, || async {
            w.call(true, "example.com", "hello.HelloService/SayHello", r#"{"greeting":"Kong"}"#, &[]).await
        })
        .await;
    assert_eq!(reply, r#"{"reply":"hello Kong"}"#);

    // Statuses: the Ingress gets the publish address; the GRPCRoute is Accepted with resolved refs.
    let ing = w
        .eventually("Ingress status", CHANGE_BOUND, || async {
            let v = w.get_json(&["ingress", "grpcbin"]).await;
            let ip = v["status"]["loadBalancer"]["ingress"][0]["ip"].as_str().unwrap_or_default().to_string();
            if ip.is_empty() {
                Err(v["status"].to_string())
            } else {
                Ok(ip)
            }
        })
        .await;
    assert_eq!(ing, "192.0.2.10");
    let route = w
        .eventually("GRPCRoute status", CHANGE_BOUND, || async {
            let v = w.get_json(&["grpcroute", "grpcbin"]).await;
            let parents = v["status"]["parents"].as_array().cloned().unwrap_or_default();
            if parents.is_empty() {
                Err(v["status"].to_string())
            } else {
                Ok(v)
            }
        })
        .await;
    let parent = &route["status"]["parents"][0];
    assert_eq!(parent["controllerName"], "konghq.com/kic-gateway-controller");
    let conditions = parent["conditions"].as_array().unwrap();
    let cond =
        |t: &str| conditions.iter().find(|c| c["type"] == t).unwrap_or_else(|| panic!("no {t} in {conditions:?}"));
    assert_eq!(cond("Accepted")["status"], "True");
    assert_eq!(cond("ResolvedRefs")["status"], "True");
    assert_eq!(cond("Accepted")["observedGeneration"], route["metadata"]["generation"]);

    // The GatewayClass and the Gateway: statuses the real schemas accepted, read back.
    w.eventually("GatewayClass Accepted", CHANGE_BOUND, || async {
        let v = w.get_json(&["gatewayclass", "kong"]).await;
        let conds = v["status"]["conditions"].as_array().cloned().unwrap_or_default();
        match conds.iter().find(|c| c["type"] == "Accepted") {
            Some(c) if c["status"] == "True" && c["observedGeneration"] == v["metadata"]["generation"] => Ok(()),
            _ => Err(v["status"].to_string()),
        }
    })
    .await;
    let gw = w
        .eventually("Gateway Accepted and Programmed", CHANGE_BOUND, || async {
            let v = w.get_json(&["gateway", "kong"]).await;
            let conds = v["status"]["conditions"].as_array().cloned().unwrap_or_default();
            let is_true = |t: &str| conds.iter().any(|c| c["type"] == t && c["status"] == "True");
            if is_true("Accepted") && is_true("Programmed") {
                Ok(v)
            } else {
                Err(v["status"].to_string())
            }
        })
        .await;
    assert_eq!(gw["status"]["addresses"][0]["value"], "192.0.2.10", "{}", gw["status"]);
    let listeners = gw["status"]["listeners"].as_array().cloned().unwrap_or_default();
    let names: BTreeSet<&str> = listeners.iter().filter_map(|l| l["name"].as_str()).collect();
    assert_eq!(names, BTreeSet::from(["http", "https"]), "{}", gw["status"]);
    for l in &listeners {
        // The GRPCRoute (no sectionName) attaches to both listeners.
        assert_eq!(l["attachedRoutes"], 1, "{l}");
        let kinds: Vec<&str> =
            l["supportedKinds"].as_array().unwrap().iter().filter_map(|k| k["kind"].as_str()).collect();
        assert!(kinds.contains(&"GRPCRoute"), "{l}");
    }
}

/// echo: method and header routing to v1/v2, and reflection through the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_2_echo_canary_and_reflection() {
    let w = World::start().await;
    w.apply(&example("00-gateway/gateway.yaml")).await;
    w.apply(&example("02-echo/echo.yaml")).await;
    let (v1, v2) = (w.backend_named("echo-v1").await, w.backend_named("echo-v2").await);
    w.endpoints("echo-v1", "grpc", &[v1.addr()]).await;
    w.endpoints("echo-v2", "grpc", &[v2.addr()]).await;
    let call = |method: &'static str, headers: &'static [&'static str]| {
        let w = &w;
        async move {
            w.call(false, "echo.example.com", method, r#"{"message":"hi"}"#, headers).await.map(|r| backend_of(&r))
        }
    };
    for (method, headers, want) in [
        ("echo.Echo/Echo", &[][..], "echo-v1"),
        ("echo.Echo/Echo", &["env: canary"][..], "echo-v2"),
        ("echo.Echo/EchoV2", &[][..], "echo-v2"),
    ] {
        let got = w
            .eventually(&format!("{method} {headers:?} -> {want}"), CHANGE_BOUND, || async {
                match call(method, headers).await {
                    Ok(b) if b == want => Ok(b),
                    other => Err(format!("{other:?}")),
                }
            })
            .await;
        assert_eq!(got, want);
    }
    // Reflection through the proxy lists the services.
    let target = sluice_demo::grpc_call::Target {
        addr: w.plain().to_string(),
        tls: None,
        authority: Some("echo.example.com".into()),
    };
    let channel = sluice_demo::grpc_call::channel(&target).unwrap();
    let services = sluice_demo::grpc_call::list_services(channel, Default::default()).await.unwrap();
    assert!(services.iter().any(|s| s == "echo.Echo"), "{services:?}");
    // An unknown method on the host: UNIMPLEMENTED from the proxy.
    let err =
        w.call(false, "nothing.example.com", "com.example.User/Login", r#"{"username":"x"}"#, &[]).await.unwrap_err();
    assert!(err.contains("Unimplemented"), "{err}");
}

/// The Gateway API guide: foo/bar hosts, Login method, canary header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_3_gateway_api_guide() {
    let w = World::start().await;
    w.apply(&example("00-gateway/gateway.yaml")).await;
    w.apply(&example("03-gateway-api-guide/user.yaml")).await;
    let foo = w.backend_named("foo-svc").await;
    let bar = w.backend_named("bar-svc").await;
    let canary = w.backend_named("bar-svc-canary").await;
    w.endpoints("foo-svc", "grpc", &[foo.addr()]).await;
    w.endpoints("bar-svc", "grpc", &[bar.addr()]).await;
    w.endpoints("bar-svc-canary", "grpc", &[canary.addr()]).await;
    let login = |host: &'static str, headers: &'static [&'static str]| {
        let w = &w;
        async move {
            w.call(false, host, "com.example.User/Login", r#"{"username":"alice"}"#, headers)
                .await
                .map(|r| backend_of(&r))
        }
    };
    for (host, headers, want) in [
        ("foo.example.com", &[][..], "foo-svc"),
        ("bar.example.com", &[][..], "bar-svc"),
        ("bar.example.com", &["env: canary"][..], "bar-svc-canary"),
    ] {
        let got = w
            .eventually(&format!("{host} {headers:?} -> {want}"), CHANGE_BOUND, || async {
                match login(host, headers).await {
                    Ok(b) if b == want => Ok(b),
                    other => Err(format!("{other:?}")),
                }
            })
            .await;
        assert_eq!(got, want);
    }
    // foo.example.com only routes Login: another method there is UNIMPLEMENTED.
    let err = w.call(false, "foo.example.com", "echo.Echo/Echo", r#"{"message":"x"}"#, &[]).await.unwrap_err();
    assert!(err.contains("Unimplemented"), "{err}");
}

/// gRPC (h2c) and gRPCS (h2 over TLS) upstreams, each round-robin over two endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_4_grpc_and_grpcs_upstreams_round_robin() {
    let w = World::start().await;
    w.apply(&example("00-gateway/gateway.yaml")).await;
    w.apply(&example("04-grpc-grpcs-upstreams/upstreams.yaml")).await;
    let (a, b) = (w.backend_named("plain-a").await, w.backend_named("plain-b").await);
    let (cert, key) = sluice_demo::self_signed(&["echo-grpcs.default.svc"]);
    let ta = w.backend(BackendOptions::named("tls-a").with_tls(cert.clone(), key.clone())).await;
    let tb = w.backend(BackendOptions::named("tls-b").with_tls(cert, key)).await;
    w.endpoints("echo-grpc", "grpc", &[a.addr(), b.addr()]).await;
    w.endpoints("echo-grpcs", "grpcs", &[ta.addr(), tb.addr()]).await;
    for (host, want) in [("plain.example.com", ["plain-a", "plain-b"]), ("secure.example.com", ["tls-a", "tls-b"])] {
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        // Round robin: once both endpoints are live, four calls reach both.
        w.eventually(&format!("{host} round robin"), CHANGE_BOUND, || async {
            let mut seen = BTreeSet::new();
            for _ in 0..4 {
                let r = w.call(false, host, "echo.Echo/Echo", r#"{"message":"rr"}"#, &[]).await?;
                seen.insert(backend_of(&r));
            }
            if seen == want {
                Ok(())
            } else {
                Err(format!("{seen:?}"))
            }
        })
        .await;
    }
    // The TLS backends really saw TLS: they only speak h2 over TLS.
    assert!(ta.stats().total_started() > 0 && tb.stats().total_started() > 0);
}

/// Change flows: annotation removed and re-added, endpoints scaled, Ingress deleted, each visible
/// at the proxy within 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_5_changes_reach_the_proxy_within_5s() {
    let w = World::start().await;
    w.apply(&example("00-gateway/gateway.yaml")).await;
    w.apply(&example("01-grpcbin/grpcbin.yaml")).await;
    let one = w.backend_named("one").await;
    let two = w.backend_named("two").await;
    w.endpoints("grpcbin", "grpc", &[one.addr()]).await;
    assert_eq!(w.eventually("initial config", CHANGE_BOUND, || echo_via_grpcbin(&w)).await, "one");

    // Remove the protocol annotation: the upstream becomes HTTP/1.1 and gRPC fails.
    w.kubectl(&["annotate", "service", "grpcbin", "konghq.com/protocol-"]).await;
    w.eventually("annotation removal", CHANGE_BOUND, || async {
        match echo_via_grpcbin(&w).await {
            Ok(b) => Err(format!("still answered by {b}")),
            Err(e) => Ok(e),
        }
    })
    .await;
    w.kubectl(&["annotate", "service", "grpcbin", "konghq.com/protocol=grpc"]).await;
    w.eventually("annotation re-added", CHANGE_BOUND, || echo_via_grpcbin(&w)).await;

    // Scale the endpoints from one to two: both answer.
    w.endpoints("grpcbin", "grpc", &[one.addr(), two.addr()]).await;
    w.eventually("scaled endpoints", CHANGE_BOUND, || async {
        let mut seen = BTreeSet::new();
        for _ in 0..4 {
            seen.insert(echo_via_grpcbin(&w).await?);
        }
        if seen.len() == 2 {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    })
    .await;

    // The Ingress gets the publish address; deleting it removes the route.
    w.eventually("Ingress status", CHANGE_BOUND, || async {
        let v = w.get_json(&["ingress", "grpcbin"]).await;
        match v["status"]["loadBalancer"]["ingress"][0]["ip"].as_str() {
            Some("192.0.2.10") => Ok(()),
            _ => Err(v["status"].to_string()),
        }
    })
    .await;
    w.kubectl(&["delete", "ingress", "grpcbin"]).await;
    let err = w
        .eventually("Ingress deletion", CHANGE_BOUND, || async {
            match echo_via_grpcbin(&w).await {
                Err(e) if e.contains("Unimplemented") => Ok(e),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    assert!(err.contains("no Route matched"), "{err}");
}

async fn echo_via_grpcbin(w: &World) -> Result<String, String> {
    w.call(false, "grpcbin.local", "echo.Echo/Echo", r#"{"message":"x"}"#, &[]).await.map(|r| backend_of(&r))
}

/// Cross-namespace backendRef: RefNotPermitted and UNAVAILABLE without a ReferenceGrant, working
/// within 5 s after it is applied, failing again within 5 s after it is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_reference_grant_flow() {
    let w = World::start().await;
    w.apply(&example("00-gateway/gateway.yaml")).await;
    let other = w.backend_named("other-ns").await;
    w.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: backends\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: remote\n  namespace: backends\nspec:\n  ports:\n  - name: grpc\n    port: 9000\n    appProtocol: kubernetes.io/h2c\n",
    )
    .await;
    let port = other.addr().port();
    w.apply(&format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: remote-e2e\n  namespace: backends\n  labels:\n    kubernetes.io/service-name: remote\naddressType: IPv4\nports:\n- name: grpc\n  port: {port}\n  protocol: TCP\nendpoints:\n- addresses: [\"{ip}\"]\n  conditions:\n    ready: true\n",
        ip = w.net.ip()
    ))
    .await;
    w.apply(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata:\n  name: cross\n  namespace: default\nspec:\n  parentRefs:\n  - name: kong\n  hostnames: [cross.example.com]\n  rules:\n  - backendRefs:\n    - name: remote\n      namespace: backends\n      port: 9000\n",
    )
    .await;
    let call = || w.call(false, "cross.example.com", "echo.Echo/Echo", r#"{"message":"x"}"#, &[]);
    let resolved = |want: &'static str| {
        let w = &w;
        async move {
            let v = w.get_json(&["grpcroute", "cross"]).await;
            let conds = v["status"]["parents"][0]["conditions"].as_array().cloned().unwrap_or_default();
            let rr = conds.iter().find(|c| c["type"] == "ResolvedRefs").cloned().unwrap_or_default();
            if rr["reason"] == want {
                Ok(rr)
            } else {
                Err(v["status"].to_string())
            }
        }
    };
    w.eventually("RefNotPermitted status", CHANGE_BOUND, || resolved("RefNotPermitted")).await;
    let err = w
        .eventually("UNAVAILABLE without grant", CHANGE_BOUND, || async {
            match call().await {
                Err(e) if e.contains("Unavailable") => Ok(e),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    assert!(err.contains("Unavailable"));

    let grant = "apiVersion: gateway.networking.k8s.io/v1\nkind: ReferenceGrant\nmetadata:\n  name: allow-default\n  namespace: backends\nspec:\n  from:\n  - group: gateway.networking.k8s.io\n    kind: GRPCRoute\n    namespace: default\n  to:\n  - group: \"\"\n    kind: Service\n";
    w.apply(grant).await;
    let reply = w.eventually("works with grant", CHANGE_BOUND, || async { call().await }).await;
    assert_eq!(backend_of(&reply), "other-ns");
    w.eventually("ResolvedRefs status", CHANGE_BOUND, || resolved("ResolvedRefs")).await;

    w.kubectl(&["delete", "referencegrant", "allow-default", "-n", "backends"]).await;
    w.eventually("fails again without grant", CHANGE_BOUND, || async {
        match call().await {
            Err(e) if e.contains("Unavailable") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

/// A 90/10 weighted GRPCRoute lands within ±5% over 2,000 calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_weighted_90_10_split_over_2000_calls() {
    use sluice_demo::echo::echo_client::EchoClient;
    use sluice_demo::echo::EchoRequest;
    let w = World::start().await;
    w.apply(&example("00-gateway/gateway.yaml")).await;
    let (heavy, light) = (w.backend_named("ninety").await, w.backend_named("ten").await);
    let mut docs = Vec::new();
    for name in ["ninety", "ten"] {
        docs.push(format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  ports:\n  - name: grpc\n    port: 9000\n    appProtocol: kubernetes.io/h2c\n"
        ));
    }
    docs.push(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata:\n  name: split\n  namespace: default\nspec:\n  parentRefs:\n  - name: kong\n  hostnames: [split.example.com]\n  rules:\n  - backendRefs:\n    - name: ninety\n      port: 9000\n      weight: 90\n    - name: ten\n      port: 9000\n      weight: 10\n"
            .to_string(),
    );
    w.apply(&docs.join("---\n")).await;
    w.endpoints("ninety", "grpc", &[heavy.addr()]).await;
    w.endpoints("ten", "grpc", &[light.addr()]).await;
    // Live once both backends answer.
    w.eventually("weighted route", CHANGE_BOUND, || async {
        let mut seen = BTreeSet::new();
        for _ in 0..20 {
            let r = w.call(false, "split.example.com", "echo.Echo/Echo", r#"{"message":"w"}"#, &[]).await?;
            seen.insert(backend_of(&r));
        }
        if seen.len() == 2 {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    })
    .await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", w.plain()))
        .unwrap()
        .origin("http://split.example.com".parse().unwrap())
        .connect()
        .await
        .unwrap();
    let mut client = EchoClient::new(channel);
    let mut ninety = 0u32;
    for _ in 0..2000 {
        let r = client.echo(EchoRequest { message: "w".into(), payload: vec![] }).await.unwrap().into_inner();
        if r.backend == "ninety" {
            ninety += 1;
        } else {
            assert_eq!(r.backend, "ten");
        }
    }
    let share = f64::from(ninety) / 2000.0;
    assert!((share - 0.9).abs() <= 0.05, "90/10 split landed {ninety}/2000");
}

/// The routes of [`statuses_are_stored_as_written`]: one per kind of status the controller writes
/// (accepted, a dropped rule, no matching listener, a refused cross-namespace backend, left out of
/// the config for a missing KongPlugin).
const STATUS_ROUTES: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: left-out
  namespace: default
  annotations: {konghq.com/plugins: nope}
spec:
  parentRefs: [{name: kong}]
  hostnames: [left-out.example.com]
  rules:
  - backendRefs: [{name: grpcbin, port: 9001}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: default}
spec:
  parentRefs: [{name: kong}]
  hostnames: [web.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: grpcbin, port: 9001}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: partly, namespace: default}
spec:
  parentRefs: [{name: kong, sectionName: http}]
  hostnames: [partly.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /ok}}]
    backendRefs: [{name: grpcbin, port: 9001}]
  - matches: [{queryParams: [{name: q, value: x}]}]
    backendRefs: [{name: grpcbin, port: 9001}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: nowhere, namespace: default}
spec:
  parentRefs: [{name: kong, sectionName: missing}]
  rules:
  - backendRefs: [{name: grpcbin, port: 9001}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: crossns, namespace: default}
spec:
  parentRefs: [{name: kong}]
  hostnames: [cross.example.com]
  rules:
  - backendRefs: [{name: grpcbin, namespace: elsewhere, port: 9001}]
"#;

/// A CEL admission policy that refuses status writes to HTTPRoutes labelled `e2e-refuse-status`:
/// how a status the schema rejects looks to the controller.
const REFUSE_STATUS_POLICY: &str = r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: refuse-route-status}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [gateway.networking.k8s.io]
      apiVersions: ["*"]
      operations: [UPDATE]
      resources: [httproutes/status]
  validations:
  - expression: "!has(object.metadata.labels) || !('e2e-refuse-status' in object.metadata.labels)"
    message: this HTTPRoute's status is refused by the test's admission policy
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: refuse-route-status}
spec:
  policyName: refuse-route-status
  validationActions: [Deny]
"#;

/// An HTTPRoute whose status writes the policy refuses; `parent` is the Gateway it names.
fn refused_route(name: &str, parent: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: {name}\n  namespace: default\n  labels: {{e2e-refuse-status: \"true\"}}\nspec:\n  parentRefs: [{{name: {parent}}}]\n  hostnames: [{name}.example.com]\n  rules:\n  - backendRefs: [{{name: grpcbin, port: 9001}}]\n"
    )
}

/// Every status the controller writes passes the real API server's schema and CEL rules and is
/// stored as written: once the controller settled, what it would write for the objects as the API
/// server stores them is exactly what they carry (a pruned, defaulted or refused field would show
/// as a status still to write), for the GatewayClass, the Gateway, the Ingress and routes of both
/// kinds in every condition the scenario can reach. A write the API server refuses (here: a CEL
/// admission policy) is an error in the controller's log and a `KongStatusUpdateFailed` Event on
/// the object; no other object gets one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_are_stored_as_written() {
    use controller::status::{desired, REASON_STATUS};
    use controller::{translate, ObjectRef, Settings};

    let w = World::start().await;
    // The policy first, and proven in force (a status write to a probe route whose parent is not
    // ours, so that only the test writes it, is refused) before the refused route exists.
    w.apply(REFUSE_STATUS_POLICY).await;
    w.apply(&refused_route("probe", "not-ours")).await;
    w.eventually("admission policy in force", Duration::from_secs(30), || async {
        let patch = r#"{"status":{"parents":[]}}"#;
        let args = ["patch", "httproute", "probe", "--subresource=status", "--type=merge", "-p", patch];
        match w.kubectl.run(&args).await {
            Ok(out)
                if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("refused by the test") =>
            {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    w.apply(&example("00-gateway/gateway.yaml")).await;
    w.apply(&example("01-grpcbin/grpcbin.yaml")).await;
    w.apply(STATUS_ROUTES).await;
    w.apply(&refused_route("refused", "kong")).await;

    let settings = Settings::default();
    let client = w.cp.kube_client().await.unwrap();
    let watches = controller::watch::start(&client, &settings, true);
    watches.stores.wait_until_ready().await.unwrap();
    let refused = |o: &ObjectRef| o.kind == "HTTPRoute" && o.name == "refused";
    let expected: BTreeSet<String> = [
        "GatewayClass kong",
        "Gateway default/kong",
        "Ingress default/grpcbin",
        "GRPCRoute default/grpcbin",
        "GRPCRoute default/nowhere",
        "GRPCRoute default/crossns",
        "HTTPRoute default/web",
        "HTTPRoute default/partly",
        "HTTPRoute default/left-out",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let settled = w
        .eventually("statuses stored as the controller wrote them", Duration::from_secs(30), || async {
            let snapshot = watches.stores.snapshot();
            let t = translate(&snapshot, &settings);
            let updates = desired(
                &t.statuses,
                &snapshot,
                &["192.0.2.10".to_string()],
                &settings.gateway_controller_name,
                &controller::status::now(),
            );
            let seen: BTreeSet<String> =
                updates.iter().filter(|u| !refused(&u.object)).map(|u| u.object.to_string()).collect();
            let pending: Vec<String> = updates
                .iter()
                .filter(|u| u.changed && !refused(&u.object))
                .map(|u| format!("{}: wants {}", u.object, u.status))
                .collect();
            if !expected.is_subset(&seen) || !pending.is_empty() {
                return Err(format!("missing {:?}; not stored as written: {pending:?}", expected.difference(&seen)));
            }
            Ok(updates)
        })
        .await;
    // The stored statuses hold each reason the scenario aims at (so they were written, not absent).
    let reasons: BTreeSet<String> = settled
        .iter()
        .flat_map(|u| {
            let parents = u.status["parents"].as_array().cloned().unwrap_or_default();
            let mut conds: Vec<serde_json::Value> =
                parents.iter().flat_map(|p| p["conditions"].as_array().cloned().unwrap_or_default()).collect();
            conds.extend(u.status["conditions"].as_array().cloned().unwrap_or_default());
            conds.into_iter().map(move |c| {
                format!("{} {}={}", u.object, c["type"].as_str().unwrap_or(""), c["reason"].as_str().unwrap_or(""))
            })
        })
        .collect();
    for want in [
        "GRPCRoute default/grpcbin Accepted=Accepted",
        "GRPCRoute default/nowhere Accepted=NoMatchingParent",
        "GRPCRoute default/crossns ResolvedRefs=RefNotPermitted",
        "HTTPRoute default/web Accepted=Accepted",
        "HTTPRoute default/partly PartiallyInvalid=UnsupportedValue",
        "HTTPRoute default/left-out Accepted=UnsupportedValue",
        "Gateway default/kong Programmed=Programmed",
        "GatewayClass kong Accepted=Accepted",
    ] {
        assert!(reasons.contains(want), "no {want} in {reasons:#?}");
    }

    // The refused write: an Event on that route naming the refusal, and an error in the log.
    let selector = format!("--field-selector=reason={REASON_STATUS}");
    let events = || async {
        let v = w.get_json(&["events", "-A", &selector]).await;
        v["items"].as_array().cloned().unwrap_or_default()
    };
    let event = w
        .eventually("Event for the refused status write", Duration::from_secs(30), || async {
            let items = events().await;
            items
                .into_iter()
                .find(|e| e["involvedObject"]["name"] == "refused")
                .ok_or_else(|| "no Event yet".to_string())
        })
        .await;
    assert_eq!(event["involvedObject"]["kind"], "HTTPRoute", "{event}");
    assert!(event["message"].as_str().unwrap_or("").contains("refused by the test"), "{event}");
    assert!(w.controller_log().contains("writing the status failed"), "{}", w.controller_log());
    let others: Vec<serde_json::Value> =
        events().await.into_iter().filter(|e| e["involvedObject"]["name"] != "refused").collect();
    assert!(others.is_empty(), "status writes refused: {others:#?}");
}
