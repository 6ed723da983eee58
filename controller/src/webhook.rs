//! The validating admission webhook (`--admission-webhook-listen`, off by default), as KIC's:
//! the API server sends an `admission.k8s.io/v1` AdmissionReview for each create or update of a
//! KongPlugin, KongClusterPlugin, Ingress, Service, HTTPRoute or GRPCRoute, and a bad object is
//! refused (`allowed: false`) with a message naming the object and the field, before it is stored.
//!
//! The checks are the translator's own ([`validate`]): the webhook only moves the Event that
//! translation would raise to the moment of `kubectl apply`. Translation still checks everything,
//! so an object that got in while the webhook was down (failurePolicy `Ignore`) costs no more than
//! it would without a webhook.
//!
//! Served over TLS ([`tls`]) on HTTP/1.1, at `POST /validate`.

pub mod tls;
mod validate;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::networking::v1::IngressClass;
use kube::api::Api;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::DynamicObject;
use kube::{Client, ResourceExt};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::kong_plugins::CONFIG_MAP_LABEL;
use crate::settings::Settings;
use crate::translate::ingress::DEFAULT_CLASS_ANNOTATION;
use validate::{Inputs, Reviewed, ValidateError};

/// The path the ValidatingWebhookConfiguration points at.
pub const PATH: &str = "/validate";
/// Largest AdmissionReview read (the API server's own request limit is 3 MiB per object).
const MAX_BODY: usize = 8 << 20;

/// Why a review could not be answered (the API server then applies the failurePolicy).
#[derive(Debug, Error)]
pub enum WebhookError {
    #[error("reading the request: {0}")]
    Body(String),
    #[error("not an admission.k8s.io/v1 AdmissionReview: {0}")]
    Review(String),
    #[error("looking up {what}: {source}")]
    Lookup { what: String, source: Box<kube::Error> },
}

/// Answers AdmissionReviews with the cluster's Secrets and IngressClass at hand.
pub struct Webhook {
    settings: Arc<Settings>,
    client: Client,
}

impl Webhook {
    pub fn new(settings: Arc<Settings>, client: Client) -> Self {
        Webhook { settings, client }
    }

    /// The answer to one AdmissionReview body.
    pub async fn review(&self, body: &[u8]) -> Result<AdmissionReview<DynamicObject>, WebhookError> {
        let review: AdmissionReview<DynamicObject> =
            serde_json::from_slice(body).map_err(|e| WebhookError::Review(e.to_string()))?;
        let request: AdmissionRequest<DynamicObject> = review
            .try_into()
            .map_err(|e: kube::core::admission::ConvertAdmissionReviewError| WebhookError::Review(e.to_string()))?;
        let response = AdmissionResponse::from(&request);
        let object = match (&request.operation, &request.object) {
            (Operation::Create | Operation::Update, Some(object)) => object,
            _ => return Ok(response.into_review()),
        };
        let value = serde_json::to_value(object).map_err(|e| WebhookError::Review(e.to_string()))?;
        let reviewed = match Reviewed::parse(&request.kind.group, &request.kind.kind, value) {
            Ok(r) => r,
            // A kind the configuration should not send us: not ours to refuse.
            Err(ValidateError::UnknownKind { .. }) => return Ok(response.into_review()),
            Err(e) => return Ok(response.deny(e).into_review()),
        };
        let inputs = self.inputs(&reviewed).await?;
        let problems = validate::check(&reviewed, &inputs, &self.settings);
        if problems.is_empty() {
            return Ok(response.into_review());
        }
        let message = problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        tracing::info!(kind = %request.kind.kind, name = %request.name, %message, "admission refused");
        Ok(response.deny(message).into_review())
    }

    /// Fetches what the checks of `reviewed` read from the cluster.
    async fn inputs(&self, reviewed: &Reviewed) -> Result<Inputs, WebhookError> {
        let mut secrets = HashMap::new();
        for (namespace, name) in reviewed.secrets() {
            if let Some(mut secret) = self.get::<Secret>(&namespace, &name).await? {
                crate::watch::strip_secret(&mut secret);
                secrets.insert((namespace, name), secret);
            }
        }
        let mut config_maps = HashMap::new();
        for (namespace, name) in reviewed.config_maps() {
            let found = self.get::<ConfigMap>(&namespace, &name).await?;
            // Translation reads only labelled ConfigMaps (the only ones the watch sees).
            if let Some(c) = found.filter(|c| c.labels().get(CONFIG_MAP_LABEL).map(String::as_str) == Some("true")) {
                config_maps.insert((namespace, name), c);
            }
        }
        let mut default_class = false;
        if reviewed.needs_default_class() {
            let class = &self.settings.ingress_class;
            let api: Api<IngressClass> = Api::all(self.client.clone());
            let found = api
                .get_opt(class)
                .await
                .map_err(|e| WebhookError::Lookup { what: format!("IngressClass {class}"), source: Box::new(e) })?;
            default_class = found
                .is_some_and(|c| c.annotations().get(DEFAULT_CLASS_ANNOTATION).map(String::as_str) == Some("true"));
        }
        Ok(Inputs { secrets, config_maps, default_class })
    }

