//! sluice-otlp-sink: a minimal OTLP/HTTP trace receiver for the demo and the bench. It accepts
//! `POST /v1/traces` with a protobuf `ExportTraceServiceRequest`, answers 200, and prints one line
//! per export (span count, running total, the first span's trace id and name); `--quiet` prints
//! only the running total once a second (the bench, where exports are many).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(about = "OTLP/HTTP trace receiver: counts and prints the spans it gets")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4318")]
    listen: SocketAddr,
    /// Print only the running span total, once a second.
    #[arg(long)]
    quiet: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(args.listen).await?;
    println!("sluice-otlp-sink listening on {}", listener.local_addr()?);
    let total = Arc::new(AtomicU64::new(0));
    if args.quiet {
        let t = total.clone();
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                let now = t.load(Ordering::Relaxed);
                if now != last {
                    println!("spans received: {now}");
                    last = now;
                }
            }
        });
    }
    loop {
        let (stream, _) = listener.accept().await?;
        let (total, quiet) = (total.clone(), args.quiet);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let total = total.clone();
                async move { Ok::<_, std::convert::Infallible>(receive(req, &total, quiet).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn receive(req: Request<Incoming>, total: &AtomicU64, quiet: bool) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode| {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = status;
        r
    };
    if req.method() != hyper::Method::POST || req.uri().path() != "/v1/traces" {
        return reply(StatusCode::NOT_FOUND);
    }
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return reply(StatusCode::BAD_REQUEST);
    };
    let Ok(export) = ExportTraceServiceRequest::decode(body) else { return reply(StatusCode::BAD_REQUEST) };
    let spans: Vec<_> = export.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans).collect();
    let n = spans.len() as u64;
    let sum = total.fetch_add(n, Ordering::Relaxed) + n;
    if !quiet {
        let first = spans.first().map(|s| (hex(&s.trace_id), s.name.as_str())).unwrap_or_default();
        println!("received {n} spans (total {sum}): trace {} {}", first.0, first.1);
    }
    reply(StatusCode::OK)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
