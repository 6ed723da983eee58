//! Kong's `rate-limiting` (PRIORITY 910, access + header_filter): at most N requests per
//! second/minute/hour/day/month/year per consumer, credential, client address, service, header
//! value or path, in fixed UTC windows ([`windows`]).
//!
//! - `policy: local` counts in this process ([`local`]) and decides in the access phase,
//!   without building a key or a header per request: the counters sit in the scope's table
//!   under the identifier, and the headers stay numbers ([`Verdict`]) until header_filter
//!   writes them next to the limits' values made once per config.
//! - `policy: redis` counts in Redis ([`redis_store`]), shared by every proxy. The access phase
//!   is synchronous, so it leaves a [`RedisCheck`] in the request state and `phases::serve`
//!   awaits it ([`settle`]) once the access phase is over, before the request goes upstream.
//!   A plugin after rate-limiting in the chain (request-transformer, request-termination)
//!   therefore already ran; a request such a plugin answers is not counted.
//! - A request over a limit gets `error_code` (429) with `error_message` and `Retry-After`;
//!   `respond` sends it to a gRPC client as RESOURCE_EXHAUSTED with the headers as metadata.
//! - Redis unreachable or slower than `redis.timeout`: with `fault_tolerant` the request passes
//!   (logged, without rate-limit headers); without, Kong's 500 "An unexpected error occurred",
//!   which a gRPC client gets as UNAVAILABLE (the limiter, not the call, failed).
//! - Headers as Kong's: `X-RateLimit-Limit-<Window>` and `X-RateLimit-Remaining-<Window>` per
//!   window, `RateLimit-Limit`/`-Remaining`/`-Reset` for the window with the fewest requests
//!   left; none with `hide_client_headers`.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

use http::{HeaderMap, HeaderName, HeaderValue};
use proxy_config::plugins::rate_limiting::WINDOWS;
use proxy_config::plugins::{LimitBy, Policy, RateLimitingConfig};

use super::{AccessCtx, HeaderFilterCtx, Phases, Plugin, RequestState};
use crate::respond::{PluginReply, ProxyError};
use crate::wire::grpc::Code;

pub(crate) mod local;
pub(crate) mod redis_store;
pub(crate) mod windows;

use local::Table;
use redis_store::RedisStore;
use windows::Window;

pub(crate) const NAME: &str = "rate-limiting";

/// One counter a request is checked against: one configured window.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counter {
    /// Index into [`WINDOWS`].
    pub period: usize,
    pub limit: u64,
    pub window: Window,
}

/// What rate-limiting leaves in the request state.
#[derive(Debug)]
pub enum Counted {
    /// Headers to add to the response (header_filter).
    Headers(Verdict),
    /// A Redis check still to be awaited (by `phases::serve`, through [`settle`]).
    Pending(RedisCheck),
}

/// A request's counters, to be checked in Redis.
#[derive(Debug)]
pub struct RedisCheck {
    plugin: Arc<Limits>,
    store: Arc<RedisStore>,
    counters: Vec<Counter>,
    /// Each counter's Redis key.
    keys: Vec<String>,
    now: u64,
}

/// Kong's rate-limit headers of one request, kept as numbers until they are written (into the
/// response by header_filter, or into the refusal).
#[derive(Debug)]
pub struct Verdict {
    /// None: no headers (`hide_client_headers`, or the counters could not be read).
    limits: Option<Arc<Limits>>,
    /// Per configured limit (in [`Limits::limits`] order): requests left after this one.
    remaining: [u64; WINDOWS.len()],
    /// The limit with the fewest requests left, and the seconds until its window ends.
    tightest: Option<(usize, u64)>,
    refused: bool,
}

