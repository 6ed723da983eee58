//! The proxy's whole runtime state behind one `ArcSwap` root: router, services, routes, balancers,
//! certificates and the config hash. A request loads the root once and keeps that snapshot to its
//! end, so a swap never mixes two configs in one request and never waits for requests in flight.
//! A new config is validated and fully built before the swap; a config that fails either step
//! changes nothing.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderValue;
use proxy_config::{
    config_hash, validate, Config, EntityError, FieldError, FlattenedError, PathHandling, Protocol, RouteOwner,
    EMPTY_HASH,
};
use rustls::sign::CertifiedKey;

use super::retire::Retirer;
use crate::listen::tls::{self, CertStore};
use crate::plugins::consumers::Consumers;
use crate::plugins::{self, PluginChain, Scope};
use crate::router::Router;
use crate::telemetry::metrics::{Metrics, MetricsOptions, RouteMetrics};
use crate::upstream::active_checks::ActiveChecks;
use crate::upstream::balancer::{Balancer, HealthRegistry};
use crate::upstream::dns::Resolver;
use crate::upstream::pool::Transport;
use crate::upstream::replay::Replay;

/// A service as the request path needs it.
pub struct ServiceRt {
    pub name: Arc<str>,
    pub protocol: Protocol,
    pub host: Arc<str>,
    pub port: u16,
    pub path: Option<String>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub retries: u32,
    /// What an attempt that may still be retried keeps for a replay (`retry_buffer_size`,
    /// `retry_on_unavailable`).
    pub replay: Replay,
    pub transport: Transport,
    /// The balancer when `host` names an upstream; else the host itself is the only target.
    pub balancer: Option<Arc<Balancer>>,
    /// Host header sent upstream when the route does not preserve the client's host.
    pub upstream_host: HeaderValue,
}

/// A route as the request path needs it (index = router index).
pub struct RouteRt {
    pub name: Arc<str>,
    pub service: Option<usize>,
    pub http: bool,
    pub https: bool,
    pub grpc: bool,
    pub grpcs: bool,
    pub strip_path: bool,
    pub preserve_host: bool,
    pub path_handling: PathHandling,
    pub https_redirect_status_code: u16,
    /// HTTPRoute `timeouts.request`: the whole exchange, from the request's arrival.
    pub request_timeout: Option<Duration>,
    /// HTTPRoute `timeouts.backendRequest`: each attempt, from sending to the response's end.
    pub backend_request_timeout: Option<Duration>,
    /// `request_buffering: true`: the request body is collected whole before it is sent.
    pub request_buffering: bool,
    /// `response_buffering: true`: the response body is collected whole before the head goes out.
    pub response_buffering: bool,
    /// The plugins that apply to this route, resolved by Kong's precedence, in execution order.
    pub plugins: Arc<PluginChain>,
    /// Per consumer (index into [`LiveConfig::consumers`]) with plugins scoped to it that apply
    /// here, the chain re-resolved with them; empty (no allocation) when there is none.
    pub consumer_chains: HashMap<usize, Arc<PluginChain>>,
    /// The route's regex paths, for Kong's `uri_captures` (only when a plugin of the chain,
    /// request-transformer, renders them; else empty).
    pub capture_paths: Box<[regex::Regex]>,
    pub metrics: Arc<RouteMetrics>,
}

impl RouteRt {
    pub fn is_grpc_route(&self) -> bool {
        (self.grpc || self.grpcs) && !(self.http || self.https)
    }
}

/// One immutable config, ready to serve.
pub struct LiveConfig {
    pub config: Arc<Config>,
    pub hash: String,
    pub router: Router,
    pub routes: Vec<RouteRt>,
    pub services: Vec<ServiceRt>,
    pub certs: Arc<CertStore>,
    /// Every upstream, in config order (health checks, `/status`, the target health metric).
    pub balancers: Vec<Arc<Balancer>>,
    /// Unrouted requests' metric families and whether target health is exported
    /// ([`MetricsOptions::for_config`]).
    pub metrics_options: MetricsOptions,
    /// The consumers and their credentials.
    pub consumers: Consumers,
}

impl LiveConfig {
    pub fn is_empty(&self) -> bool {
        self.config.is_empty()
    }
}

/// Result of applying a config.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// The config is live; its hash.
    Swapped(String),
    /// `check_hash` was asked and the hash equals the live one: nothing changed.
    Unchanged(String),
}

