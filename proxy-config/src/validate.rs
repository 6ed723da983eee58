//! The rules Kong's schema enforces on a declarative config (the subset sluice speaks), checked
//! all at once so that every broken entity is named in one answer. A config that passes here can
//! still fail in the proxy for runtime reasons (a PEM that does not parse); the proxy reports
//! those in the same [`EntityError`] shape.

use std::collections::{BTreeMap, HashSet};

use crate::errors::{EntityError, FieldError, FlattenedError};
use crate::patterns::{compile_header_regex, compile_path_regex, valid_host_pattern, REGEX_HEADER_PREFIX};
use crate::schema::*;

/// Kong's upper bound for timeouts (ms).
const MAX_TIMEOUT_MS: u64 = 2_147_483_646;
const MAX_RETRIES: u32 = 32_767;
const MAX_WEIGHT: u32 = 65_535;
const REDIRECT_CODES: [u16; 5] = [426, 301, 302, 307, 308];

/// Validates the whole config; `Err` lists every broken entity.
pub fn validate(config: &Config) -> Result<(), FlattenedError> {
    let mut v = Validator::default();
    v.check(config);
    if v.errors.is_empty() {
        Ok(())
    } else {
        Err(FlattenedError::new(v.errors))
    }
}

#[derive(Default)]
struct Validator {
    errors: Vec<EntityError>,
}

/// Collects the field errors of one entity.
struct Entity<'a> {
    kind: &'static str,
    name: &'a str,
    id: Option<&'a str>,
    tags: &'a [String],
    errors: Vec<FieldError>,
}

impl<'a> Entity<'a> {
    fn new(kind: &'static str, name: &'a str, id: Option<&'a str>, tags: &'a [String]) -> Self {
        Entity { kind, name, id, tags, errors: Vec::new() }
    }
    fn err(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }
}

impl Validator {
    fn finish(&mut self, e: Entity<'_>) {
        if !e.errors.is_empty() {
            self.errors.push(EntityError {
                entity_type: e.kind.to_string(),
                entity_name: e.name.to_string(),
                entity_id: e.id.map(str::to_string),
                entity_tags: e.tags.to_vec(),
                errors: e.errors,
            });
        }
    }

