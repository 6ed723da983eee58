//! Kong's `cors` (PRIORITY 2000, access + header_filter): answers CORS preflights itself and adds
//! the CORS response headers to every other response (Kong's `kong/plugins/cors/handler.lua`).
//! Beyond Kong: on a route that serves gRPC, `exposed_headers` defaults to `grpc-status,
//! grpc-message`, so a browser gRPC(-Web) client can read the call's status.

use http::header::{self, HeaderName, HeaderValue};
use http::Method;
use proxy_config::plugins::CorsConfig;
use regex::Regex;

use super::{AccessCtx, BuildError, HeaderFilterCtx, Phases, Plugin};
use crate::respond::PluginReply;

const ACAO: HeaderName = header::ACCESS_CONTROL_ALLOW_ORIGIN;
const ACAC: HeaderName = header::ACCESS_CONTROL_ALLOW_CREDENTIALS;
const ACRM: HeaderName = header::ACCESS_CONTROL_REQUEST_METHOD;
const ACRH: HeaderName = header::ACCESS_CONTROL_REQUEST_HEADERS;
const ACRPN: HeaderName = HeaderName::from_static("access-control-request-private-network");
const ACAPN: HeaderName = HeaderName::from_static("access-control-allow-private-network");

/// One allowed origin: Kong treats an entry with regex characters as a regex anchored at both
/// ends, any other as an exact (normalized) origin.
#[derive(Debug)]
enum Origin {
    Exact(String),
    Pattern(Regex),
}

#[derive(Debug)]
pub(crate) struct Cors {
    /// `None`: every origin (`origins` empty or `["*"]`), answered with `*`.
    origins: Option<Vec<Origin>>,
    allow_headers: Option<HeaderValue>,
    expose_headers: Option<HeaderValue>,
    methods: HeaderValue,
    max_age: Option<HeaderValue>,
    credentials: bool,
    private_network: bool,
    preflight_continue: bool,
    allow_origin_absent: bool,
}

fn joined(field: &str, list: &[String]) -> Result<Option<HeaderValue>, BuildError> {
    if list.is_empty() {
        return Ok(None);
    }
    HeaderValue::from_str(&list.join(","))
        .map(Some)
        .map_err(|_| BuildError::new(format!("config.{field}"), "invalid header value"))
}

/// `Access-Control-Max-Age` as Kong writes it: `tostring` of the number (integral seconds
/// without a fraction).
fn max_age_value(secs: f64) -> HeaderValue {
    let text = if secs.fract() == 0.0 && secs.abs() < 1e15 { format!("{}", secs as i64) } else { secs.to_string() };
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("0"))
}

impl Cors {
    pub(crate) const NAME: &'static str = "cors";

    pub(crate) fn new(c: &CorsConfig) -> Result<Self, BuildError> {
        let origins = if c.origins.is_empty() || c.origins == ["*"] {
            None
        } else {
            let mut list = Vec::new();
            for o in &c.origins {
                if o.chars().any(|ch| !(ch.is_ascii_alphanumeric() || matches!(ch, '.' | ':' | '/' | '-'))) {
                    let re = Regex::new(&format!("^(?:{o})$"))
                        .map_err(|e| BuildError::new("config.origins", format!("invalid regex '{o}': {e}")))?;
                    list.push(Origin::Pattern(re));
                } else {
                    list.push(Origin::Exact(normalize(o)));
                }
            }
            Some(list)
        };
        let methods: Vec<String> = c.methods.iter().map(|m| m.as_str().to_string()).collect();
        Ok(Cors {
            origins,
            allow_headers: joined("headers", &c.headers)?,
            expose_headers: joined("exposed_headers", &c.exposed_headers)?,
            methods: joined("methods", &methods)?.unwrap_or(HeaderValue::from_static("")),
            max_age: c.max_age.map(max_age_value),
            credentials: c.credentials,
            private_network: c.private_network,
            preflight_continue: c.preflight_continue,
            allow_origin_absent: c.allow_origin_absent,
        })
    }

    /// Kong's `configure_origin` + `configure_credentials`.
    fn set_origin(&self, origin: Option<&HeaderValue>, h: &mut http::HeaderMap, vary_add: bool) {
        let vary = |h: &mut http::HeaderMap| {
            if vary_add {
                h.append(header::VARY, HeaderValue::from_static("Origin"));
            } else {
                h.insert(header::VARY, HeaderValue::from_static("Origin"));
            }
        };
        let allow_all = match &self.origins {
            None => {
                h.insert(ACAO, HeaderValue::from_static("*"));
                true
            }
            Some(list) => {
                vary(h);
                let hit = origin.and_then(|o| o.to_str().ok()).is_some_and(|o| {
                    list.iter().any(|allowed| match allowed {
                        Origin::Exact(e) => *e == normalize(o),
                        Origin::Pattern(re) => re.is_match(o),
                    })
                });
                match (hit, origin) {
                    (true, Some(o)) => {
                        h.insert(ACAO, o.clone());
                    }
                    _ => {
                        h.remove(ACAO);
                    }
                }
                false
            }
        };
        if !self.credentials {
            return;
        }
        if !allow_all {
            h.insert(ACAC, HeaderValue::from_static("true"));
        } else if let Some(o) = origin {
            // `*` cannot go with credentials: echo the origin instead.
            vary(h);
            h.insert(ACAO, o.clone());
            h.insert(ACAC, HeaderValue::from_static("true"));
        }
    }
}

