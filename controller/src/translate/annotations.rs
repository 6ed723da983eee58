//! `konghq.com/*` annotations parsed into typed values, with KIC's parsing rules.
//!
//! Two differences from KIC, both deliberate:
//! - an invalid value is still ignored (the default stays), but it is also reported as a
//!   [`Problem`] naming the object and the annotation, instead of being dropped silently;
//! - a hostile value (a quote, a control character such as a newline, or more than 1 KiB where no
//!   legitimate value is that long) rejects the whole object: values only ever land in their typed
//!   field, but an object carrying such a value is not one to trust with partial translation.

use std::collections::BTreeMap;

use proxy_config::patterns::{compile_header_regex, valid_host_pattern, REGEX_HEADER_PREFIX};
use proxy_config::{PathHandling, Protocol};

use super::plugins::PluginName;
use super::{ObjectRef, Problem};

pub const PREFIX: &str = "konghq.com/";
pub const PROTOCOL: &str = "konghq.com/protocol";
pub const PROTOCOLS: &str = "konghq.com/protocols";
pub const PATH: &str = "konghq.com/path";
pub const STRIP_PATH: &str = "konghq.com/strip-path";
pub const PRESERVE_HOST: &str = "konghq.com/preserve-host";
pub const METHODS: &str = "konghq.com/methods";
pub(crate) const HEADERS_PREFIX: &str = "konghq.com/headers.";
pub const HEADERS_SEPARATOR: &str = "konghq.com/headers-separator";
pub const HOST_ALIASES: &str = "konghq.com/host-aliases";
pub const HOST_HEADER: &str = "konghq.com/host-header";
pub const REGEX_PRIORITY: &str = "konghq.com/regex-priority";
pub const REGEX_PREFIX: &str = "konghq.com/regex-prefix";
pub const HTTPS_REDIRECT: &str = "konghq.com/https-redirect-status-code";
pub const SNIS: &str = "konghq.com/snis";
pub const CONNECT_TIMEOUT: &str = "konghq.com/connect-timeout";
pub const READ_TIMEOUT: &str = "konghq.com/read-timeout";
pub const WRITE_TIMEOUT: &str = "konghq.com/write-timeout";
pub const RETRIES: &str = "konghq.com/retries";
pub const REQUEST_BUFFERING: &str = "konghq.com/request-buffering";
pub const RESPONSE_BUFFERING: &str = "konghq.com/response-buffering";
pub const PATH_HANDLING: &str = "konghq.com/path-handling";
pub const TLS_VERIFY: &str = "konghq.com/tls-verify";
pub const TLS_VERIFY_DEPTH: &str = "konghq.com/tls-verify-depth";
/// KIC's name for the CA Secrets an upstream is verified against.
pub const CA_CERTIFICATES_SECRET: &str = "konghq.com/ca-certificates-secret";
/// The plural spelling sluice read first: still honoured, with a deprecation problem.
pub const CA_CERTIFICATES_SECRETS: &str = "konghq.com/ca-certificates-secrets";
/// KIC's name for the CA ConfigMaps (key `ca.crt`) an upstream is verified against.
pub const CA_CERTIFICATES_CONFIGMAP: &str = "konghq.com/ca-certificates-configmap";
/// The plural spelling: honoured, with a deprecation problem, like [`CA_CERTIFICATES_SECRETS`].
pub const CA_CERTIFICATES_CONFIGMAPS: &str = "konghq.com/ca-certificates-configmaps";
/// A TLS Secret (in the Service's namespace) whose certificate is presented to the upstream.
pub const CLIENT_CERT: &str = "konghq.com/client-cert";
pub const TAGS: &str = "konghq.com/tags";
pub(crate) const PLUGINS: &str = "konghq.com/plugins";
pub const SERVICE_UPSTREAM: &str = "ingress.kubernetes.io/service-upstream";
pub const FORCE_SSL_REDIRECT: &str = "ingress.kubernetes.io/force-ssl-redirect";
pub const INGRESS_CLASS: &str = "kubernetes.io/ingress.class";

/// Longest value accepted for any annotation we read.
pub const MAX_VALUE_LEN: usize = 1024;

/// KIC annotations sluice knows but does not implement, with the reason given in the problem.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("konghq.com/override", "KongIngress is deprecated in KIC and not supported by sluice"),
    ("konghq.com/rewrite", "URI rewriting is not supported by sluice"),
    ("konghq.com/ca-certificates", "KongCACertificate is not supported; use konghq.com/ca-certificates-secret"),
];

