//! The path sent upstream: Kong's join of the service path and the request path, with the part the
//! route matched removed when `strip_path` is on. Two algorithms, as in Kong: `v0` (Kong's default
//! and the only one its `traditional_compatible` router runs) and the older `v1` (Kong's
//! `traditional` router only). The rules follow `get_upstream_uri_v0` in Kong's
//! `kong/router/utils.lua` and the `v1` branch of `kong/router/traditional.lua`.

use proxy_config::PathHandling;

/// Kong's upstream path: service path + request path, with the matched part removed when
/// `strip_path`, per `handling`. `matched_path_len` comes from [`super::RouteMatch`] (0 when the
/// route has no paths). The request path has no query string; the caller appends it.
pub fn upstream_path(
    service_path: Option<&str>,
    request_path: &str,
    matched_path_len: usize,
    strip_path: bool,
    handling: PathHandling,
) -> String {
    let base = service_path.filter(|p| !p.is_empty()).unwrap_or("/");
    // Kong's "prefix": the matched path when stripping, else the leading "/". What follows it is
    // the postfix, with one leading "./" or "../" (or a lone "." / "..") dropped.
    let prefix_len = if strip_path && matched_path_len > 0 { matched_path_len } else { 1 };
    let postfix = sanitize_postfix(request_path.get(prefix_len..).unwrap_or(""));
    let after_slash = request_path.get(1..).unwrap_or("");
    match handling {
        PathHandling::V0 => v0(base, request_path, postfix, after_slash, strip_path),
        PathHandling::V1 => v1(base, postfix, after_slash, strip_path),
    }
}

fn v0(base: &str, request_path: &str, postfix: &str, after_slash: &str, strip_path: bool) -> String {
    let base_without_slash = base.strip_suffix('/');
    match (base_without_slash, strip_path) {
        (Some(trimmed), true) => {
            if postfix.is_empty() {
                if base == "/" {
                    "/".to_string()
                } else if request_path.ends_with('/') {
                    base.to_string()
                } else {
                    trimmed.to_string()
                }
            } else if postfix.starts_with('/') {
                join(trimmed, postfix)
            } else {
                join(base, postfix)
            }
        }
        (Some(_), false) => join(base, after_slash),
        (None, true) => {
            if postfix.is_empty() {
                if request_path.len() > 1 && request_path.ends_with('/') {
                    join(base, "/")
                } else {
                    base.to_string()
                }
            } else if postfix.starts_with('/') {
                join(base, postfix)
            } else {
                join3(base, "/", postfix)
            }
        }
        (None, false) => {
            if request_path == "/" {
                base.to_string()
            } else {
                join(base, request_path)
            }
        }
    }
}

fn v1(base: &str, postfix: &str, after_slash: &str, strip_path: bool) -> String {
    if !strip_path {
        return join(base, after_slash);
    }
    match base.strip_suffix('/') {
        Some(trimmed) if postfix.starts_with('/') => join(trimmed, postfix),
        _ => join(base, postfix),
    }
}

fn sanitize_postfix(postfix: &str) -> &str {
    match postfix {
        "." | ".." => "",
        _ => postfix.strip_prefix("./").or_else(|| postfix.strip_prefix("../")).unwrap_or(postfix),
    }
}

fn join(a: &str, b: &str) -> String {
    let mut s = String::with_capacity(a.len() + b.len());
    s.push_str(a);
    s.push_str(b);
    s
}

fn join3(a: &str, b: &str, c: &str) -> String {
    let mut s = String::with_capacity(a.len() + b.len() + c.len());
    s.push_str(a);
    s.push_str(b);
    s.push_str(c);
    s
}
