//! The conditions of one route other than its host (which the index has already matched):
//! methods, SNIs, headers and paths, compiled once at build time and checked cheapest first.
//! Route regexes are compiled only through `proxy_config::patterns`, so that what validation
//! accepted is exactly what matches here.

use http::{HeaderMap, HeaderName};
use proxy_config::patterns::{compile_header_regex, compile_path_regex, RouteRegex, REGEX_HEADER_PREFIX};
use proxy_config::{FieldError, Route};

use super::host::NamePattern;
use super::priority::PathGroup;

/// Methods, SNIs and headers of a route: shared by all of its internal (per path group) routes.
#[derive(Debug)]
pub(crate) struct Conditions {
    methods: Box<[Box<str>]>,
    snis: Box<[NamePattern]>,
    headers: Box<[HeaderCondition]>,
}

/// One header name of a route and its accepted values (OR).
#[derive(Debug)]
struct HeaderCondition {
    name: HeaderName,
    /// Plain values, compared case-insensitively.
    plain: Box<[Box<str>]>,
    /// `~*` values, case-insensitive regexes.
    regexes: Box<[RouteRegex]>,
}

impl Conditions {
    /// Compiles a route's methods, SNIs and headers; errors name the field as validation does.
    pub(crate) fn compile(route: &Route) -> Result<Conditions, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut snis = Vec::with_capacity(route.snis.len());
        for (i, sni) in route.snis.iter().enumerate() {
            match NamePattern::parse(sni) {
                Ok((pattern, _port)) => snis.push(pattern),
                Err(msg) => errors.push(FieldError::new(format!("snis.{}", i + 1), msg)),
            }
        }
        let mut headers = Vec::with_capacity(route.headers.len());
        for (name, values) in &route.headers {
            let field = format!("headers.{name}");
            let header_name = match HeaderName::from_bytes(name.as_bytes()) {
                Ok(n) => n,
                Err(_) => {
                    errors.push(FieldError::new(field, format!("invalid header name '{name}'")));
                    continue;
                }
            };
            let mut plain = Vec::new();
            let mut regexes = Vec::new();
            for value in values {
                match value.strip_prefix(REGEX_HEADER_PREFIX) {
                    Some(pattern) => match compile_header_regex(pattern) {
                        Ok(re) => regexes.push(re),
                        Err(msg) => errors.push(FieldError::new(field.clone(), msg)),
                    },
                    None => plain.push(value.as_str().into()),
                }
            }
            headers.push(HeaderCondition { name: header_name, plain: plain.into(), regexes: regexes.into() });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Conditions {
            methods: route.methods.iter().map(|m| m.as_str().into()).collect(),
            snis: snis.into(),
            headers: headers.into(),
        })
    }

    /// No methods, SNIs or headers.
    pub(crate) fn is_empty(&self) -> bool {
        self.methods.is_empty() && self.snis.is_empty() && self.headers.is_empty()
    }

    /// Methods and SNIs: string compares only.
    pub(crate) fn cheap_match(&self, method: &str, sni: Option<&str>) -> bool {
        if !self.methods.is_empty() && !self.methods.iter().any(|m| **m == *method) {
            return false;
        }
        if !self.snis.is_empty() {
            match sni {
                Some(sni) if self.snis.iter().any(|p| p.matches(sni)) => {}
                _ => return false,
            }
        }
        true
    }

    /// Headers: every name must be present with an accepted value.
    pub(crate) fn headers_match(&self, headers: &HeaderMap) -> bool {
        self.headers.iter().all(|h| h.matches(headers))
    }
}

impl HeaderCondition {
    fn matches(&self, headers: &HeaderMap) -> bool {
        headers.get_all(&self.name).iter().any(|value| {
            let Ok(value) = std::str::from_utf8(value.as_bytes()) else {
                return false;
            };
            self.value_matches(value) || (value.contains(',') && value.split(',').any(|v| self.value_matches(v)))
        })
    }

    fn value_matches(&self, value: &str) -> bool {
        let value = value.trim_matches(|c| c == ' ' || c == '\t');
        self.plain.iter().any(|p| p.eq_ignore_ascii_case(value)) || self.regexes.iter().any(|re| re.is_match(value))
    }
}

/// The paths of one internal route.
#[derive(Debug)]
pub(crate) enum Paths {
    /// No paths: any path matches, consuming nothing.
    Any,
    /// Plain prefixes of one length `len`, concatenated (one allocation, one cache line to read).
    Plain { len: usize, prefixes: Box<[u8]> },
    /// Regexes anchored at the start; the match end is what they consume.
    Regex(Box<[RouteRegex]>),
}

impl Paths {
    pub(crate) fn compile(group: &PathGroup<'_>) -> Result<Paths, Vec<FieldError>> {
        match group {
            PathGroup::Any => Ok(Paths::Any),
            PathGroup::Plain(members) => Ok(Paths::Plain {
                len: members.first().map_or(0, |(_, p)| p.len()),
                prefixes: members.iter().flat_map(|(_, p)| p.bytes()).collect(),
            }),
            PathGroup::Regex(members) => {
                let mut errors = Vec::new();
                let mut regexes = Vec::with_capacity(members.len());
                for (position, path) in members {
                    let pattern = &path[proxy_config::patterns::REGEX_PATH_PREFIX.len_utf8()..];
                    match compile_path_regex(pattern) {
                        Ok(re) => regexes.push(re),
                        Err(msg) => errors.push(FieldError::new(format!("paths.{position}"), msg)),
                    }
                }
                if errors.is_empty() {
                    Ok(Paths::Regex(regexes.into()))
                } else {
                    Err(errors)
                }
            }
        }
    }

    /// The prefixes of a plain group (what the index's path filter hashes).
    pub(crate) fn plain_prefixes(&self) -> Option<std::slice::ChunksExact<'_, u8>> {
        match self {
            Paths::Plain { len, prefixes } if *len > 0 => Some(prefixes.chunks_exact(*len)),
            _ => None,
        }
    }

    pub(crate) fn is_regex(&self) -> bool {
        matches!(self, Paths::Regex(_))
    }

    /// Bytes of `path` consumed, if it matches. Regexes are tried in route order, first match wins.
    pub(crate) fn matched_len(&self, path: &str) -> Option<usize> {
        match self {
            Paths::Any => Some(0),
            Paths::Plain { len, prefixes } => {
                let head = path.as_bytes().get(..*len)?;
                prefixes.chunks_exact(*len).any(|p| p == head).then_some(*len)
            }
            Paths::Regex(regexes) => regexes.iter().find_map(|re| re.find(path)).map(|m| m.end()),
        }
    }
}
