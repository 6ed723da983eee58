//! Differential: the same bytes go to sluice's HTTP/1.1 request reader and to hyper's server (the
//! oracle: httparse for heads plus hyper's RFC 9112 framing). They must agree, request by request
//! through a pipeline, on accept or reject and on framing (each request's body, and so where the
//! next request starts). Where the two differ on purpose, sluice refuses what hyper takes; each
//! such difference is one arm of `intended` below and nothing else is tolerated:
//!
//! - HTTP/1.1 without Host, a Host that is not `uri-host[:port]`, two Hosts, an absolute-form
//!   target with userinfo or a scheme other than http(s) (RFC 9112 §3.2; hyper does not check);
//! - a transfer coding other than `chunked`, or chunked listed twice or with an empty coding
//!   (RFC 9112 §6.1: 501/400; hyper frames `gzip, chunked` as chunked and passes gzip on);
//! - a control byte inside a chunk extension (hyper skips extension bytes up to CR);
//! - a bare LF in the trailer section (hyper reads it as a byte of the trailer line, httparse as
//!   a line end: the two would end the body at different bytes, so sluice ends none).
//!
//! docs/http1.md lists the same differences for readers of the proxy.
//!
//! A case hyper rejects and sluice takes, or a different body or request boundary, is a failure.
#![no_main]

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use proxy::downstream::h1::{decode_request, H1ServerError};
use tokio::io::AsyncWriteExt;

/// A request as either side framed it: method, target, body.
#[derive(Debug, PartialEq)]
struct Framed {
    method: String,
    target: String,
    body: Vec<u8>,
}

/// What hyper made of the bytes: the requests it framed whole, then whether it stopped on an error
/// (anything but a clean end of input between requests).
#[derive(Debug)]
struct Oracle {
    requests: Vec<Framed>,
    failed: bool,
}

thread_local! {
    static RT: RefCell<tokio::runtime::Runtime> = RefCell::new(
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime"),
    );
}

fn hyper_reads(data: &[u8]) -> Oracle {
    let seen: Arc<Mutex<Vec<Result<Framed, ()>>>> = Arc::default();
    let sink = seen.clone();
    let wire = Bytes::copy_from_slice(data);
    let conn_failed = RT.with(|rt| {
        rt.borrow().block_on(async move {
            let (mut client, server) = tokio::io::duplex(1 << 20);
            client.write_all(&wire).await.expect("duplex write");
            client.shutdown().await.expect("duplex shutdown");
            let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let sink = sink.clone();
                async move {
                    let method = req.method().to_string();
                    let target = req.uri().to_string();
                    let body = req.into_body().collect().await.map(|b| b.to_bytes().to_vec());
                    sink.lock().unwrap().push(body.map(|body| Framed { method, target, body }).map_err(|_| ()));
                    Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<Bytes>::new()))
                }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .max_buf_size(64 << 10)
                .half_close(true)
                .serve_connection(hyper_util::rt::TokioIo::new(server), svc);
            let failed = tokio::time::timeout(std::time::Duration::from_secs(5), served)
                .await
                .map_or(true, |r| r.is_err());
            drop(client);
            failed
        })
    });
    let results = std::mem::take(&mut *seen.lock().unwrap());
    let mut requests = Vec::new();
    let mut failed = conn_failed;
    for r in results {
        match r {
            Ok(f) => requests.push(f),
            Err(()) => {
                failed = true;
                break;
            }
        }
    }
    Oracle { requests, failed }
}

/// sluice refuses on purpose what hyper takes (see the module doc).
fn intended(e: &H1ServerError) -> bool {
    matches!(
        e,
        H1ServerError::MissingHost
            | H1ServerError::InvalidHost(_)
            | H1ServerError::DuplicateHost
            | H1ServerError::AbsoluteTarget
            | H1ServerError::UnknownCoding(_)
            | H1ServerError::BadCodings
    ) || matches!(
        e,
        H1ServerError::Wire(proxy::wire::h1::WireError::Chunked(
            "invalid byte in a chunk extension" | "bare LF in the trailer section"
        ))
    )
}

fuzz_target!(|data: &[u8]| {
    if data.len() > 16 << 10 {
        return;
    }
    let oracle = hyper_reads(data);
    let mut rest = data;
    for (i, theirs) in oracle.requests.iter().enumerate() {
        let ours = match decode_request(rest, 64 << 10) {
            Ok(Some((head, Some(body), used))) => {
                rest = &rest[used..];
                Framed { method: head.parts.method.to_string(), target: head.parts.uri.to_string(), body }
            }
            Ok(_) => panic!("request {i}: hyper framed {theirs:?}, sluice wants more bytes"),
            Err(e) if intended(&e) => return,
            Err(e) => panic!("request {i}: hyper framed {theirs:?}, sluice refused: {e}"),
        };
        assert_eq!(&ours, theirs, "request {i} framed differently");
        // A request that closes the connection (HTTP/1.0, `connection: close`, CL+TE) ends the
        // pipeline for hyper: what follows is never read as a request.
    }
    if oracle.failed {
        // hyper stopped on an error after the requests above: sluice must refuse the next bytes too,
        // or find them incomplete; it must never frame a whole request out of them.
        if let Ok(Some((head, Some(body), _))) = decode_request(rest, 64 << 10) {
            panic!(
                "hyper refused after {} requests; sluice framed another: {} {} with {} body bytes",
                oracle.requests.len(),
                head.parts.method,
                head.parts.uri,
                body.len()
            );
        }
    }
});
