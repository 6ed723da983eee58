//! `sluice-test-apiserver`: runs the in-memory test Kubernetes API server as a process.
//!
//! A test tool, not a Kubernetes API server: plain HTTP, no auth, state in memory. It prints
//! `listening on <addr>` on stdout once it accepts connections, optionally writes a kubeconfig for it,
//! and runs until SIGINT or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use e2e::{ApiServer, Options};

/// In-memory Kubernetes API server for tests (not for production use).
#[derive(Debug, Parser)]
#[command(name = "sluice-test-apiserver", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Write a kubeconfig pointing at the server to this path.
    #[arg(long)]
    kubeconfig_out: Option<PathBuf>,
    /// Events kept for watches; older resourceVersions get 410 Gone.
    #[arg(long, default_value_t = 10_000)]
    history_limit: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let options = Options { listen: args.listen, history_limit: args.history_limit, ..Options::default() };
    let server = ApiServer::bind(&options).await?;
    let addr = server.local_addr();
    if let Some(path) = &args.kubeconfig_out {
        std::fs::write(path, e2e::apiserver::kubeconfig::render(addr))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {addr}")?;
    stdout.flush()?;
    drop(stdout);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = server.serve() => {}
        r = tokio::signal::ctrl_c() => r.context("waiting for ctrl-c")?,
        _ = term.recv() => {}
    }
    Ok(())
}
