//! `sluice-cluster`: a real Kubernetes control plane with sluice running on it, for people
//! (`make cluster`): etcd + kube-apiserver (`e2e::ControlPlane`), sluice's CRDs and install
//! manifests plus the GatewayClass and Gateway of examples/00-gateway applied, `sluice-controller`
//! as the manifests' ServiceAccount and `sluice-proxy`. Once all are ready it writes
//! `<dir>/kubeconfig` and `<dir>/env` and runs until SIGTERM or SIGINT (`make cluster-down`), then
//! stops every process it started, by PID.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use e2e::install::{install_manifests, repo, service_account_token, ELECTION_ID, SLUICE_NAMESPACE};
use e2e::{ControlPlane, Kubectl};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Runs a local control plane with sluice on it until stopped.
#[derive(Debug, Parser)]
#[command(name = "sluice-cluster", version)]
struct Args {
    /// Where to write kubeconfig, env and the logs.
    #[arg(long, default_value = ".run/cluster")]
    dir: PathBuf,
    /// Directory holding sluice-proxy and sluice-controller.
    #[arg(long, default_value = "target/debug")]
    bin_dir: PathBuf,
}

/// The proxy's listen addresses, read from its `sluice-proxy started` log line.
async fn start_proxy(bin_dir: &Path, dir: &Path) -> anyhow::Result<(Child, Vec<SocketAddr>, SocketAddr)> {
    let mut child = Command::new(bin_dir.join("sluice-proxy"))
        .env("KONG_PROXY_LISTEN", "127.0.0.1:0 http2, 127.0.0.1:0 http2 ssl")
        .env("KONG_STATUS_LISTEN", "127.0.0.1:0")
        .env("SLUICE_ADMIN_SOCKET", dir.join("run/admin.sock"))
        .env("KONG_LOG_LEVEL", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting sluice-proxy")?;
    let mut lines = BufReader::new(child.stderr.take().context("proxy stderr")?).lines();
    let mut log = std::fs::File::create(dir.join("proxy.log")).context("proxy.log")?;
    let started = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = writeln!(log, "{line}");
            if line.contains("sluice-proxy started") {
                return Some(line);
            }
        }
        None
    })
    .await
    .context("sluice-proxy did not start within 30 s")?
    .context("sluice-proxy exited before it started (see proxy.log)")?;
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = writeln!(log, "{line}");
        }
    });
    let v: serde_json::Value = serde_json::from_str(&started).context("proxy start line is JSON")?;
    let parse = |s: &str| -> Vec<SocketAddr> {
        s.trim_matches(|c| c == '[' || c == ']').split(',').filter_map(|a| a.trim().parse().ok()).collect()
    };
    let proxy = parse(v["fields"]["proxy"].as_str().unwrap_or_default());
    let status = parse(v["fields"]["status"].as_str().unwrap_or_default());
    if proxy.len() != 2 || status.is_empty() {
        bail!("unexpected proxy start line: {started}");
    }
    Ok((child, proxy, status[0]))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(args.dir.join("run")).with_context(|| format!("creating {}", args.dir.display()))?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let bin_dir = std::fs::canonicalize(&args.bin_dir)
        .with_context(|| format!("{} (build with cargo build --bins)", args.bin_dir.display()))?;
    let _ = std::fs::remove_file(dir.join("env"));

    let cp = ControlPlane::start().await?;
    let kubeconfig = dir.join("kubeconfig");
    cp.write_kubeconfig(&kubeconfig, None)?;
    let kubectl = Kubectl::new(&kubeconfig, &dir)?;
    install_manifests(&kubectl).await?;
    let gateway = repo().join("examples/00-gateway/gateway.yaml").display().to_string();
    kubectl.ok(&["apply", "-f", &gateway]).await?;
    let controller_kubeconfig = dir.join("controller.kubeconfig");
    cp.write_kubeconfig(&controller_kubeconfig, Some(&service_account_token(&kubectl).await?))?;

    let (proxy, proxy_addrs, status) = start_proxy(&bin_dir, &dir).await?;
    let controller_log = std::fs::File::create(dir.join("controller.log"))?;
    let controller = Command::new(bin_dir.join("sluice-controller"))
        .arg("--kubeconfig")
        .arg(&controller_kubeconfig)
        .arg(format!("--kong-admin-url=unix://{}", dir.join("run/admin.sock").display()))
        .arg(format!("--election-namespace={SLUICE_NAMESPACE}"))
        .arg(format!("--election-id={ELECTION_ID}"))
        .args([
            "--proxy-sync-seconds=0.5",
            "--metrics-bind-address=127.0.0.1:0",
            "--health-probe-bind-address=127.0.0.1:0",
            "--publish-status-address=127.0.0.1",
        ])
        .stdout(Stdio::null())
        .stderr(controller_log)
        .kill_on_drop(true)
        .spawn()
        .context("starting sluice-controller")?;

    // Ready: the Gateway of examples/00-gateway is Programmed, which needs the controller to have
    // read everything, pushed to the proxy and written its status.
    kubectl
        .clone()
        .with_timeout(Duration::from_secs(120))
        .ok(&["wait", "--for=condition=Programmed", "gateway/kong", "--timeout=110s"])
        .await
        .context("waiting for the Gateway to be Programmed (see controller.log)")?;

    std::fs::write(
        dir.join("env"),
        format!(
            "KUBECONFIG={}\nPROXY_HTTP={}\nPROXY_TLS={}\nPROXY_STATUS={status}\n",
            kubeconfig.display(),
            proxy_addrs[0],
            proxy_addrs[1]
        ),
    )?;
    println!("sluice-cluster ready: {}", dir.join("env").display());

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        r = tokio::signal::ctrl_c() => r?,
    }
    let _ = std::fs::remove_file(dir.join("env"));
    // Controller and proxy first (kill_on_drop, by PID), then the control plane.
    drop(controller);
    drop(proxy);
    drop(cp);
    Ok(())
}
