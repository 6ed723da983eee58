//! A real Kubernetes control plane for the tests, started the way envtest starts one: `etcd` on
//! free loopback ports with a temporary data directory, and `kube-apiserver` (both built from their
//! Go modules by `scripts/k8s-tools.sh`) with a fresh serving certificate, client-certificate
//! authentication, RBAC authorization, the default admission plugins, and a service-account issuer
//! and signing key so that TokenRequest (`kubectl create token`) works. The test gets an admin
//! kubeconfig (`system:masters`); readiness is polled (`/health`, `/readyz`), never waited for by
//! sleeping. Dropping the [`ControlPlane`] kills both processes by PID and removes the directory.

mod binaries;
mod pki;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub(crate) use binaries::Binaries;
pub(crate) use pki::{PkiError, PkiFiles};

/// How long etcd and kube-apiserver may take to become ready (2 shared cores: generous).
const START_LIMIT: Duration = Duration::from_secs(180);
/// How often readiness is polled.
const POLL: Duration = Duration::from_millis(100);
/// Attempts to start when a picked port was taken in between (envtest makes 5).
const ATTEMPTS: usize = 3;
/// The Service cluster IP range (envtest's).
const SERVICE_RANGE: &str = "10.0.0.0/24";

/// Failures starting the control plane.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    #[error(transparent)]
    Binaries(#[from] binaries::BinariesError),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{name} exited before it was ready ({status}); log {log}:\n{tail}")]
    Exited { name: &'static str, status: std::process::ExitStatus, log: PathBuf, tail: String },
    #[error("{name} was not ready within {limit:?}: {last}; log {log}:\n{tail}")]
    NotReady { name: &'static str, limit: Duration, last: String, log: PathBuf, tail: String },
    #[error("kube client for readiness: {0}")]
    Client(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ControlPlaneError {
    let what = what.into();
    move |source| ControlPlaneError::Io { what, source }
}

/// A running etcd + kube-apiserver pair. Dropping it stops both and removes their files.
#[derive(Debug)]
pub struct ControlPlane {
    dir: tempfile::TempDir,
    etcd: Option<Child>,
    apiserver: Option<Child>,
    url: String,
    kubeconfig: PathBuf,
    pki: PkiFiles,
}

/// A free loopback port (bound and released: the same race envtest accepts, covered by retries).
fn free_port() -> Result<u16, ControlPlaneError> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io("picking a free port"))?;
    Ok(l.local_addr().map_err(io("picking a free port"))?.port())
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn spawn(program: &Path, args: &[String], log: &Path) -> Result<Child, ControlPlaneError> {
    let out = std::fs::File::create(log).map_err(io(format!("creating {}", log.display())))?;
    let err = out.try_clone().map_err(io("log file"))?;
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(io(format!("starting {}", program.display())))
}

fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        // By PID: the Child's own kill signals exactly this process.
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// `GET /health` on etcd's client URL (plain HTTP/1.0): Ok when it answers 200 with health true.
async fn etcd_healthy(addr: SocketAddr) -> Result<(), String> {
    let mut s = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").await.map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut reply))
        .await
        .map_err(|_| "no answer within 5 s".to_string())?
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&reply);
    if (text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200")) && text.contains("\"health\":\"true\"") {
        return Ok(());
    }
    Err(text.lines().next().unwrap_or("empty answer").to_string())
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver from the cached builds and waits until both are ready and
    /// the `default` namespace exists.
    pub async fn start() -> Result<ControlPlane, ControlPlaneError> {
        let bins = Binaries::locate()?;
        let mut last = None;
        for _ in 0..ATTEMPTS {
            match Self::start_once(&bins).await {
                Ok(cp) => return Ok(cp),
                // A port picked free was taken before the process bound it: pick again.
                Err(e @ ControlPlaneError::Exited { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    async fn start_once(bins: &Binaries) -> Result<ControlPlane, ControlPlaneError> {
        let dir = tempfile::Builder::new().prefix("sluice-k8s-").tempdir().map_err(io("temporary directory"))?;
        let pki = pki::write(dir.path())?;
        let mut cp = ControlPlane {
            url: String::new(),
            kubeconfig: dir.path().join("admin.kubeconfig"),
            dir,
            etcd: None,
            apiserver: None,
            pki,
        };
        let etcd_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        let peer = format!("http://127.0.0.1:{}", free_port()?);
        let client = format!("http://{etcd_addr}");
        let etcd_log = cp.dir.path().join("etcd.log");
        let args = vec![
            format!("--data-dir={}", cp.dir.path().join("etcd").display()),
            "--name=default".into(),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster=default={peer}"),
            "--unsafe-no-fsync=true".into(),
            "--log-level=warn".into(),
        ];
        cp.etcd = Some(spawn(&bins.etcd, &args, &etcd_log)?);
        cp.wait_ready("etcd", &etcd_log, || etcd_healthy(etcd_addr)).await?;

        let port = free_port()?;
        cp.url = format!("https://127.0.0.1:{port}");
        let p = |path: &Path| path.display().to_string();
        let args = vec![
            format!("--etcd-servers={client}"),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            format!("--tls-cert-file={}", p(&cp.pki.serving_cert)),
            format!("--tls-private-key-file={}", p(&cp.pki.serving_key)),
            format!("--client-ca-file={}", p(&cp.pki.client_ca)),
            format!("--service-account-issuer={}/", cp.url),
            format!("--service-account-key-file={}", p(&cp.pki.sa_pub)),
            format!("--service-account-signing-key-file={}", p(&cp.pki.sa_key)),
            format!("--service-cluster-ip-range={SERVICE_RANGE}"),
            "--authorization-mode=RBAC".into(),
            "--allow-privileged=true".into(),
            // The `kubernetes` Service's endpoints would be the advertise address, and Endpoints
            // reject loopback ones: nothing in the tests needs them.
            "--endpoint-reconciler-type=none".into(),
            format!("--cert-dir={}", p(&cp.dir.path().join("certs"))),
        ];
        let apiserver_log = cp.dir.path().join("kube-apiserver.log");
        cp.apiserver = Some(spawn(&bins.kube_apiserver, &args, &apiserver_log)?);
        cp.write_kubeconfig(&cp.kubeconfig, None)?;
        let client = cp.kube_client().await?;
        let readyz = || {
            let client = client.clone();
            async move {
                let req = http::Request::get("/readyz").body(Vec::new()).map_err(|e| e.to_string())?;
                let text = client.request_text(req).await.map_err(|e| e.to_string())?;
                if text.trim() == "ok" {
                    Ok(())
                } else {
                    Err(text)
                }
            }
        };
        cp.wait_ready("kube-apiserver", &apiserver_log, readyz).await?;
        let default_ns = || {
            let client = client.clone();
            async move {
                let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
                api.get("default").await.map(|_| ()).map_err(|e| e.to_string())
            }
        };
        cp.wait_ready("kube-apiserver (namespace default)", &apiserver_log, default_ns).await?;
        Ok(cp)
    }

    async fn wait_ready<F, Fut>(
        &mut self,
        name: &'static str,
        log: &Path,
        mut check: F,
    ) -> Result<(), ControlPlaneError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let start = Instant::now();
        let mut last = String::from("not polled");
        while start.elapsed() < START_LIMIT {
            for child in [&mut self.etcd, &mut self.apiserver].into_iter().flatten() {
                if let Ok(Some(status)) = child.try_wait() {
                    let cname = if name.starts_with("etcd") { "etcd" } else { "kube-apiserver" };
                    return Err(ControlPlaneError::Exited {
                        name: cname,
                        status,
                        log: log.to_path_buf(),
                        tail: tail(log),
                    });
                }
            }
            match check().await {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            tokio::time::sleep(POLL).await;
        }
        Err(ControlPlaneError::NotReady { name, limit: START_LIMIT, last, log: log.to_path_buf(), tail: tail(log) })
    }

    /// The API server's URL (`https://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The admin kubeconfig (client certificate in group `system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The certificates and keys (the serving CA is what a client of [`Self::url`] trusts).
    pub fn pki(&self) -> &PkiFiles {
        &self.pki
    }

    /// The directory holding the logs (`etcd.log`, `kube-apiserver.log`), certificates and data.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a kubeconfig for this server: the admin client certificate, or a bearer `token`.
    pub fn write_kubeconfig(&self, path: &Path, token: Option<&str>) -> Result<(), ControlPlaneError> {
        let user = match token {
            Some(t) => format!("    token: {t}\n"),
            None => format!(
                "    client-certificate: {}\n    client-key: {}\n",
                self.pki.admin_cert.display(),
                self.pki.admin_key.display()
            ),
        };
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: sluice-e2e\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: sluice-e2e\n  user:\n{user}contexts:\n- name: sluice-e2e\n  context:\n    cluster: sluice-e2e\n    user: sluice-e2e\n    namespace: default\ncurrent-context: sluice-e2e\n",
            self.url,
            self.pki.serving_ca.display()
        );
        std::fs::write(path, text).map_err(io(format!("writing {}", path.display())))
    }

    /// A kube-rs client with the admin kubeconfig.
    pub async fn kube_client(&self) -> Result<kube::Client, ControlPlaneError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let err = |e: &dyn std::fmt::Display| ControlPlaneError::Client(e.to_string());
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).map_err(|e| err(&e))?;
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.map_err(|e| err(&e))?;
        kube::Client::try_from(config).map_err(|e| err(&e))
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        kill(&mut self.apiserver);
        kill(&mut self.etcd);
        // The TempDir removes the data, certificates and logs after this.
    }
}
