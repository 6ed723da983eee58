//! Kong plugins the way a KIC user applies them: `kubectl apply` a KongPlugin, `kubectl annotate`
//! an Ingress with `konghq.com/plugins`, and the plugin's effect shows through the proxy
//! (`request-transformer` adds a header that the demo backend echoes back, `x-echo-*`). Deleting
//! the KongPlugin while the Ingress still names it fails closed: the route goes away and the
//! Ingress gets an Event naming the missing plugin; removing the annotation brings the route back
//! without the plugin.

mod support;

use std::time::Duration;

use sluice_demo::{grpc_call, spawn, BackendOptions};
use support::*;

const HOST: &str = "plugins.example.com";
const ECHO: &str = "echo.Echo/Echo";

const APP: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: echo
  namespace: default
  annotations:
    konghq.com/protocol: grpc
spec:
  ports:
  - name: grpc
    port: 9000
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: echo
  namespace: default
  annotations:
    konghq.com/protocols: grpc,grpcs
spec:
  ingressClassName: kong
  rules:
  - host: plugins.example.com
    http:
      paths:
      - path: /
        pathType: ImplementationSpecific
        backend:
          service:
            name: echo
            port:
              number: 9000
"#;

const PLUGIN: &str = r#"apiVersion: configuration.konghq.com/v1
kind: KongPlugin
metadata:
  name: add-echo-header
  namespace: default
plugin: request-transformer
config:
  add:
    headers:
    - "x-echo-plugin:added-by-sluice"
"#;

/// One unary call through the plaintext port; `Ok(response header lines)` or `Err(status)`.
async fn call_headers(w: &World) -> Result<Vec<String>, String> {
    let target = grpc_call::Target { addr: w.plain().to_string(), authority: Some(HOST.into()), tls: None };
    let channel = grpc_call::channel(&target).map_err(|e| e.to_string())?;
    let opts = grpc_call::Options { timeout: Some(Duration::from_secs(5)), verbose: true };
    let mut headers = Vec::new();
    let mut out = |o: grpc_call::Output| {
        if let grpc_call::Output::Header(h) = o {
            headers.push(h);
        }
    };
    grpc_call::call(channel, ECHO, r#"{"message":"hi"}"#, Default::default(), opts, &mut out)
        .await
        .map_err(|e| e.to_string())?;
    Ok(headers)
}

fn added(headers: &[String]) -> bool {
    headers.iter().any(|h| h == "x-echo-plugin: added-by-sluice")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kongplugin_annotation_applies_and_fails_closed() {
    let mut w = World::start().await;
    // The plugin CRDs, then a controller that sees them: it watches a custom kind only when the
    // cluster serves it at start-up.
    w.apply_file(&repo().join("crds/kongplugins.yaml")).await;
    w.kubectl(&["wait", "--for=condition=Established", "crd/kongplugins.configuration.konghq.com", "--timeout=30s"])
        .await;
    w.controller = None;
    w.start_controller().await;

    let backend = spawn(BackendOptions::named("plugin-echo")).await.unwrap();
    w.apply(APP).await;
    w.endpoints("echo", "grpc", &[backend.addr()]).await;
    let headers = w.eventually("route without plugin", CHANGE_BOUND, || async { call_headers(&w).await }).await;
    assert!(!added(&headers), "{headers:?}");

    w.apply(PLUGIN).await;
    w.kubectl(&["annotate", "ingress", "echo", "konghq.com/plugins=add-echo-header"]).await;
    w.eventually("the plugin's header comes back", CHANGE_BOUND, || async {
        match call_headers(&w).await {
            Ok(h) if added(&h) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // Fail closed: without the KongPlugin it names, the Ingress's route is left out.
    w.kubectl(&["delete", "kongplugin", "add-echo-header"]).await;
    let err = w
        .eventually("route left out", CHANGE_BOUND, || async {
            match call_headers(&w).await {
                Err(e) if e.contains("Unimplemented") => Ok(e),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    assert!(!err.is_empty());
    let note = w
        .eventually("Event on the Ingress", CHANGE_BOUND, || async {
            let events = w.get_json(&["events.events.k8s.io"]).await;
            let items = events["items"].as_array().cloned().unwrap_or_default();
            items
                .iter()
                .filter(|e| e["regarding"]["kind"] == "Ingress" && e["regarding"]["name"] == "echo")
                .filter_map(|e| e["note"].as_str().map(str::to_string))
                .find(|n| n.contains("add-echo-header"))
                .ok_or_else(|| format!("{items:?}"))
        })
        .await;
    assert!(note.contains("does not exist"), "{note}");

    // Without the annotation the route is back, and the plugin is gone.
    w.kubectl(&["annotate", "ingress", "echo", "konghq.com/plugins-"]).await;
    let headers = w.eventually("route back without plugin", CHANGE_BOUND, || async { call_headers(&w).await }).await;
    assert!(!added(&headers), "{headers:?}");
}
