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
