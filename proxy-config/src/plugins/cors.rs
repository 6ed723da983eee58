//! `cors` (Kong `kong/plugins/cors/schema.lua`): which origins, methods and headers a browser may
//! use cross-origin, answered on preflights and added to responses. Origins are `*`, a plain
//! origin (only `[A-Za-z0-9.:/-]`: Kong compares it after normalising scheme, host and port) or a
//! regex; Kong anchors regexes at both ends, and so does [`compile_origin`], which the proxy can
//! use for regex entries so that what validates here is what matches there.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::check::{join, Checker};

pub const NAME: &str = "cors";

/// The methods Kong allows in `config.methods`; also its default (all of them, in this order).
pub const METHODS: [&str; 9] = ["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CorsMethod {
    Get,
    Head,
    Put,
    Patch,
    Post,
    Delete,
    Options,
    Trace,
    Connect,
}

impl CorsMethod {
    pub fn as_str(self) -> &'static str {
        METHODS[self as usize]
    }
}

fn all_methods() -> Vec<CorsMethod> {
    use CorsMethod::*;
    vec![Get, Head, Put, Patch, Post, Delete, Options, Trace, Connect]
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Allowed origins: `*`, exact origins or regexes; empty = every origin.
    #[serde(default)]
    pub origins: Vec<String>,
    /// `Access-Control-Allow-Headers`; empty = echo the preflight's request headers.
    #[serde(default)]
    pub headers: Vec<String>,
    /// `Access-Control-Expose-Headers`; empty = none (the proxy adds `grpc-status`,
    /// `grpc-message` on gRPC routes).
    #[serde(default)]
    pub exposed_headers: Vec<String>,
    #[serde(default = "all_methods")]
    pub methods: Vec<CorsMethod>,
    /// `Access-Control-Max-Age` in seconds.
    #[serde(default)]
    pub max_age: Option<f64>,
    #[serde(default)]
    pub credentials: bool,
    #[serde(default)]
    pub private_network: bool,
    #[serde(default)]
    pub preflight_continue: bool,
    #[serde(default = "yes")]
    pub allow_origin_absent: bool,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            origins: Vec::new(),
            headers: Vec::new(),
            exposed_headers: Vec::new(),
            methods: all_methods(),
            max_age: None,
            credentials: false,
            private_network: false,
            preflight_continue: false,
            allow_origin_absent: true,
        }
    }
}

/// A regex origin entry as Kong matches it: a full, case-sensitive match of the request's
/// (normalised) `Origin`. Every entry but `*` must compile, as Kong's `is_regex` check demands.
pub fn compile_origin(origin: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(&format!("^(?:{origin})$")).map_err(|_| format!("'{origin}' is not a valid regex"))
}

/// Kong's test for a plain origin entry (compared after normalisation, not as a regex): only
/// `[A-Za-z0-9.:/-]`.
pub fn is_plain_origin(origin: &str) -> bool {
    origin.bytes().all(|b| b.is_ascii_alphanumeric() || b".:/-".contains(&b))
}

pub(crate) fn check(c: &mut Checker, v: Option<&Value>) {
    let fields = [
        "origins",
        "headers",
        "exposed_headers",
        "methods",
        "max_age",
        "credentials",
        "private_network",
        "preflight_continue",
        "allow_origin_absent",
    ];
    let Some(m) = c.record("config", v, &fields, &[]) else { return };
    for (at, origin) in c.strings(m, "config", "origins") {
        if origin != "*" {
            if let Err(msg) = compile_origin(origin) {
                c.err(at, msg);
            }
        }
    }
    for key in ["headers", "exposed_headers"] {
        for (at, h) in c.strings(m, "config", key) {
            if h.is_empty() || h.bytes().any(|b| b.is_ascii_control()) {
                c.err(at, format!("invalid header '{h}'"));
            }
        }
    }
    for (at, method) in c.strings(m, "config", "methods") {
        if !METHODS.contains(&method) {
            c.err(at, format!("expected one of: {}", METHODS.join(", ")));
        }
    }
    if let Some(n) = c.number(m, "config", "max_age") {
        if n < 0.0 {
            c.err(join("config", "max_age"), "value must be greater than or equal to 0");
        }
    }
    for key in ["credentials", "private_network", "preflight_continue", "allow_origin_absent"] {
        c.boolean(m, "config", key);
    }
}
