//! Differential: the same upstream response bytes (the first byte picks GET or HEAD, the rest is
//! what the upstream sends, its end the connection's end) go to sluice's upstream response reader
//! and to hyper's HTTP/1.1 client (the oracle). They must agree on accept or reject, the status and
//! the body. Where they differ on purpose, sluice refuses what hyper takes; each such difference is
//! an arm of `intended` below, and nothing else is tolerated:
//!
//! - `101 Switching Protocols` that nobody asked for (sluice never asks for an upgrade);
//! - a control byte inside a chunk extension (hyper skips extension bytes up to CR);
//! - a bare LF in the trailer section (hyper reads it as a byte of the trailer line, httparse as
//!   a line end: the two would end the body at different bytes, so sluice ends none);
//! - an invalid `content-length` on a response that has no body (to HEAD, or 204/304): hyper
//!   ignores it, sluice does not pass an invalid length on (502).
//! - an invalid `content-length` next to `transfer-encoding`: hyper lets transfer-encoding
//!   override it, sluice refuses the response (502; RFC 9112 §6.3 calls both together a sign of
//!   response splitting, and the invalid length is not passed on).
//!
//! docs/http1.md lists the same differences for readers of the proxy.
#![no_main]

use std::cell::RefCell;

use bytes::Bytes;
use http::Method;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use proxy::wire::h1::WireError;
use proxy::upstream::h1::{decode_response, H1Error};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

thread_local! {
    static RT: RefCell<tokio::runtime::Runtime> = RefCell::new(
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime"),
    );
}

/// hyper's reading: `Some((status, body))`, or `None` when it refused the response or its body.
fn hyper_reads(wire: &[u8], method: Method) -> Option<(u16, Vec<u8>)> {
    let wire = Bytes::copy_from_slice(wire);
    RT.with(|rt| {
        rt.borrow().block_on(async move {
            let (client, mut server) = tokio::io::duplex(1 << 20);
            let (mut send, conn) =
                hyper::client::conn::http1::handshake::<_, http_body_util::Empty<Bytes>>(
                    hyper_util::rt::TokioIo::new(client),
                )
                .await
                .ok()?;
            let driver = tokio::spawn(conn);
            let req = http::Request::builder().method(method).uri("/").header("host", "u").body(Default::default()).ok()?;
            // The upstream answers once the request is in (bytes before it would be an error of
            // their own: an idle connection that talks).
            let upstream = tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if server.read_exact(&mut byte).await.is_err() {
                        return;
                    }
                    head.push(byte[0]);
                }
                let _ = server.write_all(&wire).await;
                let _ = server.shutdown().await;
                // Held open for reading until the client is done.
                let _ = server.read_to_end(&mut head).await;
            });
            let read = async {
                let resp = send.send_request(req).await.ok()?;
                let status = resp.status().as_u16();
                let body = resp.into_body().collect().await.ok()?.to_bytes().to_vec();
                Some((status, body))
            };
            let got = tokio::time::timeout(std::time::Duration::from_secs(5), read).await.ok().flatten();
            driver.abort();
            upstream.abort();
            got
        })
    })
}

fn intended(e: &H1Error, method: &Method, their_status: u16, wire: &[u8]) -> bool {
    let bodiless = *method == Method::HEAD || their_status == 204 || their_status == 304;
    matches!(
        e,
        H1Error::Upgrade
            | H1Error::Wire(WireError::Chunked(
                "invalid byte in a chunk extension" | "bare LF in the trailer section"
            ))
    )
        || ((bodiless || has_transfer_encoding(wire)) && matches!(e, H1Error::Wire(WireError::ContentLength)))
}

/// Whether a line of the response starts a `transfer-encoding` field (looked for in all of the
/// bytes, so that a final head after 1xx interim ones counts too).
fn has_transfer_encoding(wire: &[u8]) -> bool {
    wire.to_ascii_lowercase().windows(19).any(|w| w == b"\ntransfer-encoding:")
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, wire)) = data.split_first() else { return };
    if wire.len() > 16 << 10 {
        return;
    }
    let method = if first & 1 == 0 { Method::GET } else { Method::HEAD };
    let theirs = hyper_reads(wire, method.clone());
    match (decode_response(wire, method.clone()), theirs) {
        (Ok((status, _, body, _)), Some((their_status, their_body))) => {
            assert_eq!(status.as_u16(), their_status, "status");
            assert!(body == their_body, "body: sluice {body:?}, hyper {their_body:?}");
        }
        (Ok((status, _, body, _)), None) => {
            panic!("hyper refused a response sluice took: {status} with {} body bytes", body.len())
        }
        (Err(e), Some(theirs)) if !intended(&e, &method, theirs.0, wire) => panic!("sluice refused ({e}) a response hyper took: {theirs:?}"),
        _ => {}
    }
});
