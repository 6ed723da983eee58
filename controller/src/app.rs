//! Wiring: settings → (files | Kubernetes watches) → sync loop, plus the probe and metrics
//! listeners, leader election, Events and statuses. The binary only parses arguments, sets up
//! logging and calls [`run`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use proxy_config::Config;
use thiserror::Error;
use tokio::sync::watch as channel;
use tokio_util::sync::CancellationToken;

use crate::endpoints::{self, Readiness};
use crate::events::EventPublisher;
use crate::files::{self, FilesError};
use crate::leader::{self, Leadership};
use crate::metrics::{Metrics, MetricsError};
use crate::push::AdminClient;
use crate::settings::{endpoint_address, DumpFormat, Settings, SettingsError};
use crate::snapshot::Snapshot;
use crate::status::StatusWriter;
use crate::sync::{LogReporter, Reporter, SnapshotFn, SyncLoop};
use crate::sync_trace::SyncTracer;
use crate::translate::{translate, Problem, Translation};
use crate::watch::{self, WatchError};

/// How often `--manifests` is checked for changes.
pub(crate) const FILE_POLL: Duration = Duration::from_millis(250);
/// Upper bound of the debounce in file mode, so an edit is live within 2 s even with the default
/// `--proxy-sync-seconds` of 3 (file edits do not come in API-server storms).
pub(crate) const FILE_DEBOUNCE_MAX: Duration = Duration::from_millis(500);

