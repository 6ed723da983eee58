//! Kong's plugin layer: one built instance per `plugins` entity, and per route the ordered chain
//! of instances that apply to it, resolved once per config (nothing is looked up by name per
//! request).
//!
//! - Precedence (Kong's `lookup_cfg`): for each plugin name exactly one instance applies, the
//!   most specific by [`Scope`], Kong's eight rows from route+service+consumer down to global.
//!   A route's chain is resolved without consumer rows; the routes where consumer-scoped
//!   instances apply also get one chain per such consumer, which the access phase switches to
//!   once an auth plugin identified the consumer (the plugins after it, and every later phase,
//!   run that chain: Kong re-resolves lazily after authentication).
//! - Disabled instances are never loaded (as in Kong), so they shadow nothing.
//! - Order: Kong's `PRIORITY`, descending; equal priorities by name, reversed (the order Kong's
//!   plugin iterator sorts them in).
//! - Phases: [`Plugin::access`] may answer the request itself with a [`PluginReply`], which
//!   `respond` turns into Kong's JSON or a gRPC trailers-only reply; [`Plugin::header_filter`]
//!   then still runs for every plugin of the chain (also on that reply), as in Kong.
//!
//! Where each plugin acts: `request-transformer` edits the request head in [`Plugin::access`]
//! and leaves what acts on the built upstream request (path, host, body) in
//! [`RequestState::upstream_edit`]; `request-size-limiting` checks the head in
//! [`Plugin::access`] and counts the body in [`Plugin::request_body`]; `response-transformer`
//! edits headers in [`Plugin::header_filter`], trailers in [`Plugin::body_filter`], and asks for
//! the JSON body through [`RequestState::json_body`].

use std::fmt::Debug;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue};
use proxy_config::plugins::PluginConfig;
use regex::Regex;
use thiserror::Error;

use crate::downstream::request_body::ClientBody;
use crate::respond::PluginReply;

pub(crate) mod acl;
pub(crate) mod basic_auth;
pub(crate) mod consumers;
pub(crate) mod correlation_id;
pub(crate) mod cors;
pub(crate) mod grpc_gateway;
pub(crate) mod grpc_web;
pub(crate) mod ip_restriction;
pub(crate) mod jwt;
pub(crate) mod key_auth;
pub(crate) mod opentelemetry;
pub(crate) mod prometheus;
pub(crate) mod rate_limiting;
pub(crate) mod request_size_limiting;
pub(crate) mod request_termination;
pub(crate) mod request_transformer;
pub(crate) mod response_transformer;

/// A plugin entity whose config cannot be built; `field` is Kong's flattened field name.
#[derive(Debug, Error, PartialEq)]
#[error("{message}")]
pub(crate) struct BuildError {
    pub field: String,
    pub message: String,
}

impl BuildError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        BuildError { field: field.into(), message: message.into() }
    }
}

/// Checks a plugin entity against proxy-config's schema of it (the one the controller checks
/// with) and returns the typed config; the first problem becomes the error.
pub(crate) fn typed_config(name: &str, config: &serde_json::Value) -> Result<PluginConfig, BuildError> {
    PluginConfig::from_entity(name, config).map_err(|errors| match errors.into_iter().next() {
        Some(e) => BuildError::new(e.field, e.message),
        None => BuildError::new("config", "invalid"),
    })
}

/// The phases a plugin has handlers for (Kong's handler.lua functions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phases(u8);

impl Phases {
    pub const NONE: Phases = Phases(0);
    pub const ACCESS: Phases = Phases(1);
    pub const HEADER_FILTER: Phases = Phases(4);
    pub const BODY_FILTER: Phases = Phases(8);
    pub const LOG: Phases = Phases(16);
    pub const REQUEST_BODY: Phases = Phases(32);
    pub const REQUEST_START: Phases = Phases(64);

    pub const fn union(self, other: Phases) -> Phases {
        Phases(self.0 | other.0)
    }
    pub fn contains(self, other: Phases) -> bool {
        self.0 & other.0 == other.0
    }
}

/// The consumer an auth plugin identified (Kong's `kong.client.get_consumer` / `get_credential`).
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub consumer_id: Arc<str>,
    pub credential_id: Option<Arc<str>>,
}

