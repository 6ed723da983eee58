//! The one status trigger: the sync loop hands the status writers the translation the proxy runs.
//! After the (fake) proxy rejects a route's entities, the statuses reported are those of the
//! fallback translation (the route not Accepted, reason RejectedByProxy), and the full
//! translation's (which calls the route Accepted) are never reported.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use controller::files::{parse_documents, Loaded};
use controller::sync::Reporter;
use controller::translate::REASON_REJECTED_BY_PROXY;
use controller::{Problem, Snapshot, Translation};
use support::FakeAdmin;
use tokio_util::sync::CancellationToken;

/// Records the translations of `synced`.
#[derive(Default)]
struct Recorder {
    synced: Mutex<Vec<Translation>>,
}

impl Reporter for Recorder {
    fn problems(&self, _reason: &'static str, _problems: &[Problem]) {}
    fn applied(&self, _translation: &Translation) {}
    fn synced(&self, translation: &Translation, _snapshot: &Snapshot) {
        self.synced.lock().unwrap().push(translation.clone());
    }
}

/// The `Accepted` condition (status, reason) of our entry for the HTTPRoute `name`.
fn accepted(t: &Translation, name: &str) -> (String, String) {
    let route = t.statuses.routes.iter().find(|r| r.object.name == name).expect("route status");
    let c = route.parents[0].conditions.iter().find(|c| c.type_ == "Accepted").expect("Accepted");
    (c.status.to_string(), c.reason.clone())
}

#[tokio::test]
async fn statuses_written_after_a_rejected_push_are_the_fallbacks() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/translate/fallback-rejected-route/in.yaml");
    let mut loaded = Loaded::default();
    parse_documents(&std::fs::read_to_string(dir).unwrap(), "in.yaml", &mut loaded);
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    let snapshot = loaded.snapshot;

    let admin = FakeAdmin::start().await;
    admin.reject_tag("k8s-name:rejected");
    let recorder = Arc::new(Recorder::default());
    let (sync, _changes_tx) = support::sync_loop(&admin, snapshot, recorder.clone(), Default::default());
    let token = CancellationToken::new();
    let task = tokio::spawn(sync.run(token.clone()));

    let applied = admin.wait_applied(1, Duration::from_secs(10)).await.expect("the fallback is pushed");
    let started = Instant::now();
    while recorder.synced.lock().unwrap().len() < 2 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    token.cancel();
    task.await.unwrap();

    assert!(admin.posted().len() >= 2, "the full config is tried first");
    let synced = recorder.synced.lock().unwrap();
    assert!(synced.len() >= 2, "synced once per round that ends with the proxy running a config");
    for t in synced.iter() {
        assert_eq!(t.config, applied, "statuses come from the translation the proxy runs");
        assert_eq!(accepted(t, "rejected"), ("False".into(), REASON_REJECTED_BY_PROXY.into()));
        assert_eq!(accepted(t, "kept"), ("True".into(), "Accepted".into()));
    }
}
