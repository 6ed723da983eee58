//! Proxy settings from the environment, under Kong's variable names (each setting names its variable where it is declared).
//! Everything is parsed and checked before anything binds: a bad value is an error naming the
//! variable and the offending token, and the binary exits 64 (EX_USAGE).

pub mod listen;
pub mod trust;

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::settings::listen::{ListenError, ListenSpec};
use crate::settings::trust::{TrustError, TrustedIps};
use crate::upstream::dns::DnsSettings;

/// Kong's default `proxy_listen`.
pub const DEFAULT_PROXY_LISTEN: &str =
    "0.0.0.0:8000 reuseport backlog=16384, 0.0.0.0:8443 http2 ssl reuseport backlog=16384";
pub const DEFAULT_STATUS_LISTEN: &str = "0.0.0.0:8100";
pub const DEFAULT_ADMIN_SOCKET: &str = "/var/run/sluice/admin.sock";

#[derive(Debug, Error)]
pub enum SettingsError {
    #[error("{var}: {source}")]
    Listen { var: &'static str, source: ListenError },
    #[error("{var}: invalid value '{value}': {reason}")]
    Invalid { var: &'static str, value: String, reason: String },
    #[error("{0}")]
    Trust(#[from] TrustError),
    #[error("KONG_SSL_CERT and KONG_SSL_CERT_KEY must be set together")]
    CertPair,
}

/// Limits and timeouts of downstream connections (each field names its variable and default), and the
/// keepalive of upstream HTTP/2 connections. Every field has an environment override, listed next
/// to it; durations are in milliseconds.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// From accept to a complete PROXY header, TLS handshake and protocol sniff (the h2 preface or
    /// the first bytes of an HTTP/1.x request). `SLUICE_HANDSHAKE_TIMEOUT_MS`, default 10 s.
    pub handshake_timeout: Duration,
    /// Time to read one HTTP/1.1 request head. `SLUICE_H1_HEADER_TIMEOUT_MS`, default 30 s.
    pub h1_header_timeout: Duration,
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`; streams above it are refused (REFUSED_STREAM).
    /// `SLUICE_H2_MAX_CONCURRENT_STREAMS`, default 100.
    pub h2_max_concurrent_streams: u32,
    /// `SLUICE_H2_STREAM_WINDOW`, default 64 KiB.
    pub h2_stream_window: u32,
    /// `SLUICE_H2_CONNECTION_WINDOW`, default 1 MiB.
    pub h2_connection_window: u32,
    /// Largest decoded request header list: 431 on HTTP/1.1 and HTTP/2.
    /// `SLUICE_MAX_HEADER_LIST_SIZE`, default 64 KiB.
    pub max_header_list_size: u32,
    /// h2 keep-alive PING interval on idle connections. `SLUICE_H2_KEEPALIVE_INTERVAL_MS`, default 60 s.
    pub h2_keepalive_interval: Duration,
    /// Connection closed when a PING is not answered in time. `SLUICE_H2_KEEPALIVE_TIMEOUT_MS`, default 20 s.
    pub h2_keepalive_timeout: Duration,
    /// Rapid Reset: the per-connection counter is judged once this many streams were seen.
    /// `SLUICE_H2_RESET_MIN_STREAMS`, default 100.
    pub h2_reset_min_streams: u32,
    /// Rapid Reset: cut the connection when at least this percentage of its recent streams were
    /// reset prematurely. `SLUICE_H2_RESET_PERCENT`, default 50.
    pub h2_reset_percent: u32,
    /// Rapid Reset: a stream reset by the client within this time of its start, before its
    /// response ended, is premature. `SLUICE_H2_RESET_LIFETIME_MS`, default 1 s.
    pub h2_reset_lifetime: Duration,
    /// An HTTP/2 connection with no open stream for this long is closed with GOAWAY(NO_ERROR).
    /// `SLUICE_H2_IDLE_TIMEOUT_MS`, default 300 s. (HTTP/1.1 keep-alive connections are closed
    /// after `h1_header_timeout` without a new request: hyper's header timer runs while idle.)
    pub h2_idle_timeout: Duration,
    /// Connections per listener beyond which new ones are closed at once.
    /// `SLUICE_MAX_CONNECTIONS_PER_LISTENER`, default 10,000.
    pub max_connections_per_listener: usize,
    /// Connections over all proxy listeners. `SLUICE_MAX_CONNECTIONS`, default 50,000.
    pub max_connections: usize,
    /// How long in-flight requests may run after SIGTERM. `SLUICE_DRAIN_TIMEOUT_MS`, default 30 s.
    pub drain_timeout: Duration,
    /// Upstream HTTP/2 PING interval while streams are open (never on an idle connection).
    /// `SLUICE_UPSTREAM_H2_KEEPALIVE_INTERVAL_MS`, default 30 s.
    pub upstream_h2_keepalive_interval: Duration,
    /// The upstream connection is closed (its streams fail) when a PING is not answered in time.
    /// `SLUICE_UPSTREAM_H2_KEEPALIVE_TIMEOUT_MS`, default 20 s.
    pub upstream_h2_keepalive_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            handshake_timeout: Duration::from_secs(10),
            h1_header_timeout: Duration::from_secs(30),
            h2_max_concurrent_streams: 100,
            h2_stream_window: 64 << 10,
            h2_connection_window: 1 << 20,
            max_header_list_size: 64 << 10,
            h2_keepalive_interval: Duration::from_secs(60),
            h2_keepalive_timeout: Duration::from_secs(20),
            h2_reset_min_streams: 100,
            h2_reset_percent: 50,
            h2_reset_lifetime: Duration::from_secs(1),
            h2_idle_timeout: Duration::from_secs(300),
            max_connections_per_listener: 10_000,
            max_connections: 50_000,
            drain_timeout: Duration::from_secs(30),
            upstream_h2_keepalive_interval: Duration::from_secs(30),
            upstream_h2_keepalive_timeout: Duration::from_secs(20),
        }
    }
}

impl ConnLimits {
    /// The defaults with every `SLUICE_*` override from `get` applied.
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<ConnLimits, SettingsError> {
        let mut l = ConnLimits::default();
        ms(get, "SLUICE_HANDSHAKE_TIMEOUT_MS", &mut l.handshake_timeout)?;
        ms(get, "SLUICE_H1_HEADER_TIMEOUT_MS", &mut l.h1_header_timeout)?;
        ms(get, "SLUICE_H2_KEEPALIVE_INTERVAL_MS", &mut l.h2_keepalive_interval)?;
        ms(get, "SLUICE_H2_KEEPALIVE_TIMEOUT_MS", &mut l.h2_keepalive_timeout)?;
        ms(get, "SLUICE_H2_RESET_LIFETIME_MS", &mut l.h2_reset_lifetime)?;
        ms(get, "SLUICE_H2_IDLE_TIMEOUT_MS", &mut l.h2_idle_timeout)?;
        ms(get, "SLUICE_DRAIN_TIMEOUT_MS", &mut l.drain_timeout)?;
        ms(get, "SLUICE_UPSTREAM_H2_KEEPALIVE_INTERVAL_MS", &mut l.upstream_h2_keepalive_interval)?;
        ms(get, "SLUICE_UPSTREAM_H2_KEEPALIVE_TIMEOUT_MS", &mut l.upstream_h2_keepalive_timeout)?;
        num(get, "SLUICE_H2_MAX_CONCURRENT_STREAMS", 1, u32::MAX as u64, &mut l.h2_max_concurrent_streams)?;
        // RFC 9113 §6.9.2: windows are 31-bit; 65,535 is the protocol minimum for the connection.
        num(get, "SLUICE_H2_STREAM_WINDOW", 1, (1 << 31) - 1, &mut l.h2_stream_window)?;
        num(get, "SLUICE_H2_CONNECTION_WINDOW", 65_535, (1 << 31) - 1, &mut l.h2_connection_window)?;
        num(get, "SLUICE_MAX_HEADER_LIST_SIZE", 1024, 16 << 20, &mut l.max_header_list_size)?;
        num(get, "SLUICE_H2_RESET_MIN_STREAMS", 1, 1_000_000, &mut l.h2_reset_min_streams)?;
        num(get, "SLUICE_H2_RESET_PERCENT", 1, 100, &mut l.h2_reset_percent)?;
        num(get, "SLUICE_MAX_CONNECTIONS_PER_LISTENER", 1, 10_000_000, &mut l.max_connections_per_listener)?;
        num(get, "SLUICE_MAX_CONNECTIONS", 1, 10_000_000, &mut l.max_connections)?;
        Ok(l)
    }
}

fn ms(get: &impl Fn(&str) -> Option<String>, var: &'static str, out: &mut Duration) -> Result<(), SettingsError> {
    if let Some(v) = get(var) {
        let n: u64 = v.trim().parse().map_err(|_| SettingsError::Invalid {
            var,
            value: v.clone(),
            reason: "expected milliseconds".into(),
        })?;
        *out = Duration::from_millis(n);
    }
    Ok(())
}

fn dns_settings(get: &impl Fn(&str) -> Option<String>) -> Result<DnsSettings, SettingsError> {
    let mut d = DnsSettings::default();
    for (var, out) in [
        ("KONG_DNS_VALID_TTL", &mut d.valid_ttl),
        ("KONG_DNS_STALE_TTL", &mut d.stale_ttl),
        ("KONG_DNS_ERROR_TTL", &mut d.error_ttl),
    ] {
        let mut n = out.as_secs();
        num(get, var, 0, 365 * 24 * 3600, &mut n)?;
        *out = Duration::from_secs(n);
    }
    Ok(d)
}

fn num<T: TryFrom<u64>>(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    min: u64,
    max: u64,
    out: &mut T,
) -> Result<(), SettingsError> {
    if let Some(v) = get(var) {
        let n = v.trim().parse::<u64>().ok().filter(|n| (min..=max).contains(n)).and_then(|n| T::try_from(n).ok());
        *out = n.ok_or_else(|| SettingsError::Invalid {
            var,
            value: v.clone(),
            reason: format!("expected a number from {min} to {max}"),
        })?;
    }
    Ok(())
}

/// Everything the proxy needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    pub proxy_listen: ListenSpec,
    pub status_listen: ListenSpec,
    pub declarative_config: Option<PathBuf>,
    /// `SLUICE_CONFIG_CACHE`: where each accepted push is saved (atomically, mode 0600) and, when
    /// `KONG_DECLARATIVE_CONFIG` is unset, loaded from at start.
    pub config_cache: Option<PathBuf>,
    pub admin_socket: PathBuf,
    pub ssl_cert: Option<(PathBuf, PathBuf)>,
    /// Worker threads; `None` = one per core.
    pub workers: Option<usize>,
    /// Access log target; `None` = off.
    pub access_log: Option<String>,
    pub log_level: String,
    pub trusted_ips: TrustedIps,
    pub limits: ConnLimits,
    /// How upstream host names are cached (`KONG_DNS_VALID_TTL`, `KONG_DNS_STALE_TTL`,
    /// `KONG_DNS_ERROR_TTL`, in seconds; see [`crate::upstream::dns`]).
    pub dns: DnsSettings,
    /// `KONG_LUA_SSL_TRUSTED_CERTIFICATE`: the CA files (PEM) that rate-limiting's `redis.ssl_verify`
    /// trusts; `None` (unset, empty or Kong's default `system`) = the system's store.
    pub trusted_certificates: Option<Vec<PathBuf>>,
}

/// Kong's `lua_ssl_trusted_certificate`: a comma-separated list of PEM files, or `system`.
fn trusted_certificates(value: Option<String>) -> Result<Option<Vec<PathBuf>>, SettingsError> {
    let value = value.unwrap_or_default();
    let entries: Vec<&str> = value.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
    if entries.is_empty() || entries == ["system"] {
        return Ok(None);
    }
    if entries.contains(&"system") {
        return Err(SettingsError::Invalid {
            var: "KONG_LUA_SSL_TRUSTED_CERTIFICATE",
            value,
            reason: "'system' cannot be combined with files: list the files only, or 'system' alone".into(),
        });
    }
    Ok(Some(entries.into_iter().map(PathBuf::from).collect()))
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Settings, SettingsError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads settings through `get` (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Settings, SettingsError> {
        let listen = |var: &'static str, default: &str| -> Result<ListenSpec, SettingsError> {
            let v = get(var).unwrap_or_else(|| default.to_string());
            v.parse::<ListenSpec>().map_err(|source| SettingsError::Listen { var, source })
        };
        let workers = match get("KONG_NGINX_WORKER_PROCESSES").as_deref().map(str::trim) {
            None | Some("auto") | Some("") => None,
            Some(n) => Some(n.parse::<usize>().ok().filter(|n| *n > 0 && *n <= 1024).ok_or_else(|| {
                SettingsError::Invalid {
                    var: "KONG_NGINX_WORKER_PROCESSES",
                    value: n.to_string(),
                    reason: "expected 'auto' or a number from 1 to 1024".into(),
                }
            })?),
        };
        let access_log = match get("KONG_PROXY_ACCESS_LOG").as_deref().map(str::trim) {
            Some("off") => None,
            None | Some("") => Some("/dev/stdout".to_string()),
            // Kong allows a trailing format name (`logs/access.log custom`); the path is the first word.
            Some(v) => v.split_whitespace().next().map(str::to_string),
        };
        let log_level = get("KONG_LOG_LEVEL").unwrap_or_else(|| "notice".into()).trim().to_ascii_lowercase();
        if !["debug", "info", "notice", "warn", "error", "crit", "alert", "emerg"].contains(&log_level.as_str()) {
            return Err(SettingsError::Invalid {
                var: "KONG_LOG_LEVEL",
                value: log_level,
                reason: "expected one of debug, info, notice, warn, error, crit, alert, emerg".into(),
            });
        }
        let ssl_cert = match (get("KONG_SSL_CERT"), get("KONG_SSL_CERT_KEY")) {
            (Some(c), Some(k)) if !c.is_empty() && !k.is_empty() => Some((PathBuf::from(c), PathBuf::from(k))),
            (None, None) => None,
            (Some(c), Some(k)) if c.is_empty() && k.is_empty() => None,
            _ => return Err(SettingsError::CertPair),
        };
        let limits = ConnLimits::from_lookup(&get)?;
        Ok(Settings {
            proxy_listen: listen("KONG_PROXY_LISTEN", DEFAULT_PROXY_LISTEN)?,
            status_listen: listen("KONG_STATUS_LISTEN", DEFAULT_STATUS_LISTEN)?,
            declarative_config: get("KONG_DECLARATIVE_CONFIG").filter(|s| !s.is_empty()).map(PathBuf::from),
            config_cache: get("SLUICE_CONFIG_CACHE").filter(|s| !s.is_empty()).map(PathBuf::from),
            admin_socket: PathBuf::from(get("SLUICE_ADMIN_SOCKET").unwrap_or_else(|| DEFAULT_ADMIN_SOCKET.into())),
            ssl_cert,
            workers,
            access_log,
            log_level,
            trusted_ips: get("KONG_TRUSTED_IPS").unwrap_or_default().parse()?,
            limits,
            dns: dns_settings(&get)?,
            trusted_certificates: trusted_certificates(get("KONG_LUA_SSL_TRUSTED_CERTIFICATE"))?,
        })
    }

    /// The tracing filter directive for Kong's log level names.
    pub fn tracing_level(&self) -> &'static str {
        match self.log_level.as_str() {
            "debug" => "debug",
            "info" | "notice" => "info",
            "warn" => "warn",
            _ => "error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_kongs() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.proxy_listen.entries.len(), 2);
        assert!(s.proxy_listen.entries[1].ssl && s.proxy_listen.entries[1].http2);
        assert_eq!(s.access_log.as_deref(), Some("/dev/stdout"));
        assert_eq!(s.admin_socket, PathBuf::from(DEFAULT_ADMIN_SOCKET));
        assert_eq!(s.tracing_level(), "info");
    }

    #[test]
    fn bad_listen_names_variable_and_token() {
        let err = settings(&[("KONG_PROXY_LISTEN", "0.0.0.0:8000 bogus")]).unwrap_err().to_string();
        assert!(err.contains("KONG_PROXY_LISTEN") && err.contains("bogus"), "{err}");
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, val) in
            [("KONG_NGINX_WORKER_PROCESSES", "many"), ("KONG_LOG_LEVEL", "loud"), ("KONG_TRUSTED_IPS", "1.2.3")]
        {
            let err = settings(&[(var, val)]).unwrap_err().to_string();
            assert!(err.contains(val), "{var}: {err}");
        }
        assert!(matches!(settings(&[("KONG_SSL_CERT", "/a")]), Err(SettingsError::CertPair)));
    }

    #[test]
    fn trusted_certificates_are_files_or_the_system_store() {
        let var = "KONG_LUA_SSL_TRUSTED_CERTIFICATE";
        assert_eq!(settings(&[]).unwrap().trusted_certificates, None);
        assert_eq!(settings(&[(var, " system ")]).unwrap().trusted_certificates, None);
        assert_eq!(
            settings(&[(var, "/a.pem, /b.pem")]).unwrap().trusted_certificates,
            Some(vec![PathBuf::from("/a.pem"), PathBuf::from("/b.pem")])
        );
        let err = settings(&[(var, "system,/a.pem")]).unwrap_err().to_string();
        assert!(err.contains(var) && err.contains("system"), "{err}");
    }

    #[test]
    fn dns_ttls_have_kongs_names_and_defaults() {
        assert_eq!(settings(&[]).unwrap().dns, DnsSettings::default());
        let d = settings(&[("KONG_DNS_VALID_TTL", "5"), ("KONG_DNS_STALE_TTL", "0"), ("KONG_DNS_ERROR_TTL", "2")])
            .unwrap()
            .dns;
        assert_eq!(
            (d.valid_ttl, d.stale_ttl, d.error_ttl),
            (Duration::from_secs(5), Duration::ZERO, Duration::from_secs(2))
        );
        let err = settings(&[("KONG_DNS_VALID_TTL", "soon")]).unwrap_err().to_string();
        assert!(err.contains("KONG_DNS_VALID_TTL") && err.contains("soon"), "{err}");
    }

    #[test]
    fn limits_have_documented_defaults_and_overrides() {
        let l = settings(&[]).unwrap().limits;
        assert_eq!((l.h2_max_concurrent_streams, l.h2_stream_window, l.h2_connection_window), (100, 65_536, 1 << 20));
        assert_eq!((l.max_header_list_size, l.h2_reset_min_streams, l.h2_reset_percent), (65_536, 100, 50));
        assert_eq!((l.handshake_timeout, l.drain_timeout), (Duration::from_secs(10), Duration::from_secs(30)));
        let l = settings(&[
            ("SLUICE_H2_MAX_CONCURRENT_STREAMS", "7"),
            ("SLUICE_H2_RESET_PERCENT", "30"),
            ("SLUICE_HANDSHAKE_TIMEOUT_MS", "500"),
            ("SLUICE_MAX_CONNECTIONS", "9"),
        ])
        .unwrap()
        .limits;
        assert_eq!((l.h2_max_concurrent_streams, l.h2_reset_percent, l.max_connections), (7, 30, 9));
        assert_eq!(l.handshake_timeout, Duration::from_millis(500));
        for (var, val) in
            [("SLUICE_H2_RESET_PERCENT", "0"), ("SLUICE_H2_CONNECTION_WINDOW", "10"), ("SLUICE_DRAIN_TIMEOUT_MS", "x")]
        {
            let err = settings(&[(var, val)]).unwrap_err().to_string();
            assert!(err.contains(var) && err.contains(val), "{err}");
        }
    }

    #[test]
    fn access_log_off() {
        assert!(settings(&[("KONG_PROXY_ACCESS_LOG", "off")]).unwrap().access_log.is_none());
    }
}
