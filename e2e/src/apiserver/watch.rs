//! Streaming watches: newline-delimited `{"type": ..., "object": ...}` events.
//!
//! A watch starts either from the current state (no `resourceVersion`, `"0"`, or `sendInitialEvents=true`:
//! synthetic ADDED events, then with `sendInitialEvents` a BOOKMARK annotated
//! `k8s.io/initial-events-end: "true"`) or after a given resourceVersion (replayed from the store's bounded
//! history; too old → an ERROR event carrying a `410 Expired` Status). It then follows live writes, sends
//! periodic BOOKMARKs when `allowWatchBookmarks` is set, and ends after `timeoutSeconds`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::resources::ResourceType;
use super::status::ApiError;
use super::store::{render, Expired, Filter, Store};
use super::table::Shape;

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Send the current state as ADDED events first.
    CurrentState,
    /// Send only changes newer than this resourceVersion.
    After(u64),
}

/// The knobs a watch request sets.
#[derive(Debug, Clone)]
pub struct WatchParams {
    pub start: Start,
    /// `sendInitialEvents=true`: close the initial state with the `initial-events-end` bookmark.
    pub initial_events_end: bool,
    /// `allowWatchBookmarks=true`: send periodic bookmarks.
    pub bookmarks: bool,
    pub timeout: Option<Duration>,
    pub bookmark_interval: Duration,
    /// How objects are rendered (plain, Tables for `kubectl get -w`, or PartialObjectMetadata).
    pub shape: Shape,
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut text = json!({"type": kind, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}

fn object_line(kind: &str, obj: &Value, params: &WatchParams) -> Bytes {
    line(kind, &params.shape.one(obj))
}

fn bookmark(rt: &ResourceType, rv: u64, initial_end: bool) -> Bytes {
    let mut obj = json!({
        "apiVersion": rt.api_version(),
        "kind": rt.kind,
        "metadata": {"resourceVersion": rv.to_string()},
    });
    if initial_end {
        obj["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line("BOOKMARK", &obj)
}

fn expired(e: Expired) -> Bytes {
    line("ERROR", &ApiError::gone(e.requested, e.oldest).to_status())
}

/// Starts a watch task; its output lines arrive on the returned channel, which closes when the watch ends.
/// The task stops as soon as the receiver is dropped (the client went away).
pub fn spawn(store: Arc<Store>, rt: ResourceType, filter: Filter, params: WatchParams) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let deadline = params.timeout.map(|t| tokio::time::Instant::now() + t);
        let sleep_until_deadline = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = run(&store, &rt, &filter, &params, &tx) => {}
            _ = sleep_until_deadline => {}
            _ = tx.closed() => {}
        }
    });
    rx
}

async fn run(store: &Store, rt: &ResourceType, filter: &Filter, params: &WatchParams, tx: &mpsc::Sender<Bytes>) {
    // Subscribe before reading so no write between the read and the subscription is missed.
    let mut latest = store.subscribe();
    let mut cursor = match params.start {
        Start::CurrentState => {
            let (items, rv) = store.list(rt, filter);
            for item in &items {
                if tx.send(object_line("ADDED", item, params)).await.is_err() {
                    return;
                }
            }
            if params.initial_events_end && tx.send(bookmark(rt, rv, true)).await.is_err() {
                return;
            }
            rv
        }
        Start::After(rv) => {
            if let Err(e) = store.check_watchable(rv) {
                let _ = tx.send(expired(e)).await;
                return;
            }
            rv
        }
    };
    let mut ticker = tokio::time::interval(params.bookmark_interval);
    ticker.reset();
    loop {
        match store.events_since(cursor, filter) {
            Err(e) => {
                let _ = tx.send(expired(e)).await;
                return;
            }
            Ok((events, newest)) => {
                for (kind, obj) in events {
                    let obj = render(rt, &obj);
                    if tx.send(object_line(kind.as_str(), &obj, params)).await.is_err() {
                        return;
                    }
                }
                cursor = cursor.max(newest);
            }
        }
        tokio::select! {
            changed = latest.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = ticker.tick(), if params.bookmarks => {
                if tx.send(bookmark(rt, cursor, false)).await.is_err() {
                    return;
                }
            }
        }
    }
}
