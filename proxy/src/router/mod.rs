//! The router: which route a request belongs to, with Kong's `traditional_compatible` semantics
//! (hosts, paths, methods, headers, SNIs; Kong's precedence) plus sluice's explicit `priority`
//! field and a protocol-family tie-breaker. It is pure (no I/O), built once per config and shared
//! read-only by every request.
//!
//! Lookup never scans every route: the [`index`] narrows the candidates to the routes of the
//! request's host (exact, wildcard) and the host-less routes (and, in a bucket with many routes,
//! to those whose plain prefix matches the path), each list already in rank order, so the first
//! full match in a list is that list's best and the scan stops as soon as nothing left can outrank
//! the best match so far. Cheap checks (port, method, SNI, plain prefix) run before headers, and
//! regexes run last.
//!
//! Precedence, highest first:
//! 1. the explicit `priority` (set beats unset, higher wins);
//! 2. Kong's derived order ([`priority`]); a route with several path groups (all regex paths; plain
//!    paths of each length) competes as one internal route per group, as in Kong;
//! 3. the route whose protocol family fits the request (gRPC request → grpc/grpcs route, other
//!    requests → http/https route): two routes that differ only in protocols are told apart,
//!    which Kong cannot do (its router picks by priority alone);
//! 4. route name ascending, then position in the config.

mod host;
mod index;
mod matcher;
mod priority;
mod upstream_path;

use proxy_config::{Config, EntityError, FieldError, Protocol, Route, RouteOwner};

use self::host::{split_host_port, NamePattern, STACK_HOST_LEN};
use self::index::{Candidate, HostIndex, HostIndexBuilder};
use self::matcher::{Conditions, Paths};
use self::priority::{group_paths, priority, Priority};

pub use self::upstream_path::upstream_path;

/// The routes of one config, indexed for lookup. Immutable once built.
#[derive(Debug)]
pub struct Router {
    /// Internal routes (one per route and path group) in rank order: priority descending, then
    /// name, then config position. A candidate's index here is its rank.
    entries: Vec<Entry>,
    /// Per-route conditions shared by the route's entries.
    conditions: Vec<Conditions>,
    index: HostIndex,
    /// Number of config routes in the router.
    routes: usize,
}

/// One internal route.
#[derive(Debug)]
struct Entry {
    /// Position in `config.all_routes()`.
    route: usize,
    /// Index into `Router::conditions`.
    conditions: usize,
    /// The route has no methods, SNIs or headers: only host and path decide.
    unconditional: bool,
    grpc_family: bool,
    http_family: bool,
    paths: Paths,
}

impl Entry {
    /// Whether the route's protocol family fits the request (tie-breaker 3).
    fn fits(&self, grpc: bool) -> bool {
        if grpc {
            self.grpc_family
        } else {
            self.http_family
        }
    }
}

/// What the router looks at in a request.
#[derive(Debug, Clone, Copy)]
pub struct RouteRequest<'a> {
    /// Host header or `:authority` as received (any case, may carry `:port`, may be empty).
    pub host: &'a str,
    /// Request path without the query string.
    pub path: &'a str,
    /// e.g. `GET`; compared as is (route methods are upper case).
    pub method: &'a str,
    pub headers: &'a http::HeaderMap,
    /// TLS SNI, `None` on plaintext.
    pub sni: Option<&'a str>,
    /// The request is gRPC (content-type starts with `application/grpc`).
    pub grpc: bool,
}

/// The route a request matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch {
    /// Position of the route in `config.all_routes()`.
    pub route: usize,
    /// Bytes of the request path consumed by the matching path (prefix length or regex match
    /// end), 0 when the route has no paths. Feed it to [`upstream_path`].
    pub matched_path_len: usize,
}

