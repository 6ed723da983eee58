//! The two binaries as a user runs them: `sluice-grpc-call` against an in-process backend (every shape, list,
//! health, knobs, TLS, errors and exit codes), and `sluice-demo-backend` as a process (readiness line, TLS files,
//! clean exit on SIGTERM).

use std::process::Output;
use std::time::Duration;

use sluice_demo::{methods, self_signed, spawn, Backend, BackendOptions};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const CALL: &str = env!("CARGO_BIN_EXE_sluice-grpc-call");
const BACKEND: &str = env!("CARGO_BIN_EXE_sluice-demo-backend");
const LIMIT: Duration = Duration::from_secs(60);

async fn grpc_call(args: &[&str]) -> Output {
    let run = Command::new(CALL).args(args).kill_on_drop(true).output();
    tokio::time::timeout(LIMIT, run).await.expect("sluice-grpc-call finished in time").expect("run sluice-grpc-call")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_ok(output: &Output) -> String {
    assert!(output.status.success(), "exit {:?}, stderr: {}", output.status, stderr(output));
    stdout(output)
}

async fn backend(name: &str) -> (Backend, String) {
    let backend = spawn(BackendOptions::named(name)).await.expect("spawn");
    let addr = backend.addr().to_string();
    (backend, addr)
}

#[tokio::test]
async fn every_shape_prints_compact_json_lines() {
    let (backend, addr) = backend("cli").await;
    let out = grpc_call(&[
        "--plaintext",
        "--authority",
        "example.com",
        &addr,
        "hello.HelloService/SayHello",
        r#"{"greeting":"Kong"}"#,
    ])
    .await;
    assert_eq!(assert_ok(&out), "{\"reply\":\"hello Kong\"}\n");
    let seen = backend.stats().last_request(methods::SAY_HELLO).expect("seen");
    assert_eq!(seen.authority.as_deref(), Some("example.com"));

    let out =
        grpc_call(&["-H", "x-reply-count: 2", &addr, "hello.HelloService/LotsOfReplies", r#"{"greeting":"s"}"#]).await;
    assert_eq!(assert_ok(&out), "{\"reply\":\"hello s #1\"}\n{\"reply\":\"hello s #2\"}\n");

    let out = grpc_call(&[&addr, "hello.HelloService/LotsOfGreetings", r#"[{"greeting":"a"},{"greeting":"b"}]"#]).await;
    assert_eq!(assert_ok(&out), "{\"reply\":\"hello a,b\"}\n");

    let out = grpc_call(&[&addr, "/hello.HelloService/BidiHello", r#"[{"greeting":"x"},{"greeting":"y"}]"#]).await;
    assert_eq!(assert_ok(&out), "{\"reply\":\"hello x\"}\n{\"reply\":\"hello y\"}\n");

    let out = grpc_call(&[&addr, "echo.Echo.EchoV2", r#"{"message":"m","payload":"AQID"}"#]).await;
    assert_eq!(
        assert_ok(&out),
        "{\"message\":\"m\",\"backend\":\"cli\",\"payload\":\"AQID\",\"method\":\"/echo.Echo/EchoV2\"}\n"
    );

    let out = grpc_call(&[&addr, "com.example.User/Login", r#"{"username":"ada"}"#]).await;
    assert_eq!(assert_ok(&out), "{\"message\":\"hello ada\",\"backend\":\"cli\"}\n");

    let out = grpc_call(&[&addr, "grpc.health.v1.Health/Check", r#"{"service":"hello.HelloService"}"#]).await;
    assert_eq!(assert_ok(&out), "{\"status\":\"SERVING\"}\n");
}

#[tokio::test]
async fn list_uses_reflection() {
    let (_backend, addr) = backend("list").await;
    let out = grpc_call(&["--plaintext", &addr, "list"]).await;
    let listed = assert_ok(&out);
    let names: Vec<&str> = listed.lines().collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    for expected in ["com.example.User", "echo.Echo", "grpc.health.v1.Health", "hello.HelloService"] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
}

#[tokio::test]
async fn errors_print_code_and_exit_1() {
    let (_backend, addr) = backend("err").await;
    let out = grpc_call(&["-H", "x-fail-code: 7", &addr, "hello.HelloService/SayHello", "{}"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).trim(), "ERROR: code=PermissionDenied message=failed on purpose");
    assert!(stdout(&out).is_empty());

    let out =
        grpc_call(&["--timeout-ms", "200", "-H", "x-delay-ms: 20000", &addr, "hello.HelloService/SayHello"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("ERROR: code=DeadlineExceeded"), "{}", stderr(&out));

    // A port nobody listens on: bind one, then free it.
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").to_string();
    let out = grpc_call(&[&free, "hello.HelloService/SayHello"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("ERROR: code=Unavailable"), "{}", stderr(&out));

    let out = grpc_call(&[&addr, "nope.Nope/Nothing"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = grpc_call(&[&addr, "hello.HelloService/SayHello", "{not json"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[tokio::test]
async fn verbose_shows_backend_name_echoes_and_trailers() {
    let (_backend, addr) = backend("verbose").await;
    let out = grpc_call(&["-v", "-H", "x-echo-id: 42", &addr, "hello.HelloService/LotsOfReplies"]).await;
    assert_ok(&out);
    let err = stderr(&out);
    for line in ["header: x-backend-name: verbose", "header: x-echo-id: 42", "trailer: x-trailer-echo-id: 42"] {
        assert!(err.lines().any(|l| l == line), "{line:?} in {err}");
    }
}

#[tokio::test]
async fn tls_with_ca_insecure_and_wrong_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = self_signed(&["grpc.example.com"]);
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &cert).expect("write ca");
    let ca = ca.to_str().expect("utf-8 path");
    let backend = spawn(BackendOptions::named("tls").with_tls(cert, key)).await.expect("spawn");
    let addr = backend.addr().to_string();
    let greet = ["hello.HelloService/SayHello", r#"{"greeting":"t"}"#];

    let out = grpc_call(&[&["--tls", "--ca", ca, "--authority", "grpc.example.com", &addr][..], &greet].concat()).await;
    assert_eq!(assert_ok(&out), "{\"reply\":\"hello t\"}\n");
    let out =
        grpc_call(&[&["--tls", "--ca", ca, "--servername", "grpc.example.com", &addr][..], &greet].concat()).await;
    assert_ok(&out);
    let out = grpc_call(&[&["--tls", "--insecure", &addr][..], &greet].concat()).await;
    assert_ok(&out);
    // The certificate does not name 127.0.0.1: verification must fail.
    let out = grpc_call(&[&["--tls", "--ca", ca, &addr][..], &greet].concat()).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("ERROR: code=Unavailable"), "{}", stderr(&out));
    // Plaintext to a TLS port fails too.
    let out = grpc_call(&[&["--plaintext", &addr][..], &greet].concat()).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

type StdoutLines = tokio::io::Lines<BufReader<tokio::process::ChildStdout>>;

/// Starts the backend binary and returns it with the address from its `listening on` line and the rest of stdout.
async fn start_backend_bin(args: &[&str]) -> (tokio::process::Child, String, StdoutLines) {
    let mut child = Command::new(BACKEND)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start sluice-demo-backend");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(LIMIT, lines.next_line())
        .await
        .expect("ready line in time")
        .expect("read stdout")
        .expect("one line");
    let addr = line.strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected line {line:?}")).to_owned();
    (child, addr, lines)
}

/// SIGTERM, then a clean exit, and nothing printed after the ready line.
async fn terminate(mut child: tokio::process::Child, mut lines: StdoutLines) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill -TERM");
    assert!(status.success());
    let exit = tokio::time::timeout(LIMIT, child.wait()).await.expect("exited in time").expect("wait");
    assert!(exit.success(), "clean exit on SIGTERM, got {exit:?}");
    let rest = tokio::time::timeout(LIMIT, lines.next_line()).await.expect("stdout closed").expect("read");
    assert_eq!(rest, None, "exactly one line on stdout");
}

#[tokio::test]
async fn backend_binary_announces_serves_and_stops_on_sigterm() {
    let (child, addr, lines) = start_backend_bin(&["--listen", "127.0.0.1:0", "--name", "bin-1"]).await;
    let out = grpc_call(&[&addr, "echo.Echo/Echo", r#"{"message":"hi"}"#]).await;
    assert_eq!(assert_ok(&out), "{\"message\":\"hi\",\"backend\":\"bin-1\",\"method\":\"/echo.Echo/Echo\"}\n");
    terminate(child, lines).await;
    let out = grpc_call(&[&addr, "echo.Echo/Echo"]).await;
    assert_eq!(out.status.code(), Some(1), "backend gone after SIGTERM");
}

#[tokio::test]
async fn backend_binary_serves_tls_from_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = self_signed(&["localhost"]);
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_path, cert).expect("write cert");
    std::fs::write(&key_path, key).expect("write key");
    let (cert_path, key_path) = (cert_path.to_str().expect("utf-8"), key_path.to_str().expect("utf-8"));
    let (child, addr, lines) =
        start_backend_bin(&["--listen", "127.0.0.1:0", "--tls-cert", cert_path, "--tls-key", key_path]).await;
    let out =
        grpc_call(&["--tls", "--ca", cert_path, "--servername", "localhost", &addr, "hello.HelloService/SayHello"])
            .await;
    assert_eq!(assert_ok(&out), "{\"reply\":\"hello \"}\n");
    terminate(child, lines).await;
}

#[tokio::test]
async fn backend_binary_rejects_a_missing_key() {
    let out = tokio::time::timeout(LIMIT, Command::new(BACKEND).args(["--tls-cert", "/nonexistent"]).output())
        .await
        .expect("in time")
        .expect("run");
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no listening line");
}
