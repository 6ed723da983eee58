//! `sluice-conformance`: the Gateway API conformance suite against sluice on a real
//! kube-apiserver (`make conformance`, scripts/conformance.sh).
//!
//! Starts etcd + kube-apiserver (`e2e::ControlPlane`), installs crds/ and manifests/, starts
//! `sluice-proxy` listening on the Gateway ports of the suite's manifests (80, 8080, 8090 plain,
//! 443 TLS) at a loopback address of its own, `sluice-controller` as the manifests'
//! ServiceAccount publishing that address in Gateway status, and the pod runner
//! (`e2e::podrunner`) for the suite's backends; then runs the suite binary built by
//! scripts/conformance-tools.sh with the GATEWAY-HTTP and GATEWAY-GRPC profiles (supported
//! features read from the GatewayClass status the controller writes) and writes its report.
//! Exits 0 only when every GRPCRoute core test ran and passed. Everything it starts it stops.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use e2e::install::{install_manifests, service_account_token, SLUICE_NAMESPACE};
use e2e::podrunner::{Config, Images, PodRunner};
use e2e::sluice::{start_controller, start_proxy};
use e2e::{ControlPlane, Kubectl};

/// The GRPCRoute tests of the suite's core (v1.5.1); each must run and pass.
const GRPC_CORE: &[&str] =
    &["GRPCExactMethodMatching", "GRPCRouteHeaderMatching", "GRPCRouteListenerHostnameMatching", "GRPCRouteWeight"];
/// Core HTTPRoute tests that are skipped, each for a feature sluice does not implement (listed
/// with the same reasons in docs/conformance.md); the suite reports them as skipped.
const SKIPPED: &[(&str, &str)] = &[
    (
        "HTTPRouteHTTPSListener",
        "an HTTPS listener without a hostname: listener certificates are attached by SNI, and there is no per-listener default certificate",
    ),
    ("HTTPRouteRedirectHostAndStatus", "the RequestRedirect filter is not implemented"),
];
/// The GatewayClass of manifests/21-gatewayclass.yaml.
const GATEWAY_CLASS: &str = "kong";
/// Gateway listener ports in the suite's manifests: plain HTTP ones, then the TLS one.
const HTTP_PORTS: &[u16] = &[80, 8080, 8090];
const HTTPS_PORT: u16 = 443;

/// Runs the Gateway API conformance suite against sluice.
#[derive(Debug, Clone, Parser)]
#[command(name = "sluice-conformance", version)]
struct Args {
    /// Where to write kubeconfigs, logs and the pods' files.
    #[arg(long, default_value = ".run/conformance")]
    dir: PathBuf,
    /// Directory holding sluice-proxy and sluice-controller.
    #[arg(long, default_value = "target/debug")]
    bin_dir: PathBuf,
    /// Directory holding conformance.test and echo-basic (scripts/conformance-tools.sh).
    #[arg(long)]
    suite_dir: PathBuf,
    /// The report (ConformanceReport YAML) to write.
    #[arg(long)]
    report: PathBuf,
    /// The project URL the report names (sluice has no published home yet).
    #[arg(long, default_value = "unpublished")]
    url: String,
    /// A per-test summary (Markdown) to write.
    #[arg(long)]
    summary: PathBuf,
    /// Further suite flags (e.g. --run-test=GRPCRouteWeight), after `--`.
    #[arg(last = true)]
    suite_args: Vec<String>,
}

/// A loopback address of this run's own (127.0.0.0/8 is all loopback on Linux), where every
/// Gateway port is free: the suite dials the Gateway's address at each listener's port.
fn gateway_address() -> anyhow::Result<Ipv4Addr> {
    let pid = std::process::id();
    for i in 0..64u32 {
        let n = pid.wrapping_add(i.wrapping_mul(7919));
        let addr = Ipv4Addr::new(127, 90 + (n >> 16 & 0x1f) as u8, (n >> 8) as u8, (n as u8).max(2));
        let free = HTTP_PORTS.iter().chain([&HTTPS_PORT]).all(|p| TcpListener::bind((addr, *p)).is_ok());
        if free {
            return Ok(addr);
        }
    }
    bail!("no loopback address with ports {HTTP_PORTS:?} and {HTTPS_PORT} free")
}

/// `--- PASS|FAIL|SKIP: TestConformance/<name>` lines of `go test -v`, by test name.
fn outcome(line: &str, results: &mut BTreeMap<String, String>) {
    let line = line.trim_start();
    for verdict in ["PASS", "FAIL", "SKIP"] {
        if let Some(rest) = line.strip_prefix(&format!("--- {verdict}: TestConformance/")) {
            let name = rest.split_whitespace().next().unwrap_or_default();
            // Subtests (TestConformance/<test>/<case>) count towards their test's line.
            if !name.contains('/') {
                results.insert(name.to_string(), verdict.to_string());
            }
        }
    }
}

