//! The request head: parsed with httparse off the front of the read buffer into an
//! `http::request::Parts`, with the checks RFC 9112 asks of a server (Host, absolute-form target,
//! transfer codings, `content-length` against `transfer-encoding`) and what they mean for the body's
//! framing and the connection's keep-alive. Also [`decode_request`], a whole request from bytes in
//! memory, for the fuzz targets.

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::header::{CONTENT_LENGTH, EXPECT, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Method, Request, Uri, Version};

use super::H1ServerError;
use crate::wire::h1::{
    decode, field_at, field_spans, Chunked, Decoded, FieldSpan, Framing, FramingHeaders, MAX_HEADERS,
};

/// A parsed request head, before its body is attached.
#[derive(Debug)]
pub struct RequestHead {
    pub parts: http::request::Parts,
    /// `None`: no body.
    pub body: Option<Framing>,
    /// The client lets the connection stay open after this request.
    pub keep_alive: bool,
    /// `expect: 100-continue` on an HTTP/1.1 request with a body.
    pub expect_continue: bool,
}

/// Parses a complete request head off the front of `buf`, its fields into `spare` (taken and
/// emptied first). `None` while it is incomplete.
pub fn parse_request(
    buf: &mut BytesMut,
    max_head: usize,
    spare: &mut HeaderMap,
) -> Result<Option<RequestHead>, H1ServerError> {
    let mut spans: [FieldSpan; MAX_HEADERS] = [(0, 0, 0, 0); MAX_HEADERS];
    let (len, method, target, http11, count) = {
        let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut req, buf, &mut slots) {
            Ok(httparse::Status::Complete(len)) if len > max_head => return Err(H1ServerError::HeadTooLarge(max_head)),
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() > max_head => return Err(H1ServerError::HeadTooLarge(max_head)),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(H1ServerError::Parse(e)),
        };
        field_spans(buf, req.headers, &mut spans);
        let base = buf.as_ptr() as usize;
        let method = req.method.map(|m| m.as_ptr() as usize - base..m.as_ptr() as usize - base + m.len());
        let target = req.path.map(|p| p.as_ptr() as usize - base..p.as_ptr() as usize - base + p.len());
        (len, method, target, req.version == Some(1), req.headers.len())
    };
    let raw = buf.split_to(len).freeze();
    // `let else`, not `ok_or(error)?`: an error built eagerly is dropped on every good request.
    let Some(method) = method.and_then(|m| Method::from_bytes(&raw[m]).ok()) else {
        return Err(H1ServerError::Method);
    };
    let Some(uri) = target.and_then(|t| Uri::from_maybe_shared(raw.slice(t)).ok()) else {
        return Err(H1ServerError::Target);
    };
    // Room for the X-Forwarded-* and X-Real-IP fields the proxy adds: the map never grows.
    let mut headers = std::mem::take(spare);
    headers.clear();
    headers.reserve(count + 6);
    let mut framing = FramingHeaders::default();
    let mut host: Option<&FieldSpan> = None;
    let mut hosts = 0;
    let mut expect_continue = false;
    let mut codings: Option<HeaderValue> = None;
    for span in &spans[..count] {
        let (name, value) = field_at(&raw, span).map_err(H1ServerError::Header)?;
        framing.note(&name, &value)?;
        if name == HOST {
            hosts += 1;
            host = Some(span);
        } else if name == EXPECT {
            expect_continue = value.as_bytes().eq_ignore_ascii_case(b"100-continue");
        } else if name == TRANSFER_ENCODING && framing.other_coding && codings.is_none() {
            codings = Some(value.clone());
        }
        headers.append(name, value);
    }
    if hosts > 1 {
        return Err(H1ServerError::DuplicateHost);
    }
    // RFC 9112 §3.2: HTTP/1.1 needs a Host, and it must be a uri-host[:port]. An absolute-form
    // target's authority replaces it (§3.2.2), so the route, the upstream and X-Forwarded-Host
    // all see one host.
    if let Some(authority) = uri.authority() {
        if !matches!(uri.scheme_str(), Some("http" | "https")) || authority.as_str().contains('@') {
            return Err(H1ServerError::AbsoluteTarget);
        }
        let value = HeaderValue::from_str(authority.as_str()).map_err(|_| H1ServerError::AbsoluteTarget)?;
        headers.insert(HOST, value);
    } else {
        match host.map(|&(_, _, vs, ve)| &raw[vs as usize..ve as usize]) {
            Some(h) if !valid_host(h) => {
                return Err(H1ServerError::InvalidHost(String::from_utf8_lossy(h).into_owned()))
            }
            None if http11 => return Err(H1ServerError::MissingHost),
            _ => {}
        }
    }
    let mut keep_alive = if http11 { !framing.close } else { framing.keep_alive && !framing.close };
    let body = match (framing.chunked, framing.length) {
        (Some(_), _) if !http11 => return Err(H1ServerError::TransferEncodingOnHttp10),
        (Some(false), _) => return Err(H1ServerError::NotChunked),
        (Some(true), _) if framing.bad_codings => return Err(H1ServerError::BadCodings),
        // Framed, but with a coding sluice would pass on undecoded as if it were the content.
        (Some(true), _) if framing.other_coding => {
            let listed = codings.as_ref().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            return Err(H1ServerError::UnknownCoding(listed.unwrap_or_default()));
        }
        (Some(true), length) => {
            // Both: chunked wins and the connection ends after this request (RFC 9112 §6.3).
            if length.is_some() {
                headers.remove(CONTENT_LENGTH);
                keep_alive = false;
            }
            Some(Framing::Chunked(Chunked::Size))
        }
        (None, Some(0)) | (None, None) => None,
        (None, Some(n)) => Some(Framing::Length(n)),
    };
    let mut parts = Request::new(()).into_parts().0;
    parts.method = method;
    parts.uri = uri;
    parts.version = if http11 { Version::HTTP_11 } else { Version::HTTP_10 };
    parts.headers = headers;
    Ok(Some(RequestHead { parts, expect_continue: expect_continue && http11 && body.is_some(), body, keep_alive }))
}

