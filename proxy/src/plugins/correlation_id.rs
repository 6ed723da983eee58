//! Kong's `correlation-id` (PRIORITY 100001, access + header_filter): keeps the request's id
//! header, or generates one and sends it upstream; with `echo_downstream` the id also goes back
//! to the client (Kong's `kong/plugins/correlation-id/handler.lua`). Generators: `uuid` (random
//! v4) and `uuid#counter` (one v4 per process, then `#` and a counter). Kong's `tracker` (nginx
//! connection variables) is refused with an error naming it.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use http::{HeaderName, HeaderValue};
use proxy_config::plugins::{CorrelationIdConfig, Generator};

use super::{AccessCtx, BuildError, HeaderFilterCtx, Phases, Plugin};
use crate::respond::PluginReply;

#[derive(Debug)]
pub(crate) struct CorrelationId {
    header: HeaderName,
    generator: Generator,
    echo: bool,
}

impl CorrelationId {
    pub(crate) const NAME: &'static str = "correlation-id";

    pub(crate) fn new(c: &CorrelationIdConfig) -> Result<Self, BuildError> {
        let header = HeaderName::from_bytes(c.header_name.as_bytes())
            .map_err(|_| BuildError::new("config.header_name", format!("invalid header name '{}'", c.header_name)))?;
        if c.generator == Generator::Tracker {
            return Err(BuildError::new(
                "config.generator",
                "generator 'tracker' is not supported by sluice (uuid, uuid#counter)",
            ));
        }
        Ok(CorrelationId { header, generator: c.generator, echo: c.echo_downstream })
    }

    fn generate(&self) -> String {
        match self.generator {
            Generator::Uuid | Generator::Tracker => uuid_v4(),
            Generator::UuidCounter => {
                static PROCESS: OnceLock<String> = OnceLock::new();
                static COUNTER: AtomicU64 = AtomicU64::new(0);
                let n = COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
                // Not `format!`: its machinery costs ~300 instructions per request.
                let uuid = PROCESS.get_or_init(uuid_v4);
                let mut digits = [0u8; 20];
                let mut at = digits.len();
                let mut rest = n;
                loop {
                    at -= 1;
                    digits[at] = b'0' + (rest % 10) as u8;
                    rest /= 10;
                    if rest == 0 {
                        break;
                    }
                }
                let mut id = String::with_capacity(uuid.len() + 1 + digits.len() - at);
                id.push_str(uuid);
                id.push('#');
                id.extend(digits[at..].iter().map(|&d| char::from(d)));
                id
            }
        }
    }
}

/// A random (version 4) UUID. Correlation ids need uniqueness, not secrecy: the bits come from
/// std's randomly keyed hasher.
fn uuid_v4() -> String {
    let rand = || {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.finish()
    };
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let (a, b) = (rand(), rand());
    let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    let a = (a & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

impl Plugin for CorrelationId {
    fn name(&self) -> &'static str {
        Self::NAME
    }
    fn priority(&self) -> u32 {
        100001
    }
    fn phases(&self) -> Phases {
        Phases::ACCESS.union(Phases::HEADER_FILTER)
    }

    fn access(&self, req: &mut AccessCtx<'_>) -> Result<(), Box<PluginReply>> {
        let id = match req.parts.headers.get(&self.header) {
            Some(v) if !v.is_empty() => v.clone(),
            _ => {
                // A generated id is hex, dashes, `#` and digits: always a valid header value.
                let mut v = HeaderValue::from_str(&self.generate()).unwrap_or(HeaderValue::from_static("0"));
                // Unique per request: HTTP/2 sends it as a never-indexed literal instead of
                // inserting it into the HPACK table, where it would only evict useful entries
                // (and cost the table's search and eviction on every request).
                v.set_sensitive(true);
                req.parts.headers.insert(self.header.clone(), v.clone());
                v
            }
        };
        if self.echo {
            req.state.correlation_id = Some(id);
        }
        Ok(())
    }

    fn header_filter(&self, resp: &mut HeaderFilterCtx<'_>) {
        if let Some(id) = &resp.state.correlation_id {
            resp.headers.insert(self.header.clone(), id.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxy_config::plugins::PluginConfig;

    fn build(config: serde_json::Value) -> Result<CorrelationId, BuildError> {
        match crate::plugins::typed_config(CorrelationId::NAME, &config)? {
            PluginConfig::CorrelationId(c) => CorrelationId::new(&c),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn uuids_are_v4_and_distinct() {
        let (a, b) = (uuid_v4(), uuid_v4());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
    }

    #[test]
    fn counter_ids_share_the_process_uuid() {
        let c = build(serde_json::json!({})).unwrap();
        let (a, b) = (c.generate(), c.generate());
        let (pa, na) = a.split_once('#').unwrap();
        let (pb, nb) = b.split_once('#').unwrap();
        assert_eq!(pa, pb);
        assert!(nb.parse::<u64>().unwrap() > na.parse::<u64>().unwrap());
        assert!(!na.starts_with('0') && !nb.starts_with('0'), "{a} {b}");
    }

    #[test]
    fn tracker_is_refused_by_name() {
        let e = build(serde_json::json!({"generator": "tracker"})).unwrap_err();
        assert_eq!(e.field, "config.generator");
    }
}
