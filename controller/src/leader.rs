//! Leader election with a `coordination.k8s.io/v1` Lease named by `--election-id`, with
//! client-go's timings (lease 15 s, retry 2 s). Only the leader writes statuses; every replica
//! translates and pushes to its own proxy.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

/// How long a lease is valid without renewal.
pub(crate) const LEASE_SECONDS: i32 = 15;
/// How often the lease is renewed or tried.
pub(crate) const RETRY: Duration = Duration::from_secs(2);

/// Whether this replica currently leads.
#[derive(Debug, Clone, Default)]
pub(crate) struct Leadership(Arc<AtomicBool>);

impl Leadership {
    pub(crate) fn is_leader(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
    fn set(&self, v: bool) {
        if self.0.swap(v, Ordering::AcqRel) != v {
            tracing::info!(leader = v, "leadership changed");
        }
    }
}

/// Whether a lease held by someone else has expired at `now`.
pub(crate) fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else { return true };
    let secs = i64::from(spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS));
    renewed.0.checked_add(SignedDuration::from_secs(secs)).map(|end| end < now).unwrap_or(true)
}

/// One attempt to acquire or renew; `Ok(true)` = we lead.
pub(crate) async fn try_acquire(api: &Api<Lease>, name: &str, identity: &str) -> Result<bool, kube::Error> {
    let now = MicroTime(Timestamp::now());
    match api.get_opt(name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(name.to_string()), ..Default::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(identity.to_string()),
                    lease_duration_seconds: Some(LEASE_SECONDS),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            api.create(&PostParams::default(), &lease).await?;
            Ok(true)
        }
        Some(mut lease) => {
            let spec = lease.spec.get_or_insert_with(Default::default);
            let ours = spec.holder_identity.as_deref() == Some(identity);
            if !ours && !expired(spec, now.0) {
                return Ok(false);
            }
            if !ours {
                spec.holder_identity = Some(identity.to_string());
                spec.acquire_time = Some(now.clone());
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.lease_duration_seconds = Some(LEASE_SECONDS);
            spec.renew_time = Some(now);
            // `replace` carries the resourceVersion we read: a concurrent writer makes it fail.
            api.replace(name, &PostParams::default(), &lease).await?;
            Ok(true)
        }
    }
}

/// Runs the election until `shutdown`, updating `leadership`.
pub(crate) async fn run(
    client: Client,
    namespace: String,
    name: String,
    identity: String,
    leadership: Leadership,
    shutdown: CancellationToken,
) {
    let api: Api<Lease> = Api::namespaced(client, &namespace);
    loop {
        match try_acquire(&api, &name, &identity).await {
            Ok(lead) => leadership.set(lead),
            Err(e) => {
                tracing::warn!(error = %e, lease = %name, "leader election attempt failed");
                leadership.set(false);
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => {
                leadership.set(false);
                return;
            }
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::{Request, Response, StatusCode};
    use http_body_util::Full;
    use serde_json::{json, Value};

    type Handle = tower_test::mock::Handle<Request<kube::client::Body>, Response<Full<Bytes>>>;

    fn lease(holder: &str, renewed: Timestamp, transitions: i32) -> Value {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "l", "namespace": "ns", "resourceVersion": "7"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                     "renewTime": MicroTime(renewed), "leaseTransitions": transitions}})
    }

    /// Answers the next request with `status`/`body`; returns the request's method and body.
    async fn answer(handle: &mut Handle, status: StatusCode, body: &Value) -> (String, Value) {
        let (req, send) = handle.next_request().await.expect("a request");
        let method = req.method().to_string();
        let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
        let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
        *resp.status_mut() = status;
        send.send_response(resp);
        (method, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    fn api() -> (Api<Lease>, Handle) {
        let (mock, handle) = tower_test::mock::pair::<Request<kube::client::Body>, Response<Full<Bytes>>>();
        (Api::namespaced(Client::new(mock, "ns"), "ns"), handle)
    }

    #[tokio::test]
    async fn creates_a_missing_lease() {
        let (api, mut handle) = api();
        let attempt = tokio::spawn(async move { try_acquire(&api, "l", "me").await });
        let not_found =
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404});
        assert_eq!(answer(&mut handle, StatusCode::NOT_FOUND, &not_found).await.0, "GET");
        let (method, body) = answer(&mut handle, StatusCode::CREATED, &lease("me", Timestamp::now(), 0)).await;
        assert_eq!(method, "POST");
        assert_eq!(body["spec"]["holderIdentity"], "me");
        assert!(attempt.await.unwrap().unwrap());
    }

    #[tokio::test]
    async fn respects_a_live_holder_and_takes_over_an_expired_one() {
        let (api, mut handle) = api();
        let a = api.clone();
        let attempt = tokio::spawn(async move { try_acquire(&a, "l", "me").await });
        answer(&mut handle, StatusCode::OK, &lease("other", Timestamp::now(), 3)).await;
        assert!(!attempt.await.unwrap().unwrap());

        let attempt = tokio::spawn(async move { try_acquire(&api, "l", "me").await });
        let old = Timestamp::now() - SignedDuration::from_secs(60);
        answer(&mut handle, StatusCode::OK, &lease("other", old, 3)).await;
        let (method, body) = answer(&mut handle, StatusCode::OK, &lease("me", Timestamp::now(), 4)).await;
        assert_eq!(method, "PUT");
        assert_eq!(body["spec"]["holderIdentity"], "me");
        assert_eq!(body["spec"]["leaseTransitions"], 4);
        assert_eq!(body["metadata"]["resourceVersion"], "7");
        assert!(attempt.await.unwrap().unwrap());
    }

    #[test]
    fn expiry() {
        let now = Timestamp::now();
        let mut spec = LeaseSpec {
            renew_time: Some(MicroTime(now - SignedDuration::from_secs(20))),
            lease_duration_seconds: Some(15),
            ..Default::default()
        };
        assert!(expired(&spec, now));
        spec.renew_time = Some(MicroTime(now - SignedDuration::from_secs(5)));
        assert!(!expired(&spec, now));
        assert!(expired(&LeaseSpec::default(), now));
    }
}
