//! Tells HTTP/2 with prior knowledge (h2c) from HTTP/1.x on a plaintext `http2` listener, as nginx
//! ≥ 1.25.1 does: compare the first bytes with the 24-byte client preface; a full match is h2, a
//! mismatch is HTTP/1.x, a matching but incomplete prefix waits for more bytes (the preface may
//! arrive split across reads). The bytes read are replayed to the HTTP server by [`Prefixed`].
//!
//! A first line that is neither (no `HTTP/` version in it, as in h2spec's "INVALID CONNECTION
//! PREFACE") is a broken HTTP/2 preface as much as a broken request line: the connection is closed
//! without an answer, as RFC 9113 §3.4 requires of an h2c server (RFC 9112 §2.2 lets an HTTP/1.1
//! server close on an invalid request line too).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
pub(crate) const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How much of a first line without `HTTP/` is read before HTTP/1.1 gets it anyway (and its
/// request-line limit answers it).
const MAX_FIRST_LINE: usize = 8 << 10;

#[derive(Debug, Error)]
pub(crate) enum SniffError {
    #[error("connection closed before the first request")]
    Closed,
    #[error("read failed while detecting the protocol: {0}")]
    Io(#[from] io::Error),
    #[error("neither the HTTP/2 preface nor an HTTP/1.x request line")]
    NotHttp,
}

/// The protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detected {
    H2,
    Http1,
}

/// Reads just enough to decide. The caller bounds it with the handshake timeout.
pub(crate) async fn sniff<S: AsyncRead + Unpin>(io: &mut S) -> Result<(Detected, BytesMut), SniffError> {
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        if io.read_buf(&mut buf).await? == 0 {
            return Err(SniffError::Closed);
        }
        let n = buf.len().min(H2_PREFACE.len());
        if buf[..n] != H2_PREFACE[..n] {
            match names_http_version(&buf) {
                Some(true) => return Ok((Detected::Http1, buf)),
                Some(false) => return Err(SniffError::NotHttp),
                None if buf.len() >= MAX_FIRST_LINE => return Ok((Detected::Http1, buf)),
                None => continue,
            }
        }
        if n == H2_PREFACE.len() {
            return Ok((Detected::H2, buf));
        }
    }
}

/// Whether the first line (after empty lines) has `HTTP/` in it; None while it is incomplete and
/// has none yet.
fn names_http_version(buf: &[u8]) -> Option<bool> {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n')?;
    let rest = &buf[start..];
    let end = rest.iter().position(|&b| b == b'\n');
    let line = &rest[..end.unwrap_or(rest.len())];
    if line.windows(5).any(|w| w == b"HTTP/") {
        Some(true)
    } else {
        end.map(|_| false)
    }
}

/// An I/O stream that first yields already-read bytes.
pub(crate) struct Prefixed<S> {
    prefix: BytesMut,
    inner: S,
}

impl<S> Prefixed<S> {
    pub(crate) fn new(prefix: BytesMut, inner: S) -> Self {
        Prefixed { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            if self.prefix.is_empty() {
                // The sniffing buffer (4 KiB) would otherwise live as long as the connection.
                self.prefix = BytesMut::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn preface_split_across_reads_is_h2() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let task = tokio::spawn(async move { sniff(&mut server).await.map(|(d, b)| (d, b.len())) });
        for chunk in H2_PREFACE.chunks(5) {
            client.write_all(chunk).await.unwrap();
            client.flush().await.unwrap();
            tokio::task::yield_now().await;
        }
        assert_eq!(task.await.unwrap().unwrap(), (Detected::H2, 24));
    }

    #[tokio::test]
    async fn http1_is_detected_on_first_mismatch_and_replayed() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let (d, buf) = sniff(&mut server).await.unwrap();
        assert_eq!(d, Detected::Http1);
        let mut p = Prefixed::new(buf, server);
        client.write_all(b"Host: x\r\n").await.unwrap();
        drop(client);
        let mut all = String::new();
        p.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "GET / HTTP/1.1\r\nHost: x\r\n");
    }

    #[tokio::test]
    async fn the_sniffing_buffer_is_freed_once_replayed() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(H2_PREFACE).await.unwrap();
        let (_, buf) = sniff(&mut server).await.unwrap();
        let mut p = Prefixed::new(buf, server);
        let mut got = [0u8; 24];
        p.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, H2_PREFACE);
        assert_eq!(p.prefix.capacity(), 0, "an idle connection must not keep the 4 KiB sniffing buffer");
    }

    #[tokio::test]
    async fn pri_prefix_then_mismatch_is_http1() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"PRI * HTTP/1.1\r\n").await.unwrap();
        assert_eq!(sniff(&mut server).await.unwrap().0, Detected::Http1);
    }

    #[tokio::test]
    async fn a_first_line_without_http_version_is_neither() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"INVALID CONNECTION PREFACE\r\n\r\n").await.unwrap();
        assert!(matches!(sniff(&mut server).await, Err(SniffError::NotHttp)));
    }

    #[tokio::test]
    async fn a_request_line_split_before_its_version_waits_for_it() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let task = tokio::spawn(async move { sniff(&mut server).await.map(|(d, _)| d) });
        client.write_all(b"\r\nGET /a-long-path").await.unwrap();
        tokio::task::yield_now().await;
        client.write_all(b" HTTP/1.1\r\n").await.unwrap();
        assert_eq!(task.await.unwrap().unwrap(), Detected::Http1);
    }

    #[tokio::test]
    async fn eof_before_decision_is_closed() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"PRI * ").await.unwrap();
        drop(client);
        assert!(matches!(sniff(&mut server).await, Err(SniffError::Closed)));
    }
}