/// The instance's settings, shared with its pending Redis checks.
#[derive(Debug)]
struct Limits {
    /// The plugin's scope (its route and service), the first part of every counter's key.
    scope: String,
    limits: Vec<(usize, u64)>,
    /// Each limit as a header value, made once.
    limit_values: Vec<HeaderValue>,
    limit_by: LimitBy,
    header_name: Option<HeaderName>,
    path: Option<String>,
    fault_tolerant: bool,
    hide_client_headers: bool,
    error_code: u16,
    error_message: String,
}

#[derive(Debug)]
pub(crate) struct RateLimiting {
    limits: Arc<Limits>,
    store: Store,
}

/// Where the counters are.
#[derive(Debug)]
enum Store {
    Local(Arc<Table>),
    Redis(Arc<RedisStore>),
}

impl RateLimiting {
    /// From the checked config; `scope` names the entity's route and service (Kong keys its
    /// counters by the plugin's route and service ids).
    pub(crate) fn new(c: &RateLimitingConfig, scope: &str) -> Self {
        let scope = format!("ratelimit:{scope}");
        let store = match c.policy {
            Policy::Redis => Store::Redis(RedisStore::get(&c.redis)),
            Policy::Local => Store::Local(Table::of(&scope, windows::now())),
        };
        let limits = c.limits();
        let limits = Limits {
            scope,
            limit_values: limits.iter().map(|&(_, l)| HeaderValue::from(l)).collect(),
            limits,
            limit_by: c.limit_by,
            header_name: c.header_name.as_deref().and_then(|h| HeaderName::try_from(h).ok()),
            path: c.path.clone(),
            fault_tolerant: c.fault_tolerant,
            hide_client_headers: c.hide_client_headers,
            error_code: c.error_code,
            error_message: c.error_message.clone(),
        };
        RateLimiting { limits: Arc::new(limits), store }
    }
}

impl Limits {
    /// Kong's identifier: the consumer (else its credential), the credential, the service, the
    /// header's value, or the path when it is `path`; the client address when there is none.
    fn identifier<'a>(&'a self, req: &'a AccessCtx<'_>) -> Cow<'a, str> {
        let auth = req.state.authenticated.as_ref();
        let id = match self.limit_by {
            LimitBy::Consumer => auth.map(|a| Cow::Borrowed(&*a.consumer_id)),
            LimitBy::Credential => auth.and_then(|a| a.credential_id.as_deref().map(Cow::Borrowed)),
            LimitBy::Service => Some(Cow::Borrowed(req.service_name)),
            LimitBy::Header => self
                .header_name
                .as_ref()
                .and_then(|h| req.parts.headers.get(h))
                .map(|v| String::from_utf8_lossy(v.as_bytes())),
            LimitBy::Path => self.path.as_deref().filter(|p| *p == req.parts.uri.path()).map(Cow::Borrowed),
            LimitBy::Ip => None,
        };
        id.unwrap_or_else(|| Cow::Owned(req.client_ip.to_string()))
    }

    /// The counters of the windows holding `now`, one per limit, in `buf`.
    fn counters<'b>(&self, now: u64, buf: &'b mut [Counter; WINDOWS.len()]) -> &'b [Counter] {
        for (slot, &(period, limit)) in buf.iter_mut().zip(&self.limits) {
            *slot = Counter { period, limit, window: windows::window(period, now) };
        }
        &buf[..self.limits.len().min(WINDOWS.len())]
    }

    /// Kong's key of a counter in Redis.
    fn key(&self, identifier: &str, c: &Counter) -> String {
        format!("{}:{identifier}:{}:{}", self.scope, c.window.start, WINDOWS[c.period].0)
    }

    /// The counters could not be read: pass (`fault_tolerant`) or Kong's 500.
    fn store_failed(&self, err: &dyn std::fmt::Display) -> Result<Verdict, Box<PluginReply>> {
        if self.fault_tolerant {
            tracing::warn!(plugin = NAME, "failed to get usage, request passes (fault_tolerant): {err}");
            return Ok(Verdict::NONE);
        }
        tracing::error!(plugin = NAME, "failed to get usage: {err}");
        let mut reply = PluginReply::new(500, "An unexpected error occurred");
        reply.grpc_code = Some(Code::Unavailable);
        Err(Box::new(reply))
    }
}

