//! The config API on a unix socket (never TCP): Kong DB-less semantics for `POST /config`
//! (validate all, then swap atomically; 201 + hash, 304 with `check_hash=1` when unchanged, 400 with
//! `flattened_errors` and the old config keeps serving), `GET /config` and `GET /status`.
//! The socket is created mode 0600 in a directory that is not world-writable, and each peer's uid
//! must be ours (or root's). With `SLUICE_CONFIG_CACHE`, every accepted config is also written to
//! that file (temp file + rename, mode 0600 as it holds TLS keys) for the next start.
//!
//! Parsing, validating and building a config runs on a blocking thread, never on the threads that
//! serve requests (a 100,000-route config takes seconds to build), one push at a time; while one
//! is being built, up to [`MAX_WAITING_PUSHES`] more wait their turn (each reads its body while it
//! waits, so a slow sender never holds up a build) and any further push is
//! answered 429 at once. Hostile YAML (deep nesting) fails fast in `proxy_config::parse`.

use std::convert::Infallible;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use thiserror::Error;
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::config::state::{Applied, State};
use crate::respond::json_response;
use crate::response_body::ProxyBody;

/// Largest config body accepted (a 10,000-route config is a few MiB).
const MAX_BODY: usize = 256 << 20;

/// Pushes that may wait while another one is being built; more are refused with 429.
pub(crate) const MAX_WAITING_PUSHES: usize = 2;

#[derive(Debug, Error)]
pub enum AdminError {
    #[error("SLUICE_ADMIN_SOCKET: cannot create directory '{path}': {source}")]
    Dir { path: PathBuf, source: std::io::Error },
    #[error("SLUICE_ADMIN_SOCKET: directory '{0}' is world-writable; refusing to put the config socket there")]
    WorldWritable(PathBuf),
    #[error("SLUICE_ADMIN_SOCKET: cannot bind '{path}': {source}")]
    Bind { path: PathBuf, source: std::io::Error },
}

#[derive(Debug, Error)]
pub(crate) enum CacheError {
    #[error("cannot read: {0}")]
    Read(std::io::Error),
    #[error("cannot write: {0}")]
    Write(std::io::Error),
    #[error("not a valid configuration: {0}")]
    Invalid(String),
}

/// What the admin handlers share.
pub(crate) struct AdminState {
    pub state: Arc<State>,
    cache: Option<PathBuf>,
    /// Holds apply + cache write together, so the file always matches the live config.
    push_lock: Mutex<()>,
    /// Admits one push to be built and [`MAX_WAITING_PUSHES`] to wait.
    pushes: PushGate,
}

impl AdminState {
    pub(crate) fn new(state: Arc<State>, cache: Option<PathBuf>) -> Self {
        AdminState { state, cache, push_lock: Mutex::new(()), pushes: PushGate::new(MAX_WAITING_PUSHES) }
    }
}

/// Bounds the config pushes in progress: one at work, `waiting` queued, the rest refused.
pub(crate) struct PushGate {
    work: tokio::sync::Semaphore,
    queue: tokio::sync::Semaphore,
}

impl PushGate {
    pub(crate) fn new(waiting: usize) -> Self {
        PushGate { work: tokio::sync::Semaphore::new(1), queue: tokio::sync::Semaphore::new(waiting + 1) }
    }

    /// A place in line; `None` when too many pushes are already in line.
    pub(crate) fn enter(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.queue.try_acquire().ok()
    }

    /// Waits for this push's turn to be built (one at a time). The body is read before, with
    /// only a place in line held, so a client that sends its body slowly never holds up a build.
    pub(crate) async fn turn(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.work.acquire().await.ok()
    }
}

/// Writes `text` to `path` atomically: a temp file in the same directory, fsync, rename.
pub(crate) fn write_cache(path: &Path, text: &[u8]) -> Result<(), CacheError> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "config".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(text)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        CacheError::Write(e)
    })
}

/// Loads and applies the cached config; `Ok(None)` when there is no cache file yet.
pub(crate) fn load_cache(path: &Path, state: &State) -> Result<Option<String>, CacheError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CacheError::Read(e)),
    };
    let config = proxy_config::parse(&text).map_err(|e| CacheError::Invalid(e.to_string()))?;
    match state.apply(config, false) {
        Ok(Applied::Swapped(h)) | Ok(Applied::Unchanged(h)) => Ok(Some(h)),
        Err(e) => Err(CacheError::Invalid(e.message)),
    }
}

/// Binds the admin socket (removing a stale one) with mode 0600.
pub(crate) fn bind(path: &Path) -> Result<UnixListener, AdminError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|source| AdminError::Dir { path: dir.into(), source })?;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        let mode = std::fs::metadata(dir).map(|m| m.mode()).unwrap_or(0);
        // World-writable without the sticky bit lets anyone swap the socket for their own.
        if mode & 0o002 != 0 && mode & 0o1000 == 0 {
            return Err(AdminError::WorldWritable(dir.into()));
        }
    }
    if path.exists() {
        let _ = std::fs::remove_file(path);
    }
    let l = UnixListener::bind(path).map_err(|source| AdminError::Bind { path: path.into(), source })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|source| AdminError::Bind { path: path.into(), source })?;
    Ok(l)
}

/// Our effective uid, read without libc from /proc.
fn own_uid() -> u32 {
    std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0)
}

