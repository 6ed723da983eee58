//! HTTP/1.1 on the wire, shared by both halves of the proxy ([`crate::upstream::h1`] and
//! [`crate::downstream::h1`]): what the framing headers say (RFC 9112 §6), body framing and the
//! chunked decoder, and the small writing helpers. Nothing here does I/O but `poll_write_all`.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body::Frame;
use thiserror::Error;
use tokio::io::AsyncWrite;

/// Largest head (and chunked trailer block) accepted from an upstream, as hyper's default buffer limit.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in a head (hyper's default).
pub const MAX_HEADERS: usize = 100;
/// Longest chunk-size line (size plus extensions).
pub const MAX_CHUNK_LINE: usize = 4096;

/// Where a parsed field's name and value sit in the head's buffer (name start, end, value start,
/// end), so that once the head is split off and frozen they are slices of it (no copy per field).
pub type FieldSpan = (u32, u32, u32, u32);

/// Records the spans of `fields`, parsed by httparse out of `buf`, into `spans`.
pub fn field_spans(buf: &[u8], fields: &[httparse::Header<'_>], spans: &mut [FieldSpan]) {
    let base = buf.as_ptr() as usize;
    for (span, h) in spans.iter_mut().zip(fields) {
        let name = h.name.as_ptr() as usize - base;
        let value = h.value.as_ptr() as usize - base;
        *span = (name as u32, (name + h.name.len()) as u32, value as u32, (value + h.value.len()) as u32);
    }
}

/// The field at `span` of a frozen head, as a name and a value sharing the head's bytes. `Err` holds
/// the field's name (lossily decoded) when the name or the value is not valid.
// Inlined into both parsers: as a call it cost 1.3% of an HTTP/1.1 request (bench/callgrind.sh).
#[inline(always)]
pub fn field_at(raw: &Bytes, &(ns, ne, vs, ve): &FieldSpan) -> Result<(HeaderName, HeaderValue), String> {
    let name_bytes = &raw[ns as usize..ne as usize];
    let bad = || String::from_utf8_lossy(name_bytes).into_owned();
    let name = HeaderName::from_bytes(name_bytes).map_err(|_| bad())?;
    let value = HeaderValue::from_maybe_shared(raw.slice(vs as usize..ve as usize)).map_err(|_| bad())?;
    Ok((name, value))
}

/// A message whose framing cannot be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum WireError {
    #[error("invalid content-length")]
    ContentLength,
    #[error("invalid chunked encoding: {0}")]
    Chunked(&'static str),
}

/// What a message's headers say about its framing and its connection.
#[derive(Default)]
pub struct FramingHeaders {
    /// `transfer-encoding` present: whether its last coding is chunked.
    pub chunked: Option<bool>,
    /// A transfer coding other than `chunked` was listed (RFC 9112 §6.1: a request with a coding
    /// the server does not understand is answered 501).
    pub other_coding: bool,
    /// `chunked` listed more than once, or not last, or an empty coding (RFC 9112 §6.1, §7).
    pub bad_codings: bool,
    pub length: Option<u64>,
    /// `connection: close`.
    pub close: bool,
    /// `connection: keep-alive` (what keeps an HTTP/1.0 connection open).
    pub keep_alive: bool,
}

impl FramingHeaders {
    pub fn note(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<(), WireError> {
        if name == TRANSFER_ENCODING {
            // Several fields are one list (RFC 9110 §5.3): chunked must be the last coding of all.
            for coding in value.as_bytes().split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                let chunked = coding.eq_ignore_ascii_case(b"chunked");
                // Anything after chunked (a second chunked included) means chunked was not last.
                if coding.is_empty() || self.chunked == Some(true) {
                    self.bad_codings = true;
                }
                self.other_coding |= !chunked && !coding.is_empty();
                self.chunked = Some(chunked);
            }
        } else if name == CONTENT_LENGTH {
            // A list of equal values is one length (RFC 9110 §8.6); anything else is an error.
            for part in value.as_bytes().split(|&b| b == b',') {
                let n = parse_decimal(part.trim_ascii()).ok_or(WireError::ContentLength)?;
                if self.length.is_some_and(|m| m != n) {
                    return Err(WireError::ContentLength);
                }
                self.length = Some(n);
            }
        } else if name == CONNECTION {
            for token in value.as_bytes().split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                self.close |= token.eq_ignore_ascii_case(b"close");
                self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        Ok(())
    }
}

pub fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// How a message body is delimited.
#[derive(Debug, PartialEq, Eq)]
pub enum Framing {
    Empty,
    /// Bytes still to come.
    Length(u64),
    Chunked(Chunked),
    /// Until the upstream closes.
    Close,
    /// Complete (close-delimited and chunked bodies end here).
    Done,
}

/// Where a chunked body's decoder stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunked {
    /// Expecting a chunk-size line.
    Size,
    /// Bytes left in the current chunk.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: the trailer section.
    Trailers,
}

/// One decoding step of a chunked body over `buf`.
pub enum Step {
    /// Need more bytes.
    More,
    Data(Bytes),
    Trailers(HeaderMap),
    End,
    /// Progress without output (a size line or a chunk's CRLF consumed).
    Again,
}

impl Chunked {
    pub fn step(&mut self, buf: &mut BytesMut) -> Result<Step, WireError> {
        match self {
            Chunked::Size => match parse_chunk_size(buf)? {
                Some((len, size)) => {
                    buf.advance(len);
                    *self = if size == 0 { Chunked::Trailers } else { Chunked::Data(size) };
                    Ok(Step::Again)
                }
                None if buf.len() <= MAX_CHUNK_LINE => Ok(Step::More),
                None => Err(WireError::Chunked("chunk-size line too long")),
            },
            Chunked::Data(left) => {
                if buf.is_empty() {
                    return Ok(Step::More);
                }
                let n = (*left).min(buf.len() as u64) as usize;
                *left -= n as u64;
                if *left == 0 {
                    *self = Chunked::DataEnd;
                }
                Ok(Step::Data(buf.split_to(n).freeze()))
            }
            Chunked::DataEnd => {
                if buf.len() < 2 {
                    return Ok(Step::More);
                }
                if &buf[..2] != b"\r\n" {
                    return Err(WireError::Chunked("chunk data not followed by CRLF"));
                }
                buf.advance(2);
                *self = Chunked::Size;
                Ok(Step::Again)
            }
            Chunked::Trailers => {
                if buf.starts_with(b"\r\n") {
                    buf.advance(2);
                    return Ok(Step::End);
                }
                let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
                match httparse::parse_headers(buf, &mut slots) {
                    Ok(httparse::Status::Complete((len, fields))) => {
                        // Trailer lines end in CRLF. A bare LF is refused: httparse ends a line at
                        // it, hyper reads it as a byte of the line, so the two would end the body
                        // at different bytes (docs/http1.md).
                        if buf[..len].iter().enumerate().any(|(i, &b)| b == b'\n' && (i == 0 || buf[i - 1] != b'\r')) {
                            return Err(WireError::Chunked("bare LF in the trailer section"));
                        }
                        let mut trailers = HeaderMap::with_capacity(fields.len());
                        for h in fields {
                            if let (Ok(n), Ok(v)) =
                                (HeaderName::from_bytes(h.name.as_bytes()), HeaderValue::from_bytes(h.value))
                            {
                                if allowed_in_trailers(&n) {
                                    trailers.append(n, v);
                                }
                            }
                        }
                        buf.advance(len);
                        Ok(Step::Trailers(trailers))
                    }
                    Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => Ok(Step::More),
                    Ok(httparse::Status::Partial) => Err(WireError::Chunked("trailer section too large")),
                    Err(_) => Err(WireError::Chunked("invalid trailer section")),
                }
            }
        }
    }
}

/// Parses a chunk-size line off the front of `buf` as RFC 9112 §7.1 writes it, as strictly as
/// hyper, nginx and HAProxy do, so that the same bytes frame the same way here as at a proxy in
/// front of sluice: `1*HEXDIG`, optional whitespace, extensions (`;` ...) with no bare CR or LF,
/// then CRLF. An empty size and a bare LF anywhere are errors. `Some((line length, size))`, or
/// `None` while the line is incomplete.
pub fn parse_chunk_size(buf: &[u8]) -> Result<Option<(usize, u64)>, WireError> {
    let mut size: u64 = 0;
    let mut i = 0;
    while let Some(&b) = buf.get(i) {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => break,
        };
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(u64::from(digit)))
            .ok_or(WireError::Chunked("chunk size too large"))?;
        i += 1;
    }
    if i == buf.len() {
        return Ok(None);
    }
    if i == 0 {
        return Err(WireError::Chunked("invalid chunk size"));
    }
    while matches!(buf.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    match buf.get(i) {
        None => return Ok(None),
        Some(b';') => loop {
            i += 1;
            match buf.get(i) {
                None => return Ok(None),
                Some(b'\r') => break,
                Some(b'\n') => return Err(WireError::Chunked("bare LF in a chunk extension")),
                Some(&b) if b != b'\t' && (b < 0x20 || b == 0x7f) => {
                    return Err(WireError::Chunked("invalid byte in a chunk extension"))
                }
                Some(_) => {}
            }
        },
        Some(b'\r') => {}
        Some(_) => return Err(WireError::Chunked("invalid chunk size")),
    }
    match buf.get(i + 1) {
        None => Ok(None),
        Some(b'\n') => Ok(Some((i + 2, size))),
        Some(_) => Err(WireError::Chunked("chunk-size line not ended by CRLF")),
    }
}

