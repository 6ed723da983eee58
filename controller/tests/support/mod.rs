//! Test support: a fake proxy admin socket (hyper on a tempdir unix socket) that answers like
//! sluice-proxy's admin socket and records what it was sent.

#![allow(dead_code)]

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use proxy_config::{config_hash, Config, EntityError, FieldError, FlattenedError, EMPTY_HASH};
use tokio::net::UnixListener;
use tokio::sync::watch;

#[derive(Default)]
struct State {
    hash: String,
    /// Every config accepted (201), in order.
    applied: Vec<Config>,
    /// Every POST /config body that parsed, accepted or not.
    posted: Vec<Config>,
    /// Entities carrying this tag are rejected with a 400 (a runtime failure validation misses).
    reject_tag: Option<String>,
    /// Answer every request with 503 (a proxy that is starting).
    unavailable: bool,
}

/// A fake admin socket.
pub struct FakeAdmin {
    pub socket: PathBuf,
    state: Arc<Mutex<State>>,
    changes: watch::Receiver<usize>,
    _dir: tempfile::TempDir,
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    r
}

fn rejected_entities(config: &Config, tag: &str) -> Vec<EntityError> {
    let mut out = Vec::new();
    let mut reject = |kind: &str, name: &str, tags: &[String]| {
        if tags.iter().any(|t| t == tag) {
            out.push(EntityError {
                entity_type: kind.to_string(),
                entity_name: name.to_string(),
                entity_id: None,
                entity_tags: tags.to_vec(),
                errors: vec![FieldError::new("@entity", "rejected by the fake proxy")],
            });
        }
    };
    for s in &config.services {
        reject("service", s.display_name(), &s.tags);
        for r in &s.routes {
            reject("route", r.display_name(), &r.tags);
        }
    }
    for c in &config.certificates {
        reject("certificate", c.display_name(), &c.tags);
    }
    out
}

impl FakeAdmin {
    pub async fn start() -> FakeAdmin {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("admin.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let state = Arc::new(Mutex::new(State { hash: EMPTY_HASH.to_string(), ..Default::default() }));
        let (tx, changes) = watch::channel(0usize);
        let tx = Arc::new(tx);
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let st = st.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let st = st.clone();
                        let tx = tx.clone();
                        async move { Ok::<_, Infallible>(handle(req, &st, &tx).await) }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        FakeAdmin { socket, state, changes, _dir: dir }
    }

    pub fn admin_url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Simulates a proxy restart: the config is gone, `/status` reports 32 zeros.
    pub fn restart(&self) {
        self.state.lock().unwrap().hash = EMPTY_HASH.to_string();
    }

    pub fn reject_tag(&self, tag: &str) {
        self.state.lock().unwrap().reject_tag = Some(tag.to_string());
    }

    pub fn set_unavailable(&self, v: bool) {
        self.state.lock().unwrap().unavailable = v;
    }

    pub fn applied(&self) -> Vec<Config> {
        self.state.lock().unwrap().applied.clone()
    }

    pub fn posted(&self) -> Vec<Config> {
        self.state.lock().unwrap().posted.clone()
    }

    pub fn hash(&self) -> String {
        self.state.lock().unwrap().hash.clone()
    }

    /// Waits (at most `timeout`) until `n` configs have been applied; returns the last one.
    pub async fn wait_applied(&self, n: usize, timeout: Duration) -> Option<Config> {
        let mut changes = self.changes.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            {
                let s = self.state.lock().unwrap();
                if s.applied.len() >= n {
                    return s.applied.last().cloned();
                }
            }
            if tokio::time::timeout_at(deadline, changes.changed()).await.is_err() {
                return None;
            }
        }
    }
}

async fn handle(req: Request<Incoming>, st: &Mutex<State>, tx: &watch::Sender<usize>) -> Response<Full<Bytes>> {
    if st.lock().unwrap().unavailable {
        return json(StatusCode::SERVICE_UNAVAILABLE, "{\"message\":\"starting\"}".into());
    }
    let path = req.uri().path().to_string();
    let check_hash = req.uri().query().is_some_and(|q| q.contains("check_hash=1"));
    match (req.method().as_str(), path.as_str()) {
        ("GET", "/status") => {
            let hash = st.lock().unwrap().hash.clone();
            json(StatusCode::OK, format!("{{\"configuration_hash\":\"{hash}\"}}"))
        }
        ("POST", "/config") => {
            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let text = String::from_utf8_lossy(&body);
            let config = match proxy_config::parse_and_validate(&text) {
                Ok(c) => c,
                Err(e) => return json(StatusCode::BAD_REQUEST, serde_json::to_string(&e).unwrap()),
            };
            let mut s = st.lock().unwrap();
            s.posted.push(config.clone());
            if let Some(tag) = s.reject_tag.clone() {
                let errors = rejected_entities(&config, &tag);
                if !errors.is_empty() {
                    tx.send_modify(|n| *n += 1);
                    return json(StatusCode::BAD_REQUEST, serde_json::to_string(&FlattenedError::new(errors)).unwrap());
                }
            }
            let hash = config_hash(&config);
            if check_hash && hash == s.hash {
                return json(StatusCode::NOT_MODIFIED, String::new());
            }
            s.hash = hash.clone();
            s.applied.push(config);
            tx.send_modify(|n| *n += 1);
            json(StatusCode::CREATED, format!("{{\"configuration_hash\":\"{hash}\"}}"))
        }
        _ => json(StatusCode::NOT_FOUND, "{\"message\":\"Not found\"}".into()),
    }
}

/// A sync loop against `admin` with test timings (10 ms debounce, 50 ms period) and default
/// settings, translating `snapshot`.
pub fn sync_loop(
    admin: &FakeAdmin,
    snapshot: controller::Snapshot,
    reporter: Arc<dyn controller::sync::Reporter>,
    tracer: controller::sync_trace::SyncTracer,
) -> (controller::sync::SyncLoop, watch::Sender<u64>) {
    let (changes_tx, changes) = watch::channel(0u64);
    let sync = controller::sync::SyncLoop {
        settings: Arc::new(controller::Settings::default()),
        client: controller::push::AdminClient::new(&admin.socket, Duration::from_secs(5)),
        snapshot: Arc::new(move || snapshot.clone()),
        changes,
        debounce: Duration::from_millis(10),
        period: Duration::from_millis(50),
        reporter,
        metrics: controller::metrics::Metrics::new("unix:///fake", "test").unwrap(),
        ready: controller::endpoints::Readiness::default(),
        tracer,
    };
    (sync, changes_tx)
}