/// The root: current runtime plus what a rebuild needs to carry over.
pub struct State {
    current: ArcSwap<LiveConfig>,
    default_cert: Arc<CertifiedKey>,
    health: Mutex<HealthRegistry>,
    /// Probes of the live config's upstreams with active health checks.
    checks: Mutex<ActiveChecks>,
    /// Serializes builds so two pushes cannot interleave their swaps.
    apply_lock: Mutex<()>,
    /// Frees replaced configs off the request threads.
    retired: Retirer<LiveConfig>,
    pub metrics: Arc<Metrics>,
}

impl State {
    /// `dns` is the proxy's DNS cache (the pool's), which active health probes resolve through.
    pub fn new(
        default_cert: Arc<CertifiedKey>,
        metrics: Arc<Metrics>,
        dns: Arc<Resolver>,
    ) -> Result<State, FlattenedError> {
        let mut health = HealthRegistry::default();
        let empty = build(Config::empty(), &default_cert, &mut health, &metrics)?;
        Ok(State {
            current: ArcSwap::from_pointee(empty),
            default_cert,
            health: Mutex::new(health),
            checks: Mutex::new(ActiveChecks::new(dns)),
            apply_lock: Mutex::new(()),
            retired: Retirer::new(),
            metrics,
        })
    }

    /// The live runtime (one atomic load; keep it for the whole request).
    pub fn load(&self) -> Arc<LiveConfig> {
        self.current.load_full()
    }

    /// Cheap access for hot paths that do not keep the snapshot.
    pub fn current(&self) -> arc_swap::Guard<Arc<LiveConfig>> {
        self.current.load()
    }

    /// Validates, builds and swaps in `config`. On error nothing changes.
    pub fn apply(&self, config: Config, check_hash: bool) -> Result<Applied, FlattenedError> {
        validate(&config)?;
        let hash = config_hash(&config);
        let _guard = self.apply_lock.lock().unwrap_or_else(|p| p.into_inner());
        if check_hash && self.current.load().hash == hash {
            self.metrics.config_pushes.with_label_values(&["unchanged"]).inc();
            return Ok(Applied::Unchanged(hash));
        }
        let runtime = {
            let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
            let r = build(config, &self.default_cert, &mut health, &self.metrics);
            if let Ok(rt) = &r {
                let live: HashSet<(String, String)> = rt
                    .config
                    .upstreams
                    .iter()
                    .flat_map(|u| u.targets.iter().map(move |t| (u.name.clone(), t.target.clone())))
                    .collect();
                health.retain(&live);
            }
            r
        };
        match runtime {
            Ok(rt) => {
                self.checks
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .sync(rt.balancers.iter().map(|b| &**b), |verify, h2| {
                        tls::upstream_client_config_with(verify, &[], h2, None, None)
                    });
                self.metrics.set_config_hash(&rt.hash);
                self.metrics.set_options(rt.metrics_options);
                self.retired.retire(self.current.swap(Arc::new(rt)));
                self.metrics.config_pushes.with_label_values(&["accepted"]).inc();
                Ok(Applied::Swapped(hash))
            }
            Err(e) => {
                self.metrics.config_pushes.with_label_values(&["rejected"]).inc();
                Err(e)
            }
        }
    }

    pub fn hash(&self) -> String {
        self.current.load().hash.clone()
    }

    /// How many targets active health checks probe now.
    pub fn probed_targets(&self) -> usize {
        self.checks.lock().unwrap_or_else(|p| p.into_inner()).running()
    }
}

/// One `plugins` entity, built, with its scope as indices (route: `Config::all_routes` order).
struct Instance {
    route: Option<usize>,
    service: Option<usize>,
    consumer: Option<usize>,
    enabled: bool,
    plugin: Arc<dyn plugins::Plugin>,
}

/// A plugin entity and its (route, service, consumer) references: `None` no reference,
/// `Some(None)` a reference that names nothing, `Some(Some(i))` the entity at index `i`.
type Scoped<'a> = (&'a proxy_config::Plugin, Option<Option<usize>>, Option<Option<usize>>, Option<Option<usize>>);

/// (plugin name, route, service, consumer): one instance per name per scope.
type ScopeKey<'a> = (&'a str, Option<usize>, Option<usize>, Option<usize>);

