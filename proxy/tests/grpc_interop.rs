//! The gRPC project's interop test client and server (grpc-go's `interop/client` and
//! `interop/server`, pinned in peers/go.mod, built by peers/install.sh) through the real
//! `sluice-proxy` binary: every case the client offers that a proxy can carry, over h2c and TLS on
//! the client side, to a `grpc` (h2c) and a `grpcs` (TLS, verified) upstream. The client exits
//! non-zero on any deviation from the interop spec (messages, sizes, status codes and messages,
//! echoed metadata and trailers, cancellations, deadlines).
//!
//! Not run, because no proxy could make them pass or the Go client lacks them: the GCP auth cases
//! (`compute_engine_creds`, `service_account_creds`, `jwt_token_creds`, `per_rpc_creds`,
//! `oauth2_auth_token`, `google_default_credentials`, `compute_engine_channel_credentials`) need
//! Google Cloud credentials; `pick_first_unary` checks the client's own load balancing across
//! several resolved server addresses (and needs a `server_id` the Go server never fills); the
//! `*_compressed_*` cases exist only in the C++ and Java clients, not in grpc-go's.

mod common;
mod peers;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::ca_and_leaf;
use peers::{report, tool, write, ProxyProcess};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The cases of grpc-go's interop client a proxy can carry, in the client's order.
const CASES: &[&str] = &[
    "empty_unary",
    "large_unary",
    "client_streaming",
    "server_streaming",
    "ping_pong",
    "empty_stream",
    "timeout_on_sleeping_server",
    "cancel_after_begin",
    "cancel_after_first_response",
    "status_code_and_message",
    "special_status_message",
    "custom_metadata",
    "unimplemented_method",
    "unimplemented_service",
    "rpc_soak",
    "channel_soak",
    "orca_per_rpc",
    "orca_oob",
];

/// The name the proxy's TLS listener presents to the client.
const FRONT_NAME: &str = "interop.sluice.test";
/// The name of the grpcs upstream, which the proxy verifies.
const BACK_NAME: &str = "interop.backend.test";
/// As upstream's interop_test.sh: the LB policy the ORCA cases need (it reads the ORCA reports).
const SERVICE_CONFIG: &str = r#"{"loadBalancingConfig":[{"test_backend_metrics_load_balancer":{}}]}"#;

fn grpc_module() -> &'static str {
    "google.golang.org/grpc"
}

/// A running interop server; `port` is where it listens.
struct Server {
    _child: Child,
    port: u16,
}

/// Starts the interop server on a port of the kernel's choosing, with TLS when given (cert, key)
/// paths; returns once it logged its address. It has no address flag and listens on every
/// address (`:0`); only the proxy, over loopback, connects to it.
async fn server(tls: Option<(&str, &str)>) -> Server {
    let mut cmd = Command::new(tool("grpc-interop", grpc_module(), "grpc-interop-server"));
    cmd.arg("--port=0").env("GRPC_GO_LOG_SEVERITY_LEVEL", "info");
    if let Some((cert, key)) = tls {
        cmd.args(["--use_tls", &format!("--tls_cert_file={cert}"), &format!("--tls_key_file={key}")]);
    }
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // "... interop server listening on [::]:41235"
    let port = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some((_, addr)) = line.split_once("interop server listening on ") {
                return addr.trim().rsplit(':').next().unwrap().parse::<u16>().unwrap();
            }
        }
        panic!("the interop server exited before it listened");
    })
    .await
    .expect("the interop server logged no address in 30 s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Server { _child: child, port }
}

/// The client's TLS settings: the CA file that signed the proxy's certificate.
#[derive(Clone, Copy)]
enum ClientSide<'a> {
    H2c,
    Tls { ca_file: &'a str },
}

/// Runs one case; Err(the client's output) when it failed.
async fn case(port: u16, side: ClientSide<'_>, test_case: &str) -> Result<(), String> {
    let mut cmd = Command::new(tool("grpc-interop", grpc_module(), "grpc-interop-client"));
    cmd.args([
        "--server_host=127.0.0.1".to_string(),
        format!("--server_port={port}"),
        format!("--test_case={test_case}"),
        format!("--service_config_json={SERVICE_CONFIG}"),
        // The soak cases: 5 large unary calls each; 5 s per call, not 1, on a shared machine.
        "--soak_iterations=5".into(),
        "--soak_per_iteration_max_acceptable_latency_ms=5000".into(),
        "--soak_overall_timeout_seconds=60".into(),
    ]);
    if let ClientSide::Tls { ca_file } = side {
        cmd.args([
            "--use_tls".to_string(),
            "--use_test_ca".into(),
            format!("--ca_file={ca_file}"),
            format!("--server_host_override={FRONT_NAME}"),
        ]);
    }
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.kill_on_drop(true).output())
        .await
        .map_err(|_| format!("{test_case}: no exit in 90 s"))?
        .expect("the interop client runs");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{test_case}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Every case, one after another, against one proxy port.
