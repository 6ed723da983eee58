//! Proxy settings from the environment, under Kong's variable names (DESIGN.md "The proxy").
//! Everything is parsed and checked before anything binds: a bad value is an error naming the
//! variable and the offending token, and the binary exits 64 (EX_USAGE).

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::listen::{ListenError, ListenSpec};
use crate::trust::{TrustError, TrustedIps};

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

/// Limits and timeouts of downstream connections (see reliability.md §2 for the numbers).
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// From accept to a complete preface / request head / TLS handshake.
    pub handshake_timeout: Duration,
    pub h1_header_timeout: Duration,
    pub h2_max_concurrent_streams: u32,
    pub h2_stream_window: u32,
    pub h2_connection_window: u32,
    pub max_header_list_size: u32,
    pub h2_keepalive_interval: Duration,
    pub h2_keepalive_timeout: Duration,
    /// Connections per listener beyond which new ones are closed at once.
    pub max_connections_per_listener: usize,
    /// How long in-flight requests may run after SIGTERM.
    pub drain_timeout: Duration,
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
            max_connections_per_listener: 10_000,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Everything the proxy needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    pub proxy_listen: ListenSpec,
    pub status_listen: ListenSpec,
    pub declarative_config: Option<PathBuf>,
    pub admin_socket: PathBuf,
    pub ssl_cert: Option<(PathBuf, PathBuf)>,
    /// Worker threads; `None` = one per core.
    pub workers: Option<usize>,
    /// Access log target; `None` = off.
    pub access_log: Option<String>,
    pub log_level: String,
    pub trusted_ips: TrustedIps,
    pub limits: ConnLimits,
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
        let mut limits = ConnLimits::default();
        if let Some(v) = get("SLUICE_DRAIN_TIMEOUT_MS") {
            limits.drain_timeout = Duration::from_millis(v.trim().parse().map_err(|_| SettingsError::Invalid {
                var: "SLUICE_DRAIN_TIMEOUT_MS",
                value: v.clone(),
                reason: "expected milliseconds".into(),
            })?);
        }
        if let Some(v) = get("SLUICE_HANDSHAKE_TIMEOUT_MS") {
            limits.handshake_timeout = Duration::from_millis(v.trim().parse().map_err(|_| SettingsError::Invalid {
                var: "SLUICE_HANDSHAKE_TIMEOUT_MS",
                value: v.clone(),
                reason: "expected milliseconds".into(),
            })?);
        }
        Ok(Settings {
            proxy_listen: listen("KONG_PROXY_LISTEN", DEFAULT_PROXY_LISTEN)?,
            status_listen: listen("KONG_STATUS_LISTEN", DEFAULT_STATUS_LISTEN)?,
            declarative_config: get("KONG_DECLARATIVE_CONFIG").filter(|s| !s.is_empty()).map(PathBuf::from),
            admin_socket: PathBuf::from(get("SLUICE_ADMIN_SOCKET").unwrap_or_else(|| DEFAULT_ADMIN_SOCKET.into())),
            ssl_cert,
            workers,
            access_log,
            log_level,
            trusted_ips: get("KONG_TRUSTED_IPS").unwrap_or_default().parse()?,
            limits,
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
    fn access_log_off() {
        assert!(settings(&[("KONG_PROXY_ACCESS_LOG", "off")]).unwrap().access_log.is_none());
    }
}
