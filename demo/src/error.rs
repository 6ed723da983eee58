//! Errors of the demo library: starting a backend, loading TLS material, and running a CLI call.

use std::net::SocketAddr;

/// Why the demo backend or client could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("invalid TLS material: {0}")]
    Tls(String),
    #[error("server task ended: {0}")]
    ServerTask(String),
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection service: {0}")]
    Reflection(String),
    #[error("invalid argument: {0}")]
    Usage(String),
    #[error("certificate generation: {0}")]
    Certificate(#[from] rcgen::Error),
}
