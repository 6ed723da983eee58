//! Serde types for Kong declarative config 3.0, the subset sluice understands.
//!
//! Unknown fields are rejected (`deny_unknown_fields`), as Kong's schema does: a typo must not be
//! silently ignored. Defaults are Kong's, filled in at parse time so that two configs that mean the
//! same thing serialize (and hash) the same.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The only format version sluice accepts.
pub const FORMAT_VERSION: &str = "3.0";

/// The most a route with `request_buffering` or `response_buffering` set to `true` collects of a
/// body (8 MiB): a larger request body gets 413, a larger response body 502.
pub const BUFFER_LIMIT: usize = 8 << 20;

/// A whole declarative configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(rename = "_format_version")]
    pub format_version: String,
    #[serde(rename = "_transform", default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<Service>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<Upstream>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<Certificate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ca_certificates: Vec<CaCertificate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plugins: Vec<Plugin>,
    /// Kong's top-level form of `upstreams[].targets`: each names its upstream; moved under it at
    /// parse time (see [`crate::shorthand`]); one left here names no upstream (a validation error).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TopTarget>,
    /// Kong's top-level form of `certificates[].snis`, each naming its certificate by id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snis: Vec<TopSni>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<crate::consumers::Consumer>,
}

/// A target written at the top level, naming its upstream by name or id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TopTarget {
    pub upstream: EntityRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub target: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// An SNI written at the top level, naming its certificate (by id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TopSni {
    pub certificate: EntityRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl Config {
    /// A config with nothing in it (what the proxy serves before the first push).
    pub fn empty() -> Self {
        Config { format_version: FORMAT_VERSION.to_string(), ..Default::default() }
    }

    /// True when the config routes nothing: no services and no routes.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty() && self.routes.is_empty()
    }

    /// Every plugin entity with the consumer it is nested under: top level, under services,
    /// under routes, under consumers.
    pub fn all_plugins(&self) -> impl Iterator<Item = (&Plugin, Option<&crate::consumers::Consumer>)> {
        let nested = self.services.iter().flat_map(|s| s.plugins.iter());
        let routes = self.all_routes().flat_map(|(r, _)| r.plugins.iter());
        let consumers = self.consumers.iter().flat_map(|c| c.plugins.iter().map(move |p| (p, Some(c))));
        self.plugins.iter().chain(nested).chain(routes).map(|p| (p, None)).chain(consumers)
    }

    /// Every route with the service it belongs to: nested routes first (service order), then
    /// top-level routes with their `service` reference (which may be dangling; validation says so).
    pub fn all_routes(&self) -> impl Iterator<Item = (&Route, Option<RouteOwner<'_>>)> {
        let nested = self.services.iter().flat_map(|s| s.routes.iter().map(move |r| (r, Some(RouteOwner::Nested(s)))));
        let top = self.routes.iter().map(|r| (r, r.service.as_ref().map(RouteOwner::Ref)));
        nested.chain(top)
    }

    /// Looks a service up by name or id, as a route's or plugin's `service` field refers to it.
    pub fn find_service(&self, reference: &EntityRef) -> Option<&Service> {
        self.services.iter().find(|s| reference.matches(s.name.as_deref(), s.id.as_deref()))
    }
}

/// How a route reaches its service.
#[derive(Debug, Clone, Copy)]
pub enum RouteOwner<'a> {
    /// Nested under `services[].routes[]`.
    Nested(&'a Service),
    /// Top-level route with a `service` reference.
    Ref(&'a EntityRef),
}

/// A reference to another entity: `service: name`, `service: {name: x}` or `service: {id: x}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum EntityRef {
    Name(String),
    Object(EntityRefObject),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EntityRefObject {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl EntityRef {
    pub fn matches(&self, name: Option<&str>, id: Option<&str>) -> bool {
        match self {
            EntityRef::Name(n) => name == Some(n.as_str()) || id == Some(n.as_str()),
            EntityRef::Object(o) => {
                (o.name.is_some() && o.name.as_deref() == name) || (o.id.is_some() && o.id.as_deref() == id)
            }
        }
    }
}

impl fmt::Display for EntityRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntityRef::Name(n) => f.write_str(n),
            EntityRef::Object(o) => f.write_str(o.name.as_deref().or(o.id.as_deref()).unwrap_or("")),
        }
    }
}