/// Builds every plugin entity once (top level, nested under services, nested under routes).
/// Two instances of one name for the same (route, service, consumer) scope, or two with one
/// `instance_name`, are errors. Unresolvable references were reported by validation; such an
/// instance is left out rather than taken for a global one.
fn build_plugins(config: &Config, errors: &mut Vec<EntityError>) -> Vec<Instance> {
    let routes: Vec<&proxy_config::Route> = config.all_routes().map(|(r, _)| r).collect();
    let route_of =
        |r: &proxy_config::EntityRef| routes.iter().position(|x| r.matches(x.name.as_deref(), x.id.as_deref()));
    let service_of = |s: &proxy_config::EntityRef| {
        config.services.iter().position(|x| s.matches(x.name.as_deref(), x.id.as_deref()))
    };
    let consumer_of = |c: &proxy_config::EntityRef| {
        config.consumers.iter().position(|x| c.matches(x.username.as_deref(), x.id.as_deref()))
    };
    let mut entities: Vec<Scoped<'_>> = Vec::new();
    for p in &config.plugins {
        let consumer = p.consumer.as_ref().map(consumer_of);
        entities.push((p, p.route.as_ref().map(route_of), p.service.as_ref().map(service_of), consumer));
    }
    for (i, s) in config.services.iter().enumerate() {
        for p in &s.plugins {
            let consumer = p.consumer.as_ref().map(consumer_of);
            entities.push((p, p.route.as_ref().map(route_of), Some(Some(i)), consumer));
        }
    }
    for (i, r) in routes.iter().enumerate() {
        for p in &r.plugins {
            let consumer = p.consumer.as_ref().map(consumer_of);
            entities.push((p, Some(Some(i)), p.service.as_ref().map(service_of), consumer));
        }
    }
    for (i, c) in config.consumers.iter().enumerate() {
        for p in &c.plugins {
            entities.push((p, p.route.as_ref().map(route_of), p.service.as_ref().map(service_of), Some(Some(i))));
        }
    }
    let mut scopes: HashSet<ScopeKey<'_>> = HashSet::new();
    let mut instance_names: HashSet<&str> = HashSet::new();
    let mut out = Vec::new();
    for (p, route, service, consumer) in entities {
        let err = |field: &str, message: String| entity_error("plugin", p.display_name(), field, message);
        if let Some(n) = p.instance_name.as_deref() {
            if !instance_names.insert(n) {
                errors.push(err("instance_name", format!("duplicate instance_name '{n}'")));
            }
        }
        // `Some(None)`: a reference that names nothing (reported by validation).
        let present = |r: Option<Option<usize>>| r.unwrap_or(Some(usize::MAX));
        let (Some(route), Some(service), Some(consumer)) = (present(route), present(service), present(consumer)) else {
            continue;
        };
        let route = (route != usize::MAX).then_some(route);
        let service = (service != usize::MAX).then_some(service);
        let consumer = (consumer != usize::MAX).then_some(consumer);
        if !scopes.insert((p.name.as_str(), route, service, consumer)) {
            errors.push(err("name", format!("duplicate plugin '{}' for the same route, service and consumer", p.name)));
        }
        if let (Some(protocols), Some(r)) = (&p.protocols, route) {
            if !protocols.iter().any(|x| routes[r].protocols.contains(x)) {
                errors.push(err("protocols", "must share a protocol with the plugin's route".into()));
            }
        }
        let scope = format!(
            "{}:{}",
            route.map_or("", |r| routes[r].display_name()),
            service.map_or("", |s| config.services[s].display_name())
        );
        match plugins::build(&p.name, &p.config, &scope) {
            Ok(plugin) => out.push(Instance { route, service, consumer, enabled: p.enabled, plugin }),
            Err(e) => errors.push(err(&e.field, e.message)),
        }
    }
    out
}

/// The enabled instances that apply to route `ri` of `service` (with `consumer`: also those
/// scoped to that consumer), each with its [`Scope`].
fn candidates<'i>(
    instances: &'i [Instance],
    ri: usize,
    service: Option<usize>,
    consumer: Option<usize>,
) -> impl Iterator<Item = (Scope, Arc<dyn plugins::Plugin>)> + 'i {
    instances.iter().filter(|i| i.enabled).filter_map(move |i| {
        let route = match i.route {
            Some(r) if r == ri => true,
            Some(_) => return None,
            None => false,
        };
        let svc = match i.service {
            Some(s) if Some(s) == service => true,
            Some(_) => return None,
            None => false,
        };
        let cons = match i.consumer {
            Some(c) if Some(c) == consumer => true,
            Some(_) => return None,
            None => false,
        };
        let scope = match (route, svc, cons) {
            (true, true, true) => Scope::RouteServiceConsumer,
            (true, false, true) => Scope::RouteConsumer,
            (false, true, true) => Scope::ServiceConsumer,
            (true, true, false) => Scope::RouteService,
            (false, false, true) => Scope::Consumer,
            (true, false, false) => Scope::Route,
            (false, true, false) => Scope::Service,
            (false, false, false) => Scope::Global,
        };
        Some((scope, i.plugin.clone()))
    })
}

