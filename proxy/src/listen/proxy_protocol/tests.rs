use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const AFTER: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";

/// Sends `bytes` through a duplex pipe that passes at most `pipe` bytes at a time (so a small pipe
/// splits the header over many reads), then closes it. Returns the reader's verdict and every
/// byte left in the stream after it.
async fn feed(bytes: Vec<u8>, pipe: usize) -> (Result<ProxyHeader, ProxyProtocolError>, Vec<u8>) {
    let (mut client, mut server) = tokio::io::duplex(pipe);
    let writer = tokio::spawn(async move {
        // The reader may stop early (an error): a failed write is then expected.
        let _ = client.write_all(&bytes).await;
        let _ = client.shutdown().await;
    });
    let run = async {
        let header = read_proxy_header(&mut server).await;
        let mut rest = Vec::new();
        if header.is_ok() {
            server.read_to_end(&mut rest).await.unwrap();
        }
        (header, rest)
    };
    let out = tokio::time::timeout(Duration::from_secs(10), run).await.expect("reader hung");
    drop(server);
    writer.await.unwrap();
    out
}

/// Every pipe size from one byte (every read split) to plenty.
const PIPES: [usize; 4] = [1, 2, 7, 4096];

async fn accept(header: &[u8]) -> ProxyHeader {
    let mut first = None;
    for pipe in PIPES {
        let mut input = header.to_vec();
        input.extend_from_slice(AFTER);
        let (result, rest) = feed(input, pipe).await;
        let parsed = result.unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(header)));
        assert_eq!(rest, AFTER, "bytes after the header must stay unread (pipe {pipe})");
        assert_eq!(*first.get_or_insert(parsed), parsed);
    }
    first.unwrap()
}

async fn reject(input: &[u8]) -> String {
    let mut last = String::new();
    for pipe in PIPES {
        let (result, _) = feed(input.to_vec(), pipe).await;
        match result {
            Ok(h) => panic!("{:?} should be refused, got {h:?}", String::from_utf8_lossy(input)),
            Err(e) => last = e.to_string(),
        }
    }
    last
}

fn addr(s: &str) -> Option<SocketAddr> {
    Some(s.parse().unwrap())
}