/// Kong protocols. sluice proxies the HTTP and gRPC families; the others parse (so a config that
/// names them gets a clear validation error instead of a serde one) but are rejected by validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Http,
    Https,
    Grpc,
    Grpcs,
    Ws,
    Wss,
    Tcp,
    Tls,
    TlsPassthrough,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::Grpc => "grpc",
            Protocol::Grpcs => "grpcs",
            Protocol::Ws => "ws",
            Protocol::Wss => "wss",
            Protocol::Tcp => "tcp",
            Protocol::Tls => "tls",
            Protocol::TlsPassthrough => "tls_passthrough",
            Protocol::Udp => "udp",
        }
    }

    pub fn is_grpc(self) -> bool {
        matches!(self, Protocol::Grpc | Protocol::Grpcs)
    }

    /// Whether the protocol runs over TLS between the client (or proxy) and its peer.
    pub fn is_tls(self) -> bool {
        matches!(self, Protocol::Https | Protocol::Grpcs | Protocol::Wss | Protocol::Tls | Protocol::TlsPassthrough)
    }

    /// The family a route's protocols must all belong to (Kong forbids mixing families).
    pub fn family(self) -> &'static str {
        match self {
            Protocol::Http | Protocol::Https => "http",
            Protocol::Grpc | Protocol::Grpcs => "grpc",
            Protocol::Ws | Protocol::Wss => "ws",
            Protocol::Tcp | Protocol::Tls | Protocol::Udp => "stream",
            Protocol::TlsPassthrough => "tls_passthrough",
        }
    }

    pub const ALL: [Protocol; 10] = [
        Protocol::Http,
        Protocol::Https,
        Protocol::Grpc,
        Protocol::Grpcs,
        Protocol::Ws,
        Protocol::Wss,
        Protocol::Tcp,
        Protocol::Tls,
        Protocol::TlsPassthrough,
        Protocol::Udp,
    ];
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Protocol::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| format!("unknown protocol '{s}'"))
    }
}

fn default_protocol() -> Protocol {
    Protocol::Http
}
fn default_port() -> u16 {
    80
}
fn default_timeout() -> u64 {
    60_000
}
/// Request bodies up to this many bytes are kept for a retry unless `retry_buffer_size` says
/// otherwise (the size of gRPC's own per-call retry buffer).
pub const DEFAULT_RETRY_BUFFER_SIZE: u32 = 64 << 10;
/// The largest `retry_buffer_size` accepted (each call in flight may hold this much).
pub const MAX_RETRY_BUFFER_SIZE: u32 = 16 << 20;

fn default_retries() -> u32 {
    5
}
fn default_true() -> bool {
    true
}
fn default_route_protocols() -> Vec<Protocol> {
    vec![Protocol::Http, Protocol::Https]
}
fn default_redirect() -> u16 {
    426
}
fn default_weight() -> u32 {
    100
}
fn default_slots() -> u32 {
    10_000
}

/// A Kong service: where matched requests go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Service {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Kong's shorthand for `protocol`, `host`, `port` and `path` together
    /// (`grpc://host:port`); expanded at parse time (see [`crate::shorthand`]), so it stays set
    /// only when it could not be read (a validation error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default = "default_protocol")]
    pub protocol: Protocol,
    #[serde(default)]
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default = "default_timeout")]
    pub connect_timeout: u64,
    #[serde(default = "default_timeout")]
    pub read_timeout: u64,
    #[serde(default = "default_timeout")]
    pub write_timeout: u64,
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// sluice extension: a trailers-only gRPC UNAVAILABLE answer (nothing yet sent to the
    /// client) is retried on another target like a refused stream. Default off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on_unavailable: Option<bool>,
    /// sluice extension: the largest request body, in bytes, kept to replay on a retry
    /// (default [`DEFAULT_RETRY_BUFFER_SIZE`]); a larger body is sent once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_buffer_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_verify: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_verify_depth: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificates: Option<Vec<String>>,
    /// The certificate (`certificates[]`, by id) presented to a TLS upstream that asks for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<EntityRef>,
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plugins: Vec<Plugin>,
}

/// Kong's two path handling algorithms (how a service path and the stripped request path join).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum PathHandling {
    #[default]
    V0,
    V1,
}