const ROUTE_KEYS: &[&str] = &[
    PROTOCOLS,
    STRIP_PATH,
    PRESERVE_HOST,
    METHODS,
    HEADERS_SEPARATOR,
    HOST_ALIASES,
    REGEX_PRIORITY,
    REGEX_PREFIX,
    HTTPS_REDIRECT,
    SNIS,
    REQUEST_BUFFERING,
    RESPONSE_BUFFERING,
    PATH_HANDLING,
    TAGS,
    PLUGINS,
];

const SERVICE_KEYS: &[&str] = &[
    PROTOCOL,
    PATH,
    HOST_HEADER,
    CONNECT_TIMEOUT,
    READ_TIMEOUT,
    WRITE_TIMEOUT,
    RETRIES,
    TLS_VERIFY,
    TLS_VERIFY_DEPTH,
    CA_CERTIFICATES_SECRET,
    CA_CERTIFICATES_SECRETS,
    CA_CERTIFICATES_CONFIGMAP,
    CA_CERTIFICATES_CONFIGMAPS,
    CLIENT_CERT,
    crate::policy::ANNOTATION,
    TAGS,
    PLUGINS,
];

/// Route-level settings from an Ingress. `None` = not set, the default applies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteAnnotations {
    pub protocols: Option<Vec<Protocol>>,
    pub strip_path: Option<bool>,
    pub preserve_host: Option<bool>,
    pub methods: Option<Vec<String>>,
    pub headers: Option<BTreeMap<String, Vec<String>>>,
    pub host_aliases: Vec<String>,
    pub snis: Option<Vec<String>>,
    pub regex_priority: Option<i64>,
    pub regex_prefix: Option<String>,
    pub path_handling: Option<PathHandling>,
    pub https_redirect_status_code: Option<u16>,
    pub force_ssl_redirect: bool,
    pub request_buffering: Option<bool>,
    pub response_buffering: Option<bool>,
    pub tags: Vec<String>,
    /// `konghq.com/plugins`, unvalidated: a name that resolves to nothing fails closed later.
    pub plugins: Vec<PluginName>,
}

/// Service-level settings from a Kubernetes Service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceAnnotations {
    pub protocol: Option<Protocol>,
    pub path: Option<String>,
    pub host_header: Option<String>,
    pub connect_timeout: Option<u64>,
    pub read_timeout: Option<u64>,
    pub write_timeout: Option<u64>,
    pub retries: Option<u32>,
    pub tls_verify: Option<bool>,
    pub tls_verify_depth: Option<u32>,
    pub ca_certificates_secrets: Vec<String>,
    /// `konghq.com/ca-certificates-configmap`: ConfigMaps whose `ca.crt` is a CA bundle.
    pub ca_certificates_config_maps: Vec<String>,
    /// `konghq.com/client-cert`: the TLS Secret presented to the upstream.
    pub client_cert: Option<String>,
    pub service_upstream: bool,
    pub tags: Vec<String>,
    /// `konghq.com/plugins` (see [`RouteAnnotations::plugins`]).
    pub plugins: Vec<PluginName>,
}

/// The field name used in problems about an annotation.
pub fn field(key: &str) -> String {
    format!("metadata.annotations.{key}")
}

/// Drops `konghq.com/request-buffering` / `response-buffering: "true"` from a gRPC route (the
/// proxy rejects buffering a gRPC stream), each with a problem naming the annotation.
pub fn drop_grpc_buffering(object: &ObjectRef, route: &mut proxy_config::Route, problems: &mut Vec<Problem>) {
    if !route.is_grpc() {
        return;
    }
    for (key, value) in
        [(REQUEST_BUFFERING, &mut route.request_buffering), (RESPONSE_BUFFERING, &mut route.response_buffering)]
    {
        if *value == Some(true) {
            *value = None;
            problems.push(Problem::new(object, field(key), "dropped: a gRPC route streams; it cannot be buffered"));
        }
    }
}

/// Whether we read this key at all (hostility is only judged on values we consume: other
/// annotations, such as `kubectl.kubernetes.io/last-applied-configuration`, are none of our business).
fn consumed(key: &str) -> bool {
    key.starts_with(PREFIX) || key.starts_with("ingress.kubernetes.io/") || key == INGRESS_CLASS
}

