//! `acl` (Kong `kong/plugins/acl/schema.lua`): allow or deny the authenticated consumer by the
//! groups of its `acls`. Exactly one of `allow` and `deny`. Kong's consumer groups
//! (`include_consumer_groups`) and authenticated groups from other plugins
//! (`always_use_authenticated_groups`) do not exist in sluice: `true` is refused.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::check::{join, Checker};

pub const NAME: &str = "acl";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclConfig {
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
    /// Do not send `X-Consumer-Groups` upstream.
    #[serde(default)]
    pub hide_groups_header: bool,
    #[serde(default, skip_serializing)]
    include_consumer_groups: bool,
    #[serde(default, skip_serializing)]
    always_use_authenticated_groups: bool,
}

pub(crate) fn check(c: &mut Checker, v: Option<&Value>) {
    let fields = ["allow", "deny", "hide_groups_header", "include_consumer_groups", "always_use_authenticated_groups"];
    let m = c.record("config", v, &fields, &[]);
    let (mut allow, mut deny) = (0, 0);
    if let Some(m) = m {
        allow = c.strings(m, "config", "allow").len();
        deny = c.strings(m, "config", "deny").len();
        c.boolean(m, "config", "hide_groups_header");
        for key in ["include_consumer_groups", "always_use_authenticated_groups"] {
            if c.boolean(m, "config", key) == Some(true) {
                c.err(join("config", key), "not supported by sluice: groups come from the consumer's acls only");
            }
        }
    }
    if (allow > 0) == (deny > 0) {
        c.err("@entity", "exactly one of these fields must be non-empty: 'config.allow', 'config.deny'");
    }
}
