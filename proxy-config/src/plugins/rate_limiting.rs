//! `rate-limiting` (Kong `kong/plugins/rate-limiting/schema.lua` and the shared Redis record of
//! `kong/tools/redis/schema.lua`): how many requests a client may make per second, minute, hour,
//! day, month and year, counted in the proxy (`local`) or in Redis (`redis`, shared by every
//! replica). What sluice leaves out is refused by name: the `cluster` policy (a database policy,
//! refused by Kong itself in DB-less mode), `sync_rate` other than -1, a Redis `server_name`
//! other than its `host`, Redis Sentinel and Cluster, and the deprecated flat `redis_*` fields (their `redis.*` spelling works).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::check::{bad_header, join, valid_header_name, Checker, LeftOut};

pub const NAME: &str = "rate-limiting";

/// The windows, shortest first, as Kong names them in the config and in the headers.
pub const WINDOWS: [(&str, &str); 6] = [
    ("second", "Second"),
    ("minute", "Minute"),
    ("hour", "Hour"),
    ("day", "Day"),
    ("month", "Month"),
    ("year", "Year"),
];

/// Whose requests one counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitBy {
    /// The authenticated consumer, else the client address.
    #[default]
    Consumer,
    /// The authenticated credential, else the client address.
    Credential,
    Ip,
    Service,
    /// The value of `header_name`, else the client address.
    Header,
    /// The request path when it is `path`, else the client address.
    Path,
}

/// Where the counters live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// In this proxy process.
    #[default]
    Local,
    /// In Redis, shared by every proxy that uses the same server and database.
    Redis,
}

fn default_port() -> u16 {
    6379
}
fn default_timeout() -> u64 {
    2000
}
fn default_true() -> bool {
    true
}
fn default_error_code() -> u16 {
    429
}
fn default_error_message() -> String {
    "API rate limit exceeded".into()
}

/// Kong's `redis` record (the fields sluice honours).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default = "default_port")]
    pub port: u16,
    /// Milliseconds for connecting and for each answer.
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub database: i64,
    /// TLS to Redis.
    #[serde(default)]
    pub ssl: bool,
    /// With `ssl`: check the server's certificate chain (against `KONG_LUA_SSL_TRUSTED_CERTIFICATE`)
    /// and its name (`host`).
    #[serde(default)]
    pub ssl_verify: bool,
    /// The TLS server name; the schema check accepts only `host` itself (the client sends and
    /// verifies the name it connects to).
    #[serde(default)]
    pub server_name: Option<String>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            host: None,
            port: default_port(),
            timeout: default_timeout(),
            username: None,
            password: None,
            database: 0,
            ssl: false,
            ssl_verify: false,
            server_name: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitingConfig {
    #[serde(default)]
    pub second: Option<u64>,
    #[serde(default)]
    pub minute: Option<u64>,
    #[serde(default)]
    pub hour: Option<u64>,
    #[serde(default)]
    pub day: Option<u64>,
    #[serde(default)]
    pub month: Option<u64>,
    #[serde(default)]
    pub year: Option<u64>,
    #[serde(default)]
    pub limit_by: LimitBy,
    #[serde(default)]
    pub header_name: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub policy: Policy,
    #[serde(default = "default_true")]
    pub fault_tolerant: bool,
    #[serde(default)]
    pub redis: RedisConfig,
    #[serde(default)]
    pub hide_client_headers: bool,
    #[serde(default = "default_error_code")]
    pub error_code: u16,
    #[serde(default = "default_error_message")]
    pub error_message: String,
    /// Only Kong's default -1 (count synchronously) passes the schema check.
    #[serde(default, skip_serializing)]
    sync_rate: Option<f64>,
}

impl RateLimitingConfig {
    /// The configured limits, shortest window first: (index into [`WINDOWS`], limit).
    pub fn limits(&self) -> Vec<(usize, u64)> {
        [self.second, self.minute, self.hour, self.day, self.month, self.year]
            .into_iter()
            .enumerate()
            .filter_map(|(i, l)| l.map(|l| (i, l)))
            .collect()
    }
}

const REDIS_FIELDS: &[&str] =
    &["host", "port", "timeout", "username", "password", "database", "ssl", "ssl_verify", "server_name"];

