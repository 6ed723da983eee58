//! Gateway API hostname rules: which names are valid, how a listener hostname and
//! a route hostname intersect (the narrower wins; `*.example.com` never matches `example.com`), and
//! the effective host set of a route once all its accepted listeners are known.

use std::collections::BTreeSet;

use proxy_config::patterns::valid_host_pattern;

/// The hosts a route serves: every host (a hostname-less route on a hostname-less listener), or a
/// set of names and `*.` wildcards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Hosts {
    Any,
    Names(BTreeSet<String>),
}

impl Hosts {
    pub(crate) fn empty() -> Self {
        Hosts::Names(BTreeSet::new())
    }

    /// Adds what one accepted listener contributes.
    pub(crate) fn extend(&mut self, other: Hosts) {
        match (&mut *self, other) {
            (Hosts::Any, _) => {}
            (_, Hosts::Any) => *self = Hosts::Any,
            (Hosts::Names(a), Hosts::Names(b)) => a.extend(b),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        matches!(self, Hosts::Names(n) if n.is_empty())
    }
}

/// A Gateway API hostname: lowercase DNS name, optionally with one leading `*.` label; no port.
pub(crate) fn check(hostname: &str) -> Result<(), String> {
    let bad = || format!("invalid hostname '{hostname}'");
    if hostname.is_empty() || hostname.contains(':') || hostname.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(bad());
    }
    valid_host_pattern(hostname).map_err(|_| bad())?;
    let stars = hostname.matches('*').count();
    if stars > 0 && !(stars == 1 && hostname.starts_with("*.")) {
        return Err(format!("invalid hostname '{hostname}': a wildcard must be the leftmost label"));
    }
    Ok(())
}

pub(crate) fn is_wildcard(hostname: &str) -> bool {
    hostname.starts_with("*.")
}

/// Whether `pattern` (exact or `*.suffix`) matches the name `name` (which may itself be a wildcard
/// suffix such as `foo.example.com` taken from `*.foo.example.com`). A wildcard needs at least one
/// label in front of its suffix.
fn covers(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            name.len() > suffix.len() + 1
                && name.ends_with(suffix)
                && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
        }
        None => pattern == name,
    }
}

/// The narrower of a listener hostname and a route hostname, or `None` when they do not intersect.
pub(crate) fn intersect(listener: &str, route: &str) -> Option<String> {
    if listener == route {
        return Some(route.to_string());
    }
    match (is_wildcard(listener), is_wildcard(route)) {
        (false, false) => None,
        (true, false) => covers(listener, route).then(|| route.to_string()),
        (false, true) => covers(route, listener).then(|| listener.to_string()),
        (true, true) => {
            if covers(listener, &route[2..]) {
                Some(route.to_string())
            } else if covers(route, &listener[2..]) {
                Some(listener.to_string())
            } else {
                None
            }
        }
    }
}

/// The hosts a route gets on one listener: the listener's hostname narrows the route's hostnames.
pub(crate) fn effective(listener: Option<&str>, route: &[String]) -> Hosts {
    match (listener, route.is_empty()) {
        (None, true) => Hosts::Any,
        (Some(l), true) => Hosts::Names(BTreeSet::from([l.to_string()])),
        (None, false) => Hosts::Names(route.iter().cloned().collect()),
        (Some(l), false) => Hosts::Names(route.iter().filter_map(|r| intersect(l, r)).collect()),
    }
}

/// Precedence lengths of a matching hostname (the first two Gateway API precedence rules): characters of a
/// non-wildcard hostname (0 for a wildcard), then characters of the hostname.
pub(crate) fn precedence(hostname: Option<&str>) -> (usize, usize) {
    match hostname {
        None => (0, 0),
        Some(h) if is_wildcard(h) => (0, h.len()),
        Some(h) => (h.len(), h.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples() {
        assert_eq!(intersect("test.example.com", "test.example.com").as_deref(), Some("test.example.com"));
        assert_eq!(intersect("test.example.com", "*.example.com").as_deref(), Some("test.example.com"));
        assert_eq!(intersect("*.example.com", "test.example.com").as_deref(), Some("test.example.com"));
        assert_eq!(intersect("*.example.com", "a.b.example.com").as_deref(), Some("a.b.example.com"));
        assert_eq!(intersect("*.example.com", "example.com"), None);
        assert_eq!(intersect("*.example.com", "test.example.net"), None);
        assert_eq!(intersect("*.example.com", "*.foo.example.com").as_deref(), Some("*.foo.example.com"));
        assert_eq!(intersect("*.foo.example.com", "*.example.com").as_deref(), Some("*.foo.example.com"));
        assert_eq!(intersect("pay.example.com", "*.example.com").as_deref(), Some("pay.example.com"));
        assert_eq!(intersect("*.bar.com", "*.foo.com"), None);
    }

    #[test]
    fn effective_hosts() {
        assert_eq!(effective(None, &[]), Hosts::Any);
        let route = vec!["test.example.com".to_string(), "test.example.net".to_string()];
        assert_eq!(effective(Some("*.example.com"), &route), Hosts::Names(BTreeSet::from(["test.example.com".into()])));
        assert!(effective(Some("other.org"), &route).is_empty());
    }

    #[test]
    fn validity() {
        assert!(check("foo.example.com").is_ok());
        assert!(check("*.example.com").is_ok());
        for bad in ["Foo.com", "foo.com:80", "foo.*", "a.*.com", "", "**.a.com"] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }
}
