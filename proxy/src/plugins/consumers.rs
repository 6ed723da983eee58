//! The consumers of one config and the credentials that name them, indexed once per config so
//! that the authentication plugins (key-auth, basic-auth, jwt) find a consumer with one hash
//! lookup, and what an authenticated request carries: [`Authenticated`] (shared with other
//! plugins, e.g. rate-limiting's `limit_by`) and [`Identified`] (which consumer, and the plugin
//! chain re-resolved for it). [`Consumers::set_consumer`] writes Kong's upstream headers.
//!
//! Secrets are kept only as what verifies them (a SHA-256 digest of a basic-auth password, a
//! JWT decoding key) and never appear in an error or a log line.

use std::collections::HashMap;
use std::sync::Arc;

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey};
use proxy_config::{Config, EntityError, FieldError};

use super::{AccessCtx, Authenticated, PluginChain};
use crate::respond::PluginReply;

pub(crate) const X_CONSUMER_ID: HeaderName = HeaderName::from_static("x-consumer-id");
pub(crate) const X_CONSUMER_CUSTOM_ID: HeaderName = HeaderName::from_static("x-consumer-custom-id");
pub(crate) const X_CONSUMER_USERNAME: HeaderName = HeaderName::from_static("x-consumer-username");
pub(crate) const X_CREDENTIAL_IDENTIFIER: HeaderName = HeaderName::from_static("x-credential-identifier");
pub(crate) const X_ANONYMOUS_CONSUMER: HeaderName = HeaderName::from_static("x-anonymous-consumer");
pub(crate) const X_CONSUMER_GROUPS: HeaderName = HeaderName::from_static("x-consumer-groups");

/// The consumer of a request as sluice keeps it beside [`Authenticated`].
#[derive(Debug, Clone)]
pub struct Identified {
    /// Index into [`Consumers`].
    pub index: usize,
    /// The plugin's `anonymous` consumer (no credential was given).
    pub anonymous: bool,
    /// The route's chain re-resolved with this consumer's scoped plugins, once the access
    /// phase switched to it (the later phases run it instead of the route's).
    pub chain: Option<Arc<PluginChain>>,
}

/// One consumer as requests need it: its ids, ready-made header values, its ACL groups.
#[derive(Debug)]
pub struct ConsumerRt {
    pub id: Arc<str>,
    /// The `consumer` label of the metrics: the username, else the custom_id, else the id.
    pub label: Arc<str>,
    id_header: HeaderValue,
    username: Option<HeaderValue>,
    custom_id: Option<HeaderValue>,
    pub groups: Vec<Box<str>>,
    /// `X-Consumer-Groups` (the groups, comma-separated).
    pub groups_header: Option<HeaderValue>,
}

/// A JWT secret: what verifies a token whose key claim names it.
pub(crate) struct JwtKey {
    /// The consumer and the key (the credential's id).
    pub credential: Credential,
    pub algorithm: Algorithm,
    /// The HS* secret as configured, or the RS*/ES* public key.
    pub verifier: DecodingKey,
    /// The HS* secret base64-decoded (jwt's `secret_is_base64`), when it decodes.
    pub verifier_base64: Option<DecodingKey>,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKey")
            .field("key", &self.credential.id)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// A credential found: its consumer, and its id (`X-Credential-Identifier`).
#[derive(Debug, Clone)]
pub(crate) struct Credential {
    pub consumer: usize,
    pub id: Arc<str>,
    /// `id` as the header value, made once per config (none when it cannot be one).
    header: Option<HeaderValue>,
}

impl Credential {
    pub(crate) fn new(consumer: usize, id: Arc<str>) -> Credential {
        Credential { header: header_value(&id), consumer, id }
    }
}

/// Every consumer of a config and its credentials.
#[derive(Debug, Default)]
pub struct Consumers {
    consumers: Vec<ConsumerRt>,
    keys: HashMap<Box<str>, Credential>,
    /// Basic-auth username → (credential, SHA-256 of the password).
    basic: HashMap<Box<str>, (Credential, [u8; 32])>,
    jwt: HashMap<Box<str>, JwtKey>,
    /// Consumer id and username → index (an `anonymous` reference).
    names: HashMap<Box<str>, usize>,
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn header_value(s: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(s).ok()
}

/// The JWT algorithm of a checked `jwt_secrets.N.algorithm`.
fn algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        _ => return None,
    })
}