/// Whether a field may be taken from a trailer section (RFC 9110 §6.5.1): fields that frame the
/// message, route it, control the request or response, authenticate, or describe the content
/// must not be trailers, so they are dropped there instead of forwarded as if they were.
pub fn allowed_in_trailers(name: &HeaderName) -> bool {
    use http::header::*;
    const FORBIDDEN: [HeaderName; 28] = [
        CONTENT_LENGTH,
        TRANSFER_ENCODING,
        HOST,
        TRAILER,
        TE,
        CONNECTION,
        UPGRADE,
        CACHE_CONTROL,
        EXPECT,
        MAX_FORWARDS,
        PRAGMA,
        RANGE,
        IF_MATCH,
        IF_NONE_MATCH,
        IF_MODIFIED_SINCE,
        IF_UNMODIFIED_SINCE,
        IF_RANGE,
        AUTHORIZATION,
        PROXY_AUTHORIZATION,
        WWW_AUTHENTICATE,
        PROXY_AUTHENTICATE,
        SET_COOKIE,
        COOKIE,
        CONTENT_ENCODING,
        CONTENT_TYPE,
        CONTENT_RANGE,
        LOCATION,
        RETRY_AFTER,
    ];
    !FORBIDDEN.contains(name)
}

/// Appends one `name: value` line of a head or trailer section.
pub fn put_field(out: &mut BytesMut, name: &HeaderName, value: &HeaderValue) {
    out.put_slice(name.as_str().as_bytes());
    out.put_slice(b": ");
    out.put_slice(value.as_bytes());
    out.put_slice(b"\r\n");
}

