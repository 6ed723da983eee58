//! The header operations of Kong's `request-transformer` (PRIORITY 801) and
//! `response-transformer` (PRIORITY 800), which the controller uses for Gateway API header
//! filters. Interim: the complete transformers (uri, querystring, body, JSON) are being written
//! as `request_transformer.rs` / `response_transformer.rs` on the `pconf` branch and replace this
//! module when merged. Parsed once per config; Kong's order: remove, rename, replace, add, append.

use http::{HeaderMap, HeaderName, HeaderValue};
use proxy_config::TransformerConfig;

use super::{BuildError, HeaderFilterCtx, Phases, Plugin};

pub const REQUEST: &str = "request-transformer";
pub const RESPONSE: &str = "response-transformer";

/// Header operations of one transformer instance.
#[derive(Debug, Default, Clone)]
pub struct HeaderOps {
    remove: Vec<HeaderName>,
    rename: Vec<(HeaderName, HeaderName)>,
    replace: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
    append: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderOps {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.replace.is_empty()
            && self.add.is_empty()
            && self.append.is_empty()
    }

    pub fn apply(&self, h: &mut HeaderMap) {
        for n in &self.remove {
            h.remove(n);
        }
        for (from, to) in &self.rename {
            let values: Vec<HeaderValue> = h.get_all(from).iter().cloned().collect();
            if !values.is_empty() {
                h.remove(from);
                for v in values {
                    h.append(to.clone(), v);
                }
            }
        }
        for (n, v) in &self.replace {
            if h.contains_key(n) {
                h.insert(n.clone(), v.clone());
            }
        }
        for (n, v) in &self.add {
            if !h.contains_key(n) {
                h.insert(n.clone(), v.clone());
            }
        }
        for (n, v) in &self.append {
            h.append(n.clone(), v.clone());
        }
    }
}

fn name(s: &str) -> Result<HeaderName, BuildError> {
    HeaderName::from_bytes(s.trim().as_bytes())
        .map_err(|_| BuildError::new("config", format!("invalid header name '{s}'")))
}

fn pairs(list: &[String]) -> Result<Vec<(HeaderName, HeaderValue)>, BuildError> {
    list.iter()
        .map(|p| {
            let (n, v) = p
                .split_once(':')
                .ok_or_else(|| BuildError::new("config", format!("invalid 'name:value' pair '{p}'")))?;
            let v = HeaderValue::from_str(v.trim_start())
                .map_err(|_| BuildError::new("config", format!("invalid header value for '{n}'")))?;
            Ok((name(n)?, v))
        })
        .collect()
}

fn header_ops(c: &TransformerConfig) -> Result<HeaderOps, BuildError> {
    Ok(HeaderOps {
        remove: c.remove.headers.iter().map(|n| name(n)).collect::<Result<_, _>>()?,
        rename: c
            .rename
            .headers
            .iter()
            .map(|p| {
                let (a, b) = p
                    .split_once(':')
                    .ok_or_else(|| BuildError::new("config", format!("invalid 'name:value' pair '{p}'")))?;
                Ok((name(a)?, name(b)?))
            })
            .collect::<Result<_, BuildError>>()?,
        replace: pairs(&c.replace.headers)?,
        add: pairs(&c.add.headers)?,
        append: pairs(&c.append.headers)?,
    })
}

/// One transformer instance: request headers (upstream_request) or response headers (header_filter).
#[derive(Debug)]
pub struct HeaderTransformer {
    ops: HeaderOps,
    response: bool,
}

impl HeaderTransformer {
    pub fn request(config: serde_json::Value) -> Result<Self, BuildError> {
        let c: TransformerConfig = super::parse_config(config)?;
        Ok(HeaderTransformer { ops: header_ops(&c)?, response: false })
    }
    pub fn response(config: serde_json::Value) -> Result<Self, BuildError> {
        let c: TransformerConfig = super::parse_config(config)?;
        Ok(HeaderTransformer { ops: header_ops(&c)?, response: true })
    }
}

impl Plugin for HeaderTransformer {
    fn name(&self) -> &'static str {
        if self.response {
            RESPONSE
        } else {
            REQUEST
        }
    }
    fn priority(&self) -> u32 {
        if self.response {
            800
        } else {
            801
        }
    }
    fn phases(&self) -> Phases {
        if self.response {
            Phases::HEADER_FILTER
        } else {
            Phases::UPSTREAM_REQUEST
        }
    }
    fn upstream_request(&self, headers: &mut HeaderMap) {
        self.ops.apply(headers);
    }
    fn header_filter(&self, resp: &mut HeaderFilterCtx<'_>) {
        self.ops.apply(resp.headers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transformer_ops_apply_in_kong_order() {
        let t = HeaderTransformer::request(serde_json::json!({
            "remove": {"headers": ["x-drop"]},
            "rename": {"headers": ["x-old:x-new"]},
            "replace": {"headers": ["x-rep:new", "x-absent:nope"]},
            "add": {"headers": ["x-add:1", "x-rep:ignored"]},
            "append": {"headers": ["x-multi:b"]}
        }))
        .unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-drop", "1".parse().unwrap());
        h.insert("x-old", "o".parse().unwrap());
        h.insert("x-rep", "old".parse().unwrap());
        h.insert("x-multi", "a".parse().unwrap());
        t.upstream_request(&mut h);
        assert!(h.get("x-drop").is_none());
        assert_eq!(h["x-new"], "o");
        assert!(h.get("x-old").is_none());
        assert_eq!(h["x-rep"], "new");
        assert!(h.get("x-absent").is_none());
        assert_eq!(h["x-add"], "1");
        assert_eq!(h.get_all("x-multi").iter().collect::<Vec<_>>(), ["a", "b"]);
    }
}