/// Kong's verdict from the usage before this request (`counters` in `limits.limits` order):
/// `Err` with the headers when `stop` names the counter at its limit.
fn verdict(
    limits: &Arc<Limits>,
    counters: &[Counter],
    usage: &[u64],
    stop: Option<usize>,
    now: u64,
) -> Result<Verdict, Box<PluginReply>> {
    let mut v = Verdict { limits: (!limits.hide_client_headers).then(|| limits.clone()), ..Verdict::NONE };
    // (index, remaining, window length) of the window with the fewest left.
    let mut tightest: Option<(usize, u64, u64)> = None;
    for (i, (c, used)) in counters.iter().zip(usage).enumerate() {
        let mut remaining = c.limit.saturating_sub(*used);
        if stop.is_none() || stop == Some(i) {
            remaining = remaining.saturating_sub(1);
        }
        v.remaining[i] = remaining;
        let len = c.window.end - c.window.start;
        if tightest.is_none_or(|(_, r, l)| remaining < r || (remaining == r && len > l)) {
            tightest = Some((i, remaining, len));
        }
    }
    v.tightest = tightest.map(|(i, _, _)| (i, counters[i].window.end.saturating_sub(now).max(1)));
    match stop {
        None => Ok(v),
        Some(_) => {
            v.refused = true;
            let mut reply = PluginReply::new(limits.error_code, limits.error_message.clone());
            v.write(&mut reply.headers);
            Err(Box::new(reply))
        }
    }
}

impl Verdict {
    /// No headers.
    const NONE: Verdict = Verdict { limits: None, remaining: [0; WINDOWS.len()], tightest: None, refused: false };

    /// Kong's headers: `X-RateLimit-Limit-<Window>` and `X-RateLimit-Remaining-<Window>` per
    /// window, `RateLimit-*` for the tightest, `Retry-After` on a refusal.
    fn write(&self, headers: &mut HeaderMap) {
        let Some(l) = &self.limits else { return };
        for (i, (&(period, _), value)) in l.limits.iter().zip(&l.limit_values).enumerate() {
            headers.insert(LIMIT_HEADERS[period].clone(), value.clone());
            headers.insert(REMAINING_HEADERS[period].clone(), remaining(self.remaining[i]));
        }
        if let Some((i, reset)) = self.tightest {
            headers.insert(RATELIMIT_LIMIT, l.limit_values[i].clone());
            headers.insert(RATELIMIT_REMAINING, remaining(self.remaining[i]));
            headers.insert(RATELIMIT_RESET, number(reset));
            if self.refused {
                headers.insert(RETRY_AFTER, number(reset));
            }
        }
    }
}

/// A count of requests left: it changes on every request, so HTTP/2 sends it as a
/// never-indexed literal instead of inserting it into the HPACK table, where it would only evict
/// useful entries (and cost the table's search and eviction on every response).
fn remaining(n: u64) -> HeaderValue {
    let mut v = number(n);
    v.set_sensitive(true);
    v
}

/// `n` as a header value; those up to a minute's seconds are made once (a reset, a small
/// remaining count), not on every response.
fn number(n: u64) -> HeaderValue {
    static SMALL: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| (0..=60u64).map(HeaderValue::from).collect());
    match usize::try_from(n).ok().and_then(|i| SMALL.get(i)) {
        Some(v) => v.clone(),
        None => HeaderValue::from(n),
    }
}