async fn cell(port: u16, side: ClientSide<'_>) -> Vec<Result<(), String>> {
    let mut results = Vec::new();
    for c in CASES {
        results.push(case(port, side, c).await);
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_interop_cases_pass_through_the_proxy_h2c_and_tls_to_grpc_and_grpcs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The proxy's certificate for the client, and the grpcs upstream's, from two CAs.
    let (front_ca, front_cert, front_key) = ca_and_leaf(&[FRONT_NAME]);
    let (back_ca, back_cert, back_key) = ca_and_leaf(&[BACK_NAME]);
    let front_ca_file = write(d, "front-ca.pem", &front_ca);
    let back_cert_file = write(d, "back-cert.pem", &back_cert);
    let back_key_file = write(d, "back-key.pem", &back_key);

    let (plain, tls) = tokio::join!(server(None), server(Some((&back_cert_file, &back_key_file))));
    let certificates = format!(
        "certificates:\n- cert: {}\n  key: {}\n  snis: [{FRONT_NAME}]\n",
        serde_json::to_string(&front_cert).unwrap(),
        serde_json::to_string(&front_key).unwrap()
    );
    let route = "  routes:\n  - name: interop\n    protocols: [grpc, grpcs]\n    paths: ['/']\n";
    let grpc = format!(
        "_format_version: '3.0'\nservices:\n- name: interop\n  protocol: grpc\n  host: 127.0.0.1\n  port: {}\n{route}{certificates}",
        plain.port
    );
    let grpcs = format!(
        "_format_version: '3.0'\nservices:\n- name: interop\n  protocol: grpcs\n  host: {BACK_NAME}\n  port: 443\n  tls_verify: true\n  ca_certificates: [11111111-1111-4111-8111-111111111111]\n{route}upstreams:\n- name: {BACK_NAME}\n  targets:\n  - target: 127.0.0.1:{}\nca_certificates:\n- id: 11111111-1111-4111-8111-111111111111\n  cert: {}\n{certificates}",
        tls.port,
        serde_json::to_string(&back_ca).unwrap()
    );
    let listen = "127.0.0.1:0 http2, 127.0.0.1:0 http2 ssl";
    let (to_grpc, to_grpcs) =
        tokio::join!(ProxyProcess::start(&grpc, listen, &[]), ProxyProcess::start(&grpcs, listen, &[]));

    let tls_side = ClientSide::Tls { ca_file: &front_ca_file };
    let start = Instant::now();
    let cells = tokio::join!(
        cell(to_grpc.addrs[0].port(), ClientSide::H2c),
        cell(to_grpc.addrs[1].port(), tls_side),
        cell(to_grpcs.addrs[0].port(), ClientSide::H2c),
        cell(to_grpcs.addrs[1].port(), tls_side),
    );
    let cells = [cells.0, cells.1, cells.2, cells.3];
    let seconds = start.elapsed().as_secs_f64();

    let mut table = String::new();
    let mut failures = Vec::new();
    let mut passed = 0;
    for (i, name) in CASES.iter().enumerate() {
        table.push_str(&format!("| `{name}` |"));
        for cell in &cells {
            match &cell[i] {
                Ok(_) => {
                    passed += 1;
                    table.push_str(" pass |");
                }
                Err(e) => {
                    failures.push(e.clone());
                    table.push_str(" **FAIL** |");
                }
            }
        }
        table.push('\n');
    }
    println!("grpc interop: {passed} of {} passed in {seconds:.1} s\n{table}", CASES.len() * 4);
    report("grpc-interop.md", &format!("{table}\n{passed} of {} passed in {seconds:.1} s.\n", CASES.len() * 4));
    assert!(failures.is_empty(), "{} interop runs failed:\n{}", failures.len(), failures.join("\n"));
}
