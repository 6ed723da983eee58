//! Request smuggling, tested from outside: for each ambiguous or malformed HTTP/1.1 message a
//! client can send (CL+TE, TE obfuscations, duplicate and invalid Content-Length, obs-fold, bare CR
//! and LF, invalid chunk sizes and extensions, missing and repeated Host, absolute-form targets,
//! pipelining), what the client gets back and which requests a recording upstream received whole.
//! The upstream must never see a request the proxy did not frame the same way: every case lists
//! the exact requests (method, path, body) that may reach it, and a smuggled request never does.
//!
//! Deliberate differences from the most lenient reading of RFC 9112, each a row below: a bare LF
//! as a line end in the head is accepted (RFC 9112 §2.2 allows it; hyper and nginx accept it too)
//! and the request goes upstream with CRLF; everything else that is ambiguous is refused.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::upstream::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const OK_HELLO: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n";

/// One row: what the client sends, the statuses it must get in order (then the connection
/// ends), and the requests the upstream must receive whole, as `METHOD /path body`.
struct Case {
    name: &'static str,
    raw: String,
    statuses: &'static [u16],
    upstream: &'static [&'static str],
}

fn case(
    name: &'static str,
    raw: impl Into<String>,
    statuses: &'static [u16],
    upstream: &'static [&'static str],
) -> Case {
    Case { name, raw: raw.into(), statuses, upstream }
}

/// Sends `raw`, half-closes, and reads every response until the proxy closes: their statuses.
async fn statuses(addr: SocketAddr, raw: &[u8]) -> Vec<u16> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(raw).await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out)).await.expect("answers in time").unwrap();
    let mut codes = Vec::new();
    let mut rest = &out[..];
    while !rest.is_empty() {
        let mut fields = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut fields);
        let Ok(httparse::Status::Complete(len)) = resp.parse(rest) else {
            panic!("not a response: {:?}", String::from_utf8_lossy(rest));
        };
        let length = resp
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .map(|h| std::str::from_utf8(h.value).unwrap().parse::<usize>().unwrap())
            .expect("every answer here has a content-length");
        codes.push(resp.code.unwrap());
        rest = &rest[len + length..];
    }
    codes
}

/// Runs each case on a fresh connection through one proxy to one recording upstream.
async fn run(cases: Vec<Case>) {
    let up = Upstream::start(true, |_| reply(OK_HELLO)).await;
    let p = proxy_to(up.addr).await;
    let mut seen_before = 0;
    for c in cases {
        let got = statuses(p.addr(0), c.raw.as_bytes()).await;
        assert_eq!(got, c.statuses, "{}: statuses the client got", c.name);
        // Statuses are in: every upstream exchange of this connection has ended.
        let seen = up.seen();
        let requests: Vec<String> = seen[seen_before..]
            .iter()
            .map(|s| {
                let line = s.head.lines().next().unwrap_or_default();
                let mut parts = line.split(' ');
                let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
                format!("{method} {path} {}", String::from_utf8_lossy(&s.body)).trim_end().to_string()
            })
            .collect();
        seen_before = seen.len();
        assert_eq!(requests, c.upstream, "{}: requests the upstream received", c.name);
        assert!(requests.iter().all(|r| !r.contains("/smuggled")), "{}: smuggled", c.name);
    }
}

fn post(fields: &str, body: &str) -> String {
    format!("POST /p HTTP/1.1\r\nHost: h\r\n{fields}\r\n{body}")
}

