//! Shared by the peers' suites (`h2spec.rs`, `grpc_interop.rs`): the real `sluice-proxy` binary
//! started on a declarative config, the peers' tools that `peers/install.sh` built into the cache
//! (pinned by `peers/go.mod`), and the summaries `make peers-report` collects into
//! docs/conformance.md. A missing tool fails the test loudly; it never skips.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_sluice-proxy");

/// `peers/` of the repository: go.mod pins the tools' versions.
fn peers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../peers")
}

/// The version `peers/go.mod` pins for `module`, without `+incompatible`.
pub fn pinned(module: &str) -> String {
    let go_mod = std::fs::read_to_string(peers_dir().join("go.mod")).expect("peers/go.mod");
    let prefix = format!("{module} ");
    go_mod
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .map(|v| v.trim_end_matches("+incompatible").to_string())
        .unwrap_or_else(|| panic!("peers/go.mod does not require {module}"))
}

/// A binary peers/install.sh built: `${XDG_CACHE_HOME:-$HOME/.cache}/sluice/<dir>-<version>/<bin>`.
pub fn tool(dir: &str, module: &str, bin: &str) -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache"));
    let path = cache.join("sluice").join(format!("{dir}-{}", pinned(module))).join(bin);
    assert!(path.is_file(), "{} is missing: run `make deps` (peers/install.sh builds it with go)", path.display());
    path
}

/// Writes `text` as `<name>` into `$SLUICE_PEERS_REPORT` when set (`make peers-report`).
pub fn report(name: &str, text: &str) {
    if let Some(dir) = std::env::var_os("SLUICE_PEERS_REPORT") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(Path::new(&dir).join(name), text).unwrap();
    }
}

/// The `sluice-proxy` binary, running until dropped.
pub struct ProxyProcess {
    pub child: Child,
    /// The proxy listeners' addresses, in `listen` order.
    pub addrs: Vec<SocketAddr>,
    pub dir: tempfile::TempDir,
}

impl ProxyProcess {
    /// Starts the binary with `config` as its declarative config, `listen` as KONG_PROXY_LISTEN
    /// (port 0) and `env`; returns once it logged its bound addresses.
    pub async fn start(config: &str, listen: &str, env: &[(&str, &str)]) -> ProxyProcess {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kong.yaml");
        std::fs::write(&path, config).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("KONG_PROXY_LISTEN", listen)
            .env("KONG_STATUS_LISTEN", "127.0.0.1:0")
            .env("SLUICE_ADMIN_SOCKET", dir.path().join("admin.sock"))
            .env("KONG_DECLARATIVE_CONFIG", &path)
            .env("KONG_PROXY_ACCESS_LOG", "off")
            .env("KONG_NGINX_WORKER_PROCESSES", "2");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true).spawn().unwrap();
        let addrs = crate::common::process::started_addrs(&mut child, Duration::from_secs(30)).await;
        ProxyProcess { child, addrs, dir }
    }
}

/// Writes `text` into `dir` as `name`; returns its path as a string.
pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}
