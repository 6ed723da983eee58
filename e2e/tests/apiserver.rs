//! End-to-end tests of the in-memory test API server with the real kubectl and kube-rs.
//!
//! kubectl is required: when it is missing these tests fail (they do not skip).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use e2e::{Kubectl, Options, TestApiServer};
use futures_util::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::runtime::{reflector, watcher};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const WAIT: Duration = Duration::from_secs(20);

struct Env {
    /// Kept alive for the test; dropping it stops the server.
    _server: TestApiServer,
    kubectl: Kubectl,
    dir: TempDir,
}

async fn env_with(options: Options) -> Env {
    let server = TestApiServer::start_with(options).await.expect("start the test API server");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).expect("write kubeconfig");
    let kubectl = Kubectl::new(kubeconfig, dir.path()).expect("kubectl is required for the e2e tests");
    Env { _server: server, kubectl, dir }
}

async fn env() -> Env {
    env_with(Options::default()).await
}

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata").join(name)
}

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).expect("kubectl printed YAML")
}

fn json_out(text: &str) -> Value {
    serde_json::from_str(text).expect("kubectl printed JSON")
}

const BUILTINS_V1: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: v1
kind: Service
metadata:
  name: grpcbin
  namespace: demo
  labels: {app: grpcbin, stage: one}
spec:
  selector: {app: grpcbin}
  ports:
  - name: grpc
    port: 9000
    targetPort: 9000
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: grpcbin
  namespace: demo
  annotations:
    konghq.com/protocols: grpc,grpcs
