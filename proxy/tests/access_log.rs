//! The access log (`KONG_PROXY_ACCESS_LOG`): one JSON line per request or gRPC call with client,
//! route, service, upstream target, HTTP status, gRPC status, latencies and bytes; `off` writes
//! nothing anywhere.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::Value;
use sluice_demo::hello::hello_service_client::HelloServiceClient;
use sluice_demo::hello::HelloRequest;
use sluice_demo::{spawn, BackendOptions};

/// Waits (bounded) until the log file has `n` lines, then returns them parsed.
async fn lines(path: &Path, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= n && text.ends_with('\n') {
            return text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
        }
        assert!(tokio::time::Instant::now() < deadline, "expected {n} lines, have:\n{text}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

fn assert_client(v: &Value) {
    let client: SocketAddr = v["client"].as_str().unwrap().parse().unwrap();
    assert_eq!(client.ip().to_string(), "127.0.0.1", "{v}");
    assert_ne!(client.port(), 0, "{v}");
}

fn latency(v: &Value, field: &str) -> f64 {
    let ms = v[field].as_f64().unwrap_or_else(|| panic!("{field} in {v}"));
    assert!(ms > 0.0 && ms < 10_000.0, "{field} {ms} in {v}");
    ms
}

#[tokio::test]
async fn one_json_line_per_request_and_call() {
    let web = echo_http("web").await;
    let grpc = spawn(BackendOptions::named("g1")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let p = TestProxy::start("127.0.0.1:0 http2", &[("KONG_PROXY_ACCESS_LOG", log.to_str().unwrap())]).await;
    p.push_ok(&basic_config(web.addr, grpc.addr())).await;

    let got = h1(p.addr(0), get("/some/page?x=1", "shop.example")).await;
    assert_eq!(got.status, 200);
    let reply = HelloServiceClient::new(grpc_channel(p.addr(0), "api.example").await)
        .say_hello(HelloRequest { greeting: "x".into() })
        .await
        .unwrap();
    assert_eq!(reply.into_inner().reply, "hello x");
    let mut logged = lines(&log, 2).await;
    // The writer is FIFO: a third request's line arriving proves no duplicate of the first two.
    let mut client = HelloServiceClient::new(grpc_channel(p.addr(0), "api.example").await);
    client.say_hello(HelloRequest { greeting: "y".into() }).await.unwrap();
    let all = lines(&log, 3).await;
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(&all[..2], &logged[..]);
    logged.sort_by_key(|v| v["protocol"].as_str().unwrap().to_string());
    let (grpc_line, http_line) = (&logged[0], &logged[1]);

    let common: BTreeSet<&str> = [
        "time",
        "client",
        "method",
        "host",
        "path",
        "protocol",
        "route",
        "service",
        "upstream",
        "status",
        "latency_ms",
        "upstream_latency_ms",
        "bytes_in",
        "bytes_out",
    ]
    .into();
    assert_eq!(keys(http_line), common, "{http_line}");
    assert_client(http_line);
    assert_eq!(http_line["method"], "GET");
    assert_eq!(http_line["host"], "shop.example");
    assert_eq!(http_line["path"], "/some/page");
    assert_eq!(http_line["protocol"], "http");
    assert_eq!(http_line["route"], "web");
    assert_eq!(http_line["service"], "web");
    assert_eq!(http_line["upstream"], web.addr.to_string());
    assert_eq!(http_line["status"], 200);
    assert_eq!(http_line["bytes_in"], 0);
    assert_eq!(http_line["bytes_out"], got.body.len());
    assert!(latency(http_line, "latency_ms") >= latency(http_line, "upstream_latency_ms"), "{http_line}");
    assert_eq!(http_line["time"].as_str().unwrap().len(), 24, "{http_line}");

    let mut with_grpc = common.clone();
    with_grpc.insert("grpc_status");
    assert_eq!(keys(grpc_line), with_grpc, "{grpc_line}");
    assert_client(grpc_line);
    assert_eq!(grpc_line["method"], "POST");
    assert_eq!(grpc_line["host"], "api.example");
    assert_eq!(grpc_line["path"], "/hello.HelloService/SayHello");
    assert_eq!(grpc_line["protocol"], "grpc");
    assert_eq!(grpc_line["route"], "grpc");
    assert_eq!(grpc_line["service"], "grpc");
    assert_eq!(grpc_line["upstream"], grpc.addr().to_string());
    assert_eq!(grpc_line["status"], 200);
    assert_eq!(grpc_line["grpc_status"], 0);
    // 5-byte gRPC frame header + the protobuf message, each way.
    assert_eq!(grpc_line["bytes_in"], 8);
    assert_eq!(grpc_line["bytes_out"], 14);
    assert!(latency(grpc_line, "latency_ms") >= latency(grpc_line, "upstream_latency_ms"), "{grpc_line}");
}

#[tokio::test]
async fn unrouted_grpc_call_logs_its_grpc_status_and_error() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let p = TestProxy::start("127.0.0.1:0 http2", &[("KONG_PROXY_ACCESS_LOG", log.to_str().unwrap())]).await;
    let err = HelloServiceClient::new(grpc_channel(p.addr(0), "api.example").await)
        .say_hello(HelloRequest { greeting: "x".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);
    let logged = lines(&log, 1).await;
    let v = &logged[0];
    assert_eq!(
        (&v["route"], &v["service"], &v["upstream"], &v["status"], &v["grpc_status"], &v["error"]),
        (
            &Value::from(""),
            &Value::from(""),
            &Value::from(""),
            &Value::from(200),
            &Value::from(12),
            &Value::from("no Route matched with those values")
        ),
        "{v}"
    );
    assert!(v.get("upstream_latency_ms").is_none(), "{v}");
}

#[tokio::test]
async fn off_writes_nothing() {
    let web = echo_http("web").await;
    let grpc = spawn(BackendOptions::named("g1")).await.unwrap();
    // The harness's default is KONG_PROXY_ACCESS_LOG=off; say it explicitly.
    let p = TestProxy::start("127.0.0.1:0 http2", &[("KONG_PROXY_ACCESS_LOG", "off")]).await;
    p.push_ok(&basic_config(web.addr, grpc.addr())).await;
    assert_eq!(h1(p.addr(0), get("/", "x")).await.status, 200);
    assert_eq!(h1(p.addr(0), get("/again", "x")).await.status, 200);
    // "off" is not a file name: nothing named so appears in the working directory, and the
    // proxy's own directory holds only its admin socket.
    assert!(!Path::new("off").exists());
    let files: Vec<String> = std::fs::read_dir(p.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["admin.sock"]);
}