/// The problem that rejects the object if any consumed annotation value is hostile (it names the
/// first offending annotation); `None` when every value is acceptable.
pub fn check_hostile(object: &ObjectRef, annotations: &BTreeMap<String, String>) -> Option<Problem> {
    annotations.iter().filter(|(k, _)| consumed(k)).find_map(|(key, value)| {
        let reason = if value.len() > MAX_VALUE_LEN {
            Some(format!("value is {} bytes long (at most {MAX_VALUE_LEN})", value.len()))
        } else {
            value
                .chars()
                .find(|c| c.is_control() || matches!(c, '"' | '\'' | '`'))
                .map(|c| format!("value contains a forbidden character {c:?}"))
        };
        reason.map(|r| Problem::new(object, field(key), format!("{r}; the object is left out")))
    })
}

/// KIC's list rule: split on the separator, trim, drop empty items.
pub(crate) fn split_list<'a>(value: &'a str, separator: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    value.split(separator).map(str::trim).filter(|s| !s.is_empty())
}

/// Go's `strconv.ParseBool` forms (what KIC accepts for booleans).
pub(crate) fn parse_bool(value: &str) -> Option<bool> {
    match value.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        other if other.eq_ignore_ascii_case("true") => Some(true),
        other if other.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// Collects problems about one object's annotations.
struct Reader<'a> {
    object: &'a ObjectRef,
    annotations: &'a BTreeMap<String, String>,
    problems: &'a mut Vec<Problem>,
}

impl Reader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(String::as_str)
    }

    fn invalid(&mut self, key: &str, message: impl std::fmt::Display) {
        self.problems.push(Problem::new(self.object, field(key), format!("{message}; annotation ignored")));
    }

    /// A problem about a value that still takes effect (a deprecated spelling).
    fn deprecated(&mut self, key: &str, message: impl std::fmt::Display) {
        self.problems.push(Problem::new(self.object, field(key), message.to_string()));
    }

    fn bool(&mut self, key: &str) -> Option<bool> {
        let v = self.get(key)?;
        let parsed = parse_bool(v);
        if parsed.is_none() {
            let msg = format!("invalid value '{v}': expected true or false");
            self.invalid(key, msg);
        }
        parsed
    }

    fn int<T: std::str::FromStr + PartialOrd + std::fmt::Display>(&mut self, key: &str, min: T, max: T) -> Option<T> {
        let v = self.get(key)?;
        match v.trim().parse::<T>() {
            Ok(n) if n >= min && n <= max => Some(n),
            _ => {
                let msg = format!("invalid value '{v}': expected an integer between {min} and {max}");
                self.invalid(key, msg);
                None
            }
        }
    }

    fn tags(&mut self) -> Vec<String> {
        let Some(v) = self.get(TAGS) else { return Vec::new() };
        let tags: Vec<String> = split_list(v, ",").map(str::to_string).collect();
        if let Some(bad) = tags.iter().find(|t| !t.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b',')) {
            let msg = format!("invalid tag '{bad}': tags are printable ASCII without '/' or ','");
            self.invalid(TAGS, msg);
            return Vec::new();
        }
        tags
    }

    /// Problems for known-but-unsupported keys, keys that belong on the other object kind, and
    /// unknown `konghq.com/` keys (typos would otherwise go unnoticed).
    fn foreign_keys(&mut self, own: &[&str], other: &[&str], other_kind: &str, allow_headers: bool) {
        let keys: Vec<String> = self.annotations.keys().filter(|k| k.starts_with(PREFIX)).cloned().collect();
        for key in keys {
            if own.contains(&key.as_str()) || (allow_headers && key.starts_with(HEADERS_PREFIX)) {
                continue;
            }
            if let Some((_, why)) = UNSUPPORTED.iter().find(|(k, _)| *k == key) {
                self.invalid(&key, why);
            } else if other.contains(&key.as_str()) || (!allow_headers && key.starts_with(HEADERS_PREFIX)) {
                let hint = match key.as_str() {
                    PROTOCOLS => " (the Service takes the singular konghq.com/protocol)",
                    PROTOCOL => " (the Ingress takes the plural konghq.com/protocols)",
                    _ => "",
                };
                let msg = format!("this annotation belongs on the {other_kind}{hint}");
                self.invalid(&key, msg);
            } else {
                self.invalid(&key, "unknown konghq.com annotation");
            }
        }
    }
}

