//! The end-to-end world of one scenario: a Kubernetes API (the in-memory test API server, or a real
//! cluster when `SLUICE_E2E_KUBECONFIG` is set), real `kubectl`, `sluice-proxy` and
//! `sluice-controller` as real processes, and demo gRPC backends registered through Service +
//! EndpointSlice on 127.0.0.1.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use e2e::{Kubectl, TestApiServer};
use sluice_demo::grpc_call;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long a change may take to show at the proxy (the bound).
pub const CHANGE_BOUND: Duration = Duration::from_secs(5);

/// The directory holding the workspace's binaries, building them once if they are missing
/// (`cargo test --workspace` has built them already).
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        let dir = exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf();
        let wanted = ["sluice-proxy", "sluice-controller"];
        if wanted.iter().any(|b| !dir.join(b).is_file()) {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = std::process::Command::new(cargo)
                .args(["build", "-p", "proxy", "-p", "controller", "--bins"])
                .status()
                .expect("run cargo build");
            assert!(status.success(), "building sluice binaries failed");
        }
        dir
    })
}

/// Whether the scenarios run against a real cluster.
pub fn real_cluster() -> Option<PathBuf> {
    std::env::var_os("SLUICE_E2E_KUBECONFIG").map(PathBuf::from)
}

/// A child process killed on drop.
pub struct Proc {
    child: Child,
    pub name: &'static str,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

pub struct World {
    pub dir: tempfile::TempDir,
    pub api: Option<TestApiServer>,
    pub kubeconfig: PathBuf,
    pub kubectl: Kubectl,
    pub proxy: Option<Proc>,
    pub controller: Option<Proc>,
    pub proxy_addrs: Vec<SocketAddr>,
    pub status_addr: SocketAddr,
    pub admin_socket: PathBuf,
}

impl World {
    /// API server + kubectl + proxy (h2c port and TLS port) + controller.
    pub async fn start() -> World {
        let dir = tempfile::tempdir().unwrap();
        let (api, kubeconfig) = match real_cluster() {
            Some(k) => (None, k),
            None => {
                let api = TestApiServer::start().await.expect("test API server");
                let path = dir.path().join("kubeconfig");
                api.write_kubeconfig(&path).unwrap();
                (Some(api), path)
            }
        };
        let kubectl = Kubectl::new(&kubeconfig, dir.path()).expect("kubectl is required by the e2e tests");
        let mut w = World {
            admin_socket: dir.path().join("run/admin.sock"),
            dir,
            api,
            kubeconfig,
            kubectl,
            proxy: None,
            controller: None,
            proxy_addrs: vec![],
            status_addr: "127.0.0.1:0".parse().unwrap(),
        };
        if w.api.is_some() {
            w.apply(&gateway_api_crds()).await;
            w.kubectl(&["wait", "--for=condition=Established", "crd", "--all", "--timeout=30s"]).await;
        }
        w.start_proxy().await;
        w.start_controller().await;
        w
    }

    pub async fn start_proxy(&mut self) {
        let mut cmd = Command::new(bin_dir().join("sluice-proxy"));
        cmd.env("KONG_PROXY_LISTEN", "127.0.0.1:0 http2, 127.0.0.1:0 http2 ssl")
            .env("KONG_STATUS_LISTEN", "127.0.0.1:0")
            .env("SLUICE_ADMIN_SOCKET", &self.admin_socket)
            .env("KONG_PROXY_ACCESS_LOG", "off")
            .env("KONG_LOG_LEVEL", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("start sluice-proxy");
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let started = tokio::time::timeout(Duration::from_secs(20), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("sluice-proxy started") {
                    return Some(line);
                }
            }
            None
        })
        .await
        .expect("proxy start timed out")
        .expect("proxy exited before it started");
        // Keep draining stderr so the proxy never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let v: serde_json::Value = serde_json::from_str(&started).expect("JSON log line");
        let fields = &v["fields"];
        self.proxy_addrs = addrs(fields["proxy"].as_str().unwrap_or(""));
        self.status_addr = addrs(fields["status"].as_str().unwrap_or(""))[0];
        assert_eq!(self.proxy_addrs.len(), 2, "{started}");
        self.proxy = Some(Proc { child, name: "sluice-proxy" });
    }

    pub async fn start_controller(&mut self) {
        let mut cmd = Command::new(bin_dir().join("sluice-controller"));
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg(format!("--kong-admin-url=unix://{}", self.admin_socket.display()))
            .args([
                "--proxy-sync-seconds=0.2",
                "--metrics-bind-address=127.0.0.1:0",
                "--health-probe-bind-address=127.0.0.1:0",
                "--publish-status-address=192.0.2.10",
                "--election-namespace=default",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(self.dir.path().join("controller.log")).unwrap()))
            .kill_on_drop(true);
        self.controller =
            Some(Proc { child: cmd.spawn().expect("start sluice-controller"), name: "sluice-controller" });
    }

