//! The proxy's own HTTP/1.x server (`downstream_h1`), driven with raw bytes so that what goes on
//! the wire is what is checked: keep-alive and pipelining, HTTP/1.0, request bodies by length and
//! by chunks, response framing (length, chunked, close-delimited, HEAD), `date`, the header timeout
//! as keep-alive limit, and a body left unread (the answer still arrives, then the connection ends).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One response read off a connection: status, lowercased header fields, body.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// Reads one response framed as RFC 9112 says; `head_request` for a response without a body.
async fn read_response(r: &mut BufReader<TcpStream>, head_request: bool) -> Resp {
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut line)).await.expect("status line in time").unwrap();
    let status = line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("status line {line:?}"));
    let mut headers = HashMap::new();
    loop {
        line.clear();
        r.read_line(&mut line).await.unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':').unwrap_or_else(|| panic!("field {l:?}"));
        assert!(headers.insert(n.to_ascii_lowercase(), v.trim().to_string()).is_none(), "repeated {n}");
    }
    let mut body = Vec::new();
    if head_request || status == 204 || status == 304 {
    } else if let Some(n) = headers.get("content-length") {
        body.resize(n.parse().unwrap(), 0);
        r.read_exact(&mut body).await.unwrap();
    } else if headers.get("transfer-encoding").map(String::as_str) == Some("chunked") {
        loop {
            line.clear();
            r.read_line(&mut line).await.unwrap();
            let size = usize::from_str_radix(line.trim_end(), 16).unwrap();
            let mut chunk = vec![0; size + 2];
            r.read_exact(&mut chunk).await.unwrap();
            assert_eq!(&chunk[size..], b"\r\n");
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        r.read_to_end(&mut body).await.unwrap();
    }
    Resp { status, headers, body }
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(body)))
}

/// Whether the proxy closes the connection within `within` (reads and drops what comes).
async fn closes_within(r: &mut BufReader<TcpStream>, within: Duration) -> bool {
    let mut rest = Vec::new();
    matches!(tokio::time::timeout(within, r.read_to_end(&mut rest)).await, Ok(Ok(_)))
}

async fn connect(addr: SocketAddr) -> BufReader<TcpStream> {
    BufReader::new(TcpStream::connect(addr).await.unwrap())
}

#[tokio::test]
async fn pipelined_keep_alive_requests_are_answered_in_order_and_http10_closes() {
    let echo = echo_http("e").await;
    let proxy = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    proxy.push_ok(&basic_config(echo.addr, echo.addr)).await;
    let mut c = connect(proxy.addr(0)).await;
    // Three requests in one write: answered one after the other on the same connection.
    let pipelined: String =
        (1..=3).map(|i| format!("GET /p{i} HTTP/1.1\r\nHost: example.com\r\nX-N: {i}\r\n\r\n")).collect();
    c.get_mut().write_all(pipelined.as_bytes()).await.unwrap();
    for i in 1..=3 {
        let r = read_response(&mut c, false).await;
        assert_eq!(r.status, 200);
        let j = json(&r.body);
        assert_eq!(
            (j["uri"].as_str(), j["headers"]["x-n"].as_str()),
            (Some(&*format!("/p{i}")), Some(&*i.to_string()))
        );
        assert!(httpdate::parse_http_date(&r.headers["date"]).is_ok(), "{:?}", r.headers);
        assert!(!r.headers.contains_key("connection"), "{:?}", r.headers);
    }
    // HEAD: the upstream's length is kept, no body follows, and the connection goes on.
    c.get_mut().write_all(b"HEAD /h HTTP/1.1\r\nHost: example.com\r\n\r\n").await.unwrap();
    let r = read_response(&mut c, true).await;
    assert!(r.status == 200 && r.headers["content-length"].parse::<usize>().unwrap() > 0, "{r:?}");
    // HTTP/1.0 without keep-alive: answered with `connection: close`, then closed.
    c.get_mut().write_all(b"GET /old HTTP/1.0\r\nHost: example.com\r\n\r\n").await.unwrap();
    let r = read_response(&mut c, false).await;
    assert_eq!((r.status, r.headers.get("connection").map(String::as_str)), (200, Some("close")));
    assert_eq!(json(&r.body)["uri"], "/old");
    assert!(closes_within(&mut c, Duration::from_secs(5)).await);

    // HTTP/1.0 asking for keep-alive keeps it.
    let mut c = connect(proxy.addr(0)).await;
    for _ in 0..2 {
        c.get_mut().write_all(b"GET / HTTP/1.0\r\nHost: example.com\r\nConnection: keep-alive\r\n\r\n").await.unwrap();
        let r = read_response(&mut c, false).await;
        assert_eq!((r.status, r.headers.get("connection").map(String::as_str)), (200, Some("keep-alive")));
    }
}

