//! `sluice-proxy`: read settings (exit 64 on a bad value, before binding anything), start, run
//! until SIGTERM/SIGINT, drain.

use std::process::ExitCode;

use proxy::settings::Settings;

fn main() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sluice-proxy: {e}");
            return ExitCode::from(64);
        }
    };
    proxy::logging::init(settings.tracing_level());
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = settings.workers {
        rt.worker_threads(n);
    }
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice-proxy: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        let signals = proxy::logging::Signals::install();
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