impl Router {
    /// Builds the router from a config that passed `proxy_config::validate()`. Route index =
    /// position in `config.all_routes()`. Routes of a disabled service are left out, as Kong does.
    pub fn build(config: &Config) -> Result<Router, Vec<EntityError>> {
        let mut errors = Vec::new();
        let mut ranked: Vec<(Priority, Entry)> = Vec::new();
        let mut conditions = Vec::new();
        let mut hosts: Vec<Vec<(NamePattern, Option<u16>)>> = Vec::new();
        let mut routes = 0;
        for (position, (route, owner)) in config.all_routes().enumerate() {
            if !service_enabled(config, owner) {
                continue;
            }
            let compiled = match compile_route(route) {
                Ok(c) => c,
                Err(field_errors) => {
                    errors.push(EntityError {
                        entity_type: "route".to_string(),
                        entity_name: route.display_name().to_string(),
                        entity_id: route.id.clone(),
                        entity_tags: route.tags.clone(),
                        errors: field_errors,
                    });
                    continue;
                }
            };
            routes += 1;
            let family = route.protocols.first().map(|p| p.family());
            for (priority, paths) in compiled.groups {
                ranked.push((
                    priority,
                    Entry {
                        route: position,
                        conditions: conditions.len(),
                        unconditional: compiled.conditions.is_empty(),
                        grpc_family: family == Some(Protocol::Grpc.family()),
                        http_family: family == Some(Protocol::Http.family()),
                        paths,
                    },
                ));
            }
            conditions.push(compiled.conditions);
            hosts.push(compiled.hosts);
        }
        if !errors.is_empty() {
            return Err(errors);
        }

        let names: Vec<&str> = config.all_routes().map(|(r, _)| r.display_name()).collect();
        // Stable sort: entries of one route keep their path-group order.
        ranked.sort_by(|(pa, a), (pb, b)| {
            pb.cmp(pa).then_with(|| names[a.route].cmp(names[b.route])).then(a.route.cmp(&b.route))
        });
        let (priorities, entries): (Vec<Priority>, Vec<Entry>) = ranked.into_iter().unzip();

        let mut index = HostIndexBuilder::default();
        let mut tier = 0u32;
        for (rank, entry) in entries.iter().enumerate() {
            if rank > 0 && priorities[rank - 1] != priorities[rank] {
                tier += 1;
            }
            let Ok(rank) = u32::try_from(rank) else {
                return Err(vec![EntityError {
                    entity_type: "route".to_string(),
                    entity_name: names[entry.route].to_string(),
                    entity_id: None,
                    entity_tags: Vec::new(),
                    errors: vec![FieldError::new("@entity", "too many routes")],
                }]);
            };
            let route_hosts = &hosts[entry.conditions];
            if route_hosts.is_empty() {
                index.insert_hostless(Candidate { entry: rank, tier, port: None });
            }
            for (pattern, port) in route_hosts {
                index.insert(pattern, Candidate { entry: rank, tier, port: *port });
            }
        }
        let index = index.build(|rank| entries.get(rank as usize).and_then(|e| e.paths.plain_prefixes()));
        Ok(Router { entries, conditions, index, routes })
    }

    /// The best route for a request, or `None` when no route matches.
    pub fn find(&self, req: &RouteRequest<'_>) -> Option<RouteMatch> {
        let (raw_name, port) = split_host_port(req.host);
        // Lower-case only when needed: on the stack, or (a host longer than any DNS name) the heap.
        let mut buf;
        let heap;
        let name: &[u8] = if !raw_name.bytes().any(|b| b.is_ascii_uppercase()) {
            raw_name.as_bytes()
        } else if raw_name.len() <= STACK_HOST_LEN {
            buf = [0u8; STACK_HOST_LEN];
            let lowered = &mut buf[..raw_name.len()];
            lowered.copy_from_slice(raw_name.as_bytes());
            lowered.make_ascii_lowercase();
            lowered
        } else {
            heap = raw_name.to_ascii_lowercase();
            heap.as_bytes()
        };

        let mut best: Option<Best> = None;
        self.index.visit(name, req.path, |bucket| self.scan(bucket, port, req, &mut best));
        best.map(|b| RouteMatch { route: self.entries[b.rank].route, matched_path_len: b.matched_path_len })
    }