#[tokio::test]
async fn request_bodies_by_length_and_by_chunks_reach_the_upstream_whole() {
    let echo = echo_http("e").await;
    let proxy = TestProxy::start("127.0.0.1:0", &[]).await;
    proxy.push_ok(&basic_config(echo.addr, echo.addr)).await;
    let mut c = connect(proxy.addr(0)).await;
    c.get_mut().write_all(b"POST /len HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello").await.unwrap();
    let j = json(&read_response(&mut c, false).await.body);
    assert_eq!((j["body_len"].as_u64(), j["headers"]["content-length"].as_str()), (Some(5), Some("5")));
    // Chunked, split over several writes, with a trailer section: same connection.
    for part in [
        &b"POST /chunks HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nab"[..],
        b"cd\r\n",
        b"3;x=1\r\nefg\r\n0\r\nx-t: 1\r\n\r\n",
    ] {
        c.get_mut().write_all(part).await.unwrap();
        c.get_mut().flush().await.unwrap();
    }
    let r = read_response(&mut c, false).await;
    assert_eq!((r.status, json(&r.body)["body_len"].as_u64()), (200, Some(7)), "{r:?}");
    // A 1 MiB body in pieces: every byte arrives.
    let big = vec![b'x'; 1 << 20];
    c.get_mut()
        .write_all(
            format!("PUT /big HTTP/1.1\r\nHost: example.com\r\nContent-Length: {}\r\n\r\n", big.len()).as_bytes(),
        )
        .await
        .unwrap();
    for piece in big.chunks(100_000) {
        c.get_mut().write_all(piece).await.unwrap();
    }
    let r = read_response(&mut c, false).await;
    assert_eq!(json(&r.body)["body_len"].as_u64(), Some(1 << 20));
}

/// An upstream answering every request with `response` (read until the head's end; bodies are
/// not expected) and keeping the connection open.
async fn fixed_upstream(response: &'static [u8]) -> SocketAddr {
    fixed_upstream_bytes(response.to_vec()).await
}