    fn check(&mut self, config: &Config) {
        if config.format_version != FORMAT_VERSION {
            let mut e = Entity::new("config", "", None, &[]);
            e.err("_format_version", format!("unsupported format version '{}', expected '3.0'", config.format_version));
            self.finish(e);
        }
        let ca_ids: HashSet<&str> = config.ca_certificates.iter().map(|c| c.id.as_str()).collect();
        let cert_ids: HashSet<&str> = config.certificates.iter().filter_map(|c| c.id.as_deref()).collect();

        let mut service_names = HashSet::new();
        for s in &config.services {
            let mut e = Entity::new("service", s.display_name(), s.id.as_deref(), &s.tags);
            if let Some(name) = &s.name {
                if !service_names.insert(name.as_str()) {
                    e.err("name", format!("duplicate service name '{name}'"));
                }
            }
            check_service(s, &ca_ids, &mut e);
            if let Some(c) = &s.client_certificate {
                if !cert_ids.iter().any(|id| c.matches(None, Some(id))) {
                    e.err("client_certificate", format!("unknown certificate '{c}'"));
                } else if !s.protocol.is_tls() {
                    e.err("client_certificate", "only allowed when 'protocol' is 'https' or 'grpcs'");
                }
            }
            self.finish(e);
        }

        let mut route_names = HashSet::new();
        for (route, owner) in config.all_routes() {
            let mut e = Entity::new("route", route.display_name(), route.id.as_deref(), &route.tags);
            if let Some(name) = &route.name {
                if !route_names.insert(name.as_str()) {
                    e.err("name", format!("duplicate route name '{name}'"));
                }
            }
            match owner {
                Some(RouteOwner::Ref(r)) if config.find_service(r).is_none() => {
                    e.err("service", format!("unknown service '{r}'"));
                }
                Some(RouteOwner::Nested(_)) if route.service.is_some() => {
                    e.err("service", "a nested route must not name its service");
                }
                _ => {}
            }
            check_route(route, &mut e);
            self.finish(e);
        }

        for t in &config.targets {
            let mut e = Entity::new("target", &t.target, t.id.as_deref(), &t.tags);
            e.err("upstream", format!("unknown upstream '{}'", t.upstream));
            self.finish(e);
        }
        for sni in &config.snis {
            let mut e = Entity::new("sni", &sni.name, sni.id.as_deref(), &sni.tags);
            e.err("certificate", format!("unknown certificate '{}'", sni.certificate));
            self.finish(e);
        }

        let mut upstream_names = HashSet::new();
        for u in &config.upstreams {
            let mut e = Entity::new("upstream", &u.name, u.id.as_deref(), &u.tags);
            if !upstream_names.insert(u.name.as_str()) {
                e.err("name", format!("duplicate upstream name '{}'", u.name));
            }
            check_upstream(u, &mut e);
            self.finish(e);
            let mut seen = HashSet::new();
            for (i, t) in u.targets.iter().enumerate() {
                let mut e = Entity::new("target", &t.target, t.id.as_deref(), &t.tags);
                if let Err(msg) = parse_target(&t.target) {
                    e.err("target", msg);
                } else if !seen.insert(t.target.as_str()) {
                    e.err("target", format!("duplicate target '{}' in upstream '{}' (targets[{i}])", t.target, u.name));
                }
                if t.weight > MAX_WEIGHT {
                    e.err("weight", format!("value should be between 0 and {MAX_WEIGHT}"));
                }
                self.finish(e);
            }
        }

        let mut snis = HashSet::new();
        for c in &config.certificates {
            let mut e = Entity::new("certificate", c.display_name(), c.id.as_deref(), &c.tags);
            if !c.cert.contains("-----BEGIN") {
                e.err("cert", "invalid certificate: no PEM block");
            }
            if !c.key.contains("-----BEGIN") {
                e.err("key", "invalid key: no PEM block");
            }
            for (i, sni) in c.snis.iter().enumerate() {
                let name = sni.name();
                if let Err(msg) = valid_host_pattern(name) {
                    e.err(format!("snis.{}", i + 1), msg);
                } else if name.contains(':') {
                    e.err(format!("snis.{}", i + 1), format!("invalid SNI '{name}': must not have a port"));
                } else if !snis.insert(name.to_ascii_lowercase()) {
                    e.err(
                        format!("snis.{}", i + 1),
                        format!("SNI '{name}' already associated with another certificate"),
                    );
                }
            }
            self.finish(e);
        }

        let mut ca_seen = HashSet::new();
        for c in &config.ca_certificates {
            let mut e = Entity::new("ca_certificate", &c.id, Some(&c.id), &c.tags);
            if !ca_seen.insert(c.id.as_str()) {
                e.err("id", format!("duplicate ca_certificate id '{}'", c.id));
            }
            if !c.cert.contains("-----BEGIN") {
                e.err("cert", "invalid certificate: no PEM block");
            }
            self.finish(e);
        }

        let plugins = config
            .plugins
            .iter()
            .map(|p| (p, None))
            .chain(config.services.iter().flat_map(|s| s.plugins.iter().map(|p| (p, Some("service")))))
            .chain(config.all_routes().flat_map(|(r, _)| r.plugins.iter().map(|p| (p, Some("route")))))
            .chain(config.consumers.iter().flat_map(|c| c.plugins.iter().map(|p| (p, Some("consumer")))));
        self.errors.extend(crate::consumers::check_consumers(config));
        for (p, nested_in) in plugins {
            let mut e = Entity::new("plugin", p.display_name(), p.id.as_deref(), &p.tags);
            if nested_in.is_none() {
                if let Some(r) = &p.route {
                    if !config.all_routes().any(|(route, _)| r.matches(route.name.as_deref(), route.id.as_deref())) {
                        e.err("route", format!("unknown route '{r}'"));
                    }
                }
                if let Some(s) = &p.service {
                    if config.find_service(s).is_none() {
                        e.err("service", format!("unknown service '{s}'"));
                    }
                }
            }
            if let Some(c) = &p.consumer {
                if !config.consumers.iter().any(|x| c.matches(x.username.as_deref(), x.id.as_deref())) {
                    e.err("consumer", format!("unknown consumer '{c}'"));
                }
            }
            for (field, message) in crate::consumers::check_plugin_refs(config, p, nested_in == Some("consumer")) {
                e.err(field, message);
            }
            check_plugin(p, &mut e);
            self.finish(e);
        }
    }
}