spec:
  ingressClassName: kong
  rules:
  - host: grpc.example
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service: {name: grpcbin, port: {number: 9000}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: grpcbin-abc
  namespace: demo
  labels: {kubernetes.io/service-name: grpcbin}
addressType: IPv4
ports:
- name: grpc
  port: 9000
  protocol: TCP
endpoints:
- addresses: [10.1.0.5]
  conditions: {ready: true}
"#;

#[tokio::test]
async fn kubectl_apply_annotate_label_patch_get_delete() {
    let env = env().await;
    let k = &env.kubectl;
    let out = k.apply(BUILTINS_V1, &[]).await.unwrap();
    for what in ["namespace/demo created", "service/grpcbin created", "ingress.networking.k8s.io/grpcbin created"] {
        assert!(out.contains(what), "{out}");
    }
    assert!(out.contains("endpointslice.discovery.k8s.io/grpcbin-abc created"), "{out}");

    k.ok(&["annotate", "service", "grpcbin", "-n", "demo", "konghq.com/protocol=grpc"]).await.unwrap();
    let svc = yaml(&k.ok(&["get", "service", "grpcbin", "-n", "demo", "-o", "yaml"]).await.unwrap());
    assert_eq!(svc["metadata"]["annotations"]["konghq.com/protocol"], "grpc");
    assert!(svc["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].is_string());
    assert_eq!(svc["metadata"]["generation"], 1, "metadata changes do not bump generation");
    assert!(svc["spec"]["clusterIP"].as_str().is_some_and(|ip| ip.starts_with("10.96.")));
    assert_eq!(svc["spec"]["ports"][0]["protocol"], "TCP");

    // Re-apply a modified file: port renamed and moved, a label dropped, another added.
    let v2 = BUILTINS_V1
        .replace("labels: {app: grpcbin, stage: one}", "labels: {app: grpcbin, added: yes-please}")
        .replace(
            "  - name: grpc\n    port: 9000\n    targetPort: 9000",
            "  - name: grpc-v2\n    port: 9001\n    targetPort: 9000",
        )
        .replace("host: grpc.example", "host: grpc2.example");
    let out = k.apply(&v2, &[]).await.unwrap();
    assert!(out.contains("service/grpcbin configured"), "{out}");
    assert!(out.contains("namespace/demo unchanged"), "{out}");
    let svc = json_out(&k.ok(&["get", "svc", "grpcbin", "-n", "demo", "-o", "json"]).await.unwrap());
    assert_eq!(svc["spec"]["ports"].as_array().unwrap().len(), 1, "{svc}");
    assert_eq!(svc["spec"]["ports"][0]["port"], 9001);
    assert_eq!(svc["spec"]["ports"][0]["name"], "grpc-v2");
    assert_eq!(svc["metadata"]["labels"], json!({"app": "grpcbin", "added": "yes-please"}));
    assert_eq!(svc["metadata"]["annotations"]["konghq.com/protocol"], "grpc", "apply keeps others' fields");
    assert_eq!(svc["metadata"]["generation"], 2);
    let ing = json_out(&k.ok(&["get", "ing", "grpcbin", "-n", "demo", "-o", "json"]).await.unwrap());
    assert_eq!(ing["spec"]["rules"][0]["host"], "grpc2.example");

    k.ok(&["label", "svc", "grpcbin", "-n", "demo", "tier=backend"]).await.unwrap();
    k.ok(&["patch", "svc", "grpcbin", "-n", "demo", "--type", "merge", "-p", r#"{"metadata":{"labels":{"m":"1"}}}"#])
        .await
        .unwrap();
    let json_patch = r#"[{"op":"replace","path":"/spec/selector/app","value":"other"}]"#;
    k.ok(&["patch", "svc", "grpcbin", "-n", "demo", "--type", "json", "-p", json_patch]).await.unwrap();
    let strategic = r#"{"metadata":{"annotations":{"konghq.com/protocol":null,"konghq.com/path":"/x"}}}"#;
    k.ok(&["patch", "ingress", "grpcbin", "-n", "demo", "-p", strategic]).await.unwrap();
    let svc = json_out(&k.ok(&["get", "svc", "grpcbin", "-n", "demo", "-o", "json"]).await.unwrap());
    assert_eq!(svc["metadata"]["labels"]["tier"], "backend");
    assert_eq!(svc["metadata"]["labels"]["m"], "1");
    assert_eq!(svc["spec"]["selector"]["app"], "other");
    assert_eq!(svc["metadata"]["generation"], 3);
    let ing = json_out(&k.ok(&["get", "ingress", "grpcbin", "-n", "demo", "-o", "json"]).await.unwrap());
    assert_eq!(ing["metadata"]["annotations"]["konghq.com/path"], "/x");
    assert_eq!(ing["metadata"]["annotations"]["konghq.com/protocols"], "grpc,grpcs");

    let table = k.ok(&["get", "svc", "-n", "demo"]).await.unwrap();
    let header: Vec<&str> = table.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"], "{table}");
    let row = table.lines().find(|l| l.starts_with("grpcbin")).unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("ClusterIP") && row.contains("9001/TCP"), "{table}");
    let selected = k.ok(&["get", "svc", "-A", "-l", "tier=backend", "-o", "name"]).await.unwrap();
    assert_eq!(selected.trim(), "service/grpcbin");
    let none = k.ok(&["get", "svc", "-A", "-l", "tier=frontend", "-o", "name"]).await.unwrap();
    assert_eq!(none.trim(), "");
    let by_name =
        k.ok(&["get", "endpointslices", "-n", "demo", "--field-selector", "metadata.name=grpcbin-abc", "-o", "name"]);
    assert_eq!(by_name.await.unwrap().trim(), "endpointslice.discovery.k8s.io/grpcbin-abc");

    let out = k.ok(&["delete", "service", "grpcbin", "-n", "demo"]).await.unwrap();
    assert!(out.contains("deleted"), "{out}");
    let err = k.run(&["get", "service", "grpcbin", "-n", "demo"]).await.unwrap();
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("NotFound"), "{err:?}");

    k.ok(&["delete", "namespace", "demo"]).await.unwrap();
    let err = k.run(&["get", "endpointslice", "grpcbin-abc", "-n", "demo"]).await.unwrap();
    assert!(!err.status.success(), "objects of a deleted namespace are gone");
}

#[tokio::test]
async fn kubectl_applies_install_manifests_and_merges_deployment_lists() {
    let env = env().await;
    let k = &env.kubectl;
    let v1 = std::fs::read_to_string(testdata("install-sample.yaml")).unwrap();
    let out = k.apply(&v1, &[]).await.unwrap();
    for what in [
        "serviceaccount/sluice created",
        "clusterrole.rbac.authorization.k8s.io/sluice created",
        "clusterrolebinding.rbac.authorization.k8s.io/sluice created",
        "role.rbac.authorization.k8s.io/leader created",
        "rolebinding.rbac.authorization.k8s.io/leader created",
        "ingressclass.networking.k8s.io/kong created",
        "deployment.apps/sluice created",
    ] {
        assert!(out.contains(what), "{what}: {out}");
    }
    // Image changed, one env var and one port dropped, strategy switched (uses $retainKeys).
    let v2 = v1
        .replace("sluice-proxy:1", "sluice-proxy:2")
        .replace(r#", {name: B, value: "2"}"#, "")
        .replace("{containerPort: 8000, name: proxy}, ", "")
        .replace("strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1}}", "strategy: {type: Recreate}");
    assert_ne!(v1, v2);
    let out = k.apply(&v2, &[]).await.unwrap();
    assert!(out.contains("deployment.apps/sluice configured"), "{out}");
    assert!(out.contains("clusterrole.rbac.authorization.k8s.io/sluice unchanged"), "{out}");
    let d = json_out(&k.ok(&["get", "deployment", "sluice", "-n", "kong", "-o", "json"]).await.unwrap());
    let spec = &d["spec"];
    assert_eq!(spec["strategy"], json!({"type": "Recreate"}));
    let containers = spec["template"]["spec"]["containers"].as_array().unwrap();
    let names: Vec<&str> = containers.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["proxy", "controller"]);
    assert_eq!(containers[0]["image"], "sluice-proxy:2");
    assert_eq!(containers[0]["env"], json!([{"name": "A", "value": "1"}]));
    assert_eq!(containers[0]["ports"], json!([{"containerPort": 8443, "name": "tls"}]));
    assert_eq!(d["metadata"]["generation"], 2);
    let classes = k.ok(&["get", "ingressclass", "-o", "name"]).await.unwrap();
    assert_eq!(classes.trim(), "ingressclass.networking.k8s.io/kong");
}

#[tokio::test]
async fn kubectl_create_generators_send_protobuf_that_is_understood() {
    let env = env().await;
    let k = &env.kubectl;
    k.ok(&["create", "namespace", "gen"]).await.unwrap();
    k.ok(&["create", "secret", "generic", "s", "-n", "gen", "--from-literal=token=hello"]).await.unwrap();
    k.ok(&["create", "configmap", "c", "-n", "gen", "--from-literal=k=v"]).await.unwrap();
    let secret = json_out(&k.ok(&["get", "secret", "s", "-n", "gen", "-o", "json"]).await.unwrap());
    assert_eq!(secret["data"]["token"], "aGVsbG8=");
    assert_eq!(secret["type"], "Opaque");
    let cm = json_out(&k.ok(&["get", "configmap", "c", "-n", "gen", "-o", "json"]).await.unwrap());
    assert_eq!(cm["data"], json!({"k": "v"}));
    let err = k.run(&["create", "deployment", "d", "-n", "gen", "--image=x"]).await.unwrap();
    assert!(String::from_utf8_lossy(&err.stderr).contains("--dry-run=client -o yaml"), "{err:?}");
}

/// Reads lines until one satisfies `pred`, within [`WAIT`].
async fn wait_line<R: tokio::io::AsyncBufRead + Unpin>(
    lines: &mut tokio::io::Lines<R>,
    seen: &mut Vec<String>,
    pred: impl Fn(&str) -> bool,
) -> String {
    let found = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.expect("read kubectl output") {
            seen.push(line.clone());
            if pred(&line) {
                return Some(line);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(line)) => line,
        Ok(None) => panic!("kubectl get -w ended early; output so far: {seen:#?}"),
        Err(_) => panic!("timed out waiting for a line; output so far: {seen:#?}"),
    }
}

#[tokio::test]
async fn kubectl_get_watch_sees_changes() {
    let env = env().await;
    let k = &env.kubectl;
    let svc =
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec:\n  ports: [{port: 80}]\n";
    k.apply(svc, &[]).await.unwrap();
    let mut child = k
        .command()
        .args(["get", "svc", "-n", "default", "-w", "--output-watch-events"])
        .arg(r#"-o=jsonpath={.type} {.object.metadata.name} {.object.metadata.labels.step}{"\n"}"#)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kubectl get -w");
    let pid = child.id().expect("kubectl get -w has a pid");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    wait_line(&mut lines, &mut seen, |l| l.trim() == "ADDED web").await;
    k.ok(&["label", "svc", "web", "step=two"]).await.unwrap();
    wait_line(&mut lines, &mut seen, |l| l.trim() == "MODIFIED web two").await;
    k.ok(&["delete", "svc", "web"]).await.unwrap();
    wait_line(&mut lines, &mut seen, |l| l.trim() == "DELETED web two").await;
    assert_eq!(child.id(), Some(pid));
    child.kill().await.expect("kill kubectl get -w");
}

#[tokio::test]
async fn kubectl_applies_crds_and_their_objects() {
    let env = env().await;
    let k = &env.kubectl;
    let crd = testdata("crd-httproutes.yaml");
    let gc = testdata("crd-gatewayclasses.yaml");
    let out = k.ok(&["apply", "-f", crd.to_str().unwrap(), "-f", gc.to_str().unwrap()]).await.unwrap();
    assert!(out.contains("customresourcedefinition.apiextensions.k8s.io/httproutes.gateway.networking.k8s.io created"));
    k.ok(&["wait", "--for=condition=Established", "crd/httproutes.gateway.networking.k8s.io", "--timeout=20s"])
        .await
        .unwrap();
    let resources = k.ok(&["api-resources", "--api-group=gateway.networking.k8s.io", "-o", "wide"]).await.unwrap();
    assert!(resources.lines().any(|l| l.starts_with("httproutes") && l.contains("true")), "{resources}");
    assert!(resources.lines().any(|l| l.starts_with("gatewayclasses") && l.contains(" gc ")), "{resources}");

    let route = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo, namespace: default}
spec:
  hostnames: [echo.example]
  parentRefs: [{name: kong}]
  rules:
  - backendRefs: [{name: echo, port: 80}]
status:
  parents: []
"#;
    assert!(k.apply(route, &[]).await.unwrap().contains("httproute.gateway.networking.k8s.io/echo created"));
    k.ok(&["annotate", "httproute", "echo", "konghq.com/strip-path=true"]).await.unwrap();
    let changed = route.replace("echo.example", "echo2.example");
    assert!(k.apply(&changed, &[]).await.unwrap().contains("configured"));
    let printed = k.ok(&["get", "httproutes"]).await.unwrap();
    let header: Vec<&str> = printed.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "HOSTNAMES", "AGE"], "additionalPrinterColumns are served: {printed}");
    assert!(printed.contains(r#"["echo2.example"]"#), "{printed}");
    let got =
        json_out(&k.ok(&["get", "httproutes.v1beta1.gateway.networking.k8s.io", "echo", "-o", "json"]).await.unwrap());
    assert_eq!(got["apiVersion"], "gateway.networking.k8s.io/v1beta1", "served in every served version");
    assert_eq!(got["spec"]["hostnames"], json!(["echo2.example"]));
    assert_eq!(got["metadata"]["annotations"]["konghq.com/strip-path"], "true");
    assert_eq!(got["metadata"]["generation"], 2);
    assert!(got.get("status").is_none(), "status is ignored on writes to the main resource: {got}");
    assert_eq!(got["spec"]["parentRefs"][0]["kind"], "Gateway", "CRD schema defaults are applied: {got}");
    assert_eq!(got["spec"]["rules"][0]["backendRefs"][0]["weight"], 1, "{got}");
    let err = k.run(&["patch", "httproute", "echo", "-p", r#"{"spec":{}}"#]).await.unwrap();
    assert!(!err.status.success(), "strategic merge patch is refused for custom resources");

    let class = "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: kong}\nspec: {controllerName: konghq.com/sluice}\n";
    k.apply(class, &[]).await.unwrap();
    assert_eq!(k.ok(&["get", "gc", "-o", "name"]).await.unwrap().trim(), "gatewayclass.gateway.networking.k8s.io/kong");

    k.ok(&["delete", "-f", crd.to_str().unwrap()]).await.unwrap();
    let gone = k.run(&["get", "httproutes", "-A"]).await.unwrap();
    assert!(!gone.status.success(), "deleting the CRD removes its kind");
}

#[tokio::test]
async fn gateway_api_crds_and_routes_with_the_controllers_types() {
    use gateway_api::apis::standard::{
        gatewayclasses::GatewayClass, gateways::Gateway, grpcroutes::GrpcRoute, httproutes::HttpRoute,
        referencegrants::ReferenceGrant,
    };
    use kube::CustomResourceExt;

    let env = env().await;
    let k = &env.kubectl;
    let crds = [GatewayClass::crd(), Gateway::crd(), HttpRoute::crd(), GrpcRoute::crd(), ReferenceGrant::crd()];
    let yaml: Vec<String> = crds.iter().map(|c| serde_yaml_ng::to_string(c).unwrap()).collect();
    assert!(yaml.iter().map(String::len).sum::<usize>() > 100_000, "real-sized CRDs");
    let out = k.apply(&yaml.join("---\n"), &[]).await.unwrap();
    assert_eq!(out.matches(" created").count(), 5, "{out}");
    let route = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: grpcbin, namespace: default}
spec:
  parentRefs: [{name: kong}]
  hostnames: [grpc.example]
  rules:
  - matches:
    - method: {type: Exact, service: grpcbin.GRPCBin, method: Index}
    backendRefs: [{name: grpcbin, port: 9000}]
"#;
    k.apply(route, &[]).await.unwrap();

    let client = env._server.kube_client().unwrap();
    let api: Api<GrpcRoute> = Api::default_namespaced(client);
    let (reader, writer) = reflector::store::<GrpcRoute>();
    let mut stream = reflector(writer, watcher(api.clone(), watcher::Config::default())).boxed();
    next_event(&mut stream, "the initial list", |e| matches!(e, watcher::Event::InitDone)).await;
    let got = reader.get(&reflector::ObjectRef::new("grpcbin").within("default")).expect("typed GRPCRoute cached");
    assert_eq!(got.spec.hostnames.as_deref(), Some(&["grpc.example".to_string()][..]));
    let rules = got.spec.rules.as_ref().expect("rules");
    let method = rules[0].matches.as_ref().unwrap()[0].method.as_ref().unwrap();
    assert_eq!(method.method.as_deref(), Some("Index"));

    let status = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GRPCRoute", "status": {"parents": [{
        "controllerName": "konghq.com/sluice", "parentRef": {"name": "kong"},
        "conditions": [{"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs", "message": "",
            "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z"}]}]}});
    let params = PatchParams::apply("sluice-controller").force();
    api.patch_status("grpcbin", &params, &Patch::Apply(&status)).await.unwrap();
    let printed =
        k.ok(&["get", "grpcroute", "grpcbin", "-o", "jsonpath={.status.parents[0].conditions[0].type}"]).await.unwrap();
    assert_eq!(printed, "ResolvedRefs");
    next_event(
        &mut stream,
        "the status change",
        |e| matches!(e, watcher::Event::Apply(r) if r.status.as_ref().is_some_and(|s| !s.parents.is_empty())),
    )
    .await;
    k.ok(&["delete", "grpcroute", "grpcbin"]).await.unwrap();
    next_event(&mut stream, "the deletion", |e| matches!(e, watcher::Event::Delete(_))).await;
}