fn parse_protocol(s: &str) -> Result<Protocol, String> {
    let p: Protocol = s.parse().map_err(|_| format!("unknown protocol '{s}'"))?;
    if matches!(p, Protocol::Http | Protocol::Https | Protocol::Grpc | Protocol::Grpcs) {
        Ok(p)
    } else {
        Err(format!("protocol '{s}' is not supported by sluice (http, https, grpc, grpcs)"))
    }
}

/// Parses the route annotations of an Ingress (or any object producing routes).
pub fn route_annotations(
    object: &ObjectRef,
    annotations: &BTreeMap<String, String>,
    problems: &mut Vec<Problem>,
) -> RouteAnnotations {
    let mut r = Reader { object, annotations, problems };
    let mut a = RouteAnnotations::default();

    if let Some(v) = r.get(PROTOCOLS) {
        let parsed: Result<Vec<Protocol>, String> = split_list(v, ",").map(parse_protocol).collect();
        match parsed {
            Err(e) => r.invalid(PROTOCOLS, e),
            Ok(list) if list.is_empty() => {}
            Ok(mut list) => {
                list.sort();
                list.dedup();
                if list.iter().any(|p| p.is_grpc()) && list.iter().any(|p| !p.is_grpc()) {
                    r.invalid(PROTOCOLS, format!("'{v}' mixes the http and grpc families"));
                } else {
                    a.protocols = Some(list);
                }
            }
        }
    }
    a.strip_path = r.bool(STRIP_PATH);
    a.preserve_host = r.bool(PRESERVE_HOST);
    if let Some(v) = r.get(METHODS) {
        let list: Vec<String> = split_list(v, ",").map(|m| m.to_ascii_uppercase()).collect();
        match list.iter().find(|m| !m.bytes().all(|b| b.is_ascii_uppercase())) {
            Some(bad) => {
                let msg = format!("invalid method '{bad}'");
                r.invalid(METHODS, msg);
            }
            None if !list.is_empty() => a.methods = Some(list),
            None => {}
        }
    }
    let separator = r.get(HEADERS_SEPARATOR).filter(|s| !s.is_empty()).unwrap_or(",").to_string();
    let header_keys: Vec<String> = annotations.keys().filter(|k| k.starts_with(HEADERS_PREFIX)).cloned().collect();
    for key in header_keys {
        let name = &key[HEADERS_PREFIX.len()..];
        let value = annotations.get(&key).map(String::as_str).unwrap_or("");
        let values: Vec<String> = split_list(value, &separator).map(str::to_string).collect();
        let error = if name.is_empty() || !name.bytes().all(is_token_byte) {
            Some(format!("invalid header name '{name}'"))
        } else if name.eq_ignore_ascii_case("host") {
            Some("the Host header cannot be matched with headers; use the rule host or konghq.com/host-aliases".into())
        } else if values.is_empty() {
            Some("no header values".to_string())
        } else {
            values.iter().find_map(|v| v.strip_prefix(REGEX_HEADER_PREFIX).and_then(|p| compile_header_regex(p).err()))
        };
        match error {
            Some(e) => r.invalid(&key, e),
            None => {
                a.headers.get_or_insert_with(BTreeMap::new).insert(name.to_string(), values);
            }
        }
    }
    if let Some(v) = r.get(HOST_ALIASES) {
        let list: Vec<String> = split_list(v, ",").map(|h| h.to_ascii_lowercase()).collect();
        match list.iter().find(|h| valid_host_pattern(h).is_err() || h.contains(':')) {
            Some(bad) => {
                let msg = format!("invalid host '{bad}'");
                r.invalid(HOST_ALIASES, msg);
            }
            None => a.host_aliases = list,
        }
    }
    if let Some(v) = r.get(SNIS) {
        let list: Vec<String> = split_list(v, ",").map(|h| h.to_ascii_lowercase()).collect();
        match list.iter().find(|h| valid_host_pattern(h).is_err() || h.contains(':') || h.contains('*')) {
            Some(bad) => {
                let msg = format!("invalid SNI '{bad}'");
                r.invalid(SNIS, msg);
            }
            None => a.snis = Some(list),
        }
    }
    a.regex_priority = r.int(REGEX_PRIORITY, i64::from(i32::MIN), i64::from(i32::MAX));
    if let Some(v) = r.get(REGEX_PREFIX) {
        if v.is_empty() || v.contains(char::is_whitespace) {
            r.invalid(REGEX_PREFIX, format!("invalid value '{v}'"));
        } else {
            a.regex_prefix = Some(v.to_string());
        }
    }
    if let Some(v) = r.get(PATH_HANDLING) {
        match v.trim() {
            "v0" => a.path_handling = Some(PathHandling::V0),
            "v1" => a.path_handling = Some(PathHandling::V1),
            other => {
                let msg = format!("invalid value '{other}': expected v0 or v1");
                r.invalid(PATH_HANDLING, msg);
            }
        }
    }
    if let Some(v) = r.get(HTTPS_REDIRECT) {
        match v.trim().parse::<u16>() {
            Ok(code) if [426, 301, 302, 307, 308].contains(&code) => a.https_redirect_status_code = Some(code),
            _ => {
                let msg = format!("invalid value '{v}': expected one of 426, 301, 302, 307, 308");
                r.invalid(HTTPS_REDIRECT, msg);
            }
        }
    }
    a.force_ssl_redirect = r.bool(FORCE_SSL_REDIRECT).unwrap_or(false);
    a.request_buffering = r.bool(REQUEST_BUFFERING);
    a.response_buffering = r.bool(RESPONSE_BUFFERING);
    a.tags = r.tags();
    a.plugins = r.get(PLUGINS).map(PluginName::parse_list).unwrap_or_default();
    r.foreign_keys(ROUTE_KEYS, SERVICE_KEYS, "Service", true);
    a
}