/// A Kong route: what requests it matches and how it forwards them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Only on top-level routes: the service the route forwards to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<EntityRef>,
    #[serde(default = "default_route_protocols")]
    pub protocols: Vec<Protocol>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snis: Vec<String>,
    /// Kong's default is `true` for HTTP routes and `false` for gRPC routes (where `true` is an
    /// error); `None` means "the default for the route's protocols", see [`Route::strips_path`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strip_path: Option<bool>,
    #[serde(default)]
    pub preserve_host: bool,
    #[serde(default)]
    pub regex_priority: i64,
    /// sluice extension: when set, outranks Kong's derived priority (higher wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u64>,
    #[serde(default = "default_redirect")]
    pub https_redirect_status_code: u16,
    #[serde(default)]
    pub path_handling: PathHandling,
    /// `true` collects the whole request body (up to [`BUFFER_LIMIT`]) before the upstream request
    /// is sent, which then carries a `content-length`; `false` and absent stream it (absent differs
    /// from Kong's default `true`: gRPC calls are streams). An error on gRPC routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_buffering: Option<bool>,
    /// `true` collects the whole response body (up to [`BUFFER_LIMIT`]) before the client gets the
    /// response head; `false` and absent stream it. An error on gRPC routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_buffering: Option<bool>,
    /// sluice extension (Gateway API HTTPRoute `timeouts.request`), in ms: bounds the whole
    /// exchange from the request's arrival to the response's last byte (504, or gRPC
    /// DEADLINE_EXCEEDED). Absent: no bound beyond the service's timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<u64>,
    /// sluice extension (Gateway API HTTPRoute `timeouts.backendRequest`), in ms: bounds each
    /// attempt to the upstream, from sending the request to the response's last byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_request_timeout: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plugins: Vec<Plugin>,
}

impl Route {
    /// True when every protocol of the route is gRPC.
    pub fn is_grpc(&self) -> bool {
        !self.protocols.is_empty() && self.protocols.iter().all(|p| p.is_grpc())
    }

    /// The effective `strip_path` (Kong defaults: true for HTTP, false for gRPC).
    pub fn strips_path(&self) -> bool {
        self.strip_path.unwrap_or(!self.is_grpc())
    }

    /// The name used in errors, metrics and logs: name, else id, else empty.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().or(self.id.as_deref()).unwrap_or("")
    }
}

impl Service {
    pub fn display_name(&self) -> &str {
        self.name.as_deref().or(self.id.as_deref()).unwrap_or(&self.host)
    }
}

/// Load-balancing algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    #[default]
    RoundRobin,
    LeastConnections,
    ConsistentHashing,
    Latency,
}

/// What consistent hashing hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum HashOn {
    #[default]
    None,
    Consumer,
    Ip,
    Header,
    Cookie,
    Path,
    QueryArg,
    UriCapture,
}

/// A named pool of targets; a service whose `host` equals an upstream's `name` balances over it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub algorithm: Algorithm,
    #[serde(default)]
    pub hash_on: HashOn,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_on_header: Option<String>,
    #[serde(default)]
    pub hash_fallback: HashOn,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_fallback_header: Option<String>,
    #[serde(default = "default_slots")]
    pub slots: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthchecks: Option<Healthchecks>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<Target>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// Kong's healthcheck block: `active` probes (http, https, tcp, and sluice's grpc/grpcs through
/// `grpc.health.v1.Health/Check`) and `passive` circuit breaking on live traffic.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Healthchecks {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<ActiveHealthcheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passive: Option<PassiveHealthcheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
}

/// What an active probe speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum ActiveKind {
    #[default]
    Http,
    Https,
    Tcp,
    /// sluice extension: `grpc.health.v1.Health/Check` over cleartext HTTP/2.
    Grpc,
    /// sluice extension: `grpc.health.v1.Health/Check` over TLS.
    Grpcs,
}

fn default_active_timeout() -> f64 {
    1.0
}
fn default_concurrency() -> u32 {
    10
}
fn default_http_path() -> String {
    "/".into()
}
fn default_active_healthy_statuses() -> Vec<u16> {
    vec![200, 302]
}
fn default_active_unhealthy_statuses() -> Vec<u16> {
    vec![429, 404, 500, 501, 502, 503, 504, 505]
}

/// Kong's `healthchecks.active`. Probing runs while `healthy.interval` or `unhealthy.interval`
/// is above 0; a threshold of 0 turns its counter off (Kong's defaults: all 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ActiveHealthcheck {
    #[serde(rename = "type", default)]
    pub kind: ActiveKind,
    /// Seconds a probe may take.
    #[serde(default = "default_active_timeout")]
    pub timeout: f64,
    /// Targets probed at the same time.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    #[serde(default = "default_http_path")]
    pub http_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_sni: Option<String>,
    #[serde(default = "default_true")]
    pub https_verify_certificate: bool,
    /// Extra probe request headers (name -> values).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Vec<String>>,
    /// `grpc`/`grpcs`: the service named in the `HealthCheckRequest`; empty = the whole server.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub grpc_service: String,
    #[serde(default)]
    pub healthy: ActiveHealthy,
    #[serde(default)]
    pub unhealthy: ActiveUnhealthy,
}

impl Default for ActiveHealthcheck {
    fn default() -> Self {
        serde_json::from_value(serde_json::json!({})).unwrap_or_else(|_| unreachable!("all fields default"))
    }
}