fn http_route_resource(version: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", version, "HTTPRoute"),
        "httproutes",
    )
}

#[tokio::test]
async fn kube_rs_status_subresource_and_generation() {
    let server = TestApiServer::start().await.unwrap();
    let client = server.kube_client().unwrap();

    // Built-in kind with a status subresource.
    let services: Api<Service> = Api::default_namespaced(client.clone());
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "lb"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "1.1.1.1"}]}},
    }))
    .unwrap();
    let created = services.create(&PostParams::default(), &svc).await.unwrap();
    assert!(created.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|l| l.ingress.as_ref()).is_none());
    let status = json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}});
    let patched = services.patch_status("lb", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    let ip = |s: &Service| {
        s.status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.as_ref())
            .map(|i| i[0].ip.clone())
    };
    assert_eq!(ip(&patched), Some(Some("10.0.0.1".into())));
    assert_eq!(patched.metadata.generation, Some(1), "status changes do not bump generation");
    assert_ne!(patched.metadata.resource_version, created.metadata.resource_version);
    // A main-resource write cannot change status, and a spec change bumps generation.
    let mut edited = patched.clone();
    edited.status = None;
    let spec = edited.spec.as_mut().unwrap();
    spec.session_affinity = Some("ClientIP".into());
    (spec.cluster_ip, spec.cluster_ips) = (None, None);
    let replaced = services.replace("lb", &PostParams::default(), &edited).await.unwrap();
    let allocated = created.spec.as_ref().and_then(|s| s.cluster_ip.clone());
    assert!(allocated.is_some());
    assert_eq!(replaced.spec.as_ref().and_then(|s| s.cluster_ip.clone()), allocated, "cluster IP is kept");
    assert_eq!(ip(&replaced), Some(Some("10.0.0.1".into())));
    assert_eq!(replaced.metadata.generation, Some(2));
    // Stale resourceVersion → 409 Conflict.
    let err = services.replace("lb", &PostParams::default(), &edited).await.unwrap_err();
    assert!(matches!(&err, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict"), "{err:?}");

    // A CRD's kind, with server-side apply on status as controllers do.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition =
        serde_yaml_ng::from_str(&std::fs::read_to_string(testdata("crd-httproutes.yaml")).unwrap()).unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let routes: Api<DynamicObject> = Api::default_namespaced_with(client.clone(), &http_route_resource("v1"));
    let route: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "r"}, "spec": {"hostnames": ["a.example"]},
    }))
    .unwrap();
    routes.create(&PostParams::default(), &route).await.unwrap();
    let apply = PatchParams::apply("sluice-controller").force();
    let cond = |reason: &str| {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "status": {"parents": [{
            "controllerName": "konghq.com/sluice", "parentRef": {"name": "kong"},
            "conditions": [{"type": "Accepted", "status": "True", "reason": reason, "message": "",
                "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z"}]}]}})
    };
    let applied = routes.patch_status("r", &apply, &Patch::Apply(cond("Accepted"))).await.unwrap();
    assert_eq!(applied.data["status"]["parents"][0]["conditions"][0]["reason"], "Accepted");
    assert_eq!(applied.metadata.generation, Some(1));
    let again = routes.patch_status("r", &apply, &Patch::Apply(cond("Again"))).await.unwrap();
    assert_eq!(again.data["status"]["parents"].as_array().unwrap().len(), 1);
    assert_eq!(again.data["status"]["parents"][0]["conditions"][0]["reason"], "Again");
    let spec = json!({"spec": {"hostnames": ["b.example"], "status-is-not-here": true}});
    let merged = routes.patch("r", &PatchParams::default(), &Patch::Merge(&spec)).await.unwrap();
    assert_eq!(merged.metadata.generation, Some(2));
    assert_eq!(merged.data["status"]["parents"][0]["conditions"][0]["reason"], "Again");
    let beta: Api<DynamicObject> = Api::default_namespaced_with(client, &http_route_resource("v1beta1"));
    let via_beta = beta.get("r").await.unwrap();
    assert_eq!(via_beta.types.unwrap().api_version, "gateway.networking.k8s.io/v1beta1");
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let server = TestApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(server.kube_client().unwrap());
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "f", "finalizers": ["sluice/x"]}})).unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap();
    api.delete("f", &Default::default()).await.unwrap();
    let marked = api.get("f").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some(), "deletion waits for finalizers");
    let clear = json!({"metadata": {"finalizers": null}});
    api.patch("f", &PatchParams::default(), &Patch::Merge(&clear)).await.unwrap();
    let err = api.get("f").await.unwrap_err();
    assert!(matches!(&err, kube::Error::Api(s) if s.code == 404), "{err:?}");
}