/// Parses the annotations of a Kubernetes Service.
pub fn service_annotations(
    object: &ObjectRef,
    annotations: &BTreeMap<String, String>,
    problems: &mut Vec<Problem>,
) -> ServiceAnnotations {
    let mut r = Reader { object, annotations, problems };
    let mut a = ServiceAnnotations::default();
    if let Some(v) = r.get(PROTOCOL) {
        match parse_protocol(v.trim()) {
            Ok(p) => a.protocol = Some(p),
            Err(e) => r.invalid(PROTOCOL, e),
        }
    }
    if let Some(v) = r.get(PATH) {
        if v.starts_with('/') && !v.contains(char::is_whitespace) {
            a.path = Some(v.to_string());
        } else {
            r.invalid(PATH, format!("invalid path '{v}': it must start with '/'"));
        }
    }
    if let Some(v) = r.get(HOST_HEADER) {
        if valid_host_pattern(v).is_ok() && !v.contains('*') {
            a.host_header = Some(v.to_string());
        } else {
            r.invalid(HOST_HEADER, format!("invalid host '{v}'"));
        }
    }
    const MAX_TIMEOUT: u64 = 2_147_483_646;
    a.connect_timeout = r.int(CONNECT_TIMEOUT, 1, MAX_TIMEOUT);
    a.read_timeout = r.int(READ_TIMEOUT, 1, MAX_TIMEOUT);
    a.write_timeout = r.int(WRITE_TIMEOUT, 1, MAX_TIMEOUT);
    a.retries = r.int(RETRIES, 0, 32_767);
    a.tls_verify = r.bool(TLS_VERIFY);
    a.tls_verify_depth = r.int(TLS_VERIFY_DEPTH, 0, 64);
    a.ca_certificates_secrets = ca_list(&mut r, CA_CERTIFICATES_SECRET, CA_CERTIFICATES_SECRETS, "Secret");
    a.ca_certificates_config_maps = ca_list(&mut r, CA_CERTIFICATES_CONFIGMAP, CA_CERTIFICATES_CONFIGMAPS, "ConfigMap");
    if let Some(v) = r.get(CLIENT_CERT) {
        let v = v.trim().to_string();
        if is_dns_subdomain(&v) {
            a.client_cert = Some(v);
        } else {
            r.invalid(CLIENT_CERT, format!("invalid Secret name '{v}'"));
        }
    }
    a.service_upstream = r.bool(SERVICE_UPSTREAM).unwrap_or(false);
    a.tags = r.tags();
    a.plugins = r.get(PLUGINS).map(PluginName::parse_list).unwrap_or_default();
    r.foreign_keys(SERVICE_KEYS, ROUTE_KEYS, "Ingress", false);
    a
}