impl ActiveHealthcheck {
    /// Whether any probing happens.
    pub fn enabled(&self) -> bool {
        self.healthy.interval > 0.0 || self.unhealthy.interval > 0.0
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ActiveHealthy {
    /// Seconds between probes of a healthy target (0: healthy targets are not probed).
    #[serde(default)]
    pub interval: f64,
    #[serde(default = "default_active_healthy_statuses")]
    pub http_statuses: Vec<u16>,
    /// Consecutive successful probes that make an unhealthy target healthy (0: never).
    #[serde(default)]
    pub successes: u32,
}

impl Default for ActiveHealthy {
    fn default() -> Self {
        ActiveHealthy { interval: 0.0, http_statuses: default_active_healthy_statuses(), successes: 0 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ActiveUnhealthy {
    /// Seconds between probes of an unhealthy target (0: unhealthy targets are not probed).
    #[serde(default)]
    pub interval: f64,
    #[serde(default = "default_active_unhealthy_statuses")]
    pub http_statuses: Vec<u16>,
    #[serde(default)]
    pub http_failures: u32,
    #[serde(default)]
    pub tcp_failures: u32,
    #[serde(default)]
    pub timeouts: u32,
}

impl Default for ActiveUnhealthy {
    fn default() -> Self {
        ActiveUnhealthy {
            interval: 0.0,
            http_statuses: default_active_unhealthy_statuses(),
            http_failures: 0,
            tcp_failures: 0,
            timeouts: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PassiveHealthcheck {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<PassiveHealthy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy: Option<PassiveUnhealthy>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PassiveHealthy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_statuses: Option<Vec<u16>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successes: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PassiveUnhealthy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_statuses: Option<Vec<u16>>,
    /// sluice extension: gRPC status codes (of a trailers-only gRPC response) that count as
    /// `http_failures`; default `[14]` (UNAVAILABLE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_statuses: Option<Vec<u16>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_failures: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_failures: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<u32>,
}

/// One balancing target: `host:port` (port defaults to 8000, as in Kong) and a weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Target {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub target: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// A server certificate (PEM chain + key) and the SNIs it serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub cert: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snis: Vec<Sni>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl Certificate {
    /// The name used in errors: id, else the first SNI, else empty.
    pub fn display_name(&self) -> &str {
        self.id.as_deref().or_else(|| self.snis.first().map(Sni::name)).unwrap_or("")
    }
}

/// An SNI, written either as a bare name or as Kong's nested `{name: ...}` entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum Sni {
    Name(String),
    Object(SniObject),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SniObject {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl Sni {
    pub fn name(&self) -> &str {
        match self {
            Sni::Name(n) => n,
            Sni::Object(o) => &o.name,
        }
    }
}

/// A CA certificate a TLS upstream is verified against (`services[].ca_certificates` holds ids).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CaCertificate {
    pub id: String,
    pub cert: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// A plugin instance; `config` is checked and typed by [`crate::plugins`] (the plugins sluice
/// implements are [`SUPPORTED_PLUGINS`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Plugin {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<EntityRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<EntityRef>,
    /// The consumer scope (`consumers[]` by username or id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<EntityRef>,
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocols: Option<Vec<Protocol>>,
    #[serde(default)]
    pub config: serde_json::Value,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl Plugin {
    pub fn display_name(&self) -> &str {
        self.instance_name.as_deref().or(self.id.as_deref()).unwrap_or(&self.name)
    }
}

/// The plugins sluice implements.
pub const SUPPORTED_PLUGINS: &[&str] = crate::plugins::PLUGIN_NAMES;

/// The header operations the controller generates for `request-transformer` /
/// `response-transformer` (Gateway API header filters), each header as `"name:value"` (Kong's
/// format); `remove` lists bare names. The full, checked schemas are
/// [`crate::plugins::RequestTransformerConfig`] and [`crate::plugins::ResponseTransformerConfig`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TransformerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_method: Option<String>,
    #[serde(default)]
    pub remove: TransformOps,
    #[serde(default)]
    pub rename: TransformOps,
    #[serde(default)]
    pub replace: TransformOps,
    #[serde(default)]
    pub add: TransformOps,
    #[serde(default)]
    pub append: TransformOps,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TransformOps {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub querystring: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub body: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub json: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub json_types: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

/// The `request-termination` config the controller generates: a fixed reply instead of proxying.
/// The full, checked schema is [`crate::plugins::RequestTerminationConfig`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TerminationConfig {
    #[serde(default = "default_termination_status")]
    pub status_code: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

fn default_termination_status() -> u16 {
    503
}