#[tokio::test]
async fn kube_rs_event_recorder_publishes_events() {
    let server = TestApiServer::start().await.unwrap();
    let client = server.kube_client().unwrap();
    let services: Api<Service> = Api::default_namespaced(client.clone());
    let svc: Service =
        serde_json::from_value(json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 1}]}})).unwrap();
    let svc = services.create(&PostParams::default(), &svc).await.unwrap();
    let recorder = kube::runtime::events::Recorder::new(client.clone(), "sluice-controller".into());
    let event = kube::runtime::events::Event {
        type_: kube::runtime::events::EventType::Warning,
        reason: "InvalidAnnotation".into(),
        note: Some("konghq.com/protocol: bogus".into()),
        action: "Translate".into(),
        secondary: None,
    };
    let reference = kube::Resource::object_ref(&svc, &());
    recorder.publish(&event, &reference).await.unwrap();
    recorder.publish(&event, &reference).await.unwrap();
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::default_namespaced(client);
    let list = events.list(&Default::default()).await.unwrap();
    assert_eq!(list.items.len(), 1, "a repeated event becomes a series on one object");
    let ev = &list.items[0];
    assert_eq!(ev.reason.as_deref(), Some("InvalidAnnotation"));
    assert_eq!(ev.regarding.as_ref().and_then(|r| r.name.as_deref()), Some("s"));
}