/// The object names of a CA list annotation: KIC's `key`, else the `plural` spelling (honoured with a
/// deprecation problem); with both, `key` wins and `plural` is reported. A bad name drops the list.
fn ca_list(r: &mut Reader<'_>, key: &'static str, plural: &'static str, kind: &str) -> Vec<String> {
    let key = match (r.get(key).is_some(), r.get(plural).is_some()) {
        (true, true) => {
            r.invalid(plural, format!("ignored: {key} is set and wins"));
            key
        }
        (true, false) => key,
        (false, true) => {
            r.deprecated(plural, format!("deprecated spelling, still honoured: use {key}"));
            plural
        }
        (false, false) => return Vec::new(),
    };
    let list: Vec<String> = split_list(r.get(key).unwrap_or_default(), ",").map(str::to_string).collect();
    match list.iter().find(|n| !is_dns_subdomain(n)) {
        Some(bad) => {
            let msg = format!("invalid {kind} name '{bad}'");
            r.invalid(key, msg);
            Vec::new()
        }
        None => list,
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj() -> ObjectRef {
        ObjectRef { kind: "Ingress".into(), namespace: "ns".into(), name: "ing".into(), uid: String::new() }
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn lists_are_trimmed_and_empty_items_dropped() {
        assert_eq!(split_list(" a, ,b ,", ",").collect::<Vec<_>>(), vec!["a", "b"]);
    }

    #[test]
    fn route_annotations_parse() {
        let mut p = Vec::new();
        let a = route_annotations(
            &obj(),
            &map(&[
                (PROTOCOLS, "grpcs, grpc"),
                (METHODS, "get,post"),
                ("konghq.com/headers.x-tenant", "a, ~*^b$"),
                (REGEX_PRIORITY, "10"),
                (STRIP_PATH, "TRUE"),
                (HOST_ALIASES, "a.example.com,*.b.example.com"),
            ]),
            &mut p,
        );
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(a.protocols, Some(vec![Protocol::Grpc, Protocol::Grpcs]));
        assert_eq!(a.methods, Some(vec!["GET".to_string(), "POST".to_string()]));
        assert_eq!(a.headers.unwrap()["x-tenant"], vec!["a", "~*^b$"]);
        assert_eq!(a.regex_priority, Some(10));
        assert_eq!(a.strip_path, Some(true));
        assert_eq!(a.host_aliases.len(), 2);
    }

    #[test]
    fn invalid_values_are_ignored_and_reported() {
        let mut p = Vec::new();
        let a = route_annotations(
            &obj(),
            &map(&[
                (PROTOCOLS, "grpc,http"),
                (METHODS, "GET,P0ST"),
                (STRIP_PATH, "yes"),
                (HTTPS_REDIRECT, "303"),
                ("konghq.com/headers.Host", "x"),
                ("konghq.com/headers.x-re", "~*("),
                ("konghq.com/plugin", "auth"),
                ("konghq.com/protocol", "grpc"),
                ("konghq.com/unknown", "x"),
            ]),
            &mut p,
        );
        assert_eq!(a, RouteAnnotations::default());
        assert_eq!(p.len(), 9, "{p:#?}");
        assert!(p.iter().all(|p| p.field.starts_with("metadata.annotations.")));
        assert!(p.iter().any(|p| p.message.contains("plural")));
    }

    #[test]
    fn service_annotations_parse() {
        let mut p = Vec::new();
        let a = service_annotations(
            &obj(),
            &map(&[
                (PROTOCOL, "grpc"),
                (READ_TIMEOUT, "3600000"),
                (RETRIES, "40000"),
                (PROTOCOLS, "grpc"),
                (SERVICE_UPSTREAM, "true"),
            ]),
            &mut p,
        );
        assert_eq!(a.protocol, Some(Protocol::Grpc));
        assert_eq!(a.read_timeout, Some(3_600_000));
        assert_eq!(a.retries, None);
        assert!(a.service_upstream);
        assert_eq!(p.len(), 2, "{p:#?}");
        assert!(p.iter().any(|p| p.message.contains("singular")));
    }

    #[test]
    fn hostile_values_reject_the_object() {
        for v in ["a\nb", "x\"y", "it's", &"a".repeat(MAX_VALUE_LEN + 1)] {
            assert!(check_hostile(&obj(), &map(&[(METHODS, v)])).is_some(), "{v:?}");
        }
        assert!(check_hostile(&obj(), &map(&[("kubectl.kubernetes.io/last-applied-configuration", "{\"a\":\n1}")]))
            .is_none());
        assert!(check_hostile(&obj(), &map(&[("konghq.com/headers.x", "~*^v\\d{2}$")])).is_none());
    }

    #[test]
    fn go_bools() {
        for (v, want) in [("1", Some(true)), ("False", Some(false)), ("tRuE", Some(true)), ("yes", None)] {
            assert_eq!(parse_bool(v), want);
        }
    }
}