/// Whether a Host field value is `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2): a
/// bracketed IPv6 literal, or a reg-name / IPv4 address of unreserved, percent-encoded and
/// sub-delim characters, then an optional all-digit port. An empty value is refused too, as nginx
/// does: sluice routes and forwards by it.
pub fn valid_host(v: &[u8]) -> bool {
    let (host, port_ok) = match v.strip_prefix(b"[") {
        Some(rest) => {
            let Some(end) = rest.iter().position(|&b| b == b']') else { return false };
            let literal = std::str::from_utf8(&rest[..end]).ok();
            if literal.and_then(|l| l.parse::<std::net::Ipv6Addr>().ok()).is_none() {
                return false;
            }
            let port = &rest[end + 1..];
            (&b""[..], port.is_empty() || (port[0] == b':' && port[1..].iter().all(u8::is_ascii_digit)))
        }
        // The port is the run of digits at the end, after a ':' (one scan from the end). Any other
        // ':' stays in the host, which it fails.
        None => {
            let digits = v.iter().rev().take_while(|b| b.is_ascii_digit()).count();
            match v.len().checked_sub(digits + 1) {
                Some(colon) if v[colon] == b':' => (&v[..colon], true),
                _ => (v, true),
            }
        }
    };
    // Nearly every Host is a name or an IPv4 address without percent-encodings: one table pass
    // (cheaper per byte than the loop below, which every HTTP/1.1 request would otherwise run).
    let host_ok = host.iter().all(|&b| REG_NAME[b as usize]) || valid_reg_name(host);
    host_ok && !v.is_empty() && port_ok && (v[0] == b'[' || !host.is_empty())
}

/// Whether `host` is a reg-name / IPv4 address: [`REG_NAME`] bytes and `%XX` percent-encodings.
fn valid_reg_name(host: &[u8]) -> bool {
    let mut i = 0;
    while i < host.len() {
        match host[i] {
            b'%' if host.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) => i += 3,
            b if REG_NAME[b as usize] => i += 1,
            _ => return false,
        }
    }
    true
}

/// The bytes of a reg-name besides percent-encodings: unreserved and sub-delims (RFC 3986 §3.2.2),
/// as a table, since every HTTP/1.1 request's Host goes through [`valid_host`].
const REG_NAME: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric();
        b += 1;
    }
    let extra = b"-._~!$&'()*+,;=";
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
};

/// A request head, its body (`None`: the bytes ended inside it) and how many bytes of the wire
/// the request took (head, body and its framing): where a pipelined next request starts.
#[doc(hidden)]
pub type DecodedRequest = (RequestHead, Option<Vec<u8>>, usize);