/// Runs the suite, echoing and logging its output; returns each test's outcome.
fn run_suite(args: &Args, dir: &Path, kubeconfig: &Path) -> anyhow::Result<(bool, BTreeMap<String, String>)> {
    let report = std::path::absolute(&args.report)?;
    if let Some(parent) = report.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut child = Command::new(args.suite_dir.join("conformance.test"))
        .env("KUBECONFIG", kubeconfig)
        .args(["-test.run=^TestConformance$", "-test.v", "-test.timeout=90m"])
        .arg(format!("--gateway-class={GATEWAY_CLASS}"))
        .arg("--conformance-profiles=GATEWAY-HTTP,GATEWAY-GRPC")
        .args(["--organization=sluice", "--project=sluice"])
        .arg(format!("--url={}", args.url))
        .arg(format!("--version=v{}", env!("CARGO_PKG_VERSION")))
        .arg("--contact=sluice maintainers")
        .arg(format!("--report-output={}", report.display()))
        .arg(format!("--skip-tests={}", SKIPPED.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(",")))
        .args(&args.suite_args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting conformance.test (run scripts/conformance-tools.sh)")?;
    let mut log = std::fs::File::create(dir.join("suite.log"))?;
    let mut results = BTreeMap::new();
    for line in BufReader::new(child.stdout.take().context("suite stdout")?).lines() {
        let line = line?;
        println!("{line}");
        writeln!(log, "{line}")?;
        outcome(&line, &mut results);
    }
    let status = child.wait()?;
    Ok((status.success(), results))
}

/// The per-test table: outcome of every test the suite ran or skipped, with the reason of each
/// test skipped on purpose ([`SKIPPED`]).
fn summary(results: &BTreeMap<String, String>) -> String {
    let mut text = String::from("| test | result | reason |\n|------|--------|--------|\n");
    for (name, verdict) in results {
        let reason = SKIPPED.iter().find(|(n, _)| n == name).map_or("", |(_, why)| why);
        text.push_str(&format!("| {name} | {} | {reason} |\n", verdict.to_lowercase()));
    }
    text
}

async fn run(args: &Args) -> anyhow::Result<bool> {
    std::fs::create_dir_all(args.dir.join("pods")).with_context(|| format!("creating {}", args.dir.display()))?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let bin_dir = std::fs::canonicalize(&args.bin_dir)
        .with_context(|| format!("{} (build with cargo build --bins)", args.bin_dir.display()))?;
    let suite_dir = std::fs::canonicalize(&args.suite_dir)
        .with_context(|| format!("{} (run scripts/conformance-tools.sh)", args.suite_dir.display()))?;

    let cp = ControlPlane::start().await?;
    let kubeconfig = dir.join("kubeconfig");
    cp.write_kubeconfig(&kubeconfig, None)?;
    let kubectl = Kubectl::new(&kubeconfig, &dir)?;
    install_manifests(&kubectl).await?;
    let controller_kubeconfig = dir.join("controller.kubeconfig");
    cp.write_kubeconfig(&controller_kubeconfig, Some(&service_account_token(&kubectl).await?))?;

    let address = gateway_address()?;
    let mut listen: Vec<String> = HTTP_PORTS.iter().map(|p| format!("{address}:{p} http2")).collect();
    listen.push(format!("{address}:{HTTPS_PORT} http2 ssl"));
    let proxy = start_proxy(&bin_dir, &dir, &listen.join(", ")).await?;
    let controller = start_controller(&bin_dir, &dir, &controller_kubeconfig, &address.to_string())?;
    println!("sluice-conformance: Gateway address {address}, logs in {}", dir.display());
    // The suite reads the supported features from the GatewayClass status, which the controller
    // writes together with Accepted: wait for it, or the suite finds none and stops.
    kubectl
        .clone()
        .with_timeout(Duration::from_secs(130))
        .ok(&["wait", "--for=condition=Accepted", &format!("gatewayclass/{GATEWAY_CLASS}"), "--timeout=120s"])
        .await
        .context("waiting for the GatewayClass to be Accepted (see controller.log)")?;

    let images = Images {
        map: vec![
            ("/echo-basic:".into(), Some(suite_dir.join("echo-basic"))),
            // The suite's DNS server serves UDPRoute tests only, which sluice does not claim.
            ("/coredns/coredns:".into(), None),
        ],
    };
    let config = Config {
        node: "sluice-conformance".into(),
        images,
        dir: dir.join("pods"),
        skip_namespaces: vec![SLUICE_NAMESPACE.into()],
    };
    let runner = PodRunner::start(cp.kube_client().await?, config).await?;

    let run_args = Args { suite_dir, ..args.clone() };
    let (suite_ok, results) = tokio::task::spawn_blocking(move || run_suite(&run_args, &dir, &kubeconfig)).await??;
    std::fs::write(&args.summary, summary(&results)).with_context(|| format!("writing {}", args.summary.display()))?;

    // Stop what was started: the runner (its processes and namespaces), then sluice, then the
    // control plane.
    runner.stop().await;
    drop(controller);
    drop(proxy);
    drop(cp);

    let missing: Vec<&str> =
        GRPC_CORE.iter().copied().filter(|t| results.get(*t).map(String::as_str) != Some("PASS")).collect();
    println!(
        "sluice-conformance: suite {}; {} passed, {} failed, {} skipped; report {}",
        if suite_ok { "passed" } else { "failed" },
        results.values().filter(|v| *v == "PASS").count(),
        results.values().filter(|v| *v == "FAIL").count(),
        results.values().filter(|v| *v == "SKIP").count(),
        args.report.display()
    );
    if !missing.is_empty() {
        println!("sluice-conformance: GRPCRoute core tests not passed: {}", missing.join(", "));
    }
    Ok(missing.is_empty())
}

#[tokio::main]
async fn main() -> ExitCode {
    // kube's client logs every failed readiness poll of the starting API server as an error.
    let filter = tracing_subscriber::EnvFilter::new("info,kube_client=off");
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let args = Args::parse();
    match run(&args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("sluice-conformance: {e:#}");
            ExitCode::from(2)
        }
    }
}
