//! `sluice-grpc-call`: a small grpcurl for the demo protos (grpcurl cannot be installed here), used by `make demo`
//! and the end-to-end tests.
//!
//! ```text
//! sluice-grpc-call [--plaintext | --tls [--ca FILE] [--insecure]] [--servername SNI] [--authority HOST]
//!                  [-H 'k: v']... [--timeout-ms N] [-v] ADDR (METHOD [JSON] | list)
//! ```
//!
//! Prints each reply as one line of compact JSON on stdout. On a gRPC error prints
//! `ERROR: code=<Code> message=<msg>` on stderr and exits 1; bad usage exits 2.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use sluice_demo::grpc_call::{self, CallError, Options, Output, Target, TlsTarget};
use sluice_demo::tls::Verify;

#[derive(Parser, Debug)]
#[command(
    name = "sluice-grpc-call",
    version,
    about = "Call the demo gRPC services (hello, echo, user, health) with JSON, or list services via reflection",
    after_help = "Client streaming and bidi methods take a JSON array of messages. `ADDR list` lists services."
)]
struct Args {
    /// Plain HTTP/2 (h2c); the default.
    #[arg(long, conflicts_with = "tls")]
    plaintext: bool,
    /// HTTP/2 over TLS (ALPN h2); implied by --ca and --insecure.
    #[arg(long)]
    tls: bool,
    /// Trust this CA (PEM) instead of the bundled public roots.
    #[arg(long, value_name = "FILE", conflicts_with = "plaintext")]
    ca: Option<PathBuf>,
    /// Do not verify the server's certificate.
    #[arg(long, conflicts_with = "plaintext")]
    insecure: bool,
    /// TLS server name (SNI); defaults to the authority's host, else ADDR's host.
    #[arg(long, value_name = "SNI")]
    servername: Option<String>,
    /// The :authority to send (default ADDR).
    #[arg(long, value_name = "HOST")]
    authority: Option<String>,
    /// Request metadata, 'name: value' (repeatable; -bin names take base64).
    #[arg(short = 'H', long = "header", value_name = "'k: v'")]
    headers: Vec<String>,
    /// Deadline for the call (sent as grpc-timeout).
    #[arg(long, value_name = "N")]
    timeout_ms: Option<u64>,
    /// Print response headers and trailers to stderr.
    #[arg(short, long)]
    verbose: bool,
    /// host:port of the server or proxy.
    addr: String,
    /// Method, e.g. hello.HelloService/SayHello, or `list`.
    method: String,
    /// Request JSON: an object, or an array of objects for client streaming and bidi (`-` reads stdin).
    json: Option<String>,
}

async fn run(args: Args) -> Result<(), CallError> {
    let tls = if args.tls || args.ca.is_some() || args.insecure {
        let verify = match (&args.ca, args.insecure) {
            (_, true) => Verify::Insecure,
            (Some(path), false) => Verify::Ca(
                std::fs::read_to_string(path)
                    .map_err(|e| CallError::Usage(format!("cannot read {}: {e}", path.display())))?,
            ),
            (None, false) => Verify::WebRoots,
        };
        Some(TlsTarget { verify, servername: args.servername.clone() })
    } else {
        None
    };
    let target = Target { addr: args.addr.clone(), tls, authority: args.authority.clone() };
    let channel = grpc_call::channel(&target)?;
    let metadata = grpc_call::metadata(&args.headers)?;

    if args.method == "list" {
        let names = grpc_call::list_services(channel, metadata).await?;
        let mut stdout = std::io::stdout().lock();
        for name in names {
            let _ = writeln!(stdout, "{name}");
        }
        let _ = stdout.flush();
        return Ok(());
    }

    let json = match args.json.as_deref() {
        Some("-") => std::io::read_to_string(std::io::stdin())
            .map_err(|e| CallError::Usage(format!("cannot read stdin: {e}")))?,
        Some(json) => json.to_owned(),
        None => String::new(),
    };
    let options = Options { timeout: args.timeout_ms.map(Duration::from_millis), verbose: args.verbose };
    let mut print = |output: Output| match output {
        Output::Message(line) => {
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{line}");
            let _ = stdout.flush();
        }
        Output::Header(line) => eprintln!("header: {line}"),
        Output::Trailer(line) => eprintln!("trailer: {line}"),
    };
    grpc_call::call(channel, &args.method, &json, metadata, options, &mut print).await
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error @ CallError::Status(_)) => {
            eprintln!("{error}");
            ExitCode::from(1)
        }
        Err(CallError::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}