#[tokio::test]
async fn content_length_and_transfer_encoding_frame_one_way_only() {
    let chunked_then_smuggled = format!("0\r\n\r\n{SMUGGLED}");
    let len = chunked_then_smuggled.len();
    run(vec![
        // CL+TE either way round: chunked wins, then the connection closes (RFC 9112 §6.3), so
        // what followed the last chunk is never read as a request.
        case(
            "CL then TE",
            post(&format!("Content-Length: {len}\r\nTransfer-Encoding: chunked\r\n"), &chunked_then_smuggled),
            &[200],
            &["POST /p"],
        ),
        case(
            "TE then CL",
            post(&format!("Transfer-Encoding: chunked\r\nContent-Length: {len}\r\n"), &chunked_then_smuggled),
            &[200],
            &["POST /p"],
        ),
        case("TE not chunked last", post("Transfer-Encoding: chunked, identity\r\n", "0\r\n\r\n"), &[400], &[]),
        case("TE xchunked", post("Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"), &[400], &[]),
        case("TE space before colon", post("Transfer-Encoding : chunked\r\n", "0\r\n\r\n"), &[400], &[]),
        case("TE vertical tab", post("Transfer-Encoding:\x0bchunked\r\n", "0\r\n\r\n"), &[400], &[]),
        case("TE obs-fold", post("Transfer-Encoding: gzip\r\n chunked\r\n", "0\r\n\r\n"), &[400], &[]),
        case("TE twice in one field", post("Transfer-Encoding: chunked, chunked\r\n", "0\r\n\r\n"), &[400], &[]),
        case(
            "TE twice in two fields",
            post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"),
            &[400],
            &[],
        ),
        case("TE empty coding", post("Transfer-Encoding: , chunked\r\n", "0\r\n\r\n"), &[400], &[]),
        case("TE unknown coding", post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"), &[501], &[]),
        case(
            "TE on HTTP/1.0",
            "POST /p HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            &[400],
            &[],
        ),
        case(
            "TE tab is whitespace",
            post("Transfer-Encoding:\tchunked\r\n", "3\r\nabc\r\n0\r\n\r\n"),
            &[200],
            &["POST /p abc"],
        ),
        case("CL twice, different", post("Content-Length: 3\r\nContent-Length: 4\r\n", "abcd"), &[400], &[]),
        case("CL list, equal", post("Content-Length: 3, 3\r\n", "abc"), &[200], &["POST /p abc"]),
        case("CL list, different", post("Content-Length: 3, 4\r\n", "abcd"), &[400], &[]),
        case("CL plus sign", post("Content-Length: +3\r\n", "abc"), &[400], &[]),
        case("CL hex", post("Content-Length: 0x3\r\n", "abc"), &[400], &[]),
        case("CL negative", post("Content-Length: -3\r\n", "abc"), &[400], &[]),
        case("CL inner space", post("Content-Length: 3 3\r\n", "abc"), &[400], &[]),
        case("CL too large", post("Content-Length: 99999999999999999999\r\n", "abc"), &[400], &[]),
    ])
    .await;
}

#[tokio::test]
async fn chunk_syntax_is_as_strict_as_the_proxies_in_front() {
    let te = "Transfer-Encoding: chunked\r\n";
    run(vec![
        case("extensions and whitespace", post(te, "3 ;a=b;c=\"d e\"\r\nabc\r\n0\r\n\r\n"), &[200], &["POST /p abc"]),
        case("empty size line", post(te, &format!("\r\n\r\n{SMUGGLED}")), &[400], &[]),
        case("bare LF in an extension", post(te, &format!("3;a\nabc\r\n0\r\n\r\n{SMUGGLED}")), &[400], &[]),
        case("bare LF after the size", post(te, &format!("3\nabc\r\n0\r\n\r\n{SMUGGLED}")), &[400], &[]),
        case("bare LF after the last chunk", post(te, &format!("0\n\r\n{SMUGGLED}")), &[400], &[]),
        case("bare CR after the size", post(te, "3\rabc\r\n0\r\n\r\n"), &[400], &[]),
        case("size not hex", post(te, "zz\r\nabc\r\n0\r\n\r\n"), &[400], &[]),
        case("size with 0x", post(te, "0x3\r\nabc\r\n0\r\n\r\n"), &[400], &[]),
        case("size overflows", post(te, "10000000000000000\r\nabc\r\n"), &[400], &[]),
        case("negative size", post(te, "-3\r\nabc\r\n0\r\n\r\n"), &[400], &[]),
        case("data longer than its size", post(te, &format!("3\r\nabcd\r\n0\r\n\r\n{SMUGGLED}")), &[400], &[]),
        case("control byte in an extension", post(te, "3;a\x01\r\nabc\r\n0\r\n\r\n"), &[400], &[]),
        // Found by the differential fuzz target: hyper reads the LF as part of the trailer line and
        // ends the body after the next CRLF CRLF; a reader that ends the line at the LF ends it here.
        case("bare LF ending a trailer line", post(te, &format!("3\r\nabc\r\n0\r\nt: x\n\r\n{SMUGGLED}")), &[400], &[]),
        case(
            "bare LF inside the trailer section",
            post(te, &format!("0\r\nt: x\nu: y\r\n\r\n{SMUGGLED}")),
            &[400],
            &[],
        ),
    ])
    .await;
}

#[tokio::test]
async fn heads_hosts_and_pipelines_are_framed_once() {
    run(vec![
        case("obs-fold", "GET /f HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n 2\r\n\r\n", &[400], &[]),
        case("bare CR in a value", "GET /f HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n", &[400], &[]),
        // Intended: RFC 9112 §2.2 lets a recipient take LF as a line end (hyper, nginx do).
        case("bare LF line ends", "GET /lf HTTP/1.1\nHost: h\n\n", &[200], &["GET /lf"]),
        case("no Host", "GET /n HTTP/1.1\r\n\r\n", &[400], &[]),
        case("two Hosts", "GET /n HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\n", &[400], &[]),
        case("Host with a space", "GET /n HTTP/1.1\r\nHost: exa mple.com\r\n\r\n", &[400], &[]),
        case("Host with a bad port", "GET /n HTTP/1.1\r\nHost: example.com:abc\r\n\r\n", &[400], &[]),
        case("Host with userinfo", "GET /n HTTP/1.1\r\nHost: a/b@evil.example\r\n\r\n", &[400], &[]),
        case("absolute-form", "GET http://abs.example/a HTTP/1.1\r\nHost: h\r\n\r\n", &[200], &["GET /a"]),
        case("absolute-form with userinfo", "GET http://u@abs.example/a HTTP/1.1\r\nHost: h\r\n\r\n", &[400], &[]),
        case(
            "pipelined, with a body between",
            "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nPOST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /3 HTTP/1.1\r\nHost: h\r\n\r\n",
            &[200, 200, 200],
            &["GET /1", "POST /2 abc", "GET /3"],
        ),
        case(
            "pipelined after a chunked body",
            "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /d HTTP/1.1\r\nHost: h\r\n\r\n",
            &[200, 200],
            &["POST /c abc", "GET /d"],
        ),
        case(
            "nothing after a refused head",
            format!("GET /bad HTTP/1.1\r\n\r\n{SMUGGLED}"),
            &[400],
            &[],
        ),
    ])
    .await;
}

/// An absolute-form target's authority replaces Host for the route and X-Forwarded-Host
/// (RFC 9112 §3.2.2), so the proxy and the upstream agree on which host was asked for.
#[tokio::test]
async fn absolute_form_authority_is_the_host_upstream() {
    let up = Upstream::start(true, |_| reply(OK_HELLO)).await;
    let p = proxy_to(up.addr).await;
    assert_eq!(statuses(p.addr(0), b"GET http://abs.example:81/a HTTP/1.1\r\nHost: other\r\n\r\n").await, [200]);
    let seen = up.seen();
    assert_eq!(seen[0].header("x-forwarded-host").as_deref(), Some("abs.example"));
}
