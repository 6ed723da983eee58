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

use crate::listen::tls::{self, CertStore};
use crate::plugins::{self, PluginChain, Scope};
use crate::router::Router;
use crate::telemetry::metrics::{Metrics, RouteMetrics};
use crate::upstream::balancer::{Balancer, HealthRegistry};
use crate::upstream::pool::Transport;

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
    /// The plugins that apply to this route, resolved by Kong's precedence, in execution order.
    pub plugins: Arc<PluginChain>,
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
    /// Serializes builds so two pushes cannot interleave their swaps.
    apply_lock: Mutex<()>,
    pub metrics: Arc<Metrics>,
}

impl State {
    pub fn new(default_cert: Arc<CertifiedKey>, metrics: Arc<Metrics>) -> Result<State, FlattenedError> {
        let mut health = HealthRegistry::default();
        let empty = build(Config::empty(), &default_cert, &mut health, &metrics)?;
        Ok(State {
            current: ArcSwap::from_pointee(empty),
            default_cert,
            health: Mutex::new(health),
            apply_lock: Mutex::new(()),
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
                self.metrics.set_config_hash(&rt.hash);
                self.current.store(Arc::new(rt));
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
}

/// One `plugins` entity, built, with its scope as indices (route: `Config::all_routes` order).
struct Instance {
    route: Option<usize>,
    service: Option<usize>,
    enabled: bool,
    plugin: Arc<dyn plugins::Plugin>,
}

/// A plugin entity and its (route, service) references: `None` no reference, `Some(None)` a
/// reference that names nothing, `Some(Some(i))` the entity at index `i`.
type Scoped<'a> = (&'a proxy_config::Plugin, Option<Option<usize>>, Option<Option<usize>>);

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
    let mut entities: Vec<Scoped<'_>> = Vec::new();
    for p in &config.plugins {
        entities.push((p, p.route.as_ref().map(route_of), p.service.as_ref().map(service_of)));
    }
    for (i, s) in config.services.iter().enumerate() {
        for p in &s.plugins {
            entities.push((p, p.route.as_ref().map(route_of), Some(Some(i))));
        }
    }
    for (i, r) in routes.iter().enumerate() {
        for p in &r.plugins {
            entities.push((p, Some(Some(i)), p.service.as_ref().map(service_of)));
        }
    }
    let mut scopes: HashSet<(&str, Option<usize>, Option<usize>)> = HashSet::new();
    let mut instance_names: HashSet<&str> = HashSet::new();
    let mut out = Vec::new();
    for (p, route, service) in entities {
        let err = |field: &str, message: String| entity_error("plugin", p.display_name(), field, message);
        if let Some(n) = p.instance_name.as_deref() {
            if !instance_names.insert(n) {
                errors.push(err("instance_name", format!("duplicate instance_name '{n}'")));
            }
        }
        // `Some(None)`: a reference that names nothing (reported by validation).
        let (Some(route), Some(service)) = (route.unwrap_or(Some(usize::MAX)), service.unwrap_or(Some(usize::MAX)))
        else {
            continue;
        };
        let route = (route != usize::MAX).then_some(route);
        let service = (service != usize::MAX).then_some(service);
        if !scopes.insert((p.name.as_str(), route, service)) {
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
            Ok(plugin) => out.push(Instance { route, service, enabled: p.enabled, plugin }),
            Err(e) => errors.push(err(&e.field, e.message)),
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
        .filter_map(|p| proxy_config::patterns::compile_path_regex(p).ok())
        .collect()
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
            match tls::upstream_client_config(s.tls_verify.unwrap_or(false), &ca_pems, s.protocol.is_grpc()) {
                Ok(cfg) => Some((cfg, Arc::<str>::from(s.host.as_str()))),
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
            transport: Transport { h2: s.protocol.is_grpc(), tls },
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
    let mut routes = Vec::new();
    for (r, owner) in config.all_routes() {
        let service = service_index(owner);
        let svc = service.map(|i| &config.services[i]);
        let ri = routes.len();
        let candidates = instances.iter().filter(|i| i.enabled).filter_map(|i| {
            let scope = match (i.route, i.service) {
                (Some(r), Some(s)) if r == ri && Some(s) == service => Scope::RouteService,
                (Some(r), None) if r == ri => Scope::Route,
                (None, Some(s)) if Some(s) == service => Scope::Service,
                (None, None) => Scope::Global,
                _ => return None,
            };
            Some((scope, i.plugin.clone()))
        });
        let plugins = Arc::new(PluginChain::resolve(candidates));
        let capture_paths = if plugins.names().contains(&plugins::request_transformer::NAME) {
            capture_paths(r)
        } else {
            Box::default()
        };
        let service_name = svc.map(|s| s.display_name()).unwrap_or("");
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
            plugins,
            capture_paths,
            metrics: Arc::new(metrics.route(service_name, r.display_name())),
        });
    }

    match (router, certs, errors.is_empty()) {
        (Some(router), Some(certs), true) => {
            let hash = if config.is_empty() { EMPTY_HASH.to_string() } else { config_hash(&config) };
            Ok(LiveConfig { config: Arc::new(config), hash, router, routes, services, certs: Arc::new(certs) })
        }
        _ => Err(FlattenedError::new(errors)),
    }
}
