//! `jwt` (Kong `kong/plugins/jwt/schema.lua`): a signed token names a consumer's `jwt_secrets`
//! entry by its `key_claim_name` claim (default `iss`); the entry's algorithm and secret or
//! public key verify it, then `claims_to_verify` (exp, nbf) and `maximum_expiration` apply.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::check::{join, Checker};

pub const NAME: &str = "jwt";

/// Kong's upper bound of `maximum_expiration` (one year, in seconds).
pub const MAX_EXPIRATION: i64 = 31_536_000;

fn default_uri_params() -> Vec<String> {
    vec!["jwt".to_string()]
}
fn default_headers() -> Vec<String> {
    vec!["authorization".to_string()]
}
fn default_key_claim() -> String {
    "iss".to_string()
}
fn yes() -> bool {
    true
}

/// A registered claim Kong's jwt plugin can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Claim {
    Exp,
    Nbf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    #[serde(default = "default_uri_params")]
    pub uri_param_names: Vec<String>,
    #[serde(default)]
    pub cookie_names: Vec<String>,
    #[serde(default = "default_headers")]
    pub header_names: Vec<String>,
    /// The claim whose value names the `jwt_secrets` entry.
    #[serde(default = "default_key_claim")]
    pub key_claim_name: String,
    /// The HMAC secrets are base64 in the config.
    #[serde(default)]
    pub secret_is_base64: bool,
    #[serde(default)]
    pub claims_to_verify: Vec<Claim>,
    #[serde(default)]
    pub anonymous: Option<String>,
    #[serde(default = "yes")]
    pub run_on_preflight: bool,
    /// Longest accepted lifetime (`exp` - now) in seconds; 0 = no limit. Needs `exp` verified.
    #[serde(default)]
    pub maximum_expiration: i64,
    /// The realm of the `WWW-Authenticate` challenge.
    #[serde(default)]
    pub realm: Option<String>,
}

pub(crate) fn check(c: &mut Checker, v: Option<&Value>) {
    let fields = [
        "uri_param_names",
        "cookie_names",
        "header_names",
        "key_claim_name",
        "secret_is_base64",
        "claims_to_verify",
        "anonymous",
        "run_on_preflight",
        "maximum_expiration",
        "realm",
    ];
    let Some(m) = c.record("config", v, &fields, &[]) else { return };
    for key in ["uri_param_names", "cookie_names", "header_names"] {
        c.strings(m, "config", key);
    }
    let mut exp = false;
    for (at, claim) in c.strings(m, "config", "claims_to_verify") {
        match claim {
            "exp" => exp = true,
            "nbf" => {}
            _ => c.err(at, "expected one of: exp, nbf"),
        }
    }
    c.string(m, "config", "key_claim_name");
    c.boolean(m, "config", "secret_is_base64");
    c.boolean(m, "config", "run_on_preflight");
    c.string(m, "config", "anonymous");
    c.string(m, "config", "realm");
    if c.between(m, "config", "maximum_expiration", 0, MAX_EXPIRATION).is_some_and(|n| n > 0) && !exp {
        c.err(join("config", "claims_to_verify"), "expected to contain: exp");
    }
}
