//! `demo/python/grpc_shapes.py` (grpcio, the client users run) against the demo backend, over h2c and TLS: proves
//! the backend interoperates with the C-core gRPC stack for all four call shapes with 1,000-message streams.
//! Installs grpcio and grpcio-tools with pip when they are missing, and fails with a clear message if that fails.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use sluice_demo::{self_signed, spawn, BackendOptions};

#[path = "support/grpc_shapes.rs"]
mod grpc_shapes;
use grpc_shapes::assert_all_shapes;

const LIMIT: Duration = Duration::from_secs(180);

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python").join("grpc_shapes.py")
}

fn python_has_grpc() -> bool {
    Command::new("python3")
        .args(["-c", "import grpc, grpc_tools"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// python3 with grpcio and grpcio-tools, installed once per test binary if absent.
fn ensure_python() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        match Command::new("python3").arg("--version").output() {
            Ok(o) if o.status.success() => {}
            _ => return Err("python3 is not installed: the grpcio interop test needs it".into()),
        }
        if python_has_grpc() {
            return Ok(());
        }
        let pip = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "grpcio", "grpcio-tools"])
            .output()
            .map_err(|e| format!("cannot run pip: {e}"))?;
        if !pip.status.success() || !python_has_grpc() {
            return Err(format!(
                "grpcio/grpcio-tools missing and `python3 -m pip install grpcio grpcio-tools` failed: {}",
                String::from_utf8_lossy(&pip.stderr)
            ));
        }
        Ok(())
    });
    if let Err(message) = ready {
        panic!("{message}");
    }
}

async fn run_script(args: Vec<String>) -> Output {
    let run = tokio::process::Command::new("python3").arg(script()).args(args).kill_on_drop(true).output();
    tokio::time::timeout(LIMIT, run).await.expect("grpc_shapes.py finished in time").expect("run python3")
}

#[tokio::test]
async fn grpcio_four_shapes_over_h2c() {
    ensure_python();
    let backend = spawn(BackendOptions::named("py")).await.expect("spawn");
    let output = run_script(vec![backend.addr().to_string(), "--authority".into(), "grpc.example.com".into()]).await;
    assert_all_shapes(&output);
    let seen = backend.stats().last_request(sluice_demo::methods::BIDI_HELLO).expect("bidi seen");
    assert_eq!(seen.authority.as_deref(), Some("grpc.example.com"));
}

#[tokio::test]
async fn grpcio_four_shapes_over_tls() {
    ensure_python();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = self_signed(&["grpc.example.com"]);
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &cert).expect("write ca");
    let backend = spawn(BackendOptions::named("py-tls").with_tls(cert, key)).await.expect("spawn");
    let args = vec![
        "--tls".into(),
        "--ca".into(),
        ca.to_string_lossy().into_owned(),
        "--authority".into(),
        "grpc.example.com".into(),
        backend.addr().to_string(),
    ];
    assert_all_shapes(&run_script(args).await);
}

#[tokio::test]
async fn grpcio_script_fails_loudly_without_a_server() {
    ensure_python();
    // Nothing listens on the freed port: the first shape must fail and the script must exit non-zero.
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").to_string();
    let output = run_script(vec![free, "--timeout".into(), "5".into()]).await;
    assert!(!output.status.success(), "script succeeded against nothing");
    assert!(String::from_utf8_lossy(&output.stderr).contains("FAILED: code=UNAVAILABLE"));
}