    pub fn controller_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("controller.log")).unwrap_or_default()
    }

    pub fn plain(&self) -> SocketAddr {
        self.proxy_addrs[0]
    }
    pub fn tls(&self) -> SocketAddr {
        self.proxy_addrs[1]
    }

    pub async fn kubectl(&self, args: &[&str]) -> String {
        self.kubectl.ok(args).await.unwrap_or_else(|e| panic!("{e}\ncontroller log:\n{}", self.controller_log()))
    }

    pub async fn apply(&self, yaml: &str) -> String {
        self.kubectl.apply(yaml, &[]).await.unwrap_or_else(|e| panic!("{e}"))
    }

    pub async fn apply_file(&self, path: &Path) {
        let p = path.display().to_string();
        self.kubectl(&["apply", "-f", &p]).await;
    }

    /// `kubectl get <what> -o json` parsed.
    pub async fn get_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.kubectl(&a).await).unwrap()
    }

    /// Registers backends as the endpoints of a Service (one EndpointSlice per distinct port).
    pub async fn endpoints(&self, service: &str, port_name: &str, addrs: &[SocketAddr]) {
        let mut by_port: std::collections::BTreeMap<u16, Vec<String>> = Default::default();
        for a in addrs {
            by_port.entry(a.port()).or_default().push(a.ip().to_string());
        }
        let mut docs = Vec::new();
        for (i, (port, ips)) in by_port.iter().enumerate() {
            let eps: String =
                ips.iter().map(|ip| format!("- addresses: [\"{ip}\"]\n  conditions:\n    ready: true\n")).collect();
            docs.push(format!(
                "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {service}-e2e-{i}\n  namespace: default\n  labels:\n    kubernetes.io/service-name: {service}\naddressType: IPv4\nports:\n- name: {port_name}\n  port: {port}\n  protocol: TCP\nendpoints:\n{eps}"
            ));
        }
        // Remove slices of an earlier, larger set.
        for i in by_port.len()..4 {
            let name = format!("{service}-e2e-{i}");
            let _ = self.kubectl.run(&["delete", "endpointslice", &name, "--ignore-not-found"]).await;
        }
        self.apply(&docs.join("---\n")).await;
    }

    /// Waits (bounded) until `check` returns Some; panics with the last observation otherwise.
    pub async fn eventually<T, F, Fut>(&self, what: &str, bound: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < bound {
            match check().await {
                Ok(v) => return v,
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{what}: not within {bound:?}; last: {last}\ncontroller log (tail):\n{}",
            tail(&self.controller_log(), 40)
        );
    }

    /// One unary call through the proxy; `Ok(json)` or `Err(code: message)`.
    pub async fn call(
        &self,
        tls: bool,
        authority: &str,
        method: &str,
        json: &str,
        headers: &[&str],
    ) -> Result<String, String> {
        let addr = if tls { self.tls() } else { self.plain() };
        let target = grpc_call::Target {
            addr: addr.to_string(),
            authority: Some(authority.to_string()),
            tls: tls.then(|| grpc_call::TlsTarget {
                verify: sluice_demo::tls::Verify::Insecure,
                servername: Some(authority.to_string()),
            }),
        };
        call_target(target, method, json, headers).await
    }
}

pub async fn call_target(
    target: grpc_call::Target,
    method: &str,
    json: &str,
    headers: &[&str],
) -> Result<String, String> {
    let channel = grpc_call::channel(&target).map_err(|e| e.to_string())?;
    let md =
        grpc_call::metadata(&headers.iter().map(|s| s.to_string()).collect::<Vec<_>>()).map_err(|e| e.to_string())?;
    let opts = grpc_call::Options { timeout: Some(Duration::from_secs(5)), verbose: false };
    let mut lines = Vec::new();
    let mut out = |o: grpc_call::Output| {
        if let grpc_call::Output::Message(m) = o {
            lines.push(m);
        }
    };
    match grpc_call::call(channel, method, json, md, opts, &mut out).await {
        Ok(()) => Ok(lines.join("\n")),
        Err(e) => Err(e.to_string()),
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `[127.0.0.1:1, 127.0.0.1:2]` (Debug of a Vec<SocketAddr>) → addresses.
fn addrs(s: &str) -> Vec<SocketAddr> {
    s.trim_matches(|c| c == '[' || c == ']').split(',').filter_map(|a| a.trim().parse().ok()).collect()
}

/// The Gateway API CRDs: the shipped `manifests/gateway-api-crds.yaml`, or (until it is generated)
/// the same CRDs rendered from the typed `gateway-api` crate.
pub fn gateway_api_crds() -> String {
    if let Ok(text) = std::fs::read_to_string(repo().join("manifests/gateway-api-crds.yaml")) {
        return text;
    }
    use gateway_api::apis::standard::{
        gatewayclasses::GatewayClass, gateways::Gateway, grpcroutes::GrpcRoute, httproutes::HttpRoute,
        referencegrants::ReferenceGrant,
    };
    use kube::CustomResourceExt;
    [GatewayClass::crd(), Gateway::crd(), GrpcRoute::crd(), HttpRoute::crd(), ReferenceGrant::crd()]
        .iter()
        .map(|c| serde_yaml_ng::to_string(c).unwrap())
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The text of an example file.
pub fn example(path: &str) -> String {
    std::fs::read_to_string(repo().join("examples").join(path)).unwrap()
}
