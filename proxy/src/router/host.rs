//! Host names as the router sees them: splitting `name[:port]`, lower-casing a request host
//! without allocating, and the three shapes of a route host or SNI pattern (exact, `*.suffix`,
//! `prefix.*`). Kept apart from the index so that hosts and SNIs share one definition of
//! "this name matches that pattern".

/// Longest request host lower-cased on the stack (DNS names are at most 253 bytes); a longer
/// `Host` header is lower-cased on the heap, which only a broken or hostile client sends.
pub(crate) const STACK_HOST_LEN: usize = 256;

/// Splits a request `Host`/`:authority` into its name and port: `a.com:8080`, `[::1]:8443`,
/// `a.com`. A port that is not a number is treated as absent (the name keeps no colon).
pub(crate) fn split_host_port(host: &str) -> (&str, Option<u16>) {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => (&host[..=end], host[end + 1..].strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (host, None),
        };
    }
    // Bytes, not `rsplit_once(':')`: a char searcher per request is measurable.
    match host.bytes().rposition(|b| b == b':') {
        Some(i) if !host.as_bytes()[..i].contains(&b':') => (&host[..i], host[i + 1..].parse().ok()),
        _ => (host, None),
    }
}

/// A route host or SNI pattern, lower-cased, without its port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NamePattern {
    /// `api.example.com`
    Exact(Box<str>),
    /// `*.example.com`, stored as `example.com`: any name ending in `.example.com`.
    Leading(Box<str>),
    /// `example.*`, stored as `example`: any name starting with `example.`.
    Trailing(Box<str>),
}

impl NamePattern {
    /// Parses `pattern[:port]` (already checked by `valid_host_pattern`); a trailing dot (an
    /// absolute FQDN) is ignored, as Kong does for SNIs.
    pub(crate) fn parse(pattern: &str) -> Result<(NamePattern, Option<u16>), String> {
        let (name, port) = match pattern.rsplit_once(':') {
            Some((name, port)) => {
                (name, Some(port.parse::<u16>().map_err(|_| format!("invalid port in host '{pattern}'"))?))
            }
            None => (pattern, None),
        };
        let name = name.strip_suffix('.').filter(|n| !n.is_empty()).unwrap_or(name).to_ascii_lowercase();
        let parsed = if let Some(suffix) = name.strip_prefix("*.") {
            NamePattern::Leading(suffix.into())
        } else if let Some(prefix) = name.strip_suffix(".*") {
            NamePattern::Trailing(prefix.into())
        } else if name.contains('*') || name.is_empty() {
            return Err(format!("invalid host '{pattern}'"));
        } else {
            NamePattern::Exact(name.into())
        };
        Ok((parsed, port))
    }

    /// Whether `name` (any case, no port) matches.
    pub(crate) fn matches(&self, name: &str) -> bool {
        let name = name.as_bytes();
        match self {
            NamePattern::Exact(p) => name.eq_ignore_ascii_case(p.as_bytes()),
            NamePattern::Leading(suffix) => {
                let s = suffix.as_bytes();
                name.len() > s.len()
                    && name[name.len() - s.len() - 1] == b'.'
                    && name[name.len() - s.len()..].eq_ignore_ascii_case(s)
            }
            NamePattern::Trailing(prefix) => {
                let p = prefix.as_bytes();
                name.len() > p.len() && name[p.len()] == b'.' && name[..p.len()].eq_ignore_ascii_case(p)
            }
        }
    }
}

/// The positions of the dots in `name`, for walking wildcard suffixes and prefixes label by label.
pub(crate) fn dots(name: &[u8]) -> impl Iterator<Item = usize> + '_ {
    name.iter().enumerate().filter(|(_, b)| **b == b'.').map(|(i, _)| i)
}