#[tokio::test]
async fn v1_tcp4() {
    let h = accept(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n").await;
    assert_eq!(h.source, addr("192.168.0.1:56324"));
    assert_eq!(h.destination, addr("192.168.0.11:443"));
    let h = accept(b"PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n").await;
    assert_eq!(h.source, addr("0.0.0.0:0"));
}

#[tokio::test]
async fn v1_tcp6() {
    let h = accept(b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n").await;
    assert_eq!(h.source, addr("[2001:db8::1]:1"));
    assert_eq!(h.destination, addr("[::1]:65535"));
    let full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let longest = format!("PROXY TCP6 {full} {full} 65535 65535\r\n");
    assert_eq!(longest.len(), 104);
    let h = accept(longest.as_bytes()).await;
    assert_eq!(h.destination, addr(&format!("[{full}]:65535")));
}

#[tokio::test]
async fn v1_unknown() {
    assert_eq!(accept(b"PROXY UNKNOWN\r\n").await, ProxyHeader::default());
    assert_eq!(accept(b"PROXY UNKNOWN ffff::1 ::1 1 2\r\n").await, ProxyHeader { source: None, destination: None });
    // the longest line the spec allows: 107 bytes with CRLF
    let full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let longest = format!("PROXY UNKNOWN {full} {full} 65535 65535\r\n");
    assert_eq!(longest.len(), V1_MAX_LEN);
    assert_eq!(accept(longest.as_bytes()).await, ProxyHeader::default());
    let too_long = format!("PROXY UNKNOWN {full} {full} 65535 655351\r\n");
    assert_eq!(reject(too_long.as_bytes()).await, "PROXY v1 header longer than 107 bytes without CRLF");
}

#[tokio::test]
async fn v1_malformed() {
    let cases: &[(&[u8], &str)] = &[
        (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "unknown protocol 'TCP5'"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "separated by single spaces"),
        (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "separated by single spaces"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "separated by single spaces"),
        (b"PROXY TCP4 ::1 ::1 1 2\r\n", "'::1' is not an IPv4 address"),
        (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "'1.2.3.4' is not an IPv6 address"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.256 1 2\r\n", "'5.6.7.256' is not an IPv4 address"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "'65536' is not a port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n", "'-2' is not a port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 +2\r\n", "'+2' is not a port"),
        (b"PROXY TCP4\r\nGET / HTTP/1.1\r\n", "line too short"),
    ];
    for (input, needle) in cases {
        let msg = reject(input).await;
        assert!(msg.starts_with("PROXY v1 header '"), "{msg}");
        assert!(msg.contains(needle), "{:?}: expected {needle:?} in {msg}", String::from_utf8_lossy(input));
    }
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.extend(std::iter::repeat_n(b'a', 200));
    long.extend_from_slice(b"\r\n");
    assert_eq!(reject(&long).await, "PROXY v1 header longer than 107 bytes without CRLF");
}

#[tokio::test]
async fn garbage_is_refused() {
    let msg = reject(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n").await;
    assert_eq!(msg, r"no PROXY protocol header: the connection starts with 'GET / HTTP/1.1\r'");
    let client_hello = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0xaa, 0xbb, 0xcc, 0xdd, 0xee];
    let msg = reject(&client_hello).await;
    assert!(msg.contains(r"'\x16\x03\x01\x02\x00"), "{msg}");
    let msg = reject(b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n").await;
    assert!(msg.starts_with("no PROXY protocol header"), "{msg}");
    // the v2 signature with one byte changed
    let mut sig = V2_SIGNATURE.to_vec();
    sig[11] = b'X';
    sig.extend_from_slice(&[0x21, 0x11, 0, 0]);
    assert!(reject(&sig).await.starts_with("no PROXY protocol header"));
}

#[tokio::test]
async fn truncated_headers() {
    for input in
        [&b""[..], b"PROX", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r", &V2_SIGNATURE[..]]
    {
        let msg = reject(input).await;
        assert_eq!(msg, "connection closed inside the PROXY protocol header", "{input:?}");
    }
    let mut v2 = v2_header(0x21, 0x11, &[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]);
    v2.truncate(v2.len() - 1);
    assert_eq!(reject(&v2).await, "connection closed inside the PROXY protocol header");
}

fn v2_header(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.push(ver_cmd);
    h.push(fam);
    h.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    h.extend_from_slice(body);
    h
}

/// TLVs as a balancer sends them: ALPN (0x01), authority (0x02), NOOP padding (0x04).
fn tlvs() -> Vec<u8> {
    let mut t = Vec::new();
    for (kind, value) in [(0x01u8, &b"h2"[..]), (0x02, b"example.com"), (0x04, &[0u8; 5][..])] {
        t.push(kind);
        t.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
        t.extend_from_slice(value);
    }
    t
}

#[tokio::test]
async fn v2_proxy_ipv4() {
    let addrs = [10, 0, 0, 1, 192, 168, 1, 2, 0xdb, 0xc4, 0x01, 0xbb];
    let h = accept(&v2_header(0x21, 0x11, &addrs)).await;
    assert_eq!(h.source, addr("10.0.0.1:56260"));
    assert_eq!(h.destination, addr("192.168.1.2:443"));

    let mut with_tlvs = addrs.to_vec();
    with_tlvs.extend(tlvs());
    assert_eq!(accept(&v2_header(0x21, 0x11, &with_tlvs)).await, h);
    // UNSPEC transport is accepted as well
    assert_eq!(accept(&v2_header(0x21, 0x10, &addrs)).await, h);
}

#[tokio::test]
async fn v2_proxy_ipv6() {
    let mut body = Vec::new();
    body.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
    body.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    body.extend_from_slice(&40000u16.to_be_bytes());
    body.extend_from_slice(&8443u16.to_be_bytes());
    let h = accept(&v2_header(0x21, 0x21, &body)).await;
    assert_eq!(h.source, addr("[2001:db8::7]:40000"));
    assert_eq!(h.destination, addr("[::1]:8443"));
    body.extend(tlvs());
    assert_eq!(accept(&v2_header(0x21, 0x21, &body)).await, h);
}

#[tokio::test]
async fn v2_local_and_address_less() {
    assert_eq!(accept(&v2_header(0x20, 0x00, &[])).await, ProxyHeader::default());
    // LOCAL may still carry addresses and TLVs: all skipped
    let mut body = vec![10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2];
    body.extend(tlvs());
    assert_eq!(accept(&v2_header(0x20, 0x11, &body)).await, ProxyHeader::default());
    // PROXY with AF_UNSPEC, and with AF_UNIX paths (2 × 108 bytes)
    assert_eq!(accept(&v2_header(0x21, 0x00, &[])).await, ProxyHeader::default());
    assert_eq!(accept(&v2_header(0x21, 0x31, &[b'/'; 216])).await, ProxyHeader::default());
}

#[tokio::test]
async fn v2_refused() {
    let addrs = [10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2];
    let cases: [(Vec<u8>, &str); 6] = [
        (v2_header(0x11, 0x11, &addrs), "unsupported version 1"),
        (v2_header(0x22, 0x11, &addrs), "unknown command 0x2"),
        (v2_header(0x21, 0x41, &addrs), "unknown address family 0x4"),
        (v2_header(0x21, 0x13, &addrs), "unknown transport protocol 0x3"),
        (v2_header(0x21, 0x11, &addrs[..8]), "IPv4 addresses need 12 bytes but the header holds 8"),
        (v2_header(0x21, 0x21, &addrs), "IPv6 addresses need 36 bytes but the header holds 12"),
    ];
    for (input, needle) in cases {
        let msg = reject(&input).await;
        assert!(msg.starts_with("PROXY v2 header: "), "{msg}");
        assert!(msg.contains(needle), "expected {needle:?} in {msg}");
    }
}

#[tokio::test]
async fn header_over_a_real_socket() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listen_at = listener.local_addr().unwrap();
    let client = tokio::spawn(async move {
        let mut s = tokio::net::TcpStream::connect(listen_at).await.unwrap();
        for piece in [&b"PROXY TCP4 1.2.3.4 "[..], b"5.6.7.8 1000 ", b"2000\r", b"\nhello"] {
            s.write_all(piece).await.unwrap();
            s.flush().await.unwrap();
            tokio::task::yield_now().await;
        }
    });
    let (mut conn, _) = listener.accept().await.unwrap();
    let h = tokio::time::timeout(Duration::from_secs(10), read_proxy_header(&mut conn)).await.unwrap().unwrap();
    assert_eq!(h.source, addr("1.2.3.4:1000"));
    assert_eq!(h.destination, addr("5.6.7.8:2000"));
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"hello");
    client.await.unwrap();
}