    /// Number of routes in the router (routes of disabled services are not counted).
    pub fn len(&self) -> usize {
        self.routes
    }

    pub fn is_empty(&self) -> bool {
        self.routes == 0
    }

    /// Scans one rank-ordered candidate list, updating `best`.
    fn scan(&self, bucket: &[Candidate], port: Option<u16>, req: &RouteRequest<'_>, best: &mut Option<Best>) {
        for candidate in bucket {
            let rank = candidate.entry as usize;
            if let Some(held) = best {
                if candidate.tier > held.tier {
                    // Lower priority, and everything after it in the list ranks lower still.
                    break;
                }
                if candidate.tier == held.tier {
                    // Equal priority: the protocol family, then the rank (name, position) decide.
                    let fits = self.entries[rank].fits(req.grpc);
                    let wins = (fits && !held.fits) || (fits == held.fits && rank < held.rank);
                    if !wins {
                        continue;
                    }
                }
            }
            if candidate.port.is_some() && candidate.port != port {
                continue;
            }
            let entry = &self.entries[rank];
            if let Some(matched_path_len) = self.matches(entry, req) {
                *best = Some(Best { rank, tier: candidate.tier, fits: entry.fits(req.grpc), matched_path_len });
            }
        }
    }

    /// Whether the entry's non-host conditions hold; the matched path length if so.
    fn matches(&self, entry: &Entry, req: &RouteRequest<'_>) -> Option<usize> {
        if entry.unconditional {
            return entry.paths.matched_len(req.path);
        }
        let conditions = &self.conditions[entry.conditions];
        if !conditions.cheap_match(req.method, req.sni) {
            return None;
        }
        let plain = if entry.paths.is_regex() { None } else { Some(entry.paths.matched_len(req.path)?) };
        if !conditions.headers_match(req.headers) {
            return None;
        }
        match plain {
            Some(len) => Some(len),
            None => entry.paths.matched_len(req.path),
        }
    }
}

/// The best match of a lookup so far.
#[derive(Debug, Clone, Copy)]
struct Best {
    rank: usize,
    tier: u32,
    /// The entry's protocol family fits the request.
    fits: bool,
    matched_path_len: usize,
}

/// A compiled route: its conditions, host patterns, and one (priority, paths) per path group.
struct CompiledRoute {
    conditions: Conditions,
    hosts: Vec<(NamePattern, Option<u16>)>,
    groups: Vec<(Priority, Paths)>,
}

fn compile_route(route: &Route) -> Result<CompiledRoute, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut hosts = Vec::with_capacity(route.hosts.len());
    for (i, host) in route.hosts.iter().enumerate() {
        match NamePattern::parse(host) {
            Ok(parsed) => hosts.push(parsed),
            Err(msg) => errors.push(FieldError::new(format!("hosts.{}", i + 1), msg)),
        }
    }
    let conditions = Conditions::compile(route).map_err(|e| errors.extend(e)).ok();
    let mut groups = Vec::new();
    for group in group_paths(&route.paths) {
        match matcher::Paths::compile(&group) {
            Ok(paths) => groups.push((priority(route, &group), paths)),
            Err(e) => errors.extend(e),
        }
    }
    match conditions {
        Some(conditions) if errors.is_empty() => Ok(CompiledRoute { conditions, hosts, groups }),
        _ => Err(errors),
    }
}

/// Kong keeps routes of a disabled service out of the router.
fn service_enabled(config: &Config, owner: Option<RouteOwner<'_>>) -> bool {
    match owner {
        Some(RouteOwner::Nested(service)) => service.enabled,
        Some(RouteOwner::Ref(reference)) => config.find_service(reference).is_none_or(|s| s.enabled),
        None => true,
    }
}

#[cfg(test)]
mod tests;
