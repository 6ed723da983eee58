//! Client of the proxy's admin socket: HTTP/1.1 over a unix socket (hyper + tokio `UnixStream`),
//! Kong's DB-less admin semantics (ARCHITECTURE.md, the admin socket):
//! - `POST /config?check_hash=1` → 201 `{"configuration_hash": ...}`, 304 when the proxy already
//!   runs that hash, 400 with Kong's `flattened_errors` when it rejects entities;
//! - `GET /status` → `{"configuration_hash": ...}` (32 zeros when the proxy has no config).
//!
//! One connection per request: pushes are rare (debounced) and the socket is local, so pooling
//! would only add state to get wrong after a proxy restart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use proxy_config::FlattenedError;
use serde::Deserialize;
use thiserror::Error;
use tokio::net::UnixStream;

/// Why a request to the proxy failed.
#[derive(Debug, Error)]
pub enum PushError {
    #[error("connecting to {path}: {source}")]
    Connect { path: PathBuf, source: std::io::Error },
    #[error("HTTP exchange with the proxy failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("building the request: {0}")]
    Request(#[from] http::Error),
    #[error("no answer from the proxy within {0:?}")]
    Timeout(Duration),
    #[error("the proxy rejected the config: {0}")]
    Rejected(FlattenedError),
    #[error("unexpected answer from the proxy: {status}: {body}")]
    Unexpected { status: u16, body: String },
}

impl PushError {
    /// KIC's `failure_reason` label: `conflict` (the proxy refused the config), `network`, `other`.
    pub fn failure_reason(&self) -> &'static str {
        match self {
            PushError::Rejected(_) => "conflict",
            PushError::Connect { .. } | PushError::Http(_) | PushError::Timeout(_) => "network",
            PushError::Request(_) | PushError::Unexpected { .. } => "other",
        }
    }
}

/// What a successful push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// 201: the proxy now runs the config with this hash.
    Applied { hash: String },
    /// 304: the proxy already ran it.
    Unchanged,
}

#[derive(Deserialize)]
struct HashBody {
    configuration_hash: String,
}

/// The admin socket client.
#[derive(Debug, Clone)]
pub struct AdminClient {
    socket: PathBuf,
    timeout: Duration,
}

impl AdminClient {
    pub fn new(socket: impl Into<PathBuf>, timeout: Duration) -> Self {
        AdminClient { socket: socket.into(), timeout }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `POST /config?check_hash=1` with a JSON config.
    pub async fn push(&self, body: Bytes) -> Result<PushOutcome, PushError> {
        let req = Request::builder()
            .method(Method::POST)
            .uri("/config?check_hash=1")
            .header(http::header::HOST, "localhost")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))?;
        let (status, body) = self.exchange(req).await?;
        match status {
            StatusCode::CREATED | StatusCode::OK => {
                let hash = serde_json::from_slice::<HashBody>(&body).map(|b| b.configuration_hash).unwrap_or_default();
                Ok(PushOutcome::Applied { hash })
            }
            StatusCode::NOT_MODIFIED => Ok(PushOutcome::Unchanged),
            StatusCode::BAD_REQUEST => match serde_json::from_slice::<FlattenedError>(&body) {
                Ok(e) => Err(PushError::Rejected(e)),
                Err(_) => Err(unexpected(status, &body)),
            },
            _ => Err(unexpected(status, &body)),
        }
    }

    /// `GET /status`: the hash of the config the proxy runs.
    pub async fn status(&self) -> Result<String, PushError> {
        let req = Request::builder()
            .method(Method::GET)
            .uri("/status")
            .header(http::header::HOST, "localhost")
            .body(Full::new(Bytes::new()))?;
        let (status, body) = self.exchange(req).await?;
        if status != StatusCode::OK {
            return Err(unexpected(status, &body));
        }
        serde_json::from_slice::<HashBody>(&body).map(|b| b.configuration_hash).map_err(|_| unexpected(status, &body))
    }

    async fn exchange(&self, req: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), PushError> {
        let fut = async {
            let stream = UnixStream::connect(&self.socket)
                .await
                .map_err(|source| PushError::Connect { path: self.socket.clone(), source })?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            let driver = tokio::spawn(conn);
            let result = async {
                let resp = sender.send_request(req).await?;
                let status = resp.status();
                let body = resp.into_body().collect().await?.to_bytes();
                Ok::<_, PushError>((status, body))
            }
            .await;
            driver.abort();
            result
        };
        tokio::time::timeout(self.timeout, fut).await.map_err(|_| PushError::Timeout(self.timeout))?
    }
}

fn unexpected(status: StatusCode, body: &[u8]) -> PushError {
    let text = String::from_utf8_lossy(body);
    let body: String = text.chars().take(512).collect();
    PushError::Unexpected { status: status.as_u16(), body }
}