const SENTINEL: &str = "Redis Sentinel is not implemented (use host and port)";
const CLUSTER: &str = "Redis Cluster is not implemented (use host and port)";
const SPLIT_TIMEOUTS: &str = "one 'timeout' covers connecting and every answer";
const POOL: &str = "each proxy keeps one multiplexed connection per Redis server";
const REDIS_LEFT_OUT: &[LeftOut] = &[
    LeftOut { name: "sentinel_master", why: SENTINEL },
    LeftOut { name: "sentinel_role", why: SENTINEL },
    LeftOut { name: "sentinel_nodes", why: SENTINEL },
    LeftOut { name: "sentinel_username", why: SENTINEL },
    LeftOut { name: "sentinel_password", why: SENTINEL },
    LeftOut { name: "cluster_nodes", why: CLUSTER },
    LeftOut { name: "cluster_max_redirections", why: CLUSTER },
    LeftOut { name: "connection_is_proxied", why: CLUSTER },
    LeftOut { name: "connect_timeout", why: SPLIT_TIMEOUTS },
    LeftOut { name: "send_timeout", why: SPLIT_TIMEOUTS },
    LeftOut { name: "read_timeout", why: SPLIT_TIMEOUTS },
    LeftOut { name: "keepalive_pool_size", why: POOL },
    LeftOut { name: "keepalive_backlog", why: POOL },
];

const FLAT: &str = "the deprecated flat redis_* fields are not read; use the 'redis' record (redis.host, ...)";
const LEFT_OUT: &[LeftOut] = &[
    LeftOut { name: "redis_host", why: FLAT },
    LeftOut { name: "redis_port", why: FLAT },
    LeftOut { name: "redis_password", why: FLAT },
    LeftOut { name: "redis_username", why: FLAT },
    LeftOut { name: "redis_ssl", why: FLAT },
    LeftOut { name: "redis_ssl_verify", why: FLAT },
    LeftOut { name: "redis_server_name", why: FLAT },
    LeftOut { name: "redis_timeout", why: FLAT },
    LeftOut { name: "redis_database", why: FLAT },
];

const NO_WINDOW: &str = "at least one of these fields must be non-empty: 'config.second', 'config.minute', \
                         'config.hour', 'config.day', 'config.month', 'config.year'";

pub(crate) fn check(c: &mut Checker, v: Option<&Value>) {
    let mut fields: Vec<&str> = WINDOWS.iter().map(|(w, _)| *w).collect();
    fields.extend([
        "limit_by",
        "header_name",
        "path",
        "policy",
        "fault_tolerant",
        "redis",
        "hide_client_headers",
        "error_code",
        "error_message",
        "sync_rate",
    ]);
    let Some(m) = c.record("config", v, &fields, LEFT_OUT) else {
        if v.is_none_or(Value::is_null) {
            c.err("config", NO_WINDOW);
        }
        return;
    };
    check_windows(c, m);
    let limit_by = c.one_of(m, "config", "limit_by", &["consumer", "credential", "ip", "service", "header", "path"]);
    let header_name = c.string(m, "config", "header_name");
    if let Some(h) = header_name {
        if !valid_header_name(h) {
            c.err(join("config", "header_name"), bad_header(h));
        }
    }
    let path = c.string(m, "config", "path");
    if let Some(p) = path {
        if !p.starts_with('/') {
            c.err(join("config", "path"), "should start with: /");
        }
    }
    match limit_by {
        Some("header") if header_name.is_none() => c.err(join("config", "header_name"), "required field missing"),
        Some("path") if path.is_none() => c.err(join("config", "path"), "required field missing"),
        _ => {}
    }
    let policy = c.one_of(m, "config", "policy", &["local", "cluster", "redis"]);
    if policy == Some("cluster") {
        c.err(
            join("config", "policy"),
            "not supported by sluice: the cluster policy needs a database (Kong refuses it in DB-less mode too); use local or redis",
        );
    }
    c.boolean(m, "config", "fault_tolerant");
    c.boolean(m, "config", "hide_client_headers");
    c.between(m, "config", "error_code", 100, 599);
    c.string(m, "config", "error_message");
    if let Some(rate) = c.number(m, "config", "sync_rate") {
        if rate != -1.0 {
            c.err(
                join("config", "sync_rate"),
                "not supported by sluice: counters are always read and written with each request (sync_rate -1)",
            );
        }
    }
    let redis = c.record("config.redis", m.get("redis"), REDIS_FIELDS, REDIS_LEFT_OUT);
    let host = redis.and_then(|r| check_redis(c, r));
    if policy == Some("redis") && host.is_none() {
        c.err("config.redis.host", "required field missing (policy 'redis')");
    }
}

