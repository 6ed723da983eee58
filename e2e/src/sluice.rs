//! Starting the `sluice-proxy` and `sluice-controller` binaries next to a [`crate::ControlPlane`],
//! as `sluice-cluster` (`make cluster`) and `sluice-conformance` (`make conformance`) run them:
//! the proxy with its admin socket in the run directory and its log read for the addresses it
//! bound, the controller as the manifests' ServiceAccount pushing to that socket. Both are killed
//! by PID when their [`Child`] is dropped.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::install::{ELECTION_ID, SLUICE_NAMESPACE};

/// How long the proxy may take to log its start line.
const PROXY_START: Duration = Duration::from_secs(30);

/// Failures starting the binaries.
#[derive(Debug, thiserror::Error)]
pub enum SluiceError {
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("sluice-proxy did not log its start within {0:?} (see proxy.log)")]
    ProxyTimeout(Duration),
    #[error("sluice-proxy exited before it started (see proxy.log)")]
    ProxyExited,
    #[error("unexpected proxy start line: {0}")]
    StartLine(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SluiceError {
    let what = what.into();
    move |source| SluiceError::Io { what, source }
}

/// The running proxy and the addresses it logged.
pub struct Proxy {
    pub child: Child,
    /// Proxy listeners, in `KONG_PROXY_LISTEN` order.
    pub listeners: Vec<SocketAddr>,
    /// The status endpoint.
    pub status: SocketAddr,
}

/// Starts `bin_dir/sluice-proxy` with `KONG_PROXY_LISTEN=listen`, its admin socket at
/// `dir/run/admin.sock` and its log in `dir/proxy.log`.
pub async fn start_proxy(bin_dir: &Path, dir: &Path, listen: &str) -> Result<Proxy, SluiceError> {
    std::fs::create_dir_all(dir.join("run")).map_err(io(format!("creating {}", dir.join("run").display())))?;
    let mut child = Command::new(bin_dir.join("sluice-proxy"))
        .env("KONG_PROXY_LISTEN", listen)
        .env("KONG_STATUS_LISTEN", "127.0.0.1:0")
        .env("SLUICE_ADMIN_SOCKET", dir.join("run/admin.sock"))
        .env("KONG_LOG_LEVEL", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(io("starting sluice-proxy"))?;
    let stderr = child.stderr.take().ok_or(SluiceError::ProxyExited)?;
    let mut lines = BufReader::new(stderr).lines();
    let mut log = std::fs::File::create(dir.join("proxy.log")).map_err(io("creating proxy.log"))?;
    let started = tokio::time::timeout(PROXY_START, async {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = writeln!(log, "{line}");
            if line.contains("sluice-proxy started") {
                return Some(line);
            }
        }
        None
    })
    .await
    .map_err(|_| SluiceError::ProxyTimeout(PROXY_START))?
    .ok_or(SluiceError::ProxyExited)?;
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = writeln!(log, "{line}");
        }
    });
    let v: serde_json::Value = serde_json::from_str(&started).map_err(|_| SluiceError::StartLine(started.clone()))?;
    let parse = |s: &str| -> Vec<SocketAddr> {
        s.trim_matches(|c| c == '[' || c == ']').split(',').filter_map(|a| a.trim().parse().ok()).collect()
    };
    let listeners = parse(v["fields"]["proxy"].as_str().unwrap_or_default());
    let status = parse(v["fields"]["status"].as_str().unwrap_or_default());
    match status.first() {
        Some(&status) if !listeners.is_empty() => Ok(Proxy { child, listeners, status }),
        _ => Err(SluiceError::StartLine(started)),
    }
}

/// Starts `bin_dir/sluice-controller` with `kubeconfig` (the ServiceAccount's), pushing to the
/// proxy's admin socket under `dir` and publishing `publish_address` in Ingress and Gateway
/// status; its log goes to `dir/controller.log`.
pub fn start_controller(
    bin_dir: &Path,
    dir: &Path,
    kubeconfig: &Path,
    publish_address: &str,
) -> Result<Child, SluiceError> {
    let log = std::fs::File::create(dir.join("controller.log")).map_err(io("creating controller.log"))?;
    Command::new(bin_dir.join("sluice-controller"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg(format!("--kong-admin-url=unix://{}", dir.join("run/admin.sock").display()))
        .arg(format!("--election-namespace={SLUICE_NAMESPACE}"))
        .arg(format!("--election-id={ELECTION_ID}"))
        .args([
            "--proxy-sync-seconds=0.5",
            "--metrics-bind-address=127.0.0.1:0",
            "--health-probe-bind-address=127.0.0.1:0",
        ])
        .arg(format!("--publish-status-address={publish_address}"))
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(io("starting sluice-controller"))
}