    /// One namespaced object, if it exists.
    async fn get<K>(&self, namespace: &str, name: &str) -> Result<Option<K>, WebhookError>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        api.get_opt(name).await.map_err(|e| WebhookError::Lookup {
            what: format!("{} {namespace}/{name}", K::kind(&())),
            source: Box::new(e),
        })
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    resp
}

async fn handle(webhook: &Webhook, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() != PATH {
        return respond(StatusCode::NOT_FOUND, "text/plain", b"not found".to_vec());
    }
    if req.method() != Method::POST {
        return respond(StatusCode::METHOD_NOT_ALLOWED, "text/plain", b"POST an AdmissionReview".to_vec());
    }
    let answer = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => webhook.review(&body.to_bytes()).await,
        Err(e) => Err(WebhookError::Body(e.to_string())),
    };
    match answer.and_then(|review| serde_json::to_vec(&review).map_err(|e| WebhookError::Review(e.to_string()))) {
        Ok(json) => respond(StatusCode::OK, "application/json", json),
        Err(e) => {
            tracing::warn!(error = %e, "admission review failed");
            let status = match e {
                WebhookError::Lookup { .. } => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_REQUEST,
            };
            respond(status, "text/plain", e.to_string().into_bytes())
        }
    }
}

/// Binds `addr` and serves the webhook over TLS until `shutdown`; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    webhook: Arc<Webhook>,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let acceptor = TlsAcceptor::from(tls);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => return,
                a = listener.accept() => a,
            };
            let Ok((stream, _)) = accepted else { continue };
            let (acceptor, webhook) = (acceptor.clone(), webhook.clone());
            tokio::spawn(async move {
                let stream = match acceptor.accept(stream).await {
                    Ok(s) => s,
                    Err(e) => return tracing::debug!(error = %e, "admission webhook TLS handshake failed"),
                };
                let svc = service_fn(move |req| {
                    let webhook = webhook.clone();
                    async move { Ok::<_, Infallible>(handle(&webhook, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A webhook whose client answers every API call with a Secret holding a plugin config.
    fn webhook() -> (Webhook, tokio::task::JoinHandle<usize>) {
        let (mock, mut handle) = tower_test::mock::pair::<Request<kube::client::Body>, Response<Full<Bytes>>>();
        let server = tokio::spawn(async move {
            let mut calls = 0;
            while let Some((req, send)) = handle.next_request().await {
                calls += 1;
                assert_eq!(req.uri().path(), "/api/v1/namespaces/ns/secrets/conf");
                let secret = json!({"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "conf", "namespace": "ns", "labels": {"konghq.com/secret": "true"}},
                    "data": {"k": "eyJzdGF0dXNfY29kZSI6IDEwMDB9"}});
                send.send_response(Response::new(Full::new(Bytes::from(secret.to_string()))));
            }
            calls
        });
        (Webhook::new(Arc::new(Settings::default()), Client::new(mock, "default")), server)
    }

    fn review(operation: &str, object: serde_json::Value) -> Vec<u8> {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "u-1", "operation": operation, "name": "p", "namespace": "ns",
            "kind": {"group": "configuration.konghq.com", "version": "v1", "kind": "KongPlugin"},
            "resource": {"group": "configuration.konghq.com", "version": "v1", "resource": "kongplugins"},
            "userInfo": {}, "object": object}})
        .to_string()
        .into_bytes()
    }

    fn answer(review: &AdmissionReview<DynamicObject>) -> serde_json::Value {
        serde_json::to_value(review).unwrap()["response"].clone()
    }

    #[tokio::test]
    async fn reviews_answer_with_the_request_uid() {
        let (webhook, server) = webhook();
        let plugin = |config: serde_json::Value| {
            json!({"apiVersion": "configuration.konghq.com/v1", "kind": "KongPlugin",
                   "metadata": {"name": "p", "namespace": "ns"}, "plugin": "request-transformer", "config": config})
        };
        let ok = webhook.review(&review("CREATE", plugin(json!({"add": {"headers": ["a:b"]}})))).await.unwrap();
        assert_eq!(answer(&ok)["allowed"], true);
        assert_eq!(answer(&ok)["uid"], "u-1");

        let bad = answer(&webhook.review(&review("UPDATE", plugin(json!({"nope": 1})))).await.unwrap());
        assert_eq!(bad["allowed"], false);
        let message = bad["status"]["message"].as_str().unwrap();
        assert!(message.starts_with("KongPlugin ns/p: config.nope: "), "{message}");

        // configFrom: the Secret is fetched through the API and its value checked.
        let from = json!({"apiVersion": "configuration.konghq.com/v1", "kind": "KongPlugin",
            "metadata": {"name": "p", "namespace": "ns"}, "plugin": "request-termination",
            "configFrom": {"secretKeyRef": {"name": "conf", "key": "k"}}});
        let bad = answer(&webhook.review(&review("CREATE", from)).await.unwrap());
        assert_eq!(bad["allowed"], false);
        assert!(bad["status"]["message"].as_str().unwrap().contains("status_code"), "{bad}");

        let gone = webhook.review(&review("DELETE", serde_json::Value::Null)).await.unwrap();
        assert_eq!(answer(&gone)["allowed"], true);
        assert!(matches!(webhook.review(b"{}").await, Err(WebhookError::Review(_))));
        drop(webhook);
        assert_eq!(server.await.unwrap(), 1);
    }
}
