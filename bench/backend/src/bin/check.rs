//! bench-check: makes the h2load body file and checks a target really answers.
//!
//!   bench-check mkbody FILE [MSG_BYTES]   gRPC frame: 5-byte prefix + protobuf
//!                                        `message Echo { bytes payload = 1; }`
//!   bench-check grpc HOST:PORT [N]        N unary calls over h2c; each must echo
//!                                        the payload and end with grpc-status 0
//!   bench-check stream HOST:PORT [N]      N server-streaming calls over h2c; each must
//!                                        return STREAM_MSGS (default 100) echoes, grpc-status 0
//!   bench-check http1 HOST:PORT [N]       N HTTP/1.1 GETs on one keep-alive
//!                                        connection; each must be 200 + 100 bytes
//! Exit status 0 only if every call succeeded.

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

const GRPC_PATH: &str = "/bench.Echo/Echo";
const STREAM_PATH: &str = "/bench.Echo/Stream";

fn grpc_frame(msg_bytes: usize) -> Vec<u8> {
    // protobuf: field 1 (bytes), wire type 2 => tag 0x0a, varint len, payload.
    assert!(msg_bytes >= 3 && msg_bytes <= 129, "keep the varint one byte");
    let plen = msg_bytes - 2;
    let mut msg = vec![0x0a, plen as u8];
    msg.extend((0..plen).map(|i| b'a' + (i % 26) as u8));
    let mut f = vec![0u8];
    f.extend((msg.len() as u32).to_be_bytes());
    f.extend(msg);
    f
}

async fn check_grpc(addr: &str, n: usize, stream_msgs: usize) -> Result<(), String> {
    let path = if stream_msgs > 0 { STREAM_PATH } else { GRPC_PATH };
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    stream.set_nodelay(true).ok();
    let (mut tx, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .map_err(|e| format!("h2 handshake: {e}"))?;
    tokio::spawn(conn);
    let body = Bytes::from(grpc_frame(100));
    for i in 0..n {
        let mut req = Request::post(format!("http://{addr}{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        // The API key the *-auth targets check (run.sh exports it for every target).
        if let Ok(key) = std::env::var("BENCH_APIKEY") {
            req = req.header("apikey", key);
        }
        // The token the jwt rows of callgrind.sh check.
        if let Ok(token) = std::env::var("BENCH_JWT") {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = req.body(Full::new(body.clone())).unwrap();
        let resp = tx.send_request(req).await.map_err(|e| format!("call {i}: {e}"))?;
        if resp.status() != StatusCode::OK {
            return Err(format!("call {i}: HTTP status {}", resp.status()));
        }
        let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let collected = resp.into_body().collect().await.map_err(|e| format!("call {i}: body: {e}"))?;
        let trailers = collected.trailers().cloned();
        let data = collected.to_bytes();
        let status = trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
            .map(|s| s.to_string());
        if status.as_deref() != Some("0") {
            return Err(format!("call {i}: grpc-status {:?} (trailers {:?})", status, trailers));
        }
        if !ct.starts_with("application/grpc") {
            return Err(format!("call {i}: content-type {ct:?}"));
        }
        let want: Vec<u8> = body.iter().copied().cycle().take(body.len() * stream_msgs.max(1)).collect();
        if data[..] != want[..] {
            return Err(format!("call {i}: echo mismatch ({} bytes back, {} expected)", data.len(), want.len()));
        }
    }
    if stream_msgs > 0 {
        println!("stream {addr}: {n}/{n} server-streaming calls OK ({stream_msgs} messages each, trailer grpc-status: 0)");
        return Ok(());
    }
    println!("grpc {addr}: {n}/{n} calls OK (HTTP 200, content-type application/grpc, echo matches, trailer grpc-status: 0)");
    Ok(())
}

async fn check_http1(addr: &str, n: usize) -> Result<(), String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    stream.set_nodelay(true).ok();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("h1 handshake: {e}"))?;
    tokio::spawn(conn);
    for i in 0..n {
        let req = Request::get("/")
            .header("host", addr)
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let resp = tx.send_request(req).await.map_err(|e| format!("req {i}: {e}"))?;
        let status = resp.status();
        let data = resp.into_body().collect().await.map_err(|e| format!("req {i}: {e}"))?.to_bytes();
        if status != StatusCode::OK || data.len() != 100 {
            return Err(format!("req {i}: status {status}, {} body bytes", data.len()));
        }
    }
    println!("http1 {addr}: {n}/{n} GETs OK (200, 100-byte body, one keep-alive connection)");
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: bench-check mkbody FILE [MSG_BYTES] | grpc HOST:PORT [N] | stream HOST:PORT [N] | http1 HOST:PORT [N]";
    let cmd = args.get(1).map(String::as_str).unwrap_or("");
    let r = match cmd {
        "mkbody" => {
            let file = args.get(2).expect(usage);
            let size = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(100);
            std::fs::write(file, grpc_frame(size)).map_err(|e| e.to_string())
        }
        "grpc" | "http1" | "stream" => {
            let addr = args.get(2).expect(usage).clone();
            let n = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(100);
            let fut = async {
                match cmd {
                    "grpc" => check_grpc(&addr, n, 0).await,
                    "stream" => {
                        let m = std::env::var("STREAM_MSGS").ok().and_then(|s| s.parse().ok()).unwrap_or(100);
                        check_grpc(&addr, n, m).await
                    }
                    _ => check_http1(&addr, n).await,
                }
            };
            match tokio::time::timeout(std::time::Duration::from_secs(20), fut).await {
                Ok(r) => r,
                Err(_) => Err("timed out after 20 s".to_string()),
            }
        }
        _ => Err(usage.to_string()),
    };
    if let Err(e) = r {
        eprintln!("FAIL {cmd}: {e}");
        std::process::exit(1);
    }
}
