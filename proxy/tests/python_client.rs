//! gRPC through the proxy with grpcio, the Python client users run: the four call shapes over
//! h2c and over TLS, and a client deadline. Needs python3 with grpcio and grpcio-tools
//! (`make test` installs them); the test fails loudly, never skips, when they are missing.

mod common;
#[path = "../../demo/tests/support/grpc_shapes.rs"]
mod grpc_shapes;

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use common::*;
use grpc_shapes::assert_all_shapes;
use sluice_demo::{methods, spawn, BackendOptions};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../demo/python/grpc_shapes.py")
}

fn require_grpcio() {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import grpc, grpc_tools"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "python3 with grpcio and grpcio-tools is required: run `make deps` (pip install grpcio grpcio-tools)");
}

async fn python(args: &[String]) -> Output {
    tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("python3").args(args).kill_on_drop(true).output(),
    )
    .await
    .expect("python finished in time")
    .expect("python runs")
}

#[tokio::test]
async fn grpcio_four_shapes_through_the_proxy_over_h2c_and_tls() {
    require_grpcio();
    let b = spawn(BackendOptions::named("g1")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2, 127.0.0.1:0 http2 ssl", &[]).await;
    let (ca, cert, key) = ca_and_leaf(&["grpc.example.com"]);
    let certs = certificates_yaml(&[(&cert, &key, "grpc.example.com")]);
    p.push_ok(&format!("{}{certs}", grpc_config(b.addr()))).await;

    let plain = python(&[script().display().to_string(), p.addr(0).to_string()]).await;
    assert_all_shapes(&plain);

    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, &ca).unwrap();
    let tls = python(&[
        script().display().to_string(),
        "--tls".into(),
        "--ca".into(),
        ca_path.display().to_string(),
        "--authority".into(),
        "grpc.example.com".into(),
        p.addr(1).to_string(),
    ])
    .await;
    assert_all_shapes(&tls);
    // The calls really went through the proxy to the backend.
    assert!(b.stats().started(methods::BIDI_HELLO) >= 2);
}

#[tokio::test]
async fn grpcio_200ms_deadline_on_5s_call_is_deadline_exceeded_and_upstream_cancelled() {
    require_grpcio();
    let b = spawn(BackendOptions::named("g1")).await.unwrap();
    let p = TestProxy::start("127.0.0.1:0 http2", &[]).await;
    p.push_ok(&grpc_config(b.addr())).await;
    let code = format!(
        r#"
import sys, tempfile, time
sys.path.insert(0, {dir:?})
import grpc, grpc_shapes
out = tempfile.mkdtemp()
grpc_shapes.generate_stubs(out)
import hello_pb2, hello_pb2_grpc
stub = hello_pb2_grpc.HelloServiceStub(grpc.insecure_channel({target:?}))
stub.SayHello(hello_pb2.HelloRequest(greeting="warm"), timeout=5)
t0 = time.monotonic()
try:
    stub.SayHello(hello_pb2.HelloRequest(greeting="slow"), timeout=0.2, metadata=[("x-delay-ms", "5000")])
    print("unexpected success")
except grpc.RpcError as e:
    print(e.code().name, int((time.monotonic() - t0) * 1000))
"#,
        dir = script().parent().unwrap().display().to_string(),
        target = p.addr(0).to_string()
    );
    let t0 = Instant::now();
    let out = python(&["-c".into(), code]).await;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let (name, ms) = stdout.split_once(' ').unwrap_or_else(|| panic!("output: {stdout}"));
    assert_eq!(name, "DEADLINE_EXCEEDED");
    let ms: u64 = ms.parse().unwrap();
    assert!(ms < 300, "deadline took {ms} ms");
    let stats = b.stats();
    tokio::time::timeout(Duration::from_secs(2), async {
        while stats.cancelled(methods::SAY_HELLO) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the upstream saw the cancel");
    assert!(t0.elapsed() < Duration::from_secs(60));
}
