//! `sluice-proxy`: read settings (exit 64 on a bad value, before binding anything), start, run
//! until SIGTERM/SIGINT, drain.

use std::process::ExitCode;

use proxy::settings::Settings;

/// mimalloc instead of glibc malloc: -6.7% instructions per gRPC call (see proxy/Cargo.toml).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sluice-proxy: {e}");
            return ExitCode::from(64);
        }
    };
    proxy::telemetry::logging::init(settings.tracing_level());
    // One worker (KONG_NGINX_WORKER_PROCESSES=1): a current-thread runtime. No work stealing and no
    // hand-offs, so the h2 connection tasks see several streams per wakeup and write them in one go
    // (bench/callgrind.sh, bench/syscalls.sh: gRPC 2.1 -> 0.7 syscalls, -4.5% instructions per request).
    let mut rt = match settings.workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice-proxy: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        let signals = proxy::telemetry::logging::Signals::install();
        let running = match proxy::app::start(settings).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("sluice-proxy: {e}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(proxy = ?running.proxy_addrs, status = ?running.status_addrs, admin = %running.admin_socket.display(), "sluice-proxy started");
        signals.wait().await;
        tracing::info!("shutting down: draining connections");
        running.shutdown().await;
        ExitCode::SUCCESS
    })
}