fn check_service(s: &Service, ca_ids: &HashSet<&str>, e: &mut Entity<'_>) {
    if !matches!(s.protocol, Protocol::Http | Protocol::Https | Protocol::Grpc | Protocol::Grpcs) {
        e.err("protocol", format!("protocol '{}' is not supported by sluice (http, https, grpc, grpcs)", s.protocol));
    }
    if let Some(url) = &s.url {
        match crate::shorthand::parse_url(url) {
            Err(msg) => e.err("url", msg),
            Ok(_) if !s.host.is_empty() => {
                e.err("url", "set either 'url' or 'host' (with protocol, port, path), not both")
            }
            Ok(_) => {}
        }
    } else if s.host.is_empty() {
        e.err("host", "required field missing");
    } else if let Err(msg) = valid_host_pattern(&s.host) {
        e.err("host", msg);
    } else if s.host.contains('*') {
        e.err("host", format!("invalid host '{}': wildcards are not allowed", s.host));
    }
    if s.port == 0 {
        e.err("port", "value should be between 1 and 65535");
    }
    match &s.path {
        Some(_) if s.protocol.is_grpc() => e.err("path", "value must be null"),
        Some(p) if !p.starts_with('/') => e.err("path", "should start with: /"),
        _ => {}
    }
    for (field, v) in
        [("connect_timeout", s.connect_timeout), ("read_timeout", s.read_timeout), ("write_timeout", s.write_timeout)]
    {
        if v == 0 || v > MAX_TIMEOUT_MS {
            e.err(field, format!("value should be between 1 and {MAX_TIMEOUT_MS}"));
        }
    }
    if s.tls_verify_depth.is_some_and(|d| d > 64) {
        e.err("tls_verify_depth", "value should be between 0 and 64");
    }
    if s.retries > MAX_RETRIES {
        e.err("retries", format!("value should be between 0 and {MAX_RETRIES}"));
    }
    if s.retry_buffer_size.is_some_and(|n| n > MAX_RETRY_BUFFER_SIZE) {
        e.err("retry_buffer_size", format!("value should be between 0 and {MAX_RETRY_BUFFER_SIZE}"));
    }
    // Replays (and so these two) exist for HTTP/2 upstreams only.
    if !s.protocol.is_grpc() {
        if s.retry_on_unavailable.is_some() {
            e.err("retry_on_unavailable", "only grpc and grpcs services retry an answer");
        }
        if s.retry_buffer_size.is_some() {
            e.err("retry_buffer_size", "only grpc and grpcs services replay a request body");
        }
    }
    if let Some(cas) = &s.ca_certificates {
        for (i, id) in cas.iter().enumerate() {
            if !ca_ids.contains(id.as_str()) {
                e.err(format!("ca_certificates.{}", i + 1), format!("unknown ca_certificate '{id}'"));
            }
        }
    }
}

fn check_route(r: &Route, e: &mut Entity<'_>) {
    if r.protocols.is_empty() {
        e.err("protocols", "must not be empty");
    }
    let mut families: Vec<&str> = r.protocols.iter().map(|p| p.family()).collect();
    families.dedup();
    if families.len() > 1 {
        e.err(
            "protocols",
            format!(
                "mixing protocol families is not allowed: {:?}",
                r.protocols.iter().map(|p| p.as_str()).collect::<Vec<_>>()
            ),
        );
    }
    for (i, p) in r.protocols.iter().enumerate() {
        if !matches!(p, Protocol::Http | Protocol::Https | Protocol::Grpc | Protocol::Grpcs) {
            e.err(format!("protocols.{}", i + 1), format!("protocol '{p}' is not supported by sluice routes"));
        }
    }
    let grpc = r.is_grpc();
    if grpc {
        if r.strip_path == Some(true) {
            e.err("strip_path", "cannot set 'strip_path' when 'protocols' is 'grpc' or 'grpcs'");
        }
        if !r.methods.is_empty() {
            e.err("methods", "cannot set 'methods' when 'protocols' is 'grpc' or 'grpcs'");
        }
        // A gRPC call is a stream: collecting it whole would break streaming calls.
        for (field, v) in [("request_buffering", r.request_buffering), ("response_buffering", r.response_buffering)] {
            if v == Some(true) {
                e.err(field, format!("cannot set '{field}' to true when 'protocols' is 'grpc' or 'grpcs'"));
            }
        }
    }
    for (field, v) in [("request_timeout", r.request_timeout), ("backend_request_timeout", r.backend_request_timeout)] {
        if v.is_some_and(|v| v == 0 || v > MAX_TIMEOUT_MS) {
            e.err(field, format!("value should be between 1 and {MAX_TIMEOUT_MS}"));
        }
    }
    let tls_capable = r.protocols.iter().any(|p| matches!(p, Protocol::Https | Protocol::Grpcs));
    if !r.snis.is_empty() && !tls_capable {
        e.err("snis", "'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' or 'tls_passthrough'");
    }
    if r.hosts.is_empty() && r.paths.is_empty() && r.methods.is_empty() && r.headers.is_empty() && r.snis.is_empty() {
        let list = if grpc { "'hosts', 'headers', 'paths'" } else { "'methods', 'hosts', 'headers', 'paths'" };
        e.err(
            "@entity",
            format!(
                "must set one of {list} when 'protocols' is '{}'",
                r.protocols.first().map(|p| p.as_str()).unwrap_or("http")
            ),
        );
    }
    for (i, host) in r.hosts.iter().enumerate() {
        if let Err(msg) = valid_host_pattern(host) {
            e.err(format!("hosts.{}", i + 1), msg);
        }
    }
    for (i, path) in r.paths.iter().enumerate() {
        if let Some(pattern) = path.strip_prefix('~') {
            if let Err(msg) = compile_path_regex(pattern) {
                e.err(format!("paths.{}", i + 1), msg);
            }
        } else if !path.starts_with('/') {
            e.err(
                format!("paths.{}", i + 1),
                format!("should start with: / (fixed path) or ~/ (regex path), got '{path}'"),
            );
        }
    }
    for (i, m) in r.methods.iter().enumerate() {
        if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
            e.err(
                format!("methods.{}", i + 1),
                format!("invalid value '{m}': it must be an HTTP method in upper case"),
            );
        }
    }
    check_headers(&r.headers, e);
    for (i, sni) in r.snis.iter().enumerate() {
        if let Err(msg) = valid_host_pattern(sni) {
            e.err(format!("snis.{}", i + 1), msg);
        }
    }
    if !REDIRECT_CODES.contains(&r.https_redirect_status_code) {
        e.err("https_redirect_status_code", "expected one of: 426, 301, 302, 307, 308");
    }
}

