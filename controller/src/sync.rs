//! The sync loop: every change marks the world dirty → one debounced rebuild → translate → push when
//! the proxy does not already run that config → report.
//!
//! - Debounce: changes within `debounce` of each other give one rebuild (`--proxy-sync-seconds`).
//! - Change detection: the proxy's `GET /status` hash is compared with ours on every round (and
//!   every `period` without changes), so a restarted proxy (hash all zeros) gets the config again.
//! - Failures: network errors retry with exponential backoff. When the proxy rejects entities (400),
//!   their tags name the Kubernetes objects; those objects are reported and a fallback config
//!   without them (and whatever depends on them) is pushed. The same broken config is never pushed
//!   twice: while the full translation keeps the hash that failed, the fallback is used directly,
//!   and a rejected config that maps to no object is not retried until something changes (a
//!   restarted proxy meanwhile gets the last config it accepted).
//! - Statuses: every round that ends with the proxy running our config calls
//!   [`Reporter::synced`] with the translation of that config (the fallback one after a rejected
//!   push): the one trigger of status writes.
//! - The caller starts the loop only when every source has synced: nothing is pushed before that.
//! - Tracing: each round that translates or pushes is one trace (`sync` → `translate`, `push`;
//!   [`crate::sync_trace`]) when an OTLP endpoint is configured; its trace id is logged.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use proxy_config::{config_hash, FlattenedError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::endpoints::Readiness;
use crate::metrics::Metrics;
use crate::push::{AdminClient, PushError};
use crate::settings::Settings;
use crate::snapshot::Snapshot;
use crate::sync_trace::{Attr, Round, SyncTracer};
use crate::translate::{names, translate, translate_excluding, ObjectRef, Problem, Translation};

/// Event reason for translation problems (KIC's).
pub(crate) const REASON_TRANSLATION: &str = "KongConfigurationTranslationFailed";
/// Event reason for entities the proxy rejected (KIC's).
pub(crate) const REASON_APPLY: &str = "KongConfigurationApplyFailed";