/// `static`, not `const`: a `const` array is built, and dropped, wherever it is indexed.
static LIMIT_HEADERS: [HeaderName; 6] = [
    HeaderName::from_static("x-ratelimit-limit-second"),
    HeaderName::from_static("x-ratelimit-limit-minute"),
    HeaderName::from_static("x-ratelimit-limit-hour"),
    HeaderName::from_static("x-ratelimit-limit-day"),
    HeaderName::from_static("x-ratelimit-limit-month"),
    HeaderName::from_static("x-ratelimit-limit-year"),
];
static REMAINING_HEADERS: [HeaderName; 6] = [
    HeaderName::from_static("x-ratelimit-remaining-second"),
    HeaderName::from_static("x-ratelimit-remaining-minute"),
    HeaderName::from_static("x-ratelimit-remaining-hour"),
    HeaderName::from_static("x-ratelimit-remaining-day"),
    HeaderName::from_static("x-ratelimit-remaining-month"),
    HeaderName::from_static("x-ratelimit-remaining-year"),
];
const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
const RETRY_AFTER: HeaderName = HeaderName::from_static("retry-after");

impl Plugin for RateLimiting {
    fn name(&self) -> &'static str {
        NAME
    }
    fn priority(&self) -> u32 {
        910
    }
    fn phases(&self) -> Phases {
        Phases::ACCESS.union(Phases::HEADER_FILTER)
    }

    fn access(&self, req: &mut AccessCtx<'_>) -> Result<(), Box<PluginReply>> {
        let now = windows::now();
        let limits = &self.limits;
        let mut buf = [Counter::default(); WINDOWS.len()];
        let counters = limits.counters(now, &mut buf);
        let identifier = limits.identifier(req);
        let counted = match &self.store {
            Store::Local(table) => {
                let (usage, stop) = table.check(&identifier, counters, now);
                Counted::Headers(verdict(limits, counters, &usage, stop, now)?)
            }
            Store::Redis(store) => {
                let keys = counters.iter().map(|c| limits.key(&identifier, c)).collect();
                let (plugin, store, counters) = (limits.clone(), store.clone(), counters.to_vec());
                Counted::Pending(RedisCheck { plugin, store, counters, keys, now })
            }
        };
        req.state.rate_limit = Some(Box::new(counted));
        Ok(())
    }

    fn header_filter(&self, resp: &mut HeaderFilterCtx<'_>) {
        if let Some(Counted::Headers(v)) = resp.state.rate_limit.as_deref() {
            v.write(resp.headers);
        }
    }
}

/// Whether a Redis check waits for [`settle`].
pub(crate) fn pending(state: &RequestState) -> bool {
    matches!(state.rate_limit.as_deref(), Some(Counted::Pending(_)))
}