/// Serves the admin API until shutdown.
pub(crate) async fn serve(
    listener: UnixListener,
    admin: Arc<AdminState>,
    mut shutdown: watch::Receiver<bool>,
    tracker: TaskTracker,
) {
    let uid = own_uid();
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r { Ok(a) => a, Err(e) => { tracing::warn!(error = %e, "admin accept failed"); continue; } },
            _ = shutdown.changed() => return,
        };
        match stream.peer_cred() {
            Ok(cred) if cred.uid() == uid || cred.uid() == 0 => {}
            Ok(cred) => {
                tracing::warn!(peer_uid = cred.uid(), "admin connection from another user refused");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "admin peer credentials unavailable; refused");
                continue;
            }
        }
        let admin = admin.clone();
        tracker.spawn(async move {
            let svc = service_fn(move |req| handle(req, admin.clone()));
            if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await {
                tracing::debug!(error = %e, "admin connection ended");
            }
        });
    }
}

pub(crate) fn json(status: StatusCode, v: &serde_json::Value) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::full(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    r
}

/// The admin API's request handler (public for tests that bypass the socket).
pub(crate) async fn handle(req: Request<Incoming>, admin: Arc<AdminState>) -> Result<Response<ProxyBody>, Infallible> {
    let state = &admin.state;
    let check_hash =
        req.uri().query().is_some_and(|q| q.split('&').any(|kv| kv == "check_hash=1" || kv == "check_hash=true"));
    let resp = match (req.method(), req.uri().path()) {
        (&Method::POST, "/config") => {
            let Some(_place) = admin.pushes.enter() else {
                let mut r = json_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many configuration pushes in progress; retry when the current one is done",
                );
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return Ok(r);
            };
            // The chunks are joined on the blocking thread: one copy of up to MAX_BODY bytes is
            // too long a stall for a request thread.
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(b) => b,
                Err(e) => return Ok(json_response(StatusCode::PAYLOAD_TOO_LARGE, &format!("cannot read body: {e}"))),
            };
            let Some(_turn) = admin.pushes.turn().await else {
                return Ok(json_response(StatusCode::SERVICE_UNAVAILABLE, "configuration pushes are closed"));
            };
            let admin = admin.clone();
            match tokio::task::spawn_blocking(move || post_config(&admin, body.to_bytes(), check_hash)).await {
                Ok(r) => r,
                Err(e) => json_response(StatusCode::INTERNAL_SERVER_ERROR, &format!("configuration build failed: {e}")),
            }
        }
        (&Method::GET, "/config") => {
            let rt = state.load();
            json(StatusCode::OK, &serde_json::to_value(&*rt.config).unwrap_or_default())
        }
        (&Method::GET, "/status") => status_body(state),
        (_, "/config") | (_, "/status") => json_response(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed"),
        _ => json_response(StatusCode::NOT_FOUND, "Not found"),
    };
    Ok(resp)
}

fn post_config(admin: &AdminState, body: Bytes, check_hash: bool) -> Response<ProxyBody> {
    let state = &admin.state;
    let text = match std::str::from_utf8(&body) {
        Ok(t) => t,
        Err(_) => return json_response(StatusCode::BAD_REQUEST, "body is not UTF-8"),
    };
    let parsed = match proxy_config::parse(text) {
        Ok(c) => c,
        Err(e) => {
            let err = proxy_config::FlattenedError::from_parse(e);
            state.metrics.config_pushes.with_label_values(&["rejected"]).inc();
            return json(StatusCode::BAD_REQUEST, &serde_json::to_value(&err).unwrap_or_default());
        }
    };
    let _push = admin.push_lock.lock().unwrap_or_else(|p| p.into_inner());
    match state.apply(parsed, check_hash) {
        Ok(Applied::Swapped(hash)) => {
            tracing::info!(%hash, "configuration applied");
            if let Some(cache) = &admin.cache {
                // The config is live either way; a failed write only costs the next cold start.
                if let Err(e) = write_cache(cache, &body) {
                    tracing::warn!(path = %cache.display(), error = %e, "configuration cache not written");
                }
            }
            json(StatusCode::CREATED, &serde_json::json!({ "configuration_hash": hash }))
        }
        Ok(Applied::Unchanged(_)) => {
            let mut r = Response::new(ProxyBody::Empty);
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            r
        }
        Err(err) => {
            tracing::warn!(error = %err.message, "configuration rejected");
            json(StatusCode::BAD_REQUEST, &serde_json::to_value(&err).unwrap_or_default())
        }
    }
}

/// `GET /status` body, shared with the status listener.
pub(crate) fn status_body(state: &State) -> Response<ProxyBody> {
    let hash = state.hash();
    let active = state.metrics.active_connections.get();
    json(
        StatusCode::OK,
        &serde_json::json!({
            "configuration_hash": hash,
            "server": { "connections_active": active, "total_requests": state.metrics.nginx_requests.get() },
            "upstreams": crate::config::upstream_health::summary(&state.load()),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::PushGate;

    #[tokio::test]
    async fn one_push_works_two_wait_and_the_next_is_refused() {
        let gate = PushGate::new(2);
        let places = [gate.enter(), gate.enter(), gate.enter()];
        assert!(places.iter().all(Option::is_some), "one at work and two waiting hold places");
        assert!(gate.enter().is_none(), "a fourth push is refused at once");
        let first = gate.turn().await.expect("the first push is built");
        let second = gate.turn();
        tokio::pin!(second);
        assert!(futures_util::poll!(second.as_mut()).is_pending(), "one build at a time");
        drop(first);
        drop(second.await.expect("the next push gets its turn"));
        drop(places);
        assert!(gate.enter().is_some(), "the line is free again");
    }
}
