//! The regex dialect of Kong routes, in one place so that the controller (which validates before
//! pushing) and the proxy (which compiles for matching) can never disagree.
//!
//! Kong uses PCRE; sluice uses the `regex` crate. Patterns the crate cannot compile (look-around,
//! back-references) are per-entity errors, never a silent mismatch.
//!
//! Route and header regexes are the crate's own engine (`regex_automata::meta`, what `regex::Regex`
//! wraps) with its full DFAs off: another dependency turns them on for the whole build, and a full
//! DFA per route (forward and reverse, up to tens of KiB each, built eagerly) made a config with
//! 16,000 regex routes cost over 250 MiB and most of its 14 s build (`make bench-scale`). Without
//! them a search runs the lazy DFA, which builds only the states a request visits.

use regex::{Regex, RegexBuilder};
use regex_automata::meta;
use regex_automata::util::syntax;

/// A compiled route path or header value regex.
pub type RouteRegex = meta::Regex;

/// Marker of a regex path (`~/foo/\d+`).
pub const REGEX_PATH_PREFIX: char = '~';
/// Marker of a case-insensitive regex header value (`~*^v[12]$`).
pub const REGEX_HEADER_PREFIX: &str = "~*";

/// Upper bound on compiled regex size: a hostile pattern must not eat the proxy's memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Compiles a route path regex (without its `~`): anchored at the start only, as Kong does.
pub fn compile_path_regex(pattern: &str) -> Result<RouteRegex, String> {
    build_route_regex(&format!("^(?:{pattern})"), pattern, false)
}

/// Compiles a header value regex (without its `~*`): case-insensitive, unanchored, as Kong does.
pub fn compile_header_regex(pattern: &str) -> Result<RouteRegex, String> {
    build_route_regex(pattern, pattern, true)
}

/// A route path regex as [`compile_path_regex`] accepts it, as a `regex::Regex` for its capture
/// groups (Kong's `uri_captures`).
pub fn compile_path_capture_regex(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(&format!("^(?:{pattern})"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("invalid regex: '{pattern}' ({})", first_line(&e.to_string())))
}

/// Compiles `full`; an error names `pattern` (what the config says).
fn build_route_regex(full: &str, pattern: &str, case_insensitive: bool) -> Result<RouteRegex, String> {
    meta::Regex::builder()
        .configure(meta::Regex::config().dfa(false).nfa_size_limit(Some(REGEX_SIZE_LIMIT)))
        .syntax(syntax::Config::new().case_insensitive(case_insensitive))
        .build(full)
        .map_err(|e| invalid(pattern, &e))
}

/// The error text `regex::Regex` gives for the same failure.
fn invalid(pattern: &str, e: &meta::BuildError) -> String {
    let detail = match (e.syntax_error(), e.size_limit()) {
        (Some(syntax), _) => first_line(&syntax.to_string()),
        (None, Some(limit)) => format!("Compiled regex exceeds size limit of {limit} bytes."),
        (None, None) => e.to_string(),
    };
    format!("invalid regex: '{pattern}' ({detail})")
}

fn first_line(s: &str) -> String {
    s.lines().rev().find(|l| l.starts_with("error:")).unwrap_or_else(|| s.lines().next().unwrap_or("")).to_string()
}

/// Whether a host pattern is valid for Kong: a name, optionally with one `*` as the whole
/// leftmost label (`*.example.com`) or the whole rightmost label (`example.*`); a port is allowed.
pub fn valid_host_pattern(host: &str) -> Result<(), String> {
    let name = strip_port(host).ok_or_else(|| format!("invalid port in host '{host}'"))?;
    if name.is_empty() {
        return Err("host must not be empty".into());
    }
    let labels: Vec<&str> = name.split('.').collect();
    let stars = name.matches('*').count();
    if stars > 1 {
        return Err(format!("invalid wildcard: '{host}' has more than one '*'"));
    }
    if stars == 1 {
        let first = labels.first() == Some(&"*");
        let last = labels.last() == Some(&"*");
        if !(first || last) || labels.len() < 2 {
            return Err(format!("invalid wildcard: '{host}': '*' must be the leftmost or rightmost label"));
        }
    }
    for label in labels {
        if label == "*" {
            continue;
        }
        if label.is_empty() || label.len() > 63 {
            return Err(format!("invalid hostname: '{host}'"));
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(format!("invalid hostname: '{host}'"));
        }
    }
    Ok(())
}

/// `host[:port]` → host, or `None` if the port is not a number.
pub fn strip_port(host: &str) -> Option<&str> {
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => port.parse::<u16>().ok().map(|_| name),
        _ => Some(host),
    }
}
