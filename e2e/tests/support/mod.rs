//! The end-to-end world of one scenario: a real Kubernetes control plane (etcd + kube-apiserver,
//! `e2e::ControlPlane`) with sluice's CRDs and install manifests applied, real `kubectl`,
//! `sluice-proxy` and `sluice-controller` as real processes (the controller authenticated as the
//! manifests' ServiceAccount with a token from `kubectl create token`), and demo gRPC backends
//! registered through Service + EndpointSlice at a private address inside a network namespace the
//! test creates (`e2e::BackendNet`: Kubernetes rejects loopback endpoint addresses).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use e2e::install::{install_manifests, service_account_token, ELECTION_ID, SLUICE_NAMESPACE};
use e2e::{BackendNet, ControlPlane, Kubectl};
use sluice_demo::{grpc_call, Backend, BackendOptions};
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

/// Fields drop in this order: the processes first, the control plane and namespace last.
pub struct World {
    pub proxy: Option<Proc>,
    pub controller: Option<Proc>,
    pub dir: tempfile::TempDir,
    /// The API server; dropping the World stops it (after the controller and proxy).
    pub cp: ControlPlane,
    /// Admin kubeconfig (`system:masters`), what the test acts with.
    pub kubeconfig: PathBuf,
    pub kubectl: Kubectl,
    /// The controller's kubeconfig: a ServiceAccount token, nothing else.
    pub controller_kubeconfig: PathBuf,
    /// Where backends listen (EndpointSlice addresses).
    pub net: BackendNet,
    pub proxy_addrs: Vec<SocketAddr>,
    pub status_addr: SocketAddr,
    pub admin_socket: PathBuf,
    /// One of [`MAX_WORLDS`]; released last.
    _slot: tokio::sync::SemaphorePermit<'static>,
}

/// Worlds alive at once in one test binary: each has its own kube-apiserver (its own leases,
/// cluster-scoped objects and statuses), and two cores do not run more than two well.
pub const MAX_WORLDS: usize = 2;
static WORLDS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_WORLDS);

impl World {
    /// Control plane + install manifests + kubectl + proxy (h2c port and TLS port) + controller.
    pub async fn start() -> World {
        World::start_installed(|kubectl, _| async move {
            install_manifests(&kubectl).await.map_err(|e| format!("installing the manifests: {e}"))
        })
        .await
    }

    /// As [`World::start`], with sluice installed by `install(kubectl, admin kubeconfig)` (which
    /// must create the `sluice` ServiceAccount and its RBAC in the `sluice` namespace).
    pub async fn start_installed<F, Fut>(install: F) -> World
    where
        F: FnOnce(Kubectl, PathBuf) -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let slot = WORLDS.acquire().await.expect("the semaphore is never closed");
        let dir = tempfile::tempdir().unwrap();
        let cp = ControlPlane::start().await.unwrap_or_else(|e| panic!("starting the control plane: {e}"));
        let kubeconfig = cp.kubeconfig().to_path_buf();
        let kubectl = Kubectl::new(&kubeconfig, dir.path()).expect("kubectl is required by the e2e tests");
        install(kubectl.clone(), kubeconfig.clone()).await.unwrap_or_else(|e| panic!("{e}"));
        let token = service_account_token(&kubectl).await.unwrap_or_else(|e| panic!("{e}"));
        let controller_kubeconfig = dir.path().join("controller.kubeconfig");
        cp.write_kubeconfig(&controller_kubeconfig, Some(&token)).unwrap();
        let net = BackendNet::create().unwrap_or_else(|e| panic!("backend network namespace: {e}"));
        let mut w = World {
            admin_socket: dir.path().join("run/admin.sock"),
            dir,
            cp,
            kubeconfig,
            kubectl,
            controller_kubeconfig,
            net,
            proxy: None,
            controller: None,
            proxy_addrs: vec![],
            status_addr: "127.0.0.1:0".parse().unwrap(),
            _slot: slot,
        };
        w.start_proxy().await;
        w.start_controller().await;
        w
    }

    /// A demo backend listening in the world's network namespace.
    pub async fn backend(&self, opts: BackendOptions) -> Backend {
        let listener = self.net.listen().unwrap_or_else(|e| panic!("{e}"));
        sluice_demo::spawn_on(listener, opts).await.unwrap()
    }

    /// A plaintext demo backend named `name`.
    pub async fn backend_named(&self, name: &str) -> Backend {
        self.backend(BackendOptions::named(name)).await
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
            .arg(&self.controller_kubeconfig)
            .arg(format!("--kong-admin-url=unix://{}", self.admin_socket.display()))
            .args([
                "--proxy-sync-seconds=0.2",
                "--metrics-bind-address=127.0.0.1:0",
                "--health-probe-bind-address=127.0.0.1:0",
                "--publish-status-address=192.0.2.10",
            ])
            // As manifests/30-deployment.yaml: the Role allows this Lease only.
            .arg(format!("--election-namespace={SLUICE_NAMESPACE}"))
            .arg(format!("--election-id={ELECTION_ID}"))
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

pub use e2e::install::repo;

/// The text of an example file.
pub fn example(path: &str) -> String {
    std::fs::read_to_string(repo().join("examples").join(path)).unwrap()
}
