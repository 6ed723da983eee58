//! A scripted HTTP/1.1 upstream for the proxy's tests: it answers each request with exact bytes
//! and records every request it received whole (head, body, trailers), so that a test can assert
//! what reached the upstream as well as what the client got.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::TestProxy;

/// What the scripted upstream does with one request.
pub struct Reply {
    pub bytes: Vec<u8>,
    /// Close the connection after writing the reply.
    pub close: bool,
}

pub fn reply(bytes: impl Into<Vec<u8>>) -> Reply {
    Reply { bytes: bytes.into(), close: false }
}

/// One request as the upstream received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub head: String,
    pub body: Vec<u8>,
    /// Trailer fields of a chunked body, as sent.
    pub trailers: Vec<String>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

type Script = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

pub struct Upstream {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    /// `read_body: false` answers as soon as the request head is in (an early response).
    pub async fn start(read_body: bool, script: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Upstream {
        Self::start_tls(read_body, None, script).await
    }

    /// The same behind TLS when `tls` is given.
    pub async fn start_tls(
        read_body: bool,
        tls: Option<Arc<rustls::ServerConfig>>,
        script: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script: Script = Arc::new(script);
        let (a, s) = (accepted.clone(), seen.clone());
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                a.fetch_add(1, Ordering::SeqCst);
                let (script, seen) = (script.clone(), s.clone());
                match &tls {
                    None => conns.spawn(serve(stream, read_body, script, seen)),
                    Some(cfg) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(cfg.clone());
                        conns.spawn(async move {
                            if let Ok(tls) = acceptor.accept(stream).await {
                                serve(tls, read_body, script, seen).await;
                            }
                        })
                    }
                };
            }
        });
        Upstream { addr, accepted, seen, task }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    read_body: bool,
    script: Script,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
    let mut buf = Vec::new();
    loop {
        let Some(end) = read_until(&mut stream, &mut buf, b"\r\n\r\n").await else { return };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
        let mut req = Seen { head, body: Vec::new(), trailers: Vec::new() };
        if read_body {
            if let Some(n) = req.header("content-length") {
                let n: usize = n.parse().unwrap();
                while buf.len() < n {
                    if !read_some(&mut stream, &mut buf).await {
                        return;
                    }
                }
                req.body = buf.drain(..n).collect();
            } else if req.header("transfer-encoding").is_some() {
                // Chunks: size line, data, CRLF; the last one is followed by an (empty) trailer section.
                loop {
                    let Some(eol) = read_until(&mut stream, &mut buf, b"\r\n").await else { return };
                    let line = String::from_utf8_lossy(&buf[..eol]).into_owned();
                    buf.drain(..eol + 2);
                    let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16).unwrap();
                    if size == 0 {
                        // Trailer fields up to the empty line.
                        loop {
                            let Some(end) = read_until(&mut stream, &mut buf, b"\r\n").await else { return };
                            let field = String::from_utf8_lossy(&buf[..end]).into_owned();
                            buf.drain(..end + 2);
                            if field.is_empty() {
                                break;
                            }
                            req.trailers.push(field);
                        }
                        break;
                    }
                    while buf.len() < size + 2 {
                        if !read_some(&mut stream, &mut buf).await {
                            return;
                        }
                    }
                    req.body.extend(buf.drain(..size));
                    buf.drain(..2);
                }
            }
        }
        let r = script(&req);
        seen.lock().unwrap().push(req);
        if stream.write_all(&r.bytes).await.is_err() || r.close {
            return;
        }
    }
}

/// Reads until `pat` is in `buf`; its offset, or `None` at EOF.
pub async fn read_until<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>, pat: &[u8]) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(pat.len()).position(|w| w == pat) {
            return Some(i);
        }
        if !read_some(stream, buf).await {
            return None;
        }
    }
}

/// Appends what one read returns; false at EOF or on error.
pub async fn read_some<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk).await {
        Ok(n) if n > 0 => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
        _ => false,
    }
}

/// A proxy with one plain-HTTP service pointing at `upstream` on every path.
pub async fn proxy_to(upstream: SocketAddr) -> TestProxy {
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    p.push_ok(&format!(
        "_format_version: '3.0'\nservices:\n- name: up\n  protocol: http\n  host: {}\n  port: {}\n  retries: 2\n  routes:\n  - name: up\n    paths: ['/']\n",
        upstream.ip(),
        upstream.port()
    ))
    .await;
    p
}

/// Writes `raw` on a new connection, half-closes it (the client sends nothing more) and reads the
/// answer to its end.
pub async fn half_closed_exchange(addr: SocketAddr, raw: &[u8], then: &[u8]) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    if !then.is_empty() {
        // Wait for the proxy's interim answer before going on.
        let got = tokio::time::timeout(Duration::from_secs(10), read_until(&mut tcp, &mut out, b"\r\n\r\n")).await;
        assert!(matches!(got, Ok(Some(_))), "{}", String::from_utf8_lossy(&out));
        out.clear();
        tcp.write_all(then).await.unwrap();
    }
    tcp.shutdown().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out)).await.expect("answer in time").unwrap();
    String::from_utf8_lossy(&out).into_owned()
}
