//! `key-auth` (Kong `kong/plugins/key-auth/schema.lua`): an API key in a header or query
//! argument names a consumer through its `keyauth_credentials`. `key_in_body` (reading form and
//! JSON bodies for the key) is not implemented: `true` is refused.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::check::{join, valid_header_name, Checker};

pub const NAME: &str = "key-auth";

fn default_key_names() -> Vec<String> {
    vec!["apikey".to_string()]
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyAuthConfig {
    /// Header and query argument names the key is read from.
    #[serde(default = "default_key_names")]
    pub key_names: Vec<String>,
    /// Strip the key from the request before it goes upstream.
    #[serde(default)]
    pub hide_credentials: bool,
    /// The consumer (id or username) used when no key is given.
    #[serde(default)]
    pub anonymous: Option<String>,
    #[serde(default = "yes")]
    pub key_in_header: bool,
    #[serde(default = "yes")]
    pub key_in_query: bool,
    /// Only `false` is accepted (checked by the schema walk).
    #[serde(default, skip_serializing)]
    key_in_body: bool,
    /// Authenticate CORS preflight (`OPTIONS`) requests too.
    #[serde(default = "yes")]
    pub run_on_preflight: bool,
    /// The realm of the `WWW-Authenticate` challenge (Kong's default: `kong`).
    #[serde(default)]
    pub realm: Option<String>,
}

pub(crate) fn check(c: &mut Checker, v: Option<&Value>) {
    let fields = [
        "key_names",
        "hide_credentials",
        "anonymous",
        "key_in_header",
        "key_in_query",
        "key_in_body",
        "run_on_preflight",
        "realm",
    ];
    let Some(m) = c.record("config", v, &fields, &[]) else { return };
    for (at, name) in c.strings(m, "config", "key_names") {
        if !valid_header_name(name) {
            c.err(at, format!("bad header name '{name}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"));
        }
    }
    if m.get("key_names").and_then(Value::as_array).is_some_and(Vec::is_empty) {
        c.err(join("config", "key_names"), "length must be at least 1");
    }
    for key in ["hide_credentials", "key_in_header", "key_in_query", "run_on_preflight"] {
        c.boolean(m, "config", key);
    }
    if c.boolean(m, "config", "key_in_body") == Some(true) {
        c.err(join("config", "key_in_body"), "not supported by sluice: keys are read from headers and query arguments");
    }
    c.string(m, "config", "anonymous");
    c.string(m, "config", "realm");
}