/// One raw HTTP/1.1 exchange; returns the status code and the (de-chunked) body.
async fn raw(addr: SocketAddr, method: &str, path: &str, content_type: &str, body: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut buf)).await.expect("response within time").unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, mut rest) = text.split_once("\r\n\r\n").expect("HTTP response head");
    let code: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    if !head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return (code, rest.to_string());
    }
    let mut body = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        body.push_str(&tail[..n]);
        rest = &tail[n + 2..];
    }
    (code, body)
}

fn assert_status(body: &str, code: u16, reason: &str) -> Value {
    let s: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(s["kind"], "Status", "{s}");
    assert_eq!(s["apiVersion"], "v1", "{s}");
    assert_eq!(s["status"], "Failure", "{s}");
    assert_eq!(s["code"], code, "{s}");
    assert_eq!(s["reason"], reason, "{s}");
    assert!(s["message"].as_str().is_some_and(|m| !m.is_empty()), "{s}");
    s
}

#[tokio::test]
async fn errors_are_kubernetes_status_objects() {
    let server = TestApiServer::start().await.unwrap();
    let addr = server.addr();
    let cms = "/api/v1/namespaces/default/configmaps";
    let (code, body) = raw(addr, "GET", &format!("{cms}/missing"), "application/json", "").await;
    assert_eq!(code, 404);
    let s = assert_status(&body, 404, "NotFound");
    assert_eq!(s["details"], json!({"name": "missing", "kind": "configmaps"}));
    assert_eq!(s["message"], "configmaps \"missing\" not found");

    let cm = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"},"data":{"k":"v"}}"#;
    let (code, body) = raw(addr, "POST", cms, "application/json", cm).await;
    assert_eq!(code, 201, "{body}");
    let created: Value = serde_json::from_str(&body).unwrap();
    let rv = created["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    assert!(created["metadata"]["uid"].is_string() && created["metadata"]["creationTimestamp"].is_string());
    let (code, body) = raw(addr, "POST", cms, "application/json", cm).await;
    assert_eq!(code, 409);
    assert_status(&body, 409, "AlreadyExists");

    let mut update = created.clone();
    update["data"]["k"] = json!("v2");
    let (code, _) = raw(addr, "PUT", &format!("{cms}/a"), "application/json", &update.to_string()).await;
    assert_eq!(code, 200);
    let (code, body) = raw(addr, "PUT", &format!("{cms}/a"), "application/json", &update.to_string()).await;
    assert_eq!(code, 409, "the resourceVersion {rv} is stale now");
    assert_status(&body, 409, "Conflict");

    let (code, body) = raw(addr, "POST", cms, "application/json", "{not json").await;
    assert_eq!(code, 400);
    assert_status(&body, 400, "BadRequest");
    let (code, body) = raw(addr, "POST", cms, "application/json", r#"{"kind":"ConfigMap","metadata":{}}"#).await;
    assert_eq!(code, 422);
    assert_status(&body, 422, "Invalid");
    let (code, body) = raw(addr, "POST", "/api/v1/namespaces/nope/configmaps", "application/json", cm).await;
    assert_eq!(code, 404);
    assert_eq!(assert_status(&body, 404, "NotFound")["details"]["kind"], "namespaces");
    let (code, body) = raw(addr, "GET", "/apis/nope.example/v1/things", "application/json", "").await;
    assert_eq!(code, 404);
    assert_status(&body, 404, "NotFound");
    let (code, body) = raw(addr, "PATCH", &format!("{cms}/a"), "text/plain", "{}").await;
    assert_eq!(code, 415);
    assert_status(&body, 415, "UnsupportedMediaType");

    // kube-rs classifies the same Status objects.
    let api: Api<ConfigMap> = Api::default_namespaced(server.kube_client().unwrap());
    let err = api.get("missing").await.unwrap_err();
    assert!(matches!(&err, kube::Error::Api(s) if s.code == 404 && s.reason == "NotFound"), "{err:?}");
}

/// Waits for the next watcher event satisfying `pred`.
async fn next_event<S, K>(stream: &mut S, what: &str, pred: impl Fn(&watcher::Event<K>) -> bool)
where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Unpin,
{
    let found = tokio::time::timeout(WAIT, async {
        while let Some(ev) = stream.next().await {
            if pred(&ev.expect("watcher error")) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "waiting for {what}");
}

async fn watcher_sees_add_change_delete(config: watcher::Config) {
    let server = TestApiServer::start().await.unwrap();
    let client = server.kube_client().unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let pre: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "pre"}, "data": {"n": "0"}})).unwrap();
    api.create(&PostParams::default(), &pre).await.unwrap();

    let (reader, writer) = reflector::store::<ConfigMap>();
    let mut stream = reflector(writer, watcher(api.clone(), config)).boxed();
    let is = |cm: &ConfigMap, name: &str| cm.metadata.name.as_deref() == Some(name);
    next_event(&mut stream, "the initial list", |e| matches!(e, watcher::Event::InitDone)).await;
    assert!(reader.state().iter().any(|cm| is(cm, "pre")));

    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "x"}, "data": {"n": "1"}})).unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap();
    next_event(&mut stream, "add", |e| matches!(e, watcher::Event::Apply(c) if is(c, "x"))).await;
    let change = json!({"data": {"n": "2"}});
    api.patch("x", &PatchParams::default(), &Patch::Merge(&change)).await.unwrap();
    next_event(
        &mut stream,
        "change",
        |e| matches!(e, watcher::Event::Apply(c) if is(c, "x") && c.data.as_ref().is_some_and(|d| d["n"] == "2")),
    )
    .await;
    let key = reflector::ObjectRef::new("x").within("default");
    assert_eq!(reader.get(&key).and_then(|c| c.data.clone()).unwrap()["n"], "2");
    api.delete("x", &Default::default()).await.unwrap();
    next_event(&mut stream, "delete", |e| matches!(e, watcher::Event::Delete(c) if is(c, "x"))).await;
    assert!(reader.get(&key).is_none());
}

