//! The mixed soak (`make soak` → soak/soak.sh): the real `sluice-proxy` binary under a
//! bounded mix of HTTP/1.1 keep-alive requests, h2c gRPC unary calls, gRPC server streams and
//! client streams, with a config push every 10 s (alternating two configs), for `SOAK_SECONDS`
//! (default 1800). The proxy's RSS is sampled every 5 s; the run fails on any error or when RSS
//! drifts by 5% or more between the end of warm-up (10% of the run, at least 30 s) and the end.
//! Ignored by default: run with `--ignored`, preferably on a release build.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use sluice_demo::echo::echo_client::EchoClient;
use sluice_demo::echo::EchoRequest;
use sluice_demo::hello::hello_service_client::HelloServiceClient;
use sluice_demo::hello::HelloRequest;
use sluice_demo::{spawn, BackendOptions};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_sluice-proxy");

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    err: AtomicU64,
}

impl Counts {
    fn record(&self, ok: bool, what: &str, detail: impl std::fmt::Display) {
        if ok {
            self.ok.fetch_add(1, Ordering::Relaxed);
        } else if self.err.fetch_add(1, Ordering::Relaxed) < 10 {
            eprintln!("soak: {what} error: {detail}");
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn config(http: SocketAddr, grpc: SocketAddr, generation: u64) -> String {
    // Alternate an extra route so every push really rebuilds the router.
    format!(
        "{}- name: extra\n  protocol: http\n  host: {}\n  port: {}\n  routes:\n  - name: extra-{}\n    paths: [\"/extra-{}\"]\n",
        basic_config(http, grpc),
        http.ip(),
        http.port(),
        generation % 2,
        generation % 2
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: run by soak/soak.sh"]
async fn mixed_soak() {
    let seconds: u64 = std::env::var("SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1800);
    let run = Duration::from_secs(seconds);
    let warmup = (run / 10).max(Duration::from_secs(30)).min(run / 2);
    let echo = echo_http("soak").await;
    let grpc = spawn(BackendOptions::named("soak")).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("admin.sock");
    let mut child = tokio::process::Command::new(BIN)
        .env_clear()
        .env("KONG_PROXY_LISTEN", "127.0.0.1:0 http2")
        .env("KONG_STATUS_LISTEN", "127.0.0.1:0")
        .env("SLUICE_ADMIN_SOCKET", &sock)
        .env("KONG_PROXY_ACCESS_LOG", "off")
        .env("KONG_NGINX_WORKER_PROCESSES", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr: SocketAddr = loop {
        let line = lines.next_line().await.unwrap().expect("proxy exited before it started");
        if line.contains("sluice-proxy started") {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            break v["fields"]["proxy"].as_str().unwrap().trim_matches(['[', ']']).parse().unwrap();
        }
    };
    tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            if l.contains("\"ERROR\"") || l.contains("\"WARN\"") {
                eprintln!("proxy: {l}");
            }
        }
    });
    let (status, body) = admin_request(&sock, "POST", "/config", Some(config(echo.addr, grpc.addr(), 0))).await;
    assert_eq!(status, 201, "{body}");

    let stop = Arc::new(AtomicBool::new(false));
    let (h1c, unary, streams, pushes) = (
        Arc::new(Counts::default()),
        Arc::new(Counts::default()),
        Arc::new(Counts::default()),
        Arc::new(Counts::default()),
    );
    let mut tasks = Vec::new();

    // HTTP/1.1 keep-alive: 4 connections, ~100 requests/s each.
    for _ in 0..4 {
        let (stop, c) = (stop.clone(), h1c.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut sender = None;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                if sender.is_none() {
                    let tcp = TcpStream::connect(addr).await.unwrap();
                    let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
                    tokio::spawn(conn);
                    sender = Some(s);
                }
                let Some(s) = sender.as_mut() else { continue };
                let req = http::Request::builder()
                    .uri("/soak")
                    .header("host", "example.com")
                    .body(Full::new(Bytes::from_static(b"ping")))
                    .unwrap();
                match s.send_request(req).await {
                    Ok(resp) => {
                        let status = resp.status();
                        let body = resp.into_body().collect().await;
                        c.record(status == 200 && body.is_ok(), "h1", status);
                    }
                    Err(e) => {
                        c.record(false, "h1", e);
                        sender = None;
                    }
                }
            }
        }));
    }
    // h2c gRPC unary: 2 channels, ~100 calls/s each.
    for _ in 0..2 {
        let (stop, c) = (stop.clone(), unary.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = EchoClient::new(grpc_channel(addr, "example.com").await);
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                i += 1;
                let r = client.echo(EchoRequest { message: format!("m{i}"), payload: vec![7; 256] }).await;
                match r {
                    Ok(r) => c.record(r.get_ref().message == format!("m{i}"), "unary", "wrong reply"),
                    Err(e) => c.record(false, "unary", e),
                }
            }
        }));
    }
    // gRPC streaming: 2 server streams (50 replies, 20 ms apart) and 1 client stream, looping.
    for k in 0..3 {
        let (stop, c) = (stop.clone(), streams.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = HelloServiceClient::new(grpc_channel(addr, "example.com").await);
            while !stop.load(Ordering::Relaxed) {
                if k < 2 {
                    let mut req = tonic::Request::new(HelloRequest { greeting: "s".into() });
                    req.metadata_mut().insert("x-reply-count", "50".parse().unwrap());
                    req.metadata_mut().insert("x-reply-interval-ms", "20".parse().unwrap());
                    match client.lots_of_replies(req).await {
                        Ok(s) => {
                            let mut s = s.into_inner();
                            let mut n = 0;
                            let mut failed = None;
                            while let Some(m) = s.next().await {
                                match m {
                                    Ok(_) => n += 1,
                                    Err(e) => {
                                        failed = Some(e);
                                        break;
                                    }
                                }
                            }
                            match failed {
                                Some(e) => c.record(false, "server stream", e),
                                None => c.record(n == 50, "server stream", format!("{n} of 50 messages")),
                            }
                        }
                        Err(e) => c.record(false, "server stream", e),
                    }
                } else {
                    let msgs = futures_util::stream::iter((0..100).map(|i| HelloRequest { greeting: format!("g{i}") }));
                    match client.lots_of_greetings(msgs).await {
                        Ok(r) => {
                            c.record(r.get_ref().reply.matches(',').count() == 99, "client stream", "lost messages")
                        }
                        Err(e) => c.record(false, "client stream", e),
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }

    let start = Instant::now();
    let mut samples: Vec<(u64, u64)> = Vec::new();
    let mut baseline = None;
    let mut next_push = start + Duration::from_secs(10);
    let mut generation = 0;
    while start.elapsed() < run {
        tokio::time::sleep(Duration::from_secs(5).min(run.saturating_sub(start.elapsed()))).await;
        if Instant::now() >= next_push {
            generation += 1;
            let (status, body) =
                admin_request(&sock, "POST", "/config", Some(config(echo.addr, grpc.addr(), generation))).await;
            pushes.record(status == 201, "push", format!("{status} {body}"));
            next_push += Duration::from_secs(10);
        }
        let rss = rss_kib(pid);
        samples.push((start.elapsed().as_secs(), rss));
        if baseline.is_none() && start.elapsed() >= warmup {
            baseline = Some(rss);
        }
        println!(
            "soak t={:>5}s rss={rss} KiB h1={}/{} unary={}/{} streams={}/{} pushes={}/{}",
            start.elapsed().as_secs(),
            h1c.ok.load(Ordering::Relaxed),
            h1c.err.load(Ordering::Relaxed),
            unary.ok.load(Ordering::Relaxed),
            unary.err.load(Ordering::Relaxed),
            streams.ok.load(Ordering::Relaxed),
            streams.err.load(Ordering::Relaxed),
            pushes.ok.load(Ordering::Relaxed),
            pushes.err.load(Ordering::Relaxed),
        );
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    let end = rss_kib(pid);
    let base = baseline.unwrap_or(end).max(1);
    let drift = (end as f64 - base as f64) / base as f64 * 100.0;
    let max = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let errors = h1c.err.load(Ordering::Relaxed)
        + unary.err.load(Ordering::Relaxed)
        + streams.err.load(Ordering::Relaxed)
        + pushes.err.load(Ordering::Relaxed);
    let summary = serde_json::json!({
        "seconds": seconds,
        "warmup_seconds": warmup.as_secs(),
        "rss_kib": { "baseline": base, "end": end, "max": max, "drift_percent": (drift * 100.0).round() / 100.0 },
        "ok": {
            "h1": h1c.ok.load(Ordering::Relaxed),
            "grpc_unary": unary.ok.load(Ordering::Relaxed),
            "grpc_streams": streams.ok.load(Ordering::Relaxed),
            "config_pushes": pushes.ok.load(Ordering::Relaxed),
        },
        "errors": errors,
    });
    println!("SOAK RESULT {summary}");
    let _ = child.start_kill();
    assert_eq!(errors, 0, "errors during the soak");
    assert!(drift < 5.0, "RSS drift {drift:.2}% (baseline {base} KiB, end {end} KiB)");
}