impl Consumers {
    /// Indexes a validated config's consumers. A public key that does not parse, or an id that
    /// cannot be a header value, is an error naming the consumer and field (never the value).
    pub fn build(config: &Config) -> Result<Consumers, Vec<EntityError>> {
        let mut out = Consumers::default();
        let mut errors = Vec::new();
        for (index, c) in config.consumers.iter().enumerate() {
            let mut fields = Vec::new();
            let id: Arc<str> = c.identity().into();
            let id_header = header_value(&id).unwrap_or_else(|| {
                fields.push(FieldError::new("id", "not a valid header value"));
                HeaderValue::from_static("")
            });
            for name in [c.id.as_deref(), c.username.as_deref(), Some(&*id)].into_iter().flatten() {
                out.names.entry(name.into()).or_insert(index);
            }
            let groups: Vec<Box<str>> = c.acls.iter().map(|a| a.group.as_str().into()).collect();
            let joined = groups.iter().map(|g| &**g).collect::<Vec<_>>().join(", ");
            for (i, k) in c.keyauth_credentials.iter().enumerate() {
                let cred_id = k.id.clone().unwrap_or_else(|| format!("{id}/keyauth_credentials/{}", i + 1));
                out.keys.insert(k.key.as_str().into(), Credential::new(index, cred_id.into()));
            }
            for b in &c.basicauth_credentials {
                let cred = Credential::new(index, b.username.as_str().into());
                out.basic.insert(b.username.as_str().into(), (cred, sha256(b.password.as_bytes())));
            }
            for (i, j) in c.jwt_secrets.iter().enumerate() {
                let field = |f: &str| format!("jwt_secrets.{}.{f}", i + 1);
                let Some(alg) = algorithm(&j.algorithm) else {
                    fields.push(FieldError::new(field("algorithm"), "unsupported algorithm"));
                    continue;
                };
                let pem = j.rsa_public_key.as_deref().unwrap_or("").as_bytes();
                let secret = j.secret.as_deref().unwrap_or("");
                let verifier = match alg {
                    Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                        DecodingKey::from_secret(secret.as_bytes())
                    }
                    Algorithm::ES256 | Algorithm::ES384 => match DecodingKey::from_ec_pem(pem) {
                        Ok(k) => k,
                        Err(_) => {
                            fields.push(FieldError::new(field("rsa_public_key"), "invalid EC public key (PEM)"));
                            continue;
                        }
                    },
                    _ => match DecodingKey::from_rsa_pem(pem) {
                        Ok(k) => k,
                        Err(_) => {
                            fields.push(FieldError::new(field("rsa_public_key"), "invalid RSA public key (PEM)"));
                            continue;
                        }
                    },
                };
                let verifier_base64 =
                    j.is_hmac().then(|| base64_lenient(secret)).flatten().map(|s| DecodingKey::from_secret(&s));
                let credential = Credential::new(index, j.key.as_str().into());
                let key = JwtKey { credential, algorithm: alg, verifier, verifier_base64 };
                out.jwt.insert(j.key.as_str().into(), key);
            }
            if !fields.is_empty() {
                errors.push(EntityError {
                    entity_type: "consumer".into(),
                    entity_name: c.display_name().into(),
                    entity_id: c.id.clone(),
                    entity_tags: c.tags.clone(),
                    errors: fields,
                });
            }
            out.consumers.push(ConsumerRt {
                label: c.display_name().into(),
                id,
                id_header,
                username: c.username.as_deref().and_then(header_value),
                custom_id: c.custom_id.as_deref().and_then(header_value),
                groups_header: (!joined.is_empty()).then(|| header_value(&joined)).flatten(),
                groups,
            });
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.consumers.is_empty()
    }
    pub fn get(&self, index: usize) -> Option<&ConsumerRt> {
        self.consumers.get(index)
    }
    pub(crate) fn by_key(&self, key: &str) -> Option<&Credential> {
        self.keys.get(key)
    }
    /// The basic-auth credential of `username` if `password` is its password.
    pub(crate) fn by_password(&self, username: &str, password: &[u8]) -> Option<&Credential> {
        let (cred, digest) = self.basic.get(username)?;
        let given = sha256(password);
        // Compared in full whatever the first difference.
        let diff = given.iter().zip(digest).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        (diff == 0).then_some(cred)
    }
    pub(crate) fn jwt_key(&self, key: &str) -> Option<&JwtKey> {
        self.jwt.get(key)
    }
    /// The consumer a plugin's `anonymous` names (id or username).
    pub(crate) fn by_reference(&self, reference: &str) -> Option<usize> {
        self.names.get(reference).copied()
    }