/// `scheme://host[:port]` lower-cased, without the scheme's default port (Kong's normalization).
fn normalize(origin: &str) -> String {
    let o = origin.to_ascii_lowercase();
    o.strip_suffix(":80").filter(|_| o.starts_with("http://")).map(str::to_string).unwrap_or_else(|| {
        o.strip_suffix(":443").filter(|_| o.starts_with("https://")).map(str::to_string).unwrap_or(o.clone())
    })
}

impl Plugin for Cors {
    fn name(&self) -> &'static str {
        Self::NAME
    }
    fn priority(&self) -> u32 {
        2000
    }
    fn phases(&self) -> Phases {
        Phases::ACCESS.union(Phases::HEADER_FILTER)
    }

    fn access(&self, req: &mut AccessCtx<'_>) -> Result<(), Box<PluginReply>> {
        let origin = req.parts.headers.get(header::ORIGIN).cloned();
        let preflight = req.parts.method == Method::OPTIONS && origin.is_some() && req.parts.headers.contains_key(ACRM);
        req.state.origin = origin;
        if !preflight {
            return Ok(());
        }
        req.state.cors_preflight = true;
        if self.preflight_continue {
            return Ok(());
        }
        let mut reply = PluginReply::empty(200);
        let h = &mut reply.headers;
        self.set_origin(req.state.origin.as_ref(), h, false);
        match (&self.allow_headers, req.parts.headers.get(ACRH)) {
            (Some(v), _) | (None, Some(v)) => {
                h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
            }
            (None, None) => {}
        }
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, self.methods.clone());
        if let Some(age) = &self.max_age {
            h.insert(header::ACCESS_CONTROL_MAX_AGE, age.clone());
        }
        if self.private_network && req.parts.headers.get(ACRPN).is_some_and(|v| v == "true") {
            h.insert(ACAPN, HeaderValue::from_static("true"));
        }
        Err(Box::new(reply))
    }

    fn header_filter(&self, resp: &mut HeaderFilterCtx<'_>) {
        if resp.state.cors_preflight {
            return;
        }
        if !self.allow_origin_absent && resp.state.origin.is_none() {
            return;
        }
        self.set_origin(resp.state.origin.as_ref(), resp.headers, true);
        match &self.expose_headers {
            Some(v) => {
                resp.headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v.clone());
            }
            None if resp.grpc_route => {
                resp.headers.insert(
                    header::ACCESS_CONTROL_EXPOSE_HEADERS,
                    HeaderValue::from_static("grpc-status,grpc-message"),
                );
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxy_config::plugins::PluginConfig;

    fn build(config: serde_json::Value) -> Result<Cors, BuildError> {
        match crate::plugins::typed_config(Cors::NAME, &config)? {
            PluginConfig::Cors(c) => Cors::new(&c),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn regex_origins_are_anchored_and_plain_ones_normalized() {
        let c = build(serde_json::json!({"origins": ["https://a.example", "https://.*\\.b\\.example"]})).unwrap();
        let mut h = http::HeaderMap::new();
        c.set_origin(Some(&HeaderValue::from_static("https://A.example:443")), &mut h, false);
        assert_eq!(h[ACAO], "https://A.example:443");
        let mut h = http::HeaderMap::new();
        c.set_origin(Some(&HeaderValue::from_static("https://x.b.example.evil")), &mut h, false);
        assert!(h.get(ACAO).is_none());
        assert_eq!(h[header::VARY], "Origin");
    }

    #[test]
    fn unknown_fields_and_bad_regexes_are_rejected() {
        assert_eq!(build(serde_json::json!({"origin": []})).unwrap_err().field, "config.origin");
        assert!(build(serde_json::json!({"origins": ["(unclosed"]})).unwrap_err().field.starts_with("config.origins"));
        assert_eq!(build(serde_json::json!({"max_age": 600})).unwrap().max_age.unwrap(), "600");
        assert_eq!(build(serde_json::json!({"max_age": 1.5})).unwrap().max_age.unwrap(), "1.5");
    }
}
