//! Kong's `consumers` entity and its credentials, nested as Kong's declarative config nests them
//! (`consumers[].keyauth_credentials`, `basicauth_credentials`, `jwt_secrets`, `acls`,
//! `plugins`), and the checks Kong's schemas make on them. The proxy's authentication plugins
//! (key-auth, basic-auth, jwt) find consumers through these credentials; acl reads the groups.
//!
//! Secrets (keys, passwords, HMAC secrets) never appear in an error message: errors name the
//! consumer and the field only.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::errors::{EntityError, FieldError};
use crate::schema::{Config, Plugin};

/// A consumer: who a credential identifies. At least one of `username` and `custom_id`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keyauth_credentials: Vec<KeyAuthCredential>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub basicauth_credentials: Vec<BasicAuthCredential>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jwt_secrets: Vec<JwtSecret>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acls: Vec<AclGroup>,
    /// Plugins scoped to this consumer (their `consumer` is this one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plugins: Vec<Plugin>,
}

impl Consumer {
    /// Kong's `X-Consumer-ID`: the consumer's `id`. A consumer without one is identified by its
    /// username (else its custom_id): sluice does not generate ids (docs/plugins.md).
    pub fn identity(&self) -> &str {
        self.id.as_deref().or(self.username.as_deref()).or(self.custom_id.as_deref()).unwrap_or("")
    }

    /// The name errors use.
    pub fn display_name(&self) -> &str {
        self.username.as_deref().or(self.custom_id.as_deref()).or(self.id.as_deref()).unwrap_or("")
    }

    /// Whether a `consumer` reference (a plugin's, key-auth's `anonymous`) names this consumer:
    /// by id or username, as Kong resolves them.
    pub fn is(&self, reference: &str) -> bool {
        self.id.as_deref() == Some(reference) || self.username.as_deref() == Some(reference)
    }
}

/// `keyauth_credentials`: an API key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct KeyAuthCredential {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub key: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// `basicauth_credentials`: a username and password (the password in clear text, as in a
/// declarative file; sluice keeps only its digest once loaded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct BasicAuthCredential {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub username: String,
    pub password: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// The JWT algorithms Kong's jwt plugin accepts that sluice verifies.
pub const JWT_ALGORITHMS: &[&str] = &["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384"];

fn default_algorithm() -> String {
    "HS256".to_string()
}

/// `jwt_secrets`: the key a token's `iss` (or `key_claim_name`) names, and what verifies it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct JwtSecret {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub key: String,
    #[serde(default = "default_algorithm")]
    pub algorithm: String,
    /// The HMAC secret (HS*); required for those (sluice does not generate one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The PEM public key (RS* and ES*, despite the name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsa_public_key: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl JwtSecret {
    pub fn is_hmac(&self) -> bool {
        self.algorithm.starts_with("HS")
    }
}

/// `acls`: one group the consumer belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AclGroup {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub group: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// Collects one consumer's errors.
struct Errors<'a> {
    consumer: &'a Consumer,
    errors: Vec<FieldError>,
}

impl Errors<'_> {
    fn err(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }
}