async fn fixed_upstream_bytes(response: Vec<u8>) -> SocketAddr {
    let response: &'static [u8] = Vec::leak(response);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut r = BufReader::new(tcp);
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" && r.get_mut().write_all(response).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_response_of_unknown_length_is_chunked_for_http11_and_close_delimited_for_http10() {
    let up =
        fixed_upstream(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
            .await;
    let proxy = TestProxy::start("127.0.0.1:0", &[]).await;
    proxy.push_ok(&basic_config(up, up)).await;
    let mut c = connect(proxy.addr(0)).await;
    for _ in 0..2 {
        c.get_mut().write_all(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n").await.unwrap();
        let r = read_response(&mut c, false).await;
        assert_eq!(
            (r.headers.get("transfer-encoding").map(String::as_str), &r.body[..]),
            (Some("chunked"), &b"hello world"[..])
        );
    }
    let mut c = connect(proxy.addr(0)).await;
    c.get_mut().write_all(b"GET / HTTP/1.0\r\nHost: example.com\r\nConnection: keep-alive\r\n\r\n").await.unwrap();
    let r = read_response(&mut c, false).await;
    assert!(!r.headers.contains_key("transfer-encoding") && !r.headers.contains_key("content-length"), "{r:?}");
    assert_eq!((r.headers.get("connection").map(String::as_str), &r.body[..]), (Some("close"), &b"hello world"[..]));
}

#[tokio::test]
async fn an_unread_body_still_gets_its_answer_then_the_connection_closes() {
    let echo = echo_http("e").await;
    let proxy = TestProxy::start("127.0.0.1:0", &[]).await;
    proxy.push_ok(&basic_config(echo.addr, echo.addr)).await;
    let mut c = connect(proxy.addr(0)).await;
    // No route for this host's path: answered 404 without reading the announced megabyte.
    c.get_mut()
        .write_all(b"POST /hello.HelloService/none HTTP/1.1\r\nHost: example.com\r\nContent-Length: 1048576\r\n\r\n")
        .await
        .unwrap();
    c.get_mut().write_all(&[b'x'; 64 << 10]).await.unwrap();
    let r = read_response(&mut c, false).await;
    assert!(r.status >= 400, "{r:?}");
    assert!(closes_within(&mut c, Duration::from_secs(5)).await, "the connection stays open with a body unread");
    // The same request with its whole body sent keeps the connection.
    let mut c = connect(proxy.addr(0)).await;
    c.get_mut()
        .write_all(b"POST /hello.HelloService/none HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\n\r\nabc")
        .await
        .unwrap();
    assert!(read_response(&mut c, false).await.status >= 400);
    c.get_mut().write_all(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n").await.unwrap();
    assert_eq!(read_response(&mut c, false).await.status, 200);
}

#[tokio::test]
async fn the_header_timeout_closes_idle_and_slow_connections() {
    let echo = echo_http("e").await;
    let proxy = TestProxy::start("127.0.0.1:0", &[("SLUICE_H1_HEADER_TIMEOUT_MS", "300")]).await;
    proxy.push_ok(&basic_config(echo.addr, echo.addr)).await;
    // Idle after a response (keep-alive): closed once the timeout passes, not before.
    let mut c = connect(proxy.addr(0)).await;
    c.get_mut().write_all(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n").await.unwrap();
    assert_eq!(read_response(&mut c, false).await.status, 200);
    let idle = Instant::now();
    assert!(closes_within(&mut c, Duration::from_secs(5)).await);
    assert!(idle.elapsed() >= Duration::from_millis(250), "closed after {:?}", idle.elapsed());
    // A head that trickles in: cut at the timeout even though bytes keep coming.
    let mut c = connect(proxy.addr(0)).await;
    c.get_mut().write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let slow = Instant::now();
    let mut cut = false;
    for i in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if c.get_mut().write_all(format!("x-{i}: 1\r\n").as_bytes()).await.is_err() {
            cut = true;
            break;
        }
        let mut b = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(1), c.get_mut().read(&mut b)).await {
            cut = true;
            break;
        }
    }
    assert!(cut, "a trickling head was not cut");
    assert!(slow.elapsed() < Duration::from_secs(2), "cut after {:?}", slow.elapsed());
    // Meanwhile requests in time keep being served on one connection past the timeout.
    let mut c = connect(proxy.addr(0)).await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        c.get_mut().write_all(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n").await.unwrap();
        assert_eq!(read_response(&mut c, false).await.status, 200);
    }
}

#[tokio::test]
async fn large_and_small_chunks_keep_their_framing() {
    // Chunks larger and smaller than one read of the upstream, in a row, on a kept-alive connection.
    let sizes = [40_000usize, 5, 70_000, 1, 20_000];
    let mut wire = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    let mut want = Vec::new();
    for (i, n) in sizes.iter().enumerate() {
        let piece = vec![b'a' + i as u8; *n];
        wire.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        wire.extend_from_slice(&piece);
        wire.extend_from_slice(b"\r\n");
        want.extend_from_slice(&piece);
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    let up = fixed_upstream_bytes(wire).await;
    let proxy = TestProxy::start("127.0.0.1:0", &[]).await;
    proxy.push_ok(&basic_config(up, up)).await;
    let mut c = connect(proxy.addr(0)).await;
    for _ in 0..2 {
        c.get_mut().write_all(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n").await.unwrap();
        let r = read_response(&mut c, false).await;
        assert_eq!(r.headers.get("transfer-encoding").map(String::as_str), Some("chunked"));
        assert!(r.body == want, "body of {} bytes differs from the {} sent", r.body.len(), want.len());
    }
}