/// Writes `buf` until it is empty (consumed as it goes), or `Pending` with the rest kept.
pub fn poll_write_all<W: AsyncWrite + Unpin + ?Sized>(
    io: &mut W,
    cx: &mut Context<'_>,
    buf: &mut impl Buf,
) -> Poll<std::io::Result<()>> {
    while buf.has_remaining() {
        let n = ready!(Pin::new(&mut *io).poll_write(cx, buf.chunk()))?;
        if n == 0 {
            return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
        }
        buf.advance(n);
    }
    Poll::Ready(Ok(()))
}

/// What the bytes buffered so far give of a body.
pub enum Decoded {
    Frame(Frame<Bytes>),
    End,
    NeedMore,
}

/// Takes the next frame of a body framed as `framing` off the front of `buf`.
pub fn decode(framing: &mut Framing, buf: &mut BytesMut) -> Result<Decoded, WireError> {
    loop {
        return Ok(match framing {
            Framing::Empty | Framing::Done | Framing::Length(0) => Decoded::End,
            _ if buf.is_empty() => Decoded::NeedMore,
            Framing::Length(left) => {
                let n = (*left).min(buf.len() as u64) as usize;
                *left -= n as u64;
                Decoded::Frame(Frame::data(buf.split_to(n).freeze()))
            }
            Framing::Close => Decoded::Frame(Frame::data(buf.split().freeze())),
            Framing::Chunked(state) => match state.step(buf)? {
                Step::Again => continue,
                Step::Data(d) => Decoded::Frame(Frame::data(d)),
                Step::Trailers(t) => {
                    *framing = Framing::Done;
                    Decoded::Frame(Frame::trailers(t))
                }
                Step::End => {
                    *framing = Framing::Done;
                    Decoded::End
                }
                Step::More => Decoded::NeedMore,
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `wire` fed in pieces of `step` bytes: (data, trailers, ended).
    fn decode_chunked(wire: &[u8], step: usize) -> Result<(Vec<u8>, Option<HeaderMap>, bool), WireError> {
        let mut state = Chunked::Size;
        let (mut buf, mut data, mut trailers) = (BytesMut::new(), Vec::new(), None);
        let mut fed = 0;
        loop {
            match state.step(&mut buf)? {
                Step::Again => {}
                Step::Data(d) => data.extend_from_slice(&d),
                Step::Trailers(t) => {
                    trailers = Some(t);
                    return Ok((data, trailers, true));
                }
                Step::End => return Ok((data, trailers, true)),
                Step::More if fed < wire.len() => {
                    let end = (fed + step).min(wire.len());
                    buf.extend_from_slice(&wire[fed..end]);
                    fed = end;
                }
                Step::More => return Ok((data, trailers, false)),
            }
        }
    }

    #[test]
    fn fields_that_must_not_be_trailers_are_dropped() {
        let (_, trailers, _) = decode_chunked(
            b"0\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\nhost: evil\r\nx-sum: 1\r\ngrpc-status: 0\r\n\r\n",
            3,
        )
        .unwrap();
        let t = trailers.expect("trailers");
        let names: Vec<&str> = t.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-sum", "grpc-status"]);
    }

    #[test]
    fn transfer_codings_are_one_list_with_chunked_last_once() {
        let noted = |values: &[&'static str]| {
            let mut f = FramingHeaders::default();
            for v in values {
                f.note(&TRANSFER_ENCODING, &HeaderValue::from_static(v)).unwrap();
            }
            (f.chunked, f.other_coding, f.bad_codings)
        };
        assert_eq!(noted(&["chunked"]), (Some(true), false, false));
        assert_eq!(noted(&["Chunked "]), (Some(true), false, false));
        assert_eq!(noted(&["gzip, chunked"]), (Some(true), true, false));
        assert_eq!(noted(&["gzip", "chunked"]), (Some(true), true, false));
        assert_eq!(noted(&["chunked", "gzip"]), (Some(false), true, true));
        assert_eq!(noted(&["chunked, chunked"]), (Some(true), false, true));
        assert_eq!(noted(&["chunked", "chunked"]), (Some(true), false, true));
        assert_eq!(noted(&[""]), (Some(false), false, true));
        assert_eq!(noted(&["gzip"]), (Some(false), true, false));
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_read_boundaries() {
        let wire = b"5;name=value\r\nhello\r\n1\r\n,\r\nB\r\n 0123456789\r\n0\r\nx-sum: 1\r\nx-b: 2\r\n\r\n";
        for step in [1, 2, 3, 7, wire.len()] {
            let (data, trailers, ended) = decode_chunked(wire, step).unwrap();
            assert_eq!(data, b"hello, 0123456789", "step {step}");
            let t = trailers.expect("trailers");
            assert_eq!(
                (&t["x-sum"], &t["x-b"], ended),
                (&HeaderValue::from_static("1"), &HeaderValue::from_static("2"), true)
            );
        }
        let (data, trailers, ended) = decode_chunked(b"3\r\nabc\r\n0\r\n\r\n", 1).unwrap();
        assert_eq!((data.as_slice(), trailers.is_none(), ended), (&b"abc"[..], true, true));
        assert!(!decode_chunked(b"3\r\nabc\r\n", 4).unwrap().2, "no last chunk: not ended");
        for bad in [
            &b"zz\r\nhello\r\n"[..],
            b"3\r\nabcX\r\n",
            b"ffffffffffffffffff\r\n",
            // An empty size line is not the last chunk (it was, once: one request to a front proxy, two here).
            b"\r\n\r\n",
            b"3\r\nabc\r\n\r\n",
            // A bare LF ends nothing: not in an extension, not after the size.
            b"3;ext\nabc\r\n0\r\n\r\n",
            b"3\nabc\r\n0\r\n\r\n",
            b"3\rabc\r\n",
            b"3 x\r\n",
            b"-3\r\n",
            b"0x3\r\n",
            b"0\r\nx-a: 1\n\r\n",
            b"0\r\nx-a: 1\r\n\n",
        ] {
            assert!(matches!(decode_chunked(bad, 64), Err(WireError::Chunked(_))), "{bad:?}");
        }
        let (data, _, ended) = decode_chunked(b"3 ;a=\"b c\"\t;d\r\nabc\r\n0 \r\n\r\n", 1).unwrap();
        assert_eq!((data.as_slice(), ended), (&b"abc"[..], true), "whitespace and extensions");
        let long_line = [b'1'; MAX_CHUNK_LINE + 2];
        assert!(matches!(decode_chunked(&long_line, MAX_CHUNK_LINE + 2), Err(WireError::Chunked(_))));
    }
}