/// What a plugin keeps between the phases of one request (Kong's `kong.ctx.plugin`).
#[derive(Debug, Default)]
pub struct RequestState {
    /// The request's `Origin` (cors).
    pub origin: Option<HeaderValue>,
    /// The request was a CORS preflight answered or passed on by cors: no CORS response headers.
    pub cors_preflight: bool,
    /// The correlation id to echo downstream (correlation-id with `echo_downstream`).
    pub correlation_id: Option<HeaderValue>,
    /// The call grpc-gateway transcodes: its binding and the fields from the path and query.
    pub grpc_gateway: Option<Box<grpc_gateway::Transcode>>,
    /// Set when request-size-limiting counts the body: whether the limit ended it.
    pub size_limit: Option<request_size_limiting::Tripwire>,
    /// What request-transformer still does once the upstream request is built (its path and
    /// host, its body edit).
    pub upstream_edit: Option<Box<request_transformer::UpstreamEdit>>,
    /// Set by response-transformer's header_filter when this response's JSON body is to be
    /// edited (buffered, bounded, by `phases::body_filter`).
    pub json_body: Option<Arc<response_transformer::ResponseTransformer>>,
    /// opentelemetry's server span of a sampled request, until the access phase hands it to the
    /// request's record.
    pub(crate) trace: Option<Box<opentelemetry::RequestTrace>>,
    /// opentelemetry's client spans of a sampled request, fed by the balancer.
    pub(crate) trace_attempts: Option<Arc<opentelemetry::Attempts>>,
    /// Set by grpc-web's access on a gRPC-Web call: the response is re-framed for it.
    pub grpc_web: Option<crate::wire::grpc_web::Mode>,
    /// Who the request authenticated as (set by key-auth, basic-auth, jwt).
    pub authenticated: Option<Authenticated>,
    /// The authenticated consumer as the auth plugins and acl use it (consumers.rs); boxed so
    /// that requests without one carry a pointer's worth.
    pub consumer: Option<Box<consumers::Identified>>,
    /// rate-limiting's headers for the response, or its Redis check still to be awaited.
    pub rate_limit: Option<Box<rate_limiting::Counted>>,
}

impl RequestState {
    /// The reply to send instead of a failure that a plugin's body filter caused (the body went
    /// over request-size-limiting's limit, so the upstream exchange broke off).
    pub fn body_refusal(&self) -> Option<Box<PluginReply>> {
        self.size_limit.as_ref().filter(|t| t.tripped()).map(|_| Box::new(request_size_limiting::too_large()))
    }
}

/// The request as the access phase sees it: the client's request, before it is rewritten for
/// the upstream. What the plugins leave in `parts` (method, path, query, headers) goes upstream.
pub struct AccessCtx<'a> {
    pub parts: &'a mut Parts,
    /// The route's regex paths (only for routes whose chain reads `uri_captures`).
    pub capture_paths: &'a [Regex],
    /// Kong's forwarded client address: the PROXY protocol address, or `X-Real-IP` from a
    /// trusted peer (`KONG_TRUSTED_IPS`).
    pub client_ip: IpAddr,
    /// The matched route's and its service's names (rate-limiting's `limit_by: service`).
    pub route_name: &'a str,
    pub service_name: &'a str,
    pub grpc: bool,
    /// The client connection is TLS.
    pub tls: bool,
    pub state: &'a mut RequestState,
    /// The config's consumers and credentials (the auth plugins' lookups).
    pub consumers: &'a consumers::Consumers,
}

/// The response head as header_filter sees it (an upstream's, or the proxy's own reply).
pub struct HeaderFilterCtx<'a> {
    pub status: u16,
    pub headers: &'a mut HeaderMap,
    /// The route serves grpc or grpcs.
    pub grpc_route: bool,
    pub state: &'a mut RequestState,
}