/// Kong's checks on consumers and their credentials: a username or custom_id; usernames,
/// custom_ids, ids, API keys, basic-auth usernames and JWT keys unique; a JWT secret has what its
/// algorithm needs. Messages name the field, never the secret.
pub fn check_consumers(config: &Config) -> Vec<EntityError> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    let mut ids = HashSet::new();
    let mut keys = HashSet::new();
    let mut basic = HashSet::new();
    let mut jwt = HashSet::new();
    for c in &config.consumers {
        let mut e = Errors { consumer: c, errors: Vec::new() };
        let empty = |s: &Option<String>| s.as_deref().is_none_or(str::is_empty);
        if empty(&c.username) && empty(&c.custom_id) {
            e.err("@entity", "at least one of these fields must be non-empty: 'custom_id', 'username'");
        }
        for (field, v) in [("username", &c.username), ("custom_id", &c.custom_id)] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                if !names.insert((field, v)) {
                    e.err(field, format!("UNIQUE violation detected on '{{{field}=\"{v}\"}}'"));
                }
            }
        }
        if !ids.insert(c.identity()) {
            e.err("id", format!("duplicate consumer '{}'", c.identity()));
        }
        for (i, k) in c.keyauth_credentials.iter().enumerate() {
            let at = format!("keyauth_credentials.{}", i + 1);
            if k.key.is_empty() {
                e.err(format!("{at}.key"), "length must be at least 1");
            } else if !keys.insert(k.key.as_str()) {
                e.err(format!("{at}.key"), "UNIQUE violation detected on 'key'");
            }
        }
        for (i, b) in c.basicauth_credentials.iter().enumerate() {
            let at = format!("basicauth_credentials.{}", i + 1);
            if b.username.is_empty() {
                e.err(format!("{at}.username"), "length must be at least 1");
            } else if !basic.insert(b.username.as_str()) {
                e.err(
                    format!("{at}.username"),
                    format!("UNIQUE violation detected on '{{username=\"{}\"}}'", b.username),
                );
            }
            if b.password.is_empty() {
                e.err(format!("{at}.password"), "length must be at least 1");
            }
        }
        for (i, j) in c.jwt_secrets.iter().enumerate() {
            let at = format!("jwt_secrets.{}", i + 1);
            if j.key.is_empty() {
                e.err(format!("{at}.key"), "length must be at least 1");
            } else if !jwt.insert(j.key.as_str()) {
                e.err(format!("{at}.key"), format!("UNIQUE violation detected on '{{key=\"{}\"}}'", j.key));
            }
            if !JWT_ALGORITHMS.contains(&j.algorithm.as_str()) {
                e.err(format!("{at}.algorithm"), format!("expected one of: {}", JWT_ALGORITHMS.join(", ")));
            } else if j.is_hmac() && j.secret.as_deref().is_none_or(str::is_empty) {
                e.err(format!("{at}.secret"), "required for HS algorithms (sluice does not generate secrets)");
            } else if !j.is_hmac() && j.rsa_public_key.as_deref().is_none_or(|k| !k.contains("-----BEGIN")) {
                e.err(format!("{at}.rsa_public_key"), format!("a PEM public key is required for {}", j.algorithm));
            }
        }
        for (i, a) in c.acls.iter().enumerate() {
            if a.group.is_empty() {
                e.err(format!("acls.{}.group", i + 1), "length must be at least 1");
            }
        }
        if !e.errors.is_empty() {
            out.push(EntityError {
                entity_type: "consumer".into(),
                entity_name: e.consumer.display_name().into(),
                entity_id: e.consumer.id.clone(),
                entity_tags: e.consumer.tags.clone(),
                errors: e.errors,
            });
        }
    }
    out
}

/// The consumer a reference names (by id or username), if any.
pub fn find_consumer<'c>(config: &'c Config, reference: &str) -> Option<&'c Consumer> {
    config.consumers.iter().find(|c| c.is(reference))
}

/// The plugins that identify consumers: Kong's `no_consumer` plugins (they cannot be scoped to
/// a consumer, who is not known before they run) with an `anonymous` consumer field.
pub const AUTH_PLUGINS: &[&str] = &["basic-auth", "jwt", "key-auth"];

/// Kong's other `no_consumer` plugin: acl reads the consumer an auth plugin found, so it cannot
/// be scoped to one.
const NO_CONSUMER: &[&str] = &["acl"];