/// Route `ri`'s chains for the consumers that have scoped instances applying to it.
fn consumer_chains(instances: &[Instance], ri: usize, service: Option<usize>) -> HashMap<usize, Arc<PluginChain>> {
    let mut out = HashMap::new();
    for c in instances.iter().filter(|i| i.enabled).filter_map(|i| i.consumer) {
        if out.contains_key(&c) {
            continue;
        }
        let mut all = candidates(instances, ri, service, Some(c)).peekable();
        let applies = candidates(instances, ri, service, Some(c)).any(|(s, _)| {
            matches!(s, Scope::Consumer | Scope::RouteConsumer | Scope::ServiceConsumer | Scope::RouteServiceConsumer)
        });
        if applies && all.peek().is_some() {
            out.insert(c, Arc::new(PluginChain::resolve(all)));
        }
    }
    out
}

/// The route's regex paths as the router compiles them (anchored at the start); a pattern that
/// does not compile was reported by the router.
fn capture_paths(r: &proxy_config::Route) -> Box<[regex::Regex]> {
    r.paths
        .iter()
        .filter_map(|p| p.strip_prefix(proxy_config::patterns::REGEX_PATH_PREFIX))
        .filter_map(|p| proxy_config::patterns::compile_path_capture_regex(p).ok())
        .collect()
}

/// The certificate a service presents to its TLS upstream (`client_certificate`), parsed.
fn client_certificate(config: &Config, s: &proxy_config::Service) -> Result<Option<Arc<CertifiedKey>>, String> {
    let Some(reference) = &s.client_certificate else { return Ok(None) };
    let cert = config
        .certificates
        .iter()
        .find(|c| reference.matches(None, c.id.as_deref()))
        .ok_or_else(|| format!("unknown certificate '{reference}'"))?;
    tls::certified_key_from_pem(&cert.cert, &cert.key).map(|k| Some(Arc::new(k))).map_err(|p| p.to_string())
}

fn entity_error(kind: &str, name: &str, field: &str, message: String) -> EntityError {
    EntityError {
        entity_type: kind.into(),
        entity_name: name.into(),
        entity_id: None,
        entity_tags: vec![],
        errors: vec![FieldError::new(field, message)],
    }
}

/// The name a TLS service's upstream is asked for (SNI) and verified against: its upstream's
/// `host_header` when set (Kong sends `$upstream_host`, which is the `host_header`, as SNI; the
/// controller sets it from a BackendTLSPolicy's `hostname`), else the service's `host`.
fn upstream_sni<'a>(s: &'a proxy_config::Service, balancer: Option<&'a Balancer>) -> &'a str {
    match balancer.and_then(|b| b.host_header.as_deref()) {
        Some(h) => h.rsplit_once(':').filter(|(_, port)| port.parse::<u16>().is_ok()).map_or(h, |(name, _)| name),
        None => s.host.as_str(),
    }
}

