//! Kong's `key-auth` (PRIORITY 1250, access): an API key from a header (gRPC metadata) or a
//! query argument, per `key_names`, names a consumer's `keyauth_credentials`. No key: 401 "No
//! API key found in request"; an unknown key: 401 "Unauthorized"; both with `WWW-Authenticate:
//! Key` (and the realm). gRPC clients get UNAUTHENTICATED with the message (`respond`).
//! `hide_credentials` strips the key before the request goes upstream.

use http::header::{HeaderName, HeaderValue, WWW_AUTHENTICATE};
use http::uri::{PathAndQuery, Uri};
use proxy_config::plugins::KeyAuthConfig;

use super::consumers::{Consumers, Credential};
use super::request_transformer::decode;
use super::{AccessCtx, BuildError, Phases, Plugin};
use crate::respond::PluginReply;

#[derive(Debug)]
pub(crate) struct KeyAuth {
    /// `key_names` as header names (lower case) and as query argument names.
    names: Vec<(HeaderName, String)>,
    hide_credentials: bool,
    anonymous: Option<String>,
    in_header: bool,
    in_query: bool,
    run_on_preflight: bool,
    challenge: HeaderValue,
}

impl KeyAuth {
    pub(crate) const NAME: &'static str = "key-auth";

    pub(crate) fn new(c: &KeyAuthConfig) -> Result<Self, BuildError> {
        let mut names = Vec::with_capacity(c.key_names.len());
        for (i, n) in c.key_names.iter().enumerate() {
            let h = HeaderName::from_bytes(n.to_ascii_lowercase().as_bytes()).map_err(|_| {
                BuildError::new(format!("config.key_names.{}", i + 1), format!("bad header name '{n}'"))
            })?;
            names.push((h, n.clone()));
        }
        Ok(KeyAuth {
            names,
            hide_credentials: c.hide_credentials,
            anonymous: c.anonymous.clone().filter(|a| !a.is_empty()),
            in_header: c.key_in_header,
            in_query: c.key_in_query,
            run_on_preflight: c.run_on_preflight,
            challenge: challenge("Key", c.realm.as_deref())?,
        })
    }

    fn refuse(&self, message: &str) -> Box<PluginReply> {
        let mut r = PluginReply::new(401, message);
        r.headers.insert(WWW_AUTHENTICATE, self.challenge.clone());
        Box::new(r)
    }

    /// The first key found, header names first (Kong's order per name: header, then query).
    fn find(&self, req: &mut AccessCtx<'_>) -> Result<Credential, Box<PluginReply>> {
        let consumers: &Consumers = req.consumers;
        for (header, arg) in &self.names {
            if self.in_header {
                let mut values = req.parts.headers.get_all(header).iter();
                if let Some(v) = values.next() {
                    if values.next().is_some() {
                        return Err(self.refuse("Duplicate API key found"));
                    }
                    let found = v.to_str().ok().and_then(|k| consumers.by_key(k)).cloned();
                    if self.hide_credentials {
                        req.parts.headers.remove(header);
                    }
                    return found.ok_or_else(|| self.refuse("Unauthorized"));
                }
            }
            if self.in_query {
                if let Some(key) = query_arg(req.parts.uri.query(), arg) {
                    let found = consumers.by_key(&key).cloned();
                    if self.hide_credentials {
                        strip_query_arg(&mut req.parts.uri, arg);
                    }
                    return found.ok_or_else(|| self.refuse("Unauthorized"));
                }
            }
        }
        Err(self.refuse("No API key found in request"))
    }
}

/// `<scheme>` or `<scheme> realm="<realm>"`.
pub(crate) fn challenge(scheme: &str, realm: Option<&str>) -> Result<HeaderValue, BuildError> {
    let v = match realm {
        Some(r) => format!("{scheme} realm=\"{r}\""),
        None => scheme.to_string(),
    };
    HeaderValue::from_str(&v).map_err(|_| BuildError::new("config.realm", "not a valid header value"))
}

/// The decoded value of the query argument `name` (its first occurrence).
fn query_arg(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k) == name).then(|| decode(v))
    })
}

/// The request's URI without the query argument `name`.
fn strip_query_arg(uri: &mut Uri, name: &str) {
    let Some(query) = uri.query() else { return };
    let kept: Vec<&str> =
        query.split('&').filter(|p| decode(p.split_once('=').map_or(*p, |(k, _)| k)) != name).collect();
    let pq = if kept.is_empty() { uri.path().to_string() } else { format!("{}?{}", uri.path(), kept.join("&")) };
    let mut parts = uri.clone().into_parts();
    if let Ok(pq) = PathAndQuery::try_from(pq) {
        parts.path_and_query = Some(pq);
        if let Ok(u) = Uri::from_parts(parts) {
            *uri = u;
        }
    }
}

impl Plugin for KeyAuth {
    fn name(&self) -> &'static str {
        Self::NAME
    }
    fn priority(&self) -> u32 {
        1250
    }
    fn phases(&self) -> Phases {
        Phases::ACCESS
    }
    fn access(&self, req: &mut AccessCtx<'_>) -> Result<(), Box<PluginReply>> {
        Consumers::authenticate(req, self.anonymous.as_deref(), self.run_on_preflight, |req| self.find(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_keys_are_found_decoded_and_stripped() {
        assert_eq!(query_arg(Some("a=1&apikey=k%2By&b"), "apikey").as_deref(), Some("k+y"));
        assert_eq!(query_arg(Some("a=1"), "apikey"), None);
        let mut uri: Uri = "/p?a=1&apikey=secret&b=2".parse().unwrap();
        strip_query_arg(&mut uri, "apikey");
        assert_eq!(uri, "/p?a=1&b=2");
        let mut uri: Uri = "/p?apikey=secret".parse().unwrap();
        strip_query_arg(&mut uri, "apikey");
        assert_eq!(uri, "/p");
    }
}
