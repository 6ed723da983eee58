//! The `redis` policy's counters: one Lua script per request reads every window's counter and,
//! when none is at its limit, increments them all (with the window's expiry), atomically in
//! Redis, so any number of proxies sharing the server enforce one exact limit. One
//! [`ConnectionManager`] per server and credentials, kept for the life of the process (config
//! pushes reuse it): it multiplexes every request's script on one connection and reconnects by
//! itself after Redis comes back. A call never waits longer than the configured `timeout`.
//!
//! `redis.ssl` speaks TLS (rustls) to Redis; `ssl_verify` checks the certificate chain and the
//! `host` name against the CA files of `KONG_LUA_SSL_TRUSTED_CERTIFICATE` (process-wide, like
//! Kong's nginx directive), or the system's store when that is unset.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, OnceLock, RwLock};
use std::time::Duration;

use proxy_config::plugins::RedisConfig;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, Script, TlsCertificates};
use thiserror::Error;

use super::Counter;

/// Why the counters could not be read.
#[derive(Debug, Error)]
pub(crate) enum RedisError {
    #[error("redis {addr}: no answer within {ms} ms")]
    Timeout { addr: String, ms: u64 },
    #[error("redis {addr}: {source}")]
    Redis { addr: String, source: redis::RedisError },
}

/// Reads the counters of KEYS (limits in ARGV[1..n], expiries in ARGV[n+1..2n]); returns each
/// counter's usage before this request, then the 1-based index of a counter at its limit (0:
/// none, and then every counter was incremented).
const CHECK_AND_COUNT: &str = r"
local n = #KEYS
local out = {}
local stop = 0
for i = 1, n do
  local used = tonumber(redis.call('GET', KEYS[i]) or '0')
  out[i] = used
  if stop == 0 and used >= tonumber(ARGV[i]) then stop = i end
end
if stop == 0 then
  for i = 1, n do
    if redis.call('INCR', KEYS[i]) == 1 then redis.call('EXPIRE', KEYS[i], ARGV[n + i]) end
  end
end
out[n + 1] = stop
return out
";

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(CHECK_AND_COUNT));

/// One Redis server (with its database and credentials) as the plugin instances use it.
pub(crate) struct RedisStore {
    addr: String,
    host: String,
    port: u16,
    /// `Some(verify)` for TLS.
    tls: Option<bool>,
    redis: RedisConnectionInfo,
    timeout: Duration,
    manager: OnceLock<ConnectionManager>,
}

impl std::fmt::Debug for RedisStore {
    // Not derived: the credentials stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("addr", &self.addr).field("timeout", &self.timeout).finish()
    }
}

type StoreKey = (String, u16, i64, Option<String>, Option<String>, u64, Option<bool>);

/// Every store this process has used, so that a config push keeps its connections.
static STORES: LazyLock<Mutex<HashMap<StoreKey, Arc<RedisStore>>>> = LazyLock::new(Default::default);

/// The CA certificates (PEM) that `ssl_verify` trusts; `None`: the system's store.
static TRUSTED: RwLock<Option<Arc<Vec<u8>>>> = RwLock::new(None);

/// Sets the CA certificates (PEM, from `KONG_LUA_SSL_TRUSTED_CERTIFICATE`) for the TLS connections
/// made from now on; `None`: the system's store.
pub(crate) fn set_trusted_certificates(pem: Option<Vec<u8>>) {
    *TRUSTED.write().unwrap_or_else(|e| e.into_inner()) = pem.map(Arc::new);
}

impl RedisStore {
    /// The shared store for a plugin's `redis` record (the schema made sure `host` is set).
    pub(crate) fn get(c: &RedisConfig) -> Arc<RedisStore> {
        let host = c.host.clone().unwrap_or_default();
        let tls = c.ssl.then_some(c.ssl_verify);
        let key = (host.clone(), c.port, c.database, c.username.clone(), c.password.clone(), c.timeout, tls);
        let mut stores = STORES.lock().unwrap_or_else(|e| e.into_inner());
        stores
            .entry(key)
            .or_insert_with(|| {
                let mut redis = RedisConnectionInfo::default().set_db(c.database);
                if let Some(u) = &c.username {
                    redis = redis.set_username(u);
                }
                if let Some(p) = &c.password {
                    redis = redis.set_password(p);
                }
                Arc::new(RedisStore {
                    addr: format!("{host}:{}", c.port),
                    host,
                    port: c.port,
                    tls,
                    redis,
                    timeout: Duration::from_millis(c.timeout),
                    manager: OnceLock::new(),
                })
            })
            .clone()
    }

    /// The connection manager, created on first use (it needs the runtime; it connects lazily).
    fn manager(&self) -> Result<ConnectionManager, RedisError> {
        if let Some(m) = self.manager.get() {
            return Ok(m.clone());
        }
        let err = |source| RedisError::Redis { addr: self.addr.clone(), source };
        let addr = match self.tls {
            None => ConnectionAddr::Tcp(self.host.clone(), self.port),
            Some(verify) => {
                ConnectionAddr::TcpTls { host: self.host.clone(), port: self.port, insecure: !verify, tls_params: None }
            }
        };
        let info = addr.into_connection_info().map_err(err)?.set_redis_settings(self.redis.clone());
        let trusted = TRUSTED.read().unwrap_or_else(|e| e.into_inner()).clone();
        let client = match (self.tls, trusted) {
            (Some(true), Some(pem)) => {
                let certs = TlsCertificates { client_tls: None, root_cert: Some(pem.to_vec()) };
                redis::Client::build_with_tls(info, certs)
            }
            _ => redis::Client::open(info),
        }
        .map_err(err)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100));
        let m = ConnectionManager::new_lazy_with_config(client, config).map_err(err)?;
        Ok(self.manager.get_or_init(|| m).clone())
    }

    /// Kong's check for one request in Redis: each counter's usage before it, and the index of
    /// one at its limit (then nothing was counted).
    pub(crate) async fn check(
        &self,
        counters: &[Counter],
        keys: &[String],
        now: u64,
    ) -> Result<(Vec<u64>, Option<usize>), RedisError> {
        let mut conn = self.manager()?;
        let mut call = SCRIPT.prepare_invoke();
        for k in keys {
            call.key(k);
        }
        for c in counters {
            call.arg(c.limit);
        }
        for c in counters {
            call.arg(c.window.end.saturating_sub(now).max(1));
        }
        let answer = tokio::time::timeout(self.timeout, call.invoke_async::<Vec<u64>>(&mut conn)).await;
        let mut out = match answer {
            Err(_) => return Err(RedisError::Timeout { addr: self.addr.clone(), ms: self.timeout.as_millis() as u64 }),
            Ok(Err(source)) => return Err(RedisError::Redis { addr: self.addr.clone(), source }),
            Ok(Ok(out)) => out,
        };
        let stop = out.pop().unwrap_or(0) as usize;
        Ok((out, stop.checked_sub(1)))
    }
}
