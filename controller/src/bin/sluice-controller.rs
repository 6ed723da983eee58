//! `sluice-controller`: parse settings, set up logs (on stderr, so `--dump-config` output stays
//! clean), run. Exit 64 on bad settings, 1 on a runtime failure.

use std::io::IsTerminal;

use clap::Parser;
use controller::app;
use controller::Settings;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

fn init_logs(settings: &Settings) {
    let filter = EnvFilter::try_new(&settings.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if settings.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                token.cancel();
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    token.cancel();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    init_logs(&settings);
    if let Err(e) = settings.validate() {
        eprintln!("sluice-controller: {e}");
        std::process::exit(64);
    }
    let token = CancellationToken::new();
    tokio::spawn(shutdown_signal(token.clone()));
    if let Some(text) = app::run(settings, token).await? {
        print!("{text}");
    }
    Ok(())
}