/// A whole request as the proxy reads it, from bytes in memory: head, then body by its framing
/// (`None` for the body when the bytes end inside it). For the fuzz targets `downstream_h1` and
/// `differential_h1`.
#[doc(hidden)]
pub fn decode_request(wire: &[u8], max_head: usize) -> Result<Option<DecodedRequest>, H1ServerError> {
    let mut buf = BytesMut::from(wire);
    let Some(mut head) = parse_request(&mut buf, max_head, &mut HeaderMap::new())? else {
        return Ok(None);
    };
    let mut body = Vec::new();
    if let Some(framing) = head.body.as_mut() {
        loop {
            match decode(framing, &mut buf)? {
                Decoded::Frame(f) => {
                    if let Some(d) = f.data_ref() {
                        body.extend_from_slice(d);
                    }
                }
                Decoded::End => break,
                Decoded::NeedMore => return Ok(Some((head, None, wire.len() - buf.len()))),
            }
        }
    }
    let used = wire.len() - buf.len();
    Ok(Some((head, Some(body), used)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_a_uri_host_and_an_optional_port() {
        for ok in [
            "h",
            "example.com:8000",
            "127.0.0.1:18095",
            "a%2Fb",
            "[::1]",
            "[::1]:80",
            "host:",
            "1234",
            "a-b.c~!$&'()*+,;=",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            ":80",
            "a:b:80",
            "a:b1",
            "example.com:abc",
            "exa mple.com",
            "a/b@evil",
            "[::1",
            "[zz]",
            "[::1]x",
            "%2",
            "%zz",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad}");
        }
    }

    fn head(raw: &str) -> Result<Option<RequestHead>, H1ServerError> {
        parse_request(&mut BytesMut::from(raw), 64 << 10, &mut HeaderMap::new())
    }

    fn ok(raw: &str) -> RequestHead {
        head(raw).unwrap().expect("complete head")
    }

    #[test]
    fn request_heads_parse_with_their_framing_and_keep_alive() {
        let h = ok("GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nX-A: 1\r\n\r\n");
        assert_eq!((h.parts.method, h.parts.uri.path(), h.parts.uri.query()), (Method::GET, "/a", Some("b=1")));
        assert_eq!(
            (h.parts.headers["host"].as_bytes(), h.body.is_none(), h.keep_alive),
            (&b"example.com"[..], true, true)
        );
        assert_eq!(ok("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello").body, Some(Framing::Length(5)));
        assert_eq!(ok("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n").body, None);
        assert_eq!(
            ok("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n").body,
            Some(Framing::Chunked(Chunked::Size))
        );
        let both = ok("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(
            (both.body, both.keep_alive, both.parts.headers.contains_key("content-length")),
            (Some(Framing::Chunked(Chunked::Size)), false, false)
        );
        assert!(!ok("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!ok("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(ok("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        let abs = ok("GET http://example.com:8080/x HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!((abs.parts.uri.host(), abs.parts.uri.path()), (Some("example.com"), "/x"));
        assert_eq!(abs.parts.headers["host"], "example.com:8080", "the target's authority replaces Host");
        let abs = ok("GET http://example.com/x HTTP/1.1\r\n\r\n");
        assert_eq!(abs.parts.headers["host"], "example.com", "absolute-form needs no Host");
        for host in
            ["example.com", "example.com:8000", "a-b.c_d~e", "10.0.0.1:80", "[::1]", "[2001:db8::1]:443", "x%41y"]
        {
            assert_eq!(ok(&format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n")).parts.headers["host"], host);
        }
        assert!(ok("GET / HTTP/1.0\r\n\r\n").parts.headers.get("host").is_none(), "HTTP/1.0 may leave Host out");
        assert!(ok("PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n").expect_continue);
        assert!(
            !ok("GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n").expect_continue,
            "no body, nothing to continue"
        );
        assert!(head("GET / HTTP/1.1\r\nHost: a").unwrap().is_none(), "partial");
    }

    #[test]
    fn bad_heads_are_named_and_answered() {
        let status = |raw: &str| head(raw).err().and_then(|e| e.rejection()).map(|r| r.http_status());
        for raw in [
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "GET /\x01 HTTP/1.1\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
        ] {
            assert_eq!(status(raw), Some(400), "{raw:?}");
        }
        // RFC 9112 §3.2: a missing or malformed Host is 400, named in the answer.
        for raw in [
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: exa mple.com\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: example.com:abc\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a/b@evil.example\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: user@example.com\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: \r\n\r\n",
            "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: [not-v6]\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x%4\r\n\r\n",
            "GET / HTTP/1.0\r\nHost: bad host\r\n\r\n",
            "GET http://user@example.com/ HTTP/1.1\r\n\r\n",
            "GET ftp://example.com/ HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(status(raw), Some(400), "{raw:?}");
        }
        let missing = head("GET / HTTP/1.1\r\n\r\n").unwrap_err().rejection().unwrap();
        assert_eq!(missing.to_string(), "Bad request: HTTP/1.1 request without a host header");
        // Transfer codings (RFC 9112 §6.1): only chunked is implemented; it must be last, once.
        for raw in [
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(status(raw), Some(501), "{raw:?}");
        }
        let named = head("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!(
            named.unwrap_err().rejection().unwrap().to_string(),
            "Transfer-Encoding 'gzip, chunked' is not implemented"
        );
        for raw in [
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ,chunked\r\n\r\n",
        ] {
            assert_eq!(status(raw), Some(400), "{raw:?}");
        }
        let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(70 << 10));
        assert_eq!(status(&big), Some(431));
        assert_eq!(status(&big[..60 << 10]), None, "a partial head within the limit waits");
        assert_eq!(status(&big[..(66 << 10)]), Some(431), "a partial head past the limit is rejected early");
        let many: String = (0..MAX_HEADERS + 1).map(|i| format!("x-{i}: 1\r\n")).collect();
        assert_eq!(status(&format!("GET / HTTP/1.1\r\n{many}\r\n")), Some(431));
    }
}