fn check_headers(headers: &BTreeMap<String, Vec<String>>, e: &mut Entity<'_>) {
    for (name, values) in headers {
        if name.eq_ignore_ascii_case("host") {
            e.err(
                format!("headers.{name}"),
                "cannot contain 'host' header, which must be specified in the 'hosts' attribute",
            );
            continue;
        }
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            e.err(format!("headers.{name}"), format!("invalid header name '{name}'"));
        }
        if values.is_empty() {
            e.err(format!("headers.{name}"), "must have at least one value");
        }
        for v in values {
            if let Some(pattern) = v.strip_prefix(REGEX_HEADER_PREFIX) {
                if let Err(msg) = compile_header_regex(pattern) {
                    e.err(format!("headers.{name}"), msg);
                }
            }
        }
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn check_upstream(u: &Upstream, e: &mut Entity<'_>) {
    if let Err(msg) = valid_host_pattern(&u.name) {
        e.err("name", msg);
    }
    if u.algorithm == Algorithm::Latency {
        e.err("algorithm", "algorithm 'latency' is not supported by sluice");
    }
    match u.hash_on {
        HashOn::None | HashOn::Ip => {}
        HashOn::Header => {
            if u.hash_on_header.as_deref().unwrap_or("").is_empty() {
                e.err("hash_on_header", "required when 'hash_on' is set to 'header'");
            }
        }
        other => e.err(
            "hash_on",
            format!(
                "hash_on '{}' is not supported by sluice (none, ip, header)",
                serde_json::to_value(other).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
            ),
        ),
    }
    match u.hash_fallback {
        HashOn::None => {}
        _ if u.hash_on == HashOn::None => e.err("hash_fallback", "must be 'none' when 'hash_on' is 'none'"),
        HashOn::Ip if u.hash_on == HashOn::Ip => e.err("hash_fallback", "must differ from 'hash_on'"),
        HashOn::Ip => {}
        HashOn::Header => match u.hash_fallback_header.as_deref().unwrap_or("") {
            "" => e.err("hash_fallback_header", "required when 'hash_fallback' is set to 'header'"),
            h if u.hash_on == HashOn::Header
                && u.hash_on_header.as_deref().is_some_and(|o| o.eq_ignore_ascii_case(h)) =>
            {
                e.err("hash_fallback_header", "must differ from 'hash_on_header'")
            }
            _ => {}
        },
        other => e.err(
            "hash_fallback",
            format!(
                "hash_fallback '{}' is not supported by sluice (none, ip, header)",
                serde_json::to_value(other).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
            ),
        ),
    }
    if u.hash_fallback != HashOn::Header && u.hash_fallback_header.is_some() {
        e.err("hash_fallback_header", "only allowed when 'hash_fallback' is 'header'");
    }
    if u.hash_on != HashOn::None && u.algorithm != Algorithm::ConsistentHashing {
        e.err("hash_on", "requires 'algorithm' to be 'consistent-hashing'");
    }
    if u.slots < 10 || u.slots > 65_536 {
        e.err("slots", "value should be between 10 and 65536");
    }
    if let Some(a) = u.healthchecks.as_ref().and_then(|h| h.active.as_ref()) {
        check_active(a, e);
    }
    if let Some(kind) = u.healthchecks.as_ref().and_then(|h| h.passive.as_ref()).and_then(|p| p.kind.as_deref()) {
        if !["http", "https", "tcp", "grpc", "grpcs"].contains(&kind) {
            e.err(
                "healthchecks.passive.type",
                format!("expected one of: http, https, tcp, grpc, grpcs (got '{kind}')"),
            );
        }
    }
    if let Some(t) = u.healthchecks.as_ref().and_then(|h| h.threshold) {
        if !(0.0..=100.0).contains(&t) {
            e.err("healthchecks.threshold", "value should be between 0 and 100");
        }
    }
}

/// Kong's ranges for `healthchecks.active` (intervals and timeout in seconds).
fn check_active(a: &ActiveHealthcheck, e: &mut Entity<'_>) {
    let f = "healthchecks.active";
    if !(a.timeout > 0.0 && a.timeout <= 65_535.0) {
        e.err(format!("{f}.timeout"), "value should be between 0 and 65535 (seconds, above 0)");
    }
    if !(1..=2_147_483_648).contains(&a.concurrency) {
        e.err(format!("{f}.concurrency"), "value should be between 1 and 2147483648");
    }
    if !a.http_path.starts_with('/') {
        e.err(format!("{f}.http_path"), "should start with: /");
    }
    for (which, interval) in [("healthy", a.healthy.interval), ("unhealthy", a.unhealthy.interval)] {
        if !(0.0..=65_535.0).contains(&interval) {
            e.err(format!("{f}.{which}.interval"), "value should be between 0 and 65535 (seconds)");
        }
    }
    for (which, statuses) in [("healthy", &a.healthy.http_statuses), ("unhealthy", &a.unhealthy.http_statuses)] {
        if let Some(s) = statuses.iter().find(|s| !(100..=999).contains(*s)) {
            e.err(format!("{f}.{which}.http_statuses"), format!("status {s}: value should be between 100 and 999"));
        }
    }
    for (name, value) in a.headers.iter().flat_map(|(n, vs)| vs.iter().map(move |v| (n, v))) {
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        let bad_value = value.chars().any(|c| c.is_control() && c != '\t');
        if name.is_empty() || !name.chars().all(token) || bad_value {
            e.err(format!("{f}.headers"), format!("invalid header '{name}: {value}'"));
        }
    }
}

fn check_plugin(p: &Plugin, e: &mut Entity<'_>) {
    for FieldError { field, message, .. } in check_plugin_config(&p.name, &p.config) {
        e.err(field, message);
    }
}

/// Checks one plugin's `name` and `config` against the plugin's schema, as the proxy will when the
/// config is pushed (the schemas live in [`crate::plugins`]). Each error names its field as Kong's
/// `flattened_errors` do (`name`, `config`, `config.<field>`). The controller calls this per
/// KongPlugin so that a bad configuration becomes an Event on the objects involved instead of a
/// rejected push.
pub fn check_plugin_config(name: &str, config: &serde_json::Value) -> Vec<FieldError> {
    crate::plugins::check_plugin_config(name, config)
}

/// Parses a target `host[:port]` / `[v6][:port]`; Kong's default port is 8000.
pub fn parse_target(target: &str) -> Result<(String, u16), String> {
    let bad = || format!("invalid target '{target}': expected host:port");
    if let Some(rest) = target.strip_prefix('[') {
        let (addr, after) = rest.split_once(']').ok_or_else(bad)?;
        addr.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse::<u16>().map_err(|_| bad())?,
            None if after.is_empty() => 8000,
            None => return Err(bad()),
        };
        return Ok((format!("[{addr}]"), port));
    }
    let (host, port) = match target.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
        None => (target, 8000),
    };
    if host.is_empty() || host.contains(':') || valid_host_pattern(host).is_err() || host.contains('*') {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}