/// At least one window, each a positive whole number, no longer window below a shorter one
/// (Kong's entity check, in its words).
fn check_windows(c: &mut Checker, m: &Map<String, Value>) {
    let mut set: Vec<(&str, f64)> = Vec::new();
    for (w, _) in WINDOWS {
        let Some(n) = c.number(m, "config", w) else { continue };
        if n <= 0.0 {
            c.err(join("config", w), "value must be greater than 0");
        } else if n.fract() != 0.0 || n > 9_007_199_254_740_992.0 {
            c.err(join("config", w), "not supported by sluice: a limit is a whole number of requests");
        } else {
            set.push((w, n));
        }
    }
    if set.is_empty() && WINDOWS.iter().all(|(w, _)| m.get(*w).is_none_or(Value::is_null)) {
        c.err("config", NO_WINDOW);
    }
    for (i, (longer, l)) in set.iter().enumerate() {
        if let Some((shorter, s)) = set[..i].iter().find(|(_, s)| l < s) {
            c.err(
                "config",
                format!("The limit for {longer}({l:.1}) cannot be lower than the limit for {shorter}({s:.1})"),
            );
        }
    }
}

/// The `redis` record's fields; returns the host when one is set.
fn check_redis<'v>(c: &mut Checker, r: &'v Map<String, Value>) -> Option<&'v str> {
    let path = "config.redis";
    let host = c.string(r, path, "host");
    if host.is_some_and(str::is_empty) {
        c.err(join(path, "host"), "length must be at least 1");
    }
    c.between(r, path, "port", 0, 65535);
    c.between(r, path, "timeout", 0, 2_147_483_646);
    c.string(r, path, "username");
    c.string(r, path, "password");
    c.between(r, path, "database", 0, i64::from(i32::MAX));
    c.boolean(r, path, "ssl");
    c.boolean(r, path, "ssl_verify");
    if let Some(name) = c.string(r, path, "server_name") {
        if host.is_some_and(|h| !h.eq_ignore_ascii_case(name)) {
            c.err(
                join(path, "server_name"),
                "not supported by sluice unless equal to 'host': the Redis client sends and verifies the name it connects to",
            );
        }
    }
    host.filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plugins::{check_plugin_config, PluginConfig};

    fn fields(config: Value) -> Vec<String> {
        let mut f: Vec<String> = check_plugin_config(NAME, &config).into_iter().map(|e| e.field).collect();
        f.sort();
        f
    }

    #[test]
    fn defaults_are_kongs() {
        let PluginConfig::RateLimiting(c) = PluginConfig::from_entity(NAME, &json!({"minute": 5})).unwrap() else {
            panic!()
        };
        assert_eq!(
            (c.limit_by, c.policy, c.fault_tolerant, c.hide_client_headers),
            (LimitBy::Consumer, Policy::Local, true, false)
        );
        assert_eq!((c.error_code, c.error_message.as_str()), (429, "API rate limit exceeded"));
        assert_eq!((c.redis.port, c.redis.timeout, c.redis.database), (6379, 2000, 0));
        assert_eq!(c.limits(), vec![(1, 5)]);
        // Kong's own defaults for what sluice leaves out are accepted.
        assert!(fields(json!({"minute": 5, "sync_rate": -1, "redis": {"ssl": false, "server_name": null}})).is_empty());
        let tls = json!({"minute": 5, "redis": {"host": "r.example", "ssl": true, "ssl_verify": true, "server_name": "R.example"}});
        assert!(fields(tls.clone()).is_empty());
        let PluginConfig::RateLimiting(c) = PluginConfig::from_entity(NAME, &tls).unwrap() else { panic!() };
        assert!(c.redis.ssl && c.redis.ssl_verify);
    }

    #[test]
    fn every_problem_is_named() {
        assert_eq!(fields(json!({})), vec!["config"]);
        assert_eq!(fields(json!({"second": 0})), vec!["config.second"]);
        assert_eq!(fields(json!({"minute": 1.5})), vec!["config.minute"]);
        assert_eq!(fields(json!({"second": 10, "hour": 5})), vec!["config"]);
        assert_eq!(fields(json!({"minute": 1, "limit_by": "path"})), vec!["config.path"]);
        assert_eq!(
            fields(json!({"minute": 1, "limit_by": "header", "header_name": "a b"})),
            vec!["config.header_name"]
        );
        assert_eq!(fields(json!({"minute": 1, "policy": "cluster"})), vec!["config.policy"]);
        assert_eq!(fields(json!({"minute": 1, "policy": "redis"})), vec!["config.redis.host"]);
        assert_eq!(fields(json!({"minute": 1, "sync_rate": 0.5})), vec!["config.sync_rate"]);
        assert_eq!(
            fields(
                json!({"minute": 1, "redis": {"host": "r", "ssl": true, "ssl_verify": true, "server_name": "other", "cluster_nodes": []}})
            ),
            vec!["config.redis.cluster_nodes", "config.redis.server_name",]
        );
        assert_eq!(
            fields(json!({"minute": 1, "redis_host": "r", "nope": 1})),
            vec!["config.nope", "config.redis_host"]
        );
    }
}