/// Awaits the request's Redis check (left by the access phase): the request goes on, with the
/// headers for header_filter, or is refused.
pub(crate) async fn settle(state: &mut RequestState) -> Result<(), ProxyError> {
    let Some(Counted::Pending(check)) = state.rate_limit.take().map(|b| *b) else { return Ok(()) };
    let RedisCheck { plugin, store, counters, keys, now } = check;
    let verdict = match store.check(&counters, &keys, now).await {
        Ok((usage, stop)) => verdict(&plugin, &counters, &usage, stop, now),
        Err(e) => plugin.store_failed(&e),
    };
    match verdict {
        Ok(v) => {
            state.rate_limit = Some(Box::new(Counted::Headers(v)));
            Ok(())
        }
        Err(reply) => Err(ProxyError::Plugin(reply)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::Authenticated;

    fn limits(hide: bool) -> Limits {
        Limits {
            scope: "ratelimit:r:s".into(),
            limits: vec![(0, 5), (1, 3)],
            limit_values: vec![HeaderValue::from(5u64), HeaderValue::from(3u64)],
            limit_by: LimitBy::Ip,
            header_name: None,
            path: None,
            fault_tolerant: true,
            hide_client_headers: hide,
            error_code: 429,
            error_message: "API rate limit exceeded".into(),
        }
    }

    #[test]
    fn identifiers_are_kongs_with_the_address_as_fallback() {
        let request = http::Request::builder().uri("/p?q=1").header("x-client", "v").body(()).unwrap();
        let (mut parts, ()) = request.into_parts();
        let mut state = RequestState::default();
        let consumers = crate::plugins::consumers::Consumers::default();
        let mut id = |limit_by, path: Option<&str>, header: &str, state: &mut RequestState| {
            let l = Limits {
                limit_by,
                path: path.map(str::to_string),
                header_name: Some(HeaderName::from_bytes(header.as_bytes()).unwrap()),
                ..limits(false)
            };
            let ctx = AccessCtx {
                parts: &mut parts,
                capture_paths: &[],
                client_ip: "10.0.0.1".parse().unwrap(),
                route_name: "r",
                service_name: "s",
                grpc: false,
                tls: false,
                state,
                consumers: &consumers,
            };
            l.identifier(&ctx).into_owned()
        };
        // Nobody authenticated: consumer and credential fall back to the address.
        assert_eq!(id(LimitBy::Consumer, None, "x", &mut state), "10.0.0.1");
        assert_eq!(id(LimitBy::Credential, None, "x", &mut state), "10.0.0.1");
        state.authenticated = Some(Authenticated { consumer_id: "alice".into(), credential_id: Some("key-1".into()) });
        assert_eq!(id(LimitBy::Consumer, None, "x", &mut state), "alice");
        assert_eq!(id(LimitBy::Credential, None, "x", &mut state), "key-1");
        assert_eq!(id(LimitBy::Ip, None, "x", &mut state), "10.0.0.1");
        assert_eq!(id(LimitBy::Service, None, "x", &mut state), "s");
        assert_eq!(id(LimitBy::Header, None, "X-Client", &mut state), "v");
        assert_eq!(id(LimitBy::Header, None, "X-Other", &mut state), "10.0.0.1");
        assert_eq!(id(LimitBy::Path, Some("/p"), "x", &mut state), "/p");
        assert_eq!(id(LimitBy::Path, Some("/other"), "x", &mut state), "10.0.0.1");
    }

    #[test]
    fn headers_name_each_window_and_the_tightest() {
        let l = Arc::new(limits(false));
        let now = 1_709_214_330;
        let mut buf = Default::default();
        let counters = l.counters(now, &mut buf);
        assert_eq!(l.key("1.2.3.4", &counters[1]), "ratelimit:r:s:1.2.3.4:1709214300:minute");
        let headers = |v: Verdict| {
            let mut h = HeaderMap::new();
            v.write(&mut h);
            h
        };
        let h = headers(verdict(&l, counters, &[1, 1], None, now).unwrap());
        assert_eq!(h["x-ratelimit-limit-second"], "5");
        assert_eq!(h["x-ratelimit-remaining-second"], "3");
        assert_eq!(h["x-ratelimit-remaining-minute"], "1");
        // Counts left change on every request: never indexed in HPACK; the limits are.
        assert!(h["x-ratelimit-remaining-minute"].is_sensitive() && h["ratelimit-remaining"].is_sensitive());
        assert!(!h["x-ratelimit-limit-minute"].is_sensitive() && !h["ratelimit-reset"].is_sensitive());
        assert_eq!(
            (&h["ratelimit-limit"], &h["ratelimit-remaining"], &h["ratelimit-reset"]),
            (
                &"3".parse::<HeaderValue>().unwrap(),
                &"1".parse::<HeaderValue>().unwrap(),
                &"30".parse::<HeaderValue>().unwrap()
            )
        );
        assert!(h.get("retry-after").is_none());
        let refused = verdict(&l, counters, &[3, 3], Some(1), now).unwrap_err();
        assert_eq!((refused.status, refused.message.as_str()), (429, "API rate limit exceeded"));
        assert_eq!(refused.headers["retry-after"], "30");
        assert_eq!(refused.headers["x-ratelimit-remaining-minute"], "0");
        assert!(headers(verdict(&Arc::new(limits(true)), counters, &[1, 1], None, now).unwrap()).is_empty());
    }
}
