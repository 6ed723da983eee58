//! `basic-auth` (Kong `kong/plugins/basic-auth/schema.lua`): `Authorization: Basic` (or
//! `Proxy-Authorization`) credentials checked against consumers' `basicauth_credentials`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::check::Checker;

pub const NAME: &str = "basic-auth";

fn default_realm() -> String {
    "service".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    /// The consumer (id or username) used when no credentials are given.
    #[serde(default)]
    pub anonymous: Option<String>,
    /// Strip the credentials from the request before it goes upstream.
    #[serde(default)]
    pub hide_credentials: bool,
    /// The realm of the `WWW-Authenticate` challenge.
    #[serde(default = "default_realm")]
    pub realm: String,
}

pub(crate) fn check(c: &mut Checker, v: Option<&Value>) {
    let Some(m) = c.record("config", v, &["anonymous", "hide_credentials", "realm"], &[]) else { return };
    c.string(m, "config", "anonymous");
    c.boolean(m, "config", "hide_credentials");
    c.string(m, "config", "realm");
}
