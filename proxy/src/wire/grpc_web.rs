//! The gRPC-Web wire format (the gRPC project's PROTOCOL-WEB.md) as the proxy translates it to
//! and from gRPC over HTTP/2, streaming, never holding more than one frame of the body:
//! - the three content types and their [`Mode`] (binary, or base64 "text");
//! - [`TextDecoder`]: a text-mode request body decoded as it arrives, whatever its chunking (a
//!   chunk may end inside a base64 quantum, and padded segments may be concatenated);
//! - [`WebResponse`]: a gRPC response body re-framed for a gRPC-Web client: the trailers become
//!   the final length-prefixed frame with flag `0x80`, carrying every trailer, and text mode
//!   base64-encodes the bytes as they pass (up to two bytes wait for the next frame).

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use thiserror::Error;

/// How a gRPC-Web message body is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `application/grpc-web`, `application/grpc-web+proto`: gRPC's framing as is.
    Binary,
    /// `application/grpc-web-text`, `application/grpc-web-text+proto`: the same bytes, base64.
    Text,
}

impl Mode {
    /// The mode a request's `content-type` asks for; `None` when it is not gRPC-Web.
    pub fn of(headers: &HeaderMap) -> Option<Mode> {
        Mode::of_content_type(headers.get(http::header::CONTENT_TYPE)?)
    }

    /// [`Mode::of`] on a `content-type` value already looked up.
    pub fn of_content_type(value: &HeaderValue) -> Option<Mode> {
        let ct = value.as_bytes();
        let prefix = b"application/grpc-web";
        if ct.len() < prefix.len() || !ct[..prefix.len()].eq_ignore_ascii_case(prefix) {
            return None;
        }
        let rest = &ct[prefix.len()..];
        let text = b"-text";
        if rest.len() >= text.len() && rest[..text.len()].eq_ignore_ascii_case(text) {
            Some(Mode::Text)
        } else {
            Some(Mode::Binary)
        }
    }

    /// The response content type (the `+proto` form, as Envoy answers).
    pub fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Mode::Binary => "application/grpc-web+proto",
            Mode::Text => "application/grpc-web-text+proto",
        })
    }

    /// The `content-type` the gRPC upstream gets for a request in this mode's content type
    /// (`application/grpc-web-text+json` → `application/grpc+json`).
    pub fn upstream_content_type(request: &HeaderValue) -> HeaderValue {
        let ct = request.as_bytes();
        let mut skip = "application/grpc-web".len();
        if ct.get(skip..skip + 5).is_some_and(|t| t.eq_ignore_ascii_case(b"-text")) {
            skip += 5;
        }
        let mut out = b"application/grpc".to_vec();
        out.extend_from_slice(ct.get(skip..).unwrap_or_default());
        HeaderValue::from_bytes(&out).unwrap_or(HeaderValue::from_static("application/grpc"))
    }
}

/// A text-mode request body that is not base64.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("grpc-web-text body is not valid base64: {0}")]
pub struct TextDecodeError(pub String);

/// Decodes a base64 stream chunk by chunk: whole quanta (4 characters) are decoded as they
/// arrive, a partial quantum waits for the next chunk, and a quantum ending in `=` closes a
/// segment (the next one may follow, as PROTOCOL-WEB.md allows).
#[derive(Debug, Default)]
pub struct TextDecoder {
    pending: BytesMut,
}

impl TextDecoder {
    /// The bytes `chunk` completes; ASCII whitespace is skipped.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Bytes, TextDecodeError> {
        self.pending.extend(chunk.iter().copied().filter(|b| !b.is_ascii_whitespace()));
        let whole = self.pending.len() / 4 * 4;
        let input = self.pending.split_to(whole);
        let mut out = Vec::with_capacity(whole / 4 * 3);
        let mut rest = &input[..];
        while !rest.is_empty() {
            // Up to and including the first padded quantum, or everything.
            let end = rest.iter().position(|&b| b == b'=').map_or(rest.len(), |p| (p / 4 + 1) * 4);
            STANDARD.decode_vec(&rest[..end], &mut out).map_err(|e| TextDecodeError(e.to_string()))?;
            rest = &rest[end..];
        }
        Ok(Bytes::from(out))
    }

    /// At the end of the body: an unfinished quantum is an error.
    pub fn finish(&self) -> Result<(), TextDecodeError> {
        if self.pending.is_empty() {
            Ok(())
        } else {
            Err(TextDecodeError(format!("{} base64 characters left over at the end", self.pending.len())))
        }
    }
}

