//! The three Kong plugins sluice runs: `request-transformer` and `response-transformer` (header
//! operations; the controller uses them for Gateway API header filters) and `request-termination`.
//! Parsed once per config into typed operations; applied per request without re-parsing.
//! Kong applies transformer operations in the order remove, rename, replace, add, append.

pub mod request_size_limiting;
pub mod request_transformer;
pub mod response_transformer;

use http::{HeaderMap, HeaderName, HeaderValue};
use proxy_config::{Plugin, TerminationConfig, TransformerConfig};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PluginError {
    #[error("invalid header name '{0}'")]
    Name(String),
    #[error("invalid header value for '{0}'")]
    Value(String),
    #[error("invalid 'name:value' pair '{0}'")]
    Pair(String),
    #[error("invalid config: {0}")]
    Config(String),
}

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

fn name(s: &str) -> Result<HeaderName, PluginError> {
    HeaderName::from_bytes(s.trim().as_bytes()).map_err(|_| PluginError::Name(s.to_string()))
}

fn pairs(list: &[String]) -> Result<Vec<(HeaderName, HeaderValue)>, PluginError> {
    list.iter()
        .map(|p| {
            let (n, v) = p.split_once(':').ok_or_else(|| PluginError::Pair(p.clone()))?;
            let v = HeaderValue::from_str(v.trim_start()).map_err(|_| PluginError::Value(n.to_string()))?;
            Ok((name(n)?, v))
        })
        .collect()
}

fn header_ops(c: &TransformerConfig) -> Result<HeaderOps, PluginError> {
    Ok(HeaderOps {
        remove: c.remove.headers.iter().map(|n| name(n)).collect::<Result<_, _>>()?,
        rename: c
            .rename
            .headers
            .iter()
            .map(|p| {
                let (a, b) = p.split_once(':').ok_or_else(|| PluginError::Pair(p.clone()))?;
                Ok((name(a)?, name(b)?))
            })
            .collect::<Result<_, PluginError>>()?,
        replace: pairs(&c.replace.headers)?,
        add: pairs(&c.add.headers)?,
        append: pairs(&c.append.headers)?,
    })
}

/// A fixed reply (request-termination).
#[derive(Debug, Clone)]
pub struct Termination {
    pub status: u16,
    pub message: String,
    pub body: Option<(String, String)>,
}

/// The plugins in force for one route, most specific instance per plugin name.
#[derive(Debug, Default, Clone)]
pub struct RoutePlugins {
    pub request_headers: Option<HeaderOps>,
    pub response_headers: Option<HeaderOps>,
    pub termination: Option<Termination>,
}

impl RoutePlugins {
    pub fn is_empty(&self) -> bool {
        self.request_headers.is_none() && self.response_headers.is_none() && self.termination.is_none()
    }

    /// Adds one plugin instance (callers pass the most specific instance last).
    pub fn set(&mut self, p: &Plugin) -> Result<(), PluginError> {
        if !p.enabled {
            return Ok(());
        }
        let config = if p.config.is_null() { serde_json::json!({}) } else { p.config.clone() };
        match p.name.as_str() {
            "request-transformer" => {
                let c: TransformerConfig =
                    serde_json::from_value(config).map_err(|e| PluginError::Config(e.to_string()))?;
                self.request_headers = Some(header_ops(&c)?);
            }
            "response-transformer" => {
                let c: TransformerConfig =
                    serde_json::from_value(config).map_err(|e| PluginError::Config(e.to_string()))?;
                self.response_headers = Some(header_ops(&c)?);
            }
            "request-termination" => {
                let c: TerminationConfig =
                    serde_json::from_value(config).map_err(|e| PluginError::Config(e.to_string()))?;
                let body =
                    c.body.map(|b| (c.content_type.unwrap_or_else(|| "application/json; charset=utf-8".into()), b));
                self.termination = Some(Termination {
                    status: c.status_code,
                    message: c.message.unwrap_or_else(|| default_termination_message(c.status_code)),
                    body,
                });
            }
            _ => {}
        }
        Ok(())
    }
}

fn default_termination_message(status: u16) -> String {
    match status {
        500 => "An unexpected error occurred".into(),
        503 => "Service unavailable".into(),
        _ => http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("").into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(name: &str, config: serde_json::Value) -> Plugin {
        serde_json::from_value(serde_json::json!({"name": name, "config": config})).unwrap()
    }

    #[test]
    fn transformer_ops_apply_in_kong_order() {
        let mut rp = RoutePlugins::default();
        rp.set(&plugin(
            "request-transformer",
            serde_json::json!({
                "remove": {"headers": ["x-drop"]},
                "rename": {"headers": ["x-old:x-new"]},
                "replace": {"headers": ["x-rep:new", "x-absent:nope"]},
                "add": {"headers": ["x-add:1", "x-rep:ignored"]},
                "append": {"headers": ["x-multi:b"]}
            }),
        ))
        .unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-drop", "1".parse().unwrap());
        h.insert("x-old", "o".parse().unwrap());
        h.insert("x-rep", "old".parse().unwrap());
        h.insert("x-multi", "a".parse().unwrap());
        rp.request_headers.as_ref().unwrap().apply(&mut h);
        assert!(h.get("x-drop").is_none());
        assert_eq!(h["x-new"], "o");
        assert!(h.get("x-old").is_none());
        assert_eq!(h["x-rep"], "new");
        assert!(h.get("x-absent").is_none());
        assert_eq!(h["x-add"], "1");
        assert_eq!(h.get_all("x-multi").iter().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn termination_defaults() {
        let mut rp = RoutePlugins::default();
        rp.set(&plugin(
            "request-termination",
            serde_json::json!({"status_code": 500, "message": "no existing backendRef provided"}),
        ))
        .unwrap();
        let t = rp.termination.unwrap();
        assert_eq!((t.status, t.message.as_str()), (500, "no existing backendRef provided"));
    }
}