/// Where the loop reports to (Kubernetes Events and statuses, or logs in file mode).
pub trait Reporter: Send + Sync {
    /// Problems not reported in the previous round, with the Event reason.
    fn problems(&self, reason: &'static str, problems: &[Problem]);
    /// The proxy runs the config of `translation` (after a push, or found already running), and
    /// did not in the previous round.
    fn applied(&self, translation: &Translation);
    /// A sync round ended with the proxy running the config of `translation`, translated from
    /// `snapshot` (the fallback translation after a rejected push). Called every such round: the
    /// one trigger of status writes, which skip what is unchanged.
    fn synced(&self, _translation: &Translation, _snapshot: &Snapshot) {}
}

/// Logs problems as warnings; for file mode and tests.
#[derive(Debug, Default)]
pub(crate) struct LogReporter;

impl Reporter for LogReporter {
    fn problems(&self, reason: &'static str, problems: &[Problem]) {
        for p in problems {
            tracing::warn!(reason, object = %p.object, field = %p.field, "{}", p.message);
        }
    }
    fn applied(&self, t: &Translation) {
        tracing::info!(services = t.config.services.len(), "configuration applied");
    }
}

/// Produces the current snapshot (reflector stores or loaded files).
pub(crate) type SnapshotFn = Arc<dyn Fn() -> Snapshot + Send + Sync>;

/// Everything the loop needs.
pub struct SyncLoop {
    pub settings: Arc<Settings>,
    pub client: AdminClient,
    pub snapshot: SnapshotFn,
    /// Bumped by the sources on every change.
    pub changes: watch::Receiver<u64>,
    /// Quiet time after a change before rebuilding.
    pub debounce: Duration,
    /// How often the proxy's hash is checked when nothing changes.
    pub period: Duration,
    pub reporter: Arc<dyn Reporter>,
    pub metrics: Metrics,
    pub ready: Readiness,
    /// Spans of the rounds (disabled: records nothing).
    pub tracer: SyncTracer,
}

/// The config we want the proxy to run.
struct Desired {
    translation: Translation,
    body: Bytes,
    hash: String,
    /// Hash of the full translation (before any fallback).
    full_hash: String,
    snapshot: Snapshot,
}

impl Desired {
    fn new(translation: Translation, snapshot: Snapshot, full_hash: String) -> Self {
        // Serializing plain data structs to JSON cannot fail.
        let body = Bytes::from(serde_json::to_vec(&translation.config).unwrap_or_default());
        let hash = config_hash(&translation.config);
        Desired { translation, body, hash, full_hash, snapshot }
    }
}

#[derive(Default)]
struct State {
    applied_hash: Option<String>,
    /// The last config the proxy accepted (hash, body): what a restarted proxy gets back while our
    /// current config is one it rejected.
    last_good: Option<(String, Bytes)>,
    /// Hash of a config the proxy rejected with no fallback possible: never pushed again.
    dead_hash: Option<String>,
    /// Full-translation hash the proxy rejected, and the objects left out because of it.
    failed: Option<(String, HashSet<ObjectRef>)>,
    reported: HashMap<&'static str, HashSet<Problem>>,
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);
const MAX_FALLBACK_ROUNDS: usize = 4;

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Number of distinct objects with problems.
fn broken_objects(problems: &[Problem]) -> usize {
    problems.iter().map(|p| &p.object).collect::<HashSet<_>>().len()
}

/// The objects (and one problem each) behind the entities a 400 names, via their `k8s-*` tags.
pub fn rejected_objects(err: &FlattenedError) -> (HashSet<ObjectRef>, Vec<Problem>) {
    let mut objects = HashSet::new();
    let mut problems = Vec::new();
    for e in &err.flattened_errors {
        let Some(object) = names::object_from_tags(&e.entity_tags) else { continue };
        let details: Vec<String> = e.errors.iter().map(|f| format!("{}: {}", f.field, f.message)).collect();
        let field = e.errors.first().map(|f| f.field.clone()).unwrap_or_default();
        problems.push(Problem::new(
            &object,
            field,
            format!("the proxy rejected {} '{}': {}; left out", e.entity_type, e.entity_name, details.join("; ")),
        ));
        objects.insert(object);
    }
    problems.sort();
    problems.dedup();
    (objects, problems)
}

impl SyncLoop {
    /// Runs until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut state = State::default();
        let initial_backoff = self.period.min(Duration::from_secs(1));
        let mut backoff = initial_backoff;
        let mut round = Some(self.tracer.round());
        let mut desired = self.build(&mut state, round.as_mut());
        let mut sources_closed = false;
        loop {
            let mut r = round.take().unwrap_or_else(|| self.tracer.round());
            let ok = self.sync(&mut desired, &mut state, &mut r).await;
            if let Some(trace_id) = self.tracer.finish(r, ok) {
                tracing::info!(%trace_id, ok, hash = %desired.hash, "sync round");
            }
            let wait = if ok {
                backoff = initial_backoff;
                self.period
            } else {
                let w = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                w
            };
            let changes = &mut self.changes;
            let changed = async {
                if sources_closed {
                    std::future::pending::<bool>().await
                } else {
                    changes.changed().await.is_ok()
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                open = changed => {
                    if !open {
                        sources_closed = true;
                        continue;
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(self.debounce) => {}
                    }
                    self.changes.borrow_and_update();
                    let mut r = self.tracer.round();
                    desired = self.build(&mut state, Some(&mut r));
                    round = Some(r);
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn report(&self, state: &mut State, reason: &'static str, problems: &[Problem]) {
        let previous = state.reported.entry(reason).or_default();
        let new: Vec<Problem> = problems.iter().filter(|p| !previous.contains(*p)).cloned().collect();
        *previous = problems.iter().cloned().collect();
        if !new.is_empty() {
            self.reporter.problems(reason, &new);
        }
    }

    fn build(&self, state: &mut State, round: Option<&mut Round>) -> Desired {
        let span = round.as_ref().map(|r| r.start("translate"));
        let started = Instant::now();
        let snapshot = (self.snapshot)();
        let full = translate(&snapshot, &self.settings);
        let full_hash = config_hash(&full.config);
        let translation = match &state.failed {
            Some((hash, broken)) if *hash == full_hash => translate_excluding(&snapshot, &self.settings, broken),
            _ => full,
        };
        self.metrics.translation(broken_objects(&translation.problems), started.elapsed().as_secs_f64() * 1000.0);
        self.report(state, REASON_TRANSLATION, &translation.problems);
        if let (Some(round), Some(span)) = (round, span) {
            round.end(span, &translation_attrs(&snapshot, &translation), Ok(()));
        }
        Desired::new(translation, snapshot, full_hash)
    }

    /// The proxy runs `desired`: it becomes the last good config and its objects are reported applied.
    fn mark_applied(&self, state: &mut State, desired: &Desired) {
        state.applied_hash = Some(desired.hash.clone());
        state.last_good = Some((desired.hash.clone(), desired.body.clone()));
        self.ready.set_ready();
        self.reporter.applied(&desired.translation);
    }

    /// One round: bring the proxy to `desired`. `false` = retry later (with backoff).
    async fn sync(&self, desired: &mut Desired, state: &mut State, round: &mut Round) -> bool {
        for _ in 0..MAX_FALLBACK_ROUNDS {
            let proxy_hash = match self.client.status().await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the proxy's status");
                    return false;
                }
            };
            if proxy_hash == desired.hash {
                if state.applied_hash.as_deref() != Some(desired.hash.as_str()) {
                    self.mark_applied(state, desired);
                }
                self.reporter.synced(&desired.translation, &desired.snapshot);
                return true;
            }
            if state.dead_hash.as_deref() == Some(desired.hash.as_str()) {
                // Nothing new to try until something changes; keep the proxy on its last good config.
                if let Some((hash, body)) = state.last_good.clone() {
                    if proxy_hash != hash {
                        let span = round.start("push");
                        let len = body.len();
                        let result = self.client.push(body).await;
                        let outcome = result.as_ref().map(|_| ()).map_err(|e| e.to_string());
                        round.end(span, &push_attrs(&hash, len, "last_good", &result), outcome);
                        if let Err(e) = result {
                            tracing::warn!(error = %e, "re-pushing the last good configuration failed");
                            return false;
                        }
                    }
                }
                return true;
            }
            let span = round.start("push");
            let started = Instant::now();
            let result = self.client.push(desired.body.clone()).await;
            let millis = started.elapsed().as_secs_f64() * 1000.0;
            let outcome = result.as_ref().map(|_| ()).map_err(|e| e.to_string());
            round.end(span, &push_attrs(&desired.hash, desired.body.len(), "desired", &result), outcome);
            match result {
                Ok(_) => {
                    self.metrics.push(true, "", millis, desired.body.len(), unix_now());
                    tracing::info!(hash = %desired.hash, proxy_hash = %proxy_hash, trace_id = ?round.trace_id(), "configuration pushed");
                    self.mark_applied(state, desired);
                    self.reporter.synced(&desired.translation, &desired.snapshot);
                    return true;
                }
                Err(PushError::Rejected(err)) => {
                    self.metrics.push(false, "conflict", millis, desired.body.len(), unix_now());
                    let (objects, problems) = rejected_objects(&err);
                    self.report(state, REASON_APPLY, &problems);
                    let mut broken = match state.failed.take() {
                        Some((h, b)) if h == desired.full_hash => b,
                        _ => HashSet::new(),
                    };
                    let before = broken.len();
                    broken.extend(objects);
                    self.metrics.push_broken(broken.len());
                    if broken.len() == before {
                        tracing::error!(error = %err, "the proxy rejected the config and no fallback is possible");
                        state.failed = Some((desired.full_hash.clone(), broken));
                        state.dead_hash = Some(desired.hash.clone());
                        return true;
                    }
                    tracing::warn!(error = %err, broken = broken.len(), "the proxy rejected the config; pushing a fallback");
                    let span = round.start("translate");
                    let t = translate_excluding(&desired.snapshot, &self.settings, &broken);
                    let mut attrs = translation_attrs(&desired.snapshot, &t);
                    attrs.push(("sluice.left_out_objects", Attr::Int(broken.len() as i64)));
                    round.end(span, &attrs, Ok(()));
                    self.report(state, REASON_TRANSLATION, &t.problems);
                    state.failed = Some((desired.full_hash.clone(), broken));
                    let snapshot = std::mem::take(&mut desired.snapshot);
                    let full_hash = std::mem::take(&mut desired.full_hash);
                    *desired = Desired::new(t, snapshot, full_hash);
                }
                Err(e) => {
                    self.metrics.push(false, e.failure_reason(), millis, desired.body.len(), unix_now());
                    tracing::warn!(error = %e, "pushing the configuration failed");
                    return false;
                }
            }
        }
        false
    }
}

/// The `translate` span's attributes.
fn translation_attrs(snapshot: &Snapshot, t: &Translation) -> Vec<(&'static str, Attr)> {
    vec![
        ("sluice.objects", Attr::Int(snapshot.len() as i64)),
        ("sluice.services", Attr::Int(t.config.services.len() as i64)),
        ("sluice.problems", Attr::Int(t.problems.len() as i64)),
    ]
}

/// The `push` span's attributes: what was pushed and how the proxy answered.
fn push_attrs<T>(hash: &str, bytes: usize, which: &str, result: &Result<T, PushError>) -> [(&'static str, Attr); 4] {
    let answer = match result {
        Ok(_) => "accepted",
        Err(PushError::Rejected(_)) => "rejected",
        Err(e) => e.failure_reason(),
    };
    [
        ("sluice.config_hash", Attr::Str(hash.to_string())),
        ("sluice.config_bytes", Attr::Int(bytes as i64)),
        ("sluice.push.config", Attr::Str(which.to_string())),
        ("sluice.push.result", Attr::Str(answer.to_string())),
    ]
}
