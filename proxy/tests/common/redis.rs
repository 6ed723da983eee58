//! A real `redis-server` (the Debian package; scripts/install-deps.sh installs it) for a test:
//! started on a free loopback port without persistence, ready once it answers PING, stopped
//! (by its own pid) on drop. [`RedisServer::stop`] and [`RedisServer::restart`] kill it and
//! bring it back on the same port, for the tests of a Redis outage. [`RedisServer::start_tls`]
//! also serves TLS on a second port (Debian's redis-server is built with TLS).

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct RedisServer {
    pub addr: SocketAddr,
    /// The TLS port's address with the certificate and key files it serves.
    pub tls: Option<(SocketAddr, PathBuf, PathBuf)>,
    child: Option<Child>,
}

fn free_addr() -> SocketAddr {
    // The kernel picks the port; it is released just before redis-server binds it.
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

impl RedisServer {
    /// Starts redis-server on a free port of 127.0.0.1 and waits until it answers PING.
    pub async fn start() -> RedisServer {
        let mut r = RedisServer { addr: free_addr(), tls: None, child: None };
        r.spawn().await;
        r
    }

    /// Also serves TLS with `cert` and `key` (PEM files) on another free port (no client
    /// certificates asked); the plain port stays for PING and [`RedisServer::command`].
    pub async fn start_tls(cert: PathBuf, key: PathBuf) -> RedisServer {
        let mut r = RedisServer { addr: free_addr(), tls: Some((free_addr(), cert, key)), child: None };
        r.spawn().await;
        r
    }

    async fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        if let Some((addr, cert, key)) = &self.tls {
            cmd.args(["--tls-port", &addr.port().to_string(), "--tls-auth-clients", "no"])
                .arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key);
        }
        let child = cmd
            .args(["--bind", "127.0.0.1", "--port", &self.addr.port().to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server not found: run scripts/install-deps.sh (Debian package redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.pong().await {
            assert!(Instant::now() < deadline, "redis-server on {} did not answer PING within 10 s", self.addr);
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("redis-server on {} exited: {status}", self.addr);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the server answers PING (RESP inline command).
    async fn pong(&self) -> bool {
        let Ok(mut s) = tokio::net::TcpStream::connect(self.addr).await else { return false };
        if s.write_all(b"PING\r\n").await.is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).await.is_ok() && &buf == b"+PONG\r\n"
    }

    /// Kills the server (SIGKILL: an outage, not a shutdown) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A new, empty server on the same port.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// Sends one inline command and returns the raw reply (for reading counters in tests).
    pub async fn command(&self, cmd: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        s.write_all(format!("{cmd}\r\n").as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
