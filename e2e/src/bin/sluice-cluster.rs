//! `sluice-cluster`: a real Kubernetes control plane with sluice running on it, for people
//! (`make cluster`): etcd + kube-apiserver (`e2e::ControlPlane`), sluice's CRDs and install
//! manifests plus the GatewayClass and Gateway of examples/00-gateway applied, `sluice-controller`
//! as the manifests' ServiceAccount and `sluice-proxy`, and the demo backends behind the Services
//! of examples/ (see [`demo_backends`]), so that `kubectl apply -f examples/01-grpcbin` is all it
//! takes to call through the proxy. Once all are ready it writes `<dir>/kubeconfig` and
//! `<dir>/env` and runs until SIGTERM or SIGINT (`make cluster-down`), then stops every process it
//! started, by PID, and removes the backends' network namespace.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use e2e::install::{install_manifests, repo, service_account_token};
use e2e::sluice::{start_controller, start_proxy};
use e2e::{BackendNet, ControlPlane, Kubectl};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::Deserialize;
use sluice_demo::{Backend, BackendOptions};

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

/// The EndpointSlices `make demo` uses: one per Service of examples/, one endpoint per backend.
const DEMO_SLICES: &str = "examples/local/endpointslices.yaml";
/// The certificate and key of the TLS demo backends (Services whose port is named `grpcs`).
const DEMO_TLS: (&str, &str) = ("examples/local/demo-backend-tls.crt", "examples/local/demo-backend-tls.key");

/// The demo backends: for each EndpointSlice of [`DEMO_SLICES`], one backend per endpoint (named
/// after the Service, `-a`, `-b`… when there are several; over TLS when the port is named
/// `grpcs`), listening in a network namespace at a private address (Kubernetes rejects loopback
/// endpoints), and an EndpointSlice `<slice>-cluster-<i>` per backend pointing the Service at it.
/// The namespace and the backends live as long as the returned values.
async fn demo_backends(kubectl: &Kubectl) -> anyhow::Result<(BackendNet, Vec<Backend>)> {
    let net = BackendNet::create().context("creating the backends' network namespace (needs root and ip)")?;
    let text = std::fs::read_to_string(repo().join(DEMO_SLICES)).with_context(|| DEMO_SLICES.to_string())?;
    let read = |p: &str| std::fs::read_to_string(repo().join(p)).with_context(|| p.to_string());
    let (cert, key) = (read(DEMO_TLS.0)?, read(DEMO_TLS.1)?);
    let mut backends = Vec::new();
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let slice = EndpointSlice::deserialize(doc).with_context(|| format!("{DEMO_SLICES}: not an EndpointSlice"))?;
        let slice_name = slice.metadata.name.clone().unwrap_or_default();
        let labels = slice.metadata.labels.clone().unwrap_or_default();
        let service = labels.get("kubernetes.io/service-name").cloned().unwrap_or_default();
        let port_name = slice.ports.iter().flatten().find_map(|p| p.name.clone()).unwrap_or_default();
        let n = slice.endpoints.as_ref().map_or(0, Vec::len);
        for i in 0..n {
            let suffix = if n == 1 { String::new() } else { format!("-{}", char::from(b'a' + (i % 26) as u8)) };
            let mut opts = BackendOptions::named(&format!("{service}{suffix}"));
            if port_name == "grpcs" {
                opts = opts.with_tls(cert.clone(), key.clone());
            }
            let backend = sluice_demo::spawn_on(net.listen()?, opts).await?;
            docs.push(format!(
                "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {slice_name}-cluster-{i}\n  namespace: default\n  labels:\n    kubernetes.io/service-name: {service}\naddressType: IPv4\nports:\n- name: {port_name}\n  port: {port}\n  protocol: TCP\nendpoints:\n- addresses: [\"{ip}\"]\n  conditions:\n    ready: true\n",
                port = backend.addr().port(),
                ip = net.ip(),
            ));
            backends.push(backend);
        }
    }
    kubectl.apply(&docs.join("---\n"), &[]).await.context("applying the demo EndpointSlices")?;
    Ok((net, backends))
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

    // Without root (or `ip`) the cluster still comes up, without backends.
    let demo = match demo_backends(&kubectl).await {
        Ok(d) => Some(d),
        Err(e) => {
            eprintln!("sluice-cluster: demo backends not started: {e:#}");
            None
        }
    };

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
    drop(demo);
    drop(cp);
    Ok(())
}
