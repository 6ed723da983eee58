//! Kong's `jwt` (PRIORITY 1450, access): a token from a query argument (`uri_param_names`), a
//! cookie (`cookie_names`) or a `Bearer` header (`header_names`); its `key_claim_name` claim
//! names a consumer's `jwt_secrets` entry, whose algorithm must be the token's `alg` and whose
//! secret or public key must verify its signature (jsonwebtoken's verifiers); then
//! `claims_to_verify` (exp, nbf) and `maximum_expiration`. Every refusal is a 401 with Kong's
//! message (a claim failure's body is Kong's `{"<claim>": "<reason>"}`), UNAUTHENTICATED for gRPC.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use http::header::{HeaderName, HeaderValue, COOKIE, WWW_AUTHENTICATE};
use proxy_config::plugins::{Claim, JwtConfig};
use serde_json::Value;

use super::consumers::{Consumers, Credential};
use super::key_auth::challenge;
use super::request_transformer::decode;
use super::{AccessCtx, BuildError, Phases, Plugin};
use crate::respond::PluginReply;

#[derive(Debug)]
pub(crate) struct Jwt {
    uri_params: Vec<String>,
    cookies: Vec<String>,
    headers: Vec<HeaderName>,
    key_claim: String,
    secret_is_base64: bool,
    claims: Vec<Claim>,
    anonymous: Option<String>,
    run_on_preflight: bool,
    maximum_expiration: i64,
    challenge: HeaderValue,
    /// The challenge once a token was given: `error="invalid_token"` added.
    invalid: HeaderValue,
}

impl Jwt {
    pub(crate) const NAME: &'static str = "jwt";