#[derive(Debug, Error)]
pub enum AppError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error("Kubernetes client: {0}")]
    Kube(#[from] kube::Error),
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("Kubernetes client configuration: {0}")]
    InferConfig(#[from] kube::config::InferConfigError),
    #[error(transparent)]
    Watch(#[from] WatchError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("binding {what}: {source}")]
    Bind { what: &'static str, source: std::io::Error },
    #[error("serializing the config: {0}")]
    Render(String),
    #[error("admission webhook: {0}")]
    WebhookTls(#[from] crate::webhook::tls::TlsError),
}

/// The config as `--dump-config` prints it.
pub fn render(config: &Config, format: DumpFormat) -> Result<String, AppError> {
    match format {
        DumpFormat::Yaml => serde_yaml_ng::to_string(config).map_err(|e| AppError::Render(e.to_string())),
        DumpFormat::Json => {
            serde_json::to_string_pretty(config).map(|s| s + "\n").map_err(|e| AppError::Render(e.to_string()))
        }
    }
}

/// This controller's instance id (pod name when deployed).
pub(crate) fn instance_id() -> String {
    std::env::var("POD_NAME").or_else(|_| std::env::var("HOSTNAME")).unwrap_or_else(|_| "sluice-controller".to_string())
}

fn log_problems(problems: &[Problem]) {
    for p in problems {
        tracing::warn!(object = %p.object, field = %p.field, "{}", p.message);
    }
}

/// Runs the controller until `shutdown` (or, with `--dump-config`, prints the config and returns it).
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<Option<String>, AppError> {
    settings.validate()?;
    let settings = Arc::new(settings);
    if let Some(path) = settings.manifests.clone() {
        if settings.dump_config {
            let loaded = files::load(&path)?;
            log_problems(&loaded.problems);
            return dump(&loaded.snapshot, &settings).map(Some);
        }
        run_files(settings, path, shutdown).await?;
        return Ok(None);
    }
    let client = kube_client(&settings).await?;
    run_with_client(client, settings, shutdown).await
}

/// Kubernetes mode with a given client (tests pass a mocked one): watches, wait for every store to
/// sync, then the sync loop (or, with `--dump-config`, one translation printed).
pub async fn run_with_client(
    client: Client,
    settings: Arc<Settings>,
    shutdown: CancellationToken,
) -> Result<Option<String>, AppError> {
    if !settings.dump_config {
        serve_webhook(&client, &settings, &shutdown).await?;
    }
    let gateway_api = watch::gateway_api_available(&client).await;
    let watches = watch::start(&client, &settings, gateway_api);
    tracing::info!(gateway_api, "waiting for every watch to sync");
    tokio::select! {
        r = watches.stores.wait_until_ready() => r?,
        _ = shutdown.cancelled() => return Ok(None),
    }
    if settings.dump_config {
        return dump(&watches.stores.snapshot(), &settings).map(Some);
    }
    let stores = watches.stores.clone();
    let snapshot: SnapshotFn = Arc::new(move || stores.snapshot());
    run_kube(client, settings, snapshot, watches.changes.clone(), shutdown).await?;
    drop(watches);
    Ok(None)
}

fn dump(snapshot: &Snapshot, settings: &Settings) -> Result<String, AppError> {
    let t = translate(snapshot, settings);
    log_problems(&t.problems);
    render(&t.config, settings.dump_format)
}

/// A client from `--kubeconfig`, else the in-cluster or default kubeconfig.
pub async fn kube_client(settings: &Settings) -> Result<Client, AppError> {
    let config = match &settings.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

/// Starts `/healthz`+`/readyz` and `/metrics` (each skipped when its address is `0` or `off`).
async fn serve_endpoints(
    settings: &Settings,
    metrics: &Metrics,
    ready: &Readiness,
    shutdown: &CancellationToken,
) -> Result<(), AppError> {
    let endpoints = [
        ("--health-probe-bind-address", settings.health_probe_bind_address.as_str(), endpoints::probes(ready.clone())),
        ("--metrics-bind-address", settings.metrics_bind_address.as_str(), endpoints::metrics(metrics.clone())),
    ];
    for (what, value, handler) in endpoints {
        let Some(addr) = endpoint_address(what, value)? else { continue };
        let bound = endpoints::serve(addr, handler, shutdown.clone())
            .await
            .map_err(|source| AppError::Bind { what, source })?;
        tracing::info!(%bound, what, "listening");
    }
    Ok(())
}

/// Starts the admission webhook when `--admission-webhook-listen` is set.
async fn serve_webhook(
    client: &Client,
    settings: &Arc<Settings>,
    shutdown: &CancellationToken,
) -> Result<(), AppError> {
    let Some(addr) = settings.admission_webhook()? else { return Ok(()) };
    let certs = crate::webhook::tls::CertFiles::new(
        settings.admission_webhook_cert_file.clone(),
        settings.admission_webhook_key_file.clone(),
    )?;
    let tls = crate::webhook::tls::server_config(Arc::new(certs));
    let webhook = Arc::new(crate::webhook::Webhook::new(settings.clone(), client.clone()));
    let what = "--admission-webhook-listen";
    let bound = crate::webhook::serve(addr, tls, webhook, shutdown.clone())
        .await
        .map_err(|source| AppError::Bind { what, source })?;
    tracing::info!(%bound, what, "listening");
    Ok(())
}

/// Builds and runs the sync loop.
async fn sync_loop(
    settings: Arc<Settings>,
    snapshot: SnapshotFn,
    changes: channel::Receiver<u64>,
    debounce: Duration,
    reporter: Arc<dyn Reporter>,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    let period = settings.sync_period()?;
    let metrics = Metrics::new(&settings.kong_admin_url, &instance_id())?;
    let ready = Readiness::default();
    serve_endpoints(&settings, &metrics, &ready, &shutdown).await?;
    let client = AdminClient::new(settings.admin_socket()?, settings.push_timeout());
    let tracer = SyncTracer::new(settings.otlp_traces_endpoint.as_deref()).map_err(SettingsError::from)?;
    let sync = SyncLoop { settings, client, snapshot, changes, debounce, period, reporter, metrics, ready, tracer };
    sync.run(shutdown).await;
    Ok(())
}

/// `--manifests` mode: poll the files, reload on change.
async fn run_files(settings: Arc<Settings>, path: PathBuf, shutdown: CancellationToken) -> Result<(), AppError> {
    let loaded = files::load(&path)?;
    log_problems(&loaded.problems);
    tracing::info!(path = %path.display(), objects = loaded.snapshot.len(), "running from manifests");
    let current = Arc::new(Mutex::new(loaded.snapshot));
    let (tx, changes) = channel::channel(0u64);
    tokio::spawn(poll_files(path, current.clone(), tx, shutdown.clone()));
    let snapshot: SnapshotFn =
        Arc::new(move || current.lock().map(|s| s.clone()).unwrap_or_else(|e| e.into_inner().clone()));
    let debounce = settings.sync_period()?.min(FILE_DEBOUNCE_MAX);
    sync_loop(settings, snapshot, changes, debounce, Arc::new(LogReporter), shutdown).await
}

async fn poll_files(
    path: PathBuf,
    current: Arc<Mutex<Snapshot>>,
    tx: channel::Sender<u64>,
    shutdown: CancellationToken,
) {
    let mut seen = files::fingerprint(&path);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(FILE_POLL) => {}
        }
        let now = files::fingerprint(&path);
        if now == seen {
            continue;
        }
        seen = now;
        reload(&path, &current, &tx);
    }
}

fn reload(path: &Path, current: &Mutex<Snapshot>, tx: &channel::Sender<u64>) {
    match files::load(path) {
        Ok(loaded) => {
            log_problems(&loaded.problems);
            tracing::info!(objects = loaded.snapshot.len(), "manifests changed; reloading");
            match current.lock() {
                Ok(mut s) => *s = loaded.snapshot,
                Err(e) => *e.into_inner() = loaded.snapshot,
            }
            tx.send_modify(|g| *g = g.wrapping_add(1));
        }
        Err(e) => tracing::warn!(error = %e, "reading the manifests failed; keeping the previous ones"),
    }
}

/// Reports problems to Kubernetes as Events (statuses: [`crate::status::wrap`]).
struct KubeReporter {
    events: EventPublisher,
}

impl Reporter for KubeReporter {
    fn problems(&self, reason: &'static str, problems: &[Problem]) {
        LogReporter.problems(reason, problems);
        self.events.publish(reason, problems);
    }
    fn applied(&self, t: &Translation) {
        LogReporter.applied(t);
    }
}

async fn run_kube(
    client: Client,
    settings: Arc<Settings>,
    snapshot: SnapshotFn,
    changes: channel::Receiver<u64>,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    let leadership = Leadership::default();
    let namespace = settings
        .election_namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| "default".to_string());
    tokio::spawn(leader::run(
        client.clone(),
        namespace,
        settings.election_id.clone(),
        instance_id(),
        leadership.clone(),
        shutdown.clone(),
    ));
    let events = Arc::new(KubeReporter { events: EventPublisher::new(client.clone(), Some(instance_id())) });
    let reporter = crate::status::wrap(events, StatusWriter::new(client, settings.clone(), leadership));
    let debounce = settings.sync_period()?;
    sync_loop(settings, snapshot, changes, debounce, reporter, shutdown).await
}