#[tokio::test]
async fn kube_rs_watcher_and_reflector_follow_changes() {
    watcher_sees_add_change_delete(watcher::Config::default()).await;
}

#[tokio::test]
async fn kube_rs_streaming_list_watcher_follows_changes() {
    watcher_sees_add_change_delete(watcher::Config::default().streaming_lists()).await;
}

#[tokio::test]
async fn kube_rs_metadata_watcher_and_get_metadata() {
    let server = TestApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(server.kube_client().unwrap());
    let metadata_api: Api<kube::core::PartialObjectMeta<ConfigMap>> =
        Api::default_namespaced(server.kube_client().unwrap());
    let mut stream = watcher(metadata_api, watcher::Config::default()).boxed();
    next_event(&mut stream, "the initial list", |e| matches!(e, watcher::Event::InitDone)).await;
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "m", "labels": {"a": "b"}}})).unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap();
    next_event(
        &mut stream,
        "add",
        |e| matches!(e, watcher::Event::Apply(m) if m.metadata.name.as_deref() == Some("m")),
    )
    .await;
    let meta = api.get_metadata("m").await.unwrap();
    assert_eq!(meta.metadata.labels.unwrap()["a"], "b");
    assert_eq!(meta.types.unwrap().kind, "PartialObjectMetadata");
}