    pub(crate) fn new(c: &JwtConfig) -> Result<Self, BuildError> {
        let mut headers = Vec::new();
        for (i, h) in c.header_names.iter().enumerate() {
            headers.push(HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()).map_err(|_| {
                BuildError::new(format!("config.header_names.{}", i + 1), format!("bad header name '{h}'"))
            })?);
        }
        let challenge = challenge("Bearer", c.realm.as_deref())?;
        let invalid = HeaderValue::from_str(&format!("{}, error=\"invalid_token\"", challenge.to_str().unwrap_or("")))
            .map_err(|_| BuildError::new("config.realm", "not a valid header value"))?;
        Ok(Jwt {
            uri_params: c.uri_param_names.clone(),
            cookies: c.cookie_names.clone(),
            headers,
            key_claim: c.key_claim_name.clone(),
            secret_is_base64: c.secret_is_base64,
            claims: c.claims_to_verify.clone(),
            anonymous: c.anonymous.clone().filter(|a| !a.is_empty()),
            run_on_preflight: c.run_on_preflight,
            maximum_expiration: c.maximum_expiration,
            challenge,
            invalid,
        })
    }

    fn refuse(&self, message: impl Into<String>, token_given: bool) -> Box<PluginReply> {
        let mut r = PluginReply::new(401, message);
        r.headers.insert(WWW_AUTHENTICATE, if token_given { self.invalid.clone() } else { self.challenge.clone() });
        Box::new(r)
    }

    /// The token (Kong's `retrieve_tokens`): every source is read; two different tokens are refused.
    fn token(&self, req: &AccessCtx<'_>) -> Result<Option<String>, Box<PluginReply>> {
        let mut found: Vec<String> = Vec::new();
        let query = req.parts.uri.query();
        for name in &self.uri_params {
            found.extend(query.into_iter().flat_map(|q| q.split('&')).filter_map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (decode(k) == *name).then(|| decode(v))
            }));
        }
        if !self.cookies.is_empty() {
            for header in req.parts.headers.get_all(COOKIE) {
                for pair in header.to_str().unwrap_or("").split(';') {
                    let (k, v) = pair.trim().split_once('=').unwrap_or((pair.trim(), ""));
                    if self.cookies.iter().any(|c| c == k) {
                        found.push(v.to_string());
                    }
                }
            }
        }
        for name in &self.headers {
            for v in req.parts.headers.get_all(name) {
                let v = v.to_str().unwrap_or("").trim_start();
                if let Some((scheme, token)) = v.split_once(char::is_whitespace) {
                    if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() {
                        found.push(token.trim().to_string());
                    }
                }
            }
        }
        found.dedup();
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.pop()),
            _ => Err(self.refuse("Multiple tokens provided", true)),
        }
    }

    fn find(&self, req: &mut AccessCtx<'_>) -> Result<Credential, Box<PluginReply>> {
        let Some(token) = self.token(req)? else { return Err(self.refuse("Unauthorized", false)) };
        let consumers: &Consumers = req.consumers;
        let bad = |e: &dyn std::fmt::Display| self.refuse(format!("Bad token; {e}"), true);
        let header = jsonwebtoken::decode_header(&token).map_err(|e| bad(&e))?;
        let mut parts = token.rsplitn(2, '.');
        let (signature, message) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let payload = message.split_once('.').map(|(_, p)| p).unwrap_or("");
        let claims: Value = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .map_err(|e| bad(&e))
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| bad(&e)))?;
        let name = &self.key_claim;
        let key = match claims.get(name) {
            None | Some(Value::Null) => return Err(self.refuse(format!("No mandatory '{name}' in claims"), true)),
            Some(Value::String(s)) if !s.is_empty() => s.as_str(),
            Some(_) => return Err(self.refuse(format!("Invalid '{name}' in claims"), true)),
        };
        let Some(secret) = consumers.jwt_key(key) else {
            return Err(self.refuse(format!("No credentials found for given '{name}'"), true));
        };
        if header.alg != secret.algorithm {
            return Err(self.refuse("Invalid algorithm", true));
        }
        let verifier = match (&secret.verifier_base64, self.secret_is_base64) {
            (Some(k), true) => k,
            (None, true) => return Err(self.refuse("Invalid key/secret", true)),
            _ => &secret.verifier,
        };
        match jsonwebtoken::crypto::verify(signature, message.as_bytes(), verifier, secret.algorithm) {
            Ok(true) => {}
            _ => return Err(self.refuse("Invalid signature", true)),
        }
        if let Some((claim, reason)) = self.claim_error(&claims, unix_now()) {
            let body = serde_json::json!({ claim: reason }).to_string();
            let mut r = self.refuse(reason, true);
            r.body = Some(("application/json; charset=utf-8".to_string(), body));
            return Err(r);
        }
        Ok(secret.credential.clone())
    }

    /// Kong's `verify_registered_claims` and `check_maximum_expiration`: the first failure as
    /// (claim, reason).
    fn claim_error(&self, claims: &Value, now: f64) -> Option<(&'static str, &'static str)> {
        for claim in &self.claims {
            let (name, ok): (&'static str, fn(f64, f64) -> bool) = match claim {
                Claim::Exp => ("exp", |v, now| v > now),
                Claim::Nbf => ("nbf", |v, now| v <= now),
            };
            match claims.get(name).and_then(Value::as_f64) {
                None => return Some((name, "must be a number")),
                Some(v) if !ok(v, now) => {
                    return Some((name, if name == "exp" { "token expired" } else { "token not valid yet" }))
                }
                Some(_) => {}
            }
        }
        if self.maximum_expiration > 0 {
            match claims.get("exp").and_then(Value::as_f64) {
                Some(exp) if exp - now > self.maximum_expiration as f64 => {
                    return Some(("exp", "exceeds maximum allowed expiration"))
                }
                Some(_) => {}
                None => return Some(("exp", "must be a number")),
            }
        }
        None
    }
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl Plugin for Jwt {
    fn name(&self) -> &'static str {
        Self::NAME
    }
    fn priority(&self) -> u32 {
        1450
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

    fn jwt(config: Value) -> Jwt {
        let c: JwtConfig = serde_json::from_value(config).unwrap();
        Jwt::new(&c).unwrap()
    }

    #[test]
    fn registered_claims_are_checked_in_kong_words() {
        let j = jwt(serde_json::json!({"claims_to_verify": ["exp", "nbf"], "maximum_expiration": 100}));
        let now = 1000.0;
        assert_eq!(j.claim_error(&serde_json::json!({"exp": 1050, "nbf": 900}), now), None);
        assert_eq!(j.claim_error(&serde_json::json!({"exp": 999, "nbf": 900}), now), Some(("exp", "token expired")));
        assert_eq!(
            j.claim_error(&serde_json::json!({"exp": 1050, "nbf": 1001}), now),
            Some(("nbf", "token not valid yet"))
        );
        assert_eq!(j.claim_error(&serde_json::json!({"nbf": 900}), now), Some(("exp", "must be a number")));
        assert_eq!(
            j.claim_error(&serde_json::json!({"exp": 1200, "nbf": 900}), now),
            Some(("exp", "exceeds maximum allowed expiration"))
        );
        assert_eq!(jwt(serde_json::json!({})).claim_error(&serde_json::json!({}), now), None);
    }
}
