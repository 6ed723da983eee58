//! `sluice-cluster`: a real Kubernetes control plane with sluice running on it, for people
//! (`make cluster`): etcd + kube-apiserver (`e2e::ControlPlane`), sluice's CRDs and install
//! manifests plus the GatewayClass and Gateway of examples/00-gateway applied, `sluice-controller`
//! as the manifests' ServiceAccount and `sluice-proxy`. Once all are ready it writes
//! `<dir>/kubeconfig` and `<dir>/env` and runs until SIGTERM or SIGINT (`make cluster-down`), then
//! stops every process it started, by PID.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use e2e::install::{install_manifests, repo, service_account_token};
use e2e::sluice::{start_controller, start_proxy};
use e2e::{ControlPlane, Kubectl};

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

    let proxy = start_proxy(&bin_dir, &dir, "127.0.0.1:0 http2, 127.0.0.1:0 http2 ssl").await?;
    let (proxy_addrs, status) = (proxy.listeners.clone(), proxy.status);
    if proxy_addrs.len() != 2 {
        bail!("the proxy reported {} listeners, not the 2 asked for", proxy_addrs.len());
    }
    let controller = start_controller(&bin_dir, &dir, &controller_kubeconfig, "127.0.0.1")?;

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