#[tokio::test]
async fn watch_history_bookmarks_initial_events_and_timeouts() {
    let options = Options { history_limit: 4, bookmark_interval: Duration::from_millis(100), ..Options::default() };
    let server = TestApiServer::start_with(options).await.unwrap();
    let addr = server.addr();
    let cms = "/api/v1/namespaces/default/configmaps";
    let mut rvs = Vec::new();
    for i in 0..8 {
        let cm = json!({"metadata": {"name": format!("c{i}"), "labels": {"i": i.to_string()}}});
        let (code, body) = raw(addr, "POST", cms, "application/json", &cm.to_string()).await;
        assert_eq!(code, 201);
        let v: Value = serde_json::from_str(&body).unwrap();
        rvs.push(v["metadata"]["resourceVersion"].as_str().unwrap().parse::<u64>().unwrap());
    }
    assert!(rvs.windows(2).all(|w| w[0] < w[1]), "one increasing counter: {rvs:?}");

    // Older than the kept history: an ERROR event carrying 410 Expired.
    let (code, body) = raw(addr, "GET", &format!("{cms}?watch=1&resourceVersion={}", rvs[0]), "", "").await;
    assert_eq!(code, 200);
    let ev: Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
    assert_eq!(ev["type"], "ERROR");
    assert_eq!(ev["object"]["code"], 410);
    assert_eq!(ev["object"]["reason"], "Expired");

    // Within the history: the newer events replayed, bookmarks, and the timeout ends the stream.
    let path = format!("{cms}?watch=true&resourceVersion={}&allowWatchBookmarks=true&timeoutSeconds=1", rvs[5]);
    let started = std::time::Instant::now();
    let (_, body) = raw(addr, "GET", &path, "", "").await;
    assert!(started.elapsed() < Duration::from_secs(10));
    let events: Vec<Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let added: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "ADDED")
        .map(|e| e["object"]["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(added, ["c6", "c7"]);
    assert!(events.iter().any(|e| e["type"] == "BOOKMARK"), "{events:?}");

    // sendInitialEvents: the current state, then the initial-events-end bookmark; with a label selector.
    let path = format!(
        "{cms}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true\
         &timeoutSeconds=1&labelSelector=i%20in%20(1,2)"
    );
    let (_, body) = raw(addr, "GET", &path, "", "").await;
    let events: Vec<Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let names: Vec<&str> = events.iter().take(2).map(|e| e["object"]["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["c1", "c2"]);
    assert_eq!(events[2]["type"], "BOOKMARK");
    assert_eq!(events[2]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"], "true");
}

#[tokio::test]
async fn kubectl_server_side_apply_and_server_dry_run() {
    let env = env().await;
    let k = &env.kubectl;
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa, namespace: default}\ndata: {a: '1', b: '2'}\n";
    assert!(k.apply(cm, &["--server-side"]).await.unwrap().contains("serverside-applied"));
    let cm2 = cm.replace("{a: '1', b: '2'}", "{a: '3'}");
    k.apply(&cm2, &["--server-side"]).await.unwrap();
    let got = json_out(&k.ok(&["get", "cm", "ssa", "-o", "json"]).await.unwrap());
    assert_eq!(got["data"], json!({"a": "3"}), "fields the manager stopped applying are removed");

    let cm3 = cm.replace("{a: '1', b: '2'}", "{a: '4'}");
    k.apply(&cm3, &["--dry-run=server"]).await.unwrap();
    let got = json_out(&k.ok(&["get", "cm", "ssa", "-o", "json"]).await.unwrap());
    assert_eq!(got["data"], json!({"a": "3"}), "a server dry run stores nothing");
}

#[tokio::test]
async fn binary_prints_its_address_and_writes_a_kubeconfig() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice-test-apiserver"))
        .args(["--listen", "127.0.0.1:0", "--kubeconfig-out"])
        .arg(&kubeconfig)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(WAIT, lines.next_line()).await.expect("ready line in time").unwrap().unwrap();
    let addr: SocketAddr = line.strip_prefix("listening on ").expect("`listening on <addr>`").parse().unwrap();
    assert!(addr.ip().is_loopback() && addr.port() != 0);
    let k = Kubectl::new(&kubeconfig, dir.path()).expect("kubectl is required for the e2e tests");
    let out = k.ok(&["get", "namespaces", "-o", "name"]).await.unwrap();
    assert!(out.lines().any(|l| l == "namespace/default"), "{out}");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn dropping_the_server_stops_it() {
    let server = TestApiServer::start().await.unwrap();
    let addr = server.addr();
    assert_eq!(raw(addr, "GET", "/version", "", "").await.0, 200);
    // An open watch: dropping the server must end it (the port itself may be reused by another test).
    let mut watch = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET /api/v1/namespaces/default/configmaps?watch=1 HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    watch.write_all(req.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    watch.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let store = server.store();
    drop(server);
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(WAIT, watch.read_to_end(&mut rest)).await;
    assert!(ended.is_ok(), "the watch connection is closed when the server is dropped");
    assert_eq!(std::sync::Arc::strong_count(&store), 1, "the server's tasks are gone");
}

#[tokio::test]
async fn kubeconfig_works_for_kube_rs_too() {
    let env = env().await;
    let dir = &env.dir;
    e2e::apiserver::install_crypto_provider();
    let kubeconfig = kube::config::Kubeconfig::read_from(dir.path().join("kubeconfig")).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let info = client.apiserver_version().await.unwrap();
    assert_eq!((info.major.as_str(), info.minor.as_str()), ("1", "32"));
    let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
    let names: Vec<String> =
        ns.list(&Default::default()).await.unwrap().items.into_iter().filter_map(|n| n.metadata.name).collect();
    assert!(names.contains(&"default".to_string()), "{names:?}");
}