/// Encodes a byte stream as base64 chunk by chunk: whole 3-byte groups go out with their
/// chunk, up to two bytes wait for the next one; [`TextEncoder::finish`] pads what is left.
#[derive(Debug, Default)]
pub struct TextEncoder {
    carry: Vec<u8>,
}

impl TextEncoder {
    pub fn push(&mut self, chunk: &[u8]) -> Bytes {
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(chunk);
        let whole = buf.len() / 3 * 3;
        self.carry = buf.split_off(whole);
        Bytes::from(STANDARD.encode(&buf))
    }

    pub fn finish(&mut self, last: &[u8]) -> Bytes {
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(last);
        Bytes::from(STANDARD.encode(&buf))
    }
}

/// The trailer frame of PROTOCOL-WEB.md: flag `0x80`, the 4-byte big-endian length, then every
/// trailer as `name: value\r\n` (names are lower case already).
pub fn trailer_frame(trailers: &HeaderMap) -> Bytes {
    let len: usize = trailers.iter().map(|(n, v)| n.as_str().len() + 2 + v.len() + 2).sum();
    let mut out = BytesMut::with_capacity(5 + len);
    out.put_u8(0x80);
    out.put_u32(len as u32);
    for (name, value) in trailers {
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.freeze()
}

pin_project_lite::pin_project! {
    /// A gRPC response body re-framed for a gRPC-Web client (see the module doc). Nothing is
    /// collected: each frame goes out as it comes.
    pub struct WebResponse<B> {
        #[pin]
        inner: B,
        text: Option<TextEncoder>,
        done: bool,
    }
}

impl<B> WebResponse<B> {
    pub fn new(inner: B, mode: Mode) -> Self {
        WebResponse { inner, text: (mode == Mode::Text).then(TextEncoder::default), done: false }
    }
}

impl<B: Body<Data = Bytes>> Body for WebResponse<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        let frame = match ready!(this.inner.poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Poll::Ready(Some(Err(e))),
            None => {
                *this.done = true;
                // A text body whose length was not a multiple of 3: its last characters, padded.
                return Poll::Ready(match this.text.as_mut().map(|t| t.finish(&[])) {
                    Some(tail) if !tail.is_empty() => Some(Ok(Frame::data(tail))),
                    _ => None,
                });
            }
        };
        let out = match frame.into_data() {
            Ok(data) => match this.text.as_mut() {
                Some(t) => t.push(&data),
                None => data,
            },
            Err(frame) => {
                let Ok(trailers) = frame.into_trailers() else { return Poll::Ready(None) };
                *this.done = true;
                let bytes = trailer_frame(&trailers);
                match this.text.as_mut() {
                    Some(t) => t.finish(&bytes),
                    None => bytes,
                }
            }
        };
        Poll::Ready(Some(Ok(Frame::data(out))))
    }

    fn is_end_stream(&self) -> bool {
        self.done || (self.inner.is_end_stream() && self.text.as_ref().is_none_or(|t| t.carry.is_empty()))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// The error of a [`TextRequest`]: the inner body's, or bad base64.
#[derive(Debug, Error)]
pub enum TextRequestError<E> {
    #[error(transparent)]
    Body(E),
    #[error(transparent)]
    Decode(TextDecodeError),
}

pin_project_lite::pin_project! {
    /// A text-mode request body decoded as it arrives (see [`TextDecoder`]); trailers pass.
    pub struct TextRequest<B> {
        #[pin]
        inner: B,
        decoder: TextDecoder,
    }
}

impl<B> TextRequest<B> {
    pub fn new(inner: B) -> Self {
        TextRequest { inner, decoder: TextDecoder::default() }
    }
}

impl<B: Body<Data = Bytes>> Body for TextRequest<B> {
    type Data = Bytes;
    type Error = TextRequestError<B::Error>;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let mut this = self.project();
        loop {
            let frame = match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => return Poll::Ready(Some(Err(TextRequestError::Body(e)))),
                None => {
                    return Poll::Ready(this.decoder.finish().err().map(|e| Err(TextRequestError::Decode(e))));
                }
            };
            match frame.into_data() {
                Ok(data) => match this.decoder.push(&data) {
                    // A chunk shorter than a quantum yields nothing yet: read on.
                    Ok(out) if out.is_empty() => continue,
                    Ok(out) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                    Err(e) => return Poll::Ready(Some(Err(TextRequestError::Decode(e)))),
                },
                Err(frame) => return Poll::Ready(Some(Ok(frame))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream() && self.decoder.pending.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_by_content_type() {
        let mode = |ct: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
            Mode::of(&h)
        };
        assert_eq!(mode("application/grpc-web"), Some(Mode::Binary));
        assert_eq!(mode("application/grpc-web+proto"), Some(Mode::Binary));
        assert_eq!(mode("application/grpc-web-text"), Some(Mode::Text));
        assert_eq!(mode("Application/GRPC-Web-Text+proto"), Some(Mode::Text));
        assert_eq!(mode("application/grpc"), None);
        assert_eq!(mode("application/json"), None);
        let up = |ct| Mode::upstream_content_type(&HeaderValue::from_static(ct));
        assert_eq!(up("application/grpc-web"), "application/grpc");
        assert_eq!(up("application/grpc-web-text+proto"), "application/grpc+proto");
        assert_eq!(up("application/grpc-web+json"), "application/grpc+json");
    }

    #[test]
    fn text_decoding_survives_any_split_and_concatenated_segments() {
        let payload: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let encoded = STANDARD.encode(&payload);
        for split in [1, 2, 3, 5, 7, 64, 999] {
            let mut d = TextDecoder::default();
            let mut got = Vec::new();
            for chunk in encoded.as_bytes().chunks(split) {
                got.extend_from_slice(&d.push(chunk).unwrap());
            }
            d.finish().unwrap();
            assert_eq!(got, payload, "split {split}");
        }
        // Two padded segments back to back, split inside the padding.
        let joined = format!("{}{}", STANDARD.encode(b"ab"), STANDARD.encode(b"cde"));
        let mut d = TextDecoder::default();
        let mut got = d.push(&joined.as_bytes()[..3]).unwrap().to_vec();
        got.extend_from_slice(&d.push(&joined.as_bytes()[3..]).unwrap());
        assert_eq!(got, b"abcde");
        assert!(TextDecoder::default().push(b"ab!d").is_err());
        let mut d = TextDecoder::default();
        d.push(b"YWJ").unwrap();
        assert_eq!(d.finish(), Err(TextDecodeError("3 base64 characters left over at the end".into())));
    }

    #[test]
    fn text_encoding_streams_and_concatenates_to_one_base64_string() {
        let payload: Vec<u8> = (0..100u8).collect();
        for split in [1, 2, 4, 10, 100] {
            let mut e = TextEncoder::default();
            let mut out = Vec::new();
            for chunk in payload.chunks(split) {
                out.extend_from_slice(&e.push(chunk));
            }
            out.extend_from_slice(&e.finish(&[]));
            assert_eq!(out, STANDARD.encode(&payload).as_bytes(), "split {split}");
        }
    }

    #[test]
    fn trailer_frame_carries_every_trailer() {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_static("0"));
        t.insert("grpc-message", HeaderValue::from_static("ok"));
        t.append("x-meta", HeaderValue::from_static("a"));
        t.append("x-meta", HeaderValue::from_static("b"));
        let f = trailer_frame(&t);
        let body = b"grpc-status: 0\r\ngrpc-message: ok\r\nx-meta: a\r\nx-meta: b\r\n";
        assert_eq!(f[0], 0x80);
        assert_eq!(u32::from_be_bytes([f[1], f[2], f[3], f[4]]) as usize, body.len());
        assert_eq!(&f[5..], body);
    }
}
