//! Process-level plumbing shared by the binary: tracing setup and the shutdown signal.

/// Logs as JSON lines on stderr at `level` (overridable with `RUST_LOG`).
pub fn init(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},h2=warn,hyper=warn,rustls=warn")));
    let _ = tracing_subscriber::fmt().json().with_writer(std::io::stderr).with_env_filter(filter).try_init();
}

/// SIGTERM/SIGINT handlers, installed before anything is bound so a signal that arrives while
/// the proxy starts is never the default (immediate death) but a drain.
pub struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Installs the handlers; must run inside the runtime.
    pub fn install() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        Signals { term: signal(SignalKind::terminate()).ok(), int: signal(SignalKind::interrupt()).ok() }
    }

    /// Resolves on SIGTERM or SIGINT (never, if neither handler could be installed).
    pub async fn wait(mut self) {
        async fn recv(s: Option<&mut tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = recv(self.term.as_mut()) => {}
            _ = recv(self.int.as_mut()) => {}
        }
    }
}

/// Resolves on SIGTERM or SIGINT (handlers installed on first poll; prefer [`Signals`]).
pub async fn wait_for_signal() {
    Signals::install().wait().await
}