/// Builds a runtime from a validated config.
pub(crate) fn build(
    config: Config,
    default_cert: &Arc<CertifiedKey>,
    health: &mut HealthRegistry,
    metrics: &Metrics,
) -> Result<LiveConfig, FlattenedError> {
    let mut errors: Vec<EntityError> = Vec::new();
    let router = Router::build(&config).map_err(|e| errors.extend(e)).ok();
    let certs = CertStore::build(&config.certificates, default_cert.clone()).map_err(|e| errors.extend(e)).ok();

    let balancers: HashMap<&str, Arc<Balancer>> =
        config.upstreams.iter().map(|u| (u.name.as_str(), Arc::new(Balancer::build(u, health)))).collect();
    let cas: HashMap<&str, &str> = config.ca_certificates.iter().map(|c| (c.id.as_str(), c.cert.as_str())).collect();

    let mut services = Vec::with_capacity(config.services.len());
    for s in &config.services {
        let balancer = balancers.get(s.host.as_str()).cloned();
        let tls = if s.protocol.is_tls() {
            let ca_pems: Vec<&str> =
                s.ca_certificates.iter().flatten().filter_map(|id| cas.get(id.as_str()).copied()).collect();
            let client_cert = match client_certificate(&config, s) {
                Ok(c) => c,
                Err(message) => {
                    errors.push(entity_error("service", s.display_name(), "client_certificate", message));
                    None
                }
            };
            let verify = s.tls_verify.unwrap_or(false);
            match tls::upstream_client_config_with(
                verify,
                &ca_pems,
                s.protocol.is_grpc(),
                client_cert,
                s.tls_verify_depth,
            ) {
                Ok(cfg) => Some((cfg, Arc::<str>::from(upstream_sni(s, balancer.as_deref())))),
                Err(e) => {
                    errors.push(entity_error("service", s.display_name(), "ca_certificates", e.to_string()));
                    None
                }
            }
        } else {
            None
        };
        let default_port = if s.protocol.is_tls() { 443 } else { 80 };
        let host_name = balancer.as_ref().and_then(|b| b.host_header.clone()).unwrap_or_else(|| {
            if s.port == default_port {
                s.host.clone()
            } else {
                format!("{}:{}", s.host, s.port)
            }
        });
        let upstream_host = HeaderValue::from_str(&host_name).unwrap_or(HeaderValue::from_static("localhost"));
        services.push(ServiceRt {
            name: s.display_name().into(),
            protocol: s.protocol,
            host: s.host.as_str().into(),
            port: s.port,
            path: s.path.clone(),
            connect_timeout: Duration::from_millis(s.connect_timeout),
            read_timeout: Duration::from_millis(s.read_timeout),
            write_timeout: Duration::from_millis(s.write_timeout),
            retries: s.retries,
            replay: Replay {
                limit: s.retry_buffer_size.unwrap_or(proxy_config::DEFAULT_RETRY_BUFFER_SIZE) as usize,
                on_unavailable: s.retry_on_unavailable.unwrap_or(false),
            },
            transport: Transport {
                h2: s.protocol.is_grpc(),
                tls,
                write_timeout: Duration::from_millis(s.write_timeout),
            },
            balancer,
            upstream_host,
        });
    }

    let service_index = |owner: Option<RouteOwner<'_>>| -> Option<usize> {
        match owner? {
            RouteOwner::Nested(s) => config.services.iter().position(|x| std::ptr::eq(x, s)),
            RouteOwner::Ref(r) => config.services.iter().position(|x| r.matches(x.name.as_deref(), x.id.as_deref())),
        }
    };

    let instances = build_plugins(&config, &mut errors);
    let prometheus: Vec<(bool, MetricsOptions)> = instances
        .iter()
        .filter(|i| i.enabled)
        .filter_map(|i| Some((i.route.is_none() && i.service.is_none(), i.plugin.metrics_options()?)))
        .collect();
    // No prometheus instance: every route keeps sluice's default families; else a route records
    // what its instance says, and nothing without one (Kong).
    let route_default = if prometheus.is_empty() { MetricsOptions::WITHOUT_PLUGIN } else { MetricsOptions::NONE };
    let mut routes = Vec::new();
    for (r, owner) in config.all_routes() {
        let service = service_index(owner);
        let svc = service.map(|i| &config.services[i]);
        let ri = routes.len();
        let plugins = Arc::new(PluginChain::resolve(candidates(&instances, ri, service, None)));
        let consumer_chains = consumer_chains(&instances, ri, service);
        let capture_paths = if plugins.names().contains(&plugins::request_transformer::NAME) {
            capture_paths(r)
        } else {
            Box::default()
        };
        let service_name = svc.map(|s| s.display_name()).unwrap_or("");
        let route_metrics =
            metrics.route(service_name, r.display_name(), plugins.metrics_options().unwrap_or(route_default));
        let has = |p: Protocol| r.protocols.contains(&p);
        routes.push(RouteRt {
            name: r.display_name().into(),
            service,
            http: has(Protocol::Http),
            https: has(Protocol::Https),
            grpc: has(Protocol::Grpc),
            grpcs: has(Protocol::Grpcs),
            strip_path: r.strips_path(),
            preserve_host: r.preserve_host,
            path_handling: r.path_handling,
            https_redirect_status_code: r.https_redirect_status_code,
            request_timeout: r.request_timeout.map(Duration::from_millis),
            backend_request_timeout: r.backend_request_timeout.map(Duration::from_millis),
            request_buffering: r.request_buffering == Some(true),
            response_buffering: r.response_buffering == Some(true),
            plugins,
            consumer_chains,
            capture_paths,
            metrics: Arc::new(route_metrics),
        });
    }

    let consumers = Consumers::build(&config).map_err(|e| errors.extend(e)).ok();
    match (router, certs, consumers, errors.is_empty()) {
        (Some(router), Some(certs), Some(consumers), true) => {
            let hash = if config.is_empty() { EMPTY_HASH.to_string() } else { config_hash(&config) };
            let balancers = config.upstreams.iter().filter_map(|u| balancers.get(u.name.as_str()).cloned()).collect();
            let metrics_options = MetricsOptions::for_config(&prometheus);
            Ok(LiveConfig {
                config: Arc::new(config),
                hash,
                router,
                routes,
                services,
                certs: Arc::new(certs),
                balancers,
                metrics_options,
                consumers,
            })
        }
        _ => Err(FlattenedError::new(errors)),
    }
}
