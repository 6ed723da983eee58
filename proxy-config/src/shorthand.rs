//! Kong's declarative shorthands that people write by hand, expanded into the one canonical form
//! the rest of sluice reads (and the hash covers), so that two spellings of one config are one
//! config:
//!
//! - a service's `url` (`grpc://host:port`, `https://host/path`) sets `protocol`, `host`, `port`
//!   and `path`;
//! - top-level `targets` (each naming its upstream by name or id) move under their upstream;
//! - top-level `snis` (each naming its certificate by id) move under their certificate.
//!
//! Top-level `plugins` naming their route, service or consumer stay where they are: every reader
//! of plugins resolves those references itself. What cannot be expanded (a `url` that does not
//! parse, a `url` next to `host`, a target or SNI whose parent does not exist) is left in place
//! for [`crate::validate`] to report by name.

use crate::schema::{Config, Protocol, Sni, SniObject, Target};

/// Expands every shorthand of `config` that can be expanded.
pub(crate) fn expand(config: &mut Config) {
    for s in &mut config.services {
        let Some(url) = s.url.as_deref() else { continue };
        if !s.host.is_empty() {
            continue; // both: validation says which to drop
        }
        if let Ok(parts) = parse_url(url) {
            s.protocol = parts.protocol;
            s.host = parts.host;
            s.port = parts.port;
            s.path = parts.path;
            s.url = None;
        }
    }
    let targets = std::mem::take(&mut config.targets);
    for t in targets {
        match config.upstreams.iter_mut().find(|u| t.upstream.matches(Some(&u.name), u.id.as_deref())) {
            Some(u) => u.targets.push(Target { id: t.id, target: t.target, weight: t.weight, tags: t.tags }),
            None => config.targets.push(t),
        }
    }
    let snis = std::mem::take(&mut config.snis);
    for sni in snis {
        match config.certificates.iter_mut().find(|c| sni.certificate.matches(None, c.id.as_deref())) {
            Some(c) => c.snis.push(Sni::Object(SniObject { id: sni.id, name: sni.name, tags: sni.tags })),
            None => config.snis.push(sni),
        }
    }
}

/// A service `url`, read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UrlParts {
    pub protocol: Protocol,
    pub host: String,
    pub port: u16,
    pub path: Option<String>,
}

/// Reads `scheme://host[:port][/path]` as Kong does: the port defaults to 443 for the TLS
/// schemes and to 80 otherwise; an empty path is no path. Query strings, fragments and user
/// info have no place in a service and are errors.
pub(crate) fn parse_url(url: &str) -> Result<UrlParts, String> {
    let bad = |why: &str| format!("invalid url '{url}': {why}");
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("expected scheme://host[:port][/path]"))?;
    let protocol: Protocol = scheme.to_ascii_lowercase().parse().map_err(|e: String| bad(&e))?;
    if rest.contains(['?', '#', '@']) {
        return Err(bad("query strings, fragments and user info are not allowed"));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        (format!("[{addr}]"), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() || host == "[]" {
        return Err(bad("no host"));
    }
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad(&format!("invalid port '{p}'")))?,
        None if protocol.is_tls() => 443,
        None => 80,
    };
    let path = path.filter(|p| !p.is_empty()).map(str::to_string);
    Ok(UrlParts { protocol, host: host.trim_start_matches('[').trim_end_matches(']').to_string(), port, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_read_as_kong_reads_them() {
        let u = parse_url("grpc://grpcbin.default.svc:9000").unwrap();
        assert_eq!(
            u,
            UrlParts { protocol: Protocol::Grpc, host: "grpcbin.default.svc".into(), port: 9000, path: None }
        );
        let u = parse_url("https://example.com/api/v1").unwrap();
        assert_eq!((u.protocol, u.port, u.path.as_deref()), (Protocol::Https, 443, Some("/api/v1")));
        assert_eq!(parse_url("http://[::1]:8080/").unwrap().host, "::1");
        assert_eq!(parse_url("grpcs://h").unwrap().port, 443);
        for bad in ["example.com", "ftp://h", "http://:80", "http://h:0", "http://h:x", "http://u@h", "http://h/?q=1"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