    /// An authentication plugin's access phase, Kong's way: `run_on_preflight` false skips CORS
    /// preflights; a plugin with `anonymous` is skipped once another plugin found a credential
    /// (that makes several auth plugins OR-ed); a failed `authenticate` falls back to the
    /// anonymous consumer when there is one, else its refusal stands.
    pub(crate) fn authenticate(
        req: &mut AccessCtx<'_>,
        anonymous: Option<&str>,
        run_on_preflight: bool,
        authenticate: impl FnOnce(&mut AccessCtx<'_>) -> Result<Credential, Box<PluginReply>>,
    ) -> Result<(), Box<PluginReply>> {
        if !run_on_preflight && req.parts.method == http::Method::OPTIONS {
            return Ok(());
        }
        let credentialed = req.state.authenticated.as_ref().is_some_and(|a| a.credential_id.is_some());
        if anonymous.is_some() && credentialed {
            return Ok(());
        }
        let consumers = req.consumers;
        match authenticate(req) {
            Ok(cred) => {
                consumers.set_consumer(cred.consumer, Some(cred), &mut req.parts.headers, req.state);
                Ok(())
            }
            Err(refusal) => match anonymous.and_then(|a| consumers.by_reference(a)) {
                Some(index) => {
                    consumers.set_consumer(index, None, &mut req.parts.headers, req.state);
                    Ok(())
                }
                // An `anonymous` naming no consumer was refused with the config.
                None => Err(refusal),
            },
        }
    }

    /// Kong's `set_consumer`: the request is now `index`'s (with `credential`, or as the
    /// anonymous consumer without one); the upstream headers say so, and the client's own
    /// `X-Consumer-*` headers are replaced or removed.
    pub(crate) fn set_consumer(
        &self,
        index: usize,
        credential: Option<Credential>,
        headers: &mut HeaderMap,
        state: &mut super::RequestState,
    ) {
        let Some(c) = self.consumers.get(index) else { return };
        headers.insert(X_CONSUMER_ID, c.id_header.clone());
        set_or_remove(headers, X_CONSUMER_CUSTOM_ID, c.custom_id.clone());
        set_or_remove(headers, X_CONSUMER_USERNAME, c.username.clone());
        let (credential_id, credential_header) = match credential {
            Some(Credential { id, header, .. }) => (Some(id), header),
            None => (None, None),
        };
        let anonymous = credential_id.is_none();
        set_or_remove(headers, X_CREDENTIAL_IDENTIFIER, credential_header);
        set_or_remove(headers, X_ANONYMOUS_CONSUMER, anonymous.then(|| HeaderValue::from_static("true")));
        state.authenticated = Some(Authenticated { consumer_id: c.id.clone(), credential_id });
        let chain = state.consumer.take().filter(|i| i.index == index).and_then(|i| i.chain);
        state.consumer = Some(Box::new(Identified { index, anonymous, chain }));
    }
}

fn set_or_remove(headers: &mut HeaderMap, name: HeaderName, value: Option<HeaderValue>) {
    match value {
        Some(v) => {
            headers.insert(name, v);
        }
        None => {
            headers.remove(name);
        }
    }
}

/// Base64 in either alphabet, padded or not (how JWT secrets are written).
pub(crate) fn base64_lenient(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let url: String = s
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(url).ok()
}
