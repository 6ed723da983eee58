//! The real `sluice-proxy` binary run as a child process by a test: the listener addresses it logs
//! once it has bound them (its JSON start line on stderr).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

/// Reads the child's stderr (it must be piped) until the `sluice-proxy started` line, within
/// `within`, and returns the proxy listeners' addresses in `KONG_PROXY_LISTEN` order. stderr is
/// drained from then on, so the child never blocks on a full pipe.
pub async fn started_addrs(child: &mut Child, within: Duration) -> Vec<SocketAddr> {
    let mut lines = BufReader::new(child.stderr.take().expect("stderr piped")).lines();
    let addrs = tokio::time::timeout(within, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if !line.contains("sluice-proxy started") {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            // `proxy` is the Debug form of the address list: "[127.0.0.1:1234, 127.0.0.1:1235]".
            let list = v["fields"]["proxy"].as_str().unwrap().trim_matches(['[', ']']).to_string();
            return list.split(", ").map(|a| a.parse().unwrap()).collect::<Vec<SocketAddr>>();
        }
        panic!("sluice-proxy exited before it started");
    })
    .await
    .unwrap_or_else(|_| panic!("sluice-proxy logged no start line in {within:?}"));
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    addrs
}

/// The real `sluice-proxy` binary with a declarative config, so that its own memory can be read.
pub struct ProxyProcess {
    pub child: tokio::process::Child,
    pub addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

pub async fn proxy_process(config: &str) -> ProxyProcess {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kong.yaml");
    std::fs::write(&path, config).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice-proxy"))
        .env_clear()
        .env("KONG_PROXY_LISTEN", "127.0.0.1:0 http2")
        .env("KONG_STATUS_LISTEN", "127.0.0.1:0")
        .env("SLUICE_ADMIN_SOCKET", dir.path().join("admin.sock"))
        .env("KONG_DECLARATIVE_CONFIG", &path)
        .env("KONG_PROXY_ACCESS_LOG", "off")
        // One worker thread: memory measured around a stream is that thread's, not a second
        // thread's heap warming up.
        .env("KONG_NGINX_WORKER_PROCESSES", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addrs = started_addrs(&mut child, std::time::Duration::from_secs(20)).await;
    ProxyProcess { child, addr: addrs[0], _dir: dir }
}

pub fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}