/// One configured plugin instance. Every handler has a no-op default; [`Plugin::phases`] says
/// which ones the instance implements, so a chain calls only those.
pub trait Plugin: Send + Sync + Debug {
    /// Kong's plugin name.
    fn name(&self) -> &'static str;
    /// Kong's `PRIORITY` (handler.lua).
    fn priority(&self) -> u32;
    fn phases(&self) -> Phases;
    /// Before the access phase (where Kong's tracing starts): read or change the request head.
    fn request_start(&self, _req: &mut AccessCtx<'_>) {}
    /// Kong's access phase: inspect or change the request, or answer it (`Err`).
    fn access(&self, _req: &mut AccessCtx<'_>) -> Result<(), Box<PluginReply>> {
        Ok(())
    }
    /// The client's request body on its way upstream, after the access phase: a plugin may
    /// wrap it (request-size-limiting counts its bytes as they flow).
    fn request_body(&self, body: ClientBody, _headers: &HeaderMap, _state: &mut RequestState) -> ClientBody {
        body
    }
    /// Kong's header_filter: response headers (and a trailers-only reply's status).
    fn header_filter(&self, _resp: &mut HeaderFilterCtx<'_>) {}
    /// Kong's body_filter: one response frame (data or trailers).
    fn body_filter(&self, _frame: &mut http_body::Frame<Bytes>) {}
    /// Kong's log phase: the response status once the response is over.
    fn log(&self, _status: u16) {}
    /// The metric families its routes record (prometheus).
    fn metrics_options(&self) -> Option<crate::telemetry::metrics::MetricsOptions> {
        None
    }
}

/// Builds the instance a `plugins` entity describes, from proxy-config's typed config of it
/// (one schema, the one the controller checks with).
/// `scope` names the entity's route and service (`route:service`, either may be empty).
pub(crate) fn build(name: &str, config: &serde_json::Value, scope: &str) -> Result<Arc<dyn Plugin>, BuildError> {
    Ok(match typed_config(name, config)? {
        PluginConfig::Acl(c) => Arc::new(acl::Acl::new(&c)),
        PluginConfig::BasicAuth(c) => Arc::new(basic_auth::BasicAuth::new(&c)?),
        PluginConfig::Cors(c) => Arc::new(cors::Cors::new(&c)?),
        PluginConfig::GrpcWeb(c) => Arc::new(grpc_web::GrpcWeb::new(&c)?),
        PluginConfig::CorrelationId(c) => Arc::new(correlation_id::CorrelationId::new(&c)?),
        PluginConfig::GrpcGateway(c) => Arc::new(grpc_gateway::GrpcGateway::new(&c)?),
        PluginConfig::IpRestriction(c) => Arc::new(ip_restriction::IpRestriction::new(c)?),
        PluginConfig::Jwt(c) => Arc::new(jwt::Jwt::new(&c)?),
        PluginConfig::KeyAuth(c) => Arc::new(key_auth::KeyAuth::new(&c)?),
        PluginConfig::Opentelemetry(c) => Arc::new(opentelemetry::Opentelemetry::new(c)?),
        PluginConfig::Prometheus(c) => Arc::new(prometheus::Prometheus::new(&c)),
        PluginConfig::RateLimiting(c) => Arc::new(rate_limiting::RateLimiting::new(&c, scope)),
        PluginConfig::RequestSizeLimiting(c) => Arc::new(request_size_limiting::RequestSizeLimiting::new(&c)),
        PluginConfig::RequestTermination(c) => Arc::new(request_termination::RequestTermination::new(c)),
        PluginConfig::RequestTransformer(c) => Arc::new(request_transformer::RequestTransformerPlugin::new(&c)?),
        PluginConfig::ResponseTransformer(c) => Arc::new(response_transformer::ResponseTransformerPlugin::new(&c)?),
    })
}

/// How specific an instance's scope is, least specific first (Kong's `lookup_cfg` order
/// reversed: route+service+consumer > route+consumer > service+consumer > route+service >
/// consumer > route > service > global).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Global,
    Service,
    Route,
    Consumer,
    RouteService,
    ServiceConsumer,
    RouteConsumer,
    RouteServiceConsumer,
}

/// The plugins in force for one route, in execution order, split by phase.
#[derive(Debug, Default)]
pub struct PluginChain {
    all: Vec<Arc<dyn Plugin>>,
    access: Vec<Arc<dyn Plugin>>,
    header_filter: Vec<Arc<dyn Plugin>>,
    body_filter: Vec<Arc<dyn Plugin>>,
    log: Vec<Arc<dyn Plugin>>,
    request_body: Vec<Arc<dyn Plugin>>,
    request_start: Vec<Arc<dyn Plugin>>,
    /// grpc-web is in the chain (`phases::route` then lets gRPC-Web onto grpc routes).
    grpc_web: bool,
}

impl PluginChain {
    /// Picks, per plugin name, the most specific of `candidates` (scope, enabled instance) and
    /// orders the result by Kong's priority.
    pub fn resolve(candidates: impl IntoIterator<Item = (Scope, Arc<dyn Plugin>)>) -> PluginChain {
        let mut best: Vec<(Scope, Arc<dyn Plugin>)> = Vec::new();
        for (scope, p) in candidates {
            match best.iter_mut().find(|(_, q)| q.name() == p.name()) {
                Some(slot) if slot.0 < scope => *slot = (scope, p),
                Some(_) => {}
                None => best.push((scope, p)),
            }
        }
        let mut all: Vec<Arc<dyn Plugin>> = best.into_iter().map(|(_, p)| p).collect();
        all.sort_by(|a, b| b.priority().cmp(&a.priority()).then_with(|| b.name().cmp(a.name())));
        let with = |ph: Phases| all.iter().filter(|p| p.phases().contains(ph)).cloned().collect::<Vec<_>>();
        PluginChain {
            access: with(Phases::ACCESS),
            header_filter: with(Phases::HEADER_FILTER),
            body_filter: with(Phases::BODY_FILTER),
            log: with(Phases::LOG),
            request_body: with(Phases::REQUEST_BODY),
            request_start: with(Phases::REQUEST_START),
            grpc_web: all.iter().any(|p| p.name() == grpc_web::NAME),
            all,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }
    pub fn has_grpc_web(&self) -> bool {
        self.grpc_web
    }
    /// Plugin names in execution order.
    pub fn names(&self) -> Vec<&'static str> {
        self.all.iter().map(|p| p.name()).collect()
    }
    pub fn access(&self) -> &[Arc<dyn Plugin>] {
        &self.access
    }
    pub fn header_filter(&self) -> &[Arc<dyn Plugin>] {
        &self.header_filter
    }
    pub fn body_filter(&self) -> &[Arc<dyn Plugin>] {
        &self.body_filter
    }
    pub fn log(&self) -> &[Arc<dyn Plugin>] {
        &self.log
    }
    pub fn request_body(&self) -> &[Arc<dyn Plugin>] {
        &self.request_body
    }
    pub fn request_start(&self) -> &[Arc<dyn Plugin>] {
        &self.request_start
    }
    /// The metric families of the chain's prometheus instance, if it has one.
    pub fn metrics_options(&self) -> Option<crate::telemetry::metrics::MetricsOptions> {
        self.all.iter().find_map(|p| p.metrics_options())
    }
}

#[cfg(test)]
mod tests;