/// What a plugin entity refers to among consumers: an authentication plugin or acl cannot be
/// scoped to a consumer (Kong's `no_consumer`), and an auth plugin's `anonymous` must name a
/// consumer (by id or username; Kong answers 500 per request otherwise, sluice refuses the config).
pub fn check_plugin_refs(config: &Config, p: &Plugin, nested_in_consumer: bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let auth = AUTH_PLUGINS.contains(&p.name.as_str());
    if !auth && !NO_CONSUMER.contains(&p.name.as_str()) {
        return out;
    }
    if p.consumer.is_some() || nested_in_consumer {
        out.push(("consumer".to_string(), "value must be null".to_string()));
    }
    if let Some(a) = p.config.get("anonymous").and_then(|v| v.as_str()).filter(|a| !a.is_empty() && auth) {
        if find_consumer(config, a).is_none() {
            out.push((
                "config.anonymous".to_string(),
                format!("anonymous consumer '{a}' is configured but doesn't exist"),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::plugins::{check_plugin_config, PluginConfig};
    use crate::{parse, validate};

    fn fields(yaml: &str) -> Vec<(String, String)> {
        let config = parse(&format!("_format_version: '3.0'\n{yaml}")).unwrap();
        match validate(&config) {
            Ok(()) => vec![],
            Err(e) => e
                .flattened_errors
                .into_iter()
                .flat_map(|e| e.errors.into_iter().map(move |f| (e.entity_name.clone(), f.field)))
                .collect(),
        }
    }

    #[test]
    fn consumers_with_nested_credentials_and_plugins_validate() {
        let yaml = "consumers:\n- username: alice\n  keyauth_credentials: [{key: k1}]\n  basicauth_credentials: [{username: a, password: p}]\n  jwt_secrets: [{key: iss, secret: s}]\n  acls: [{group: g}]\n  plugins: [{name: request-termination}]\nplugins:\n- name: key-auth\n  config: {anonymous: alice}\n- name: cors\n  consumer: alice\n";
        assert_eq!(fields(yaml), vec![]);
    }

    #[test]
    fn consumer_errors_name_the_field_and_never_the_secret() {
        let yaml = "consumers:\n- username: a\n  keyauth_credentials: [{key: sekrit}]\n- username: a\n  keyauth_credentials: [{key: sekrit}]\n  jwt_secrets: [{key: i, algorithm: RS256}, {key: j, algorithm: HS999}]\n- custom_id: ''\n";
        let got = fields(yaml);
        for want in [
            "username",
            "keyauth_credentials.1.key",
            "jwt_secrets.1.rsa_public_key",
            "jwt_secrets.2.algorithm",
            "@entity",
        ] {
            assert!(got.iter().any(|(_, f)| f == want), "{want} in {got:?}");
        }
        let config = parse(&format!("_format_version: '3.0'\n{yaml}")).unwrap();
        assert!(!format!("{:?}", validate(&config).unwrap_err()).contains("sekrit"));
    }

    #[test]
    fn plugin_consumer_references_are_checked() {
        let got = fields("plugins:\n- name: cors\n  consumer: ghost\n- name: jwt\n  config: {anonymous: ghost}\n");
        assert!(got.iter().any(|(_, f)| f == "consumer"), "{got:?}");
        assert!(got.iter().any(|(_, f)| f == "config.anonymous"), "{got:?}");
        let got = fields("consumers:\n- username: a\n  plugins: [{name: basic-auth}]\n");
        assert_eq!(got, vec![("basic-auth".to_string(), "consumer".to_string())]);
        let got = fields("consumers:\n- username: a\nplugins:\n- name: acl\n  consumer: a\n  config: {allow: [g]}\n");
        assert_eq!(got, vec![("acl".to_string(), "consumer".to_string())], "acl is Kong's no_consumer too");
    }

    #[test]
    fn auth_plugin_schemas() {
        let field = |name: &str, config: serde_json::Value| -> Vec<String> {
            check_plugin_config(name, &config).into_iter().map(|e| e.field).collect()
        };
        assert_eq!(field("jwt", serde_json::json!({"maximum_expiration": 60})), vec!["config.claims_to_verify"]);
        assert_eq!(field("jwt", serde_json::json!({"claims_to_verify": ["iat"]})), vec!["config.claims_to_verify.1"]);
        assert_eq!(field("acl", serde_json::json!({"allow": ["a"], "deny": ["b"]})), vec!["@entity"]);
        assert_eq!(field("acl", serde_json::json!({})), vec!["@entity"]);
        assert_eq!(field("key-auth", serde_json::json!({"key_names": ["bad name"]})), vec!["config.key_names.1"]);
        assert_eq!(field("key-auth", serde_json::json!({"key_in_body": true})), vec!["config.key_in_body"]);
        match PluginConfig::from_entity("key-auth", &serde_json::Value::Null).unwrap() {
            PluginConfig::KeyAuth(c) => {
                assert_eq!(c.key_names, vec!["apikey"]);
                assert!(c.key_in_header && c.key_in_query && c.run_on_preflight && !c.hide_credentials);
            }
            other => panic!("{other:?}"),
        }
        match PluginConfig::from_entity("basic-auth", &serde_json::Value::Null).unwrap() {
            PluginConfig::BasicAuth(c) => assert_eq!(c.realm, "service"),
            other => panic!("{other:?}"),
        }
    }
}
