//! Kong's `ip-restriction` (PRIORITY 990, access): refuses clients by address. `deny` is checked
//! first, then `allow`; a refused request gets `status` (403) and `message` ("IP address not
//! allowed: <ip>"), which `respond` sends to a gRPC client as PERMISSION_DENIED (for 403) with the
//! message. The address is Kong's forwarded client address ([`super::AccessCtx::client_ip`]: the
//! PROXY protocol address, or `X-Real-IP` from a trusted peer).

use std::net::IpAddr;

use proxy_config::plugins::{IpCidr, IpRestrictionConfig};

use super::{AccessCtx, BuildError, Phases, Plugin};
use crate::respond::PluginReply;

#[derive(Debug)]
pub(crate) struct IpRestriction {
    allow: Vec<IpCidr>,
    deny: Vec<IpCidr>,
    status: u16,
    message: Option<String>,
}

impl IpRestriction {
    pub(crate) const NAME: &'static str = "ip-restriction";

    /// From the checked config (proxy-config refuses bad entries, naming them, and a config
    /// with neither list; this repeats the latter so that no instance can allow everything).
    pub(crate) fn new(c: IpRestrictionConfig) -> Result<Self, BuildError> {
        if c.allow.is_empty() && c.deny.is_empty() {
            return Err(BuildError::new("config", "at least one of these fields must be non-empty: 'allow', 'deny'"));
        }
        Ok(IpRestriction { allow: c.allow, deny: c.deny, status: c.status.unwrap_or(403), message: c.message })
    }

    /// Kong's order: a denied address is refused; with an allow list, any address not on it.
    fn refuses(&self, ip: IpAddr) -> bool {
        self.deny.iter().any(|r| r.contains(ip))
            || (!self.allow.is_empty() && !self.allow.iter().any(|r| r.contains(ip)))
    }
}

impl Plugin for IpRestriction {
    fn name(&self) -> &'static str {
        Self::NAME
    }
    fn priority(&self) -> u32 {
        990
    }
    fn phases(&self) -> Phases {
        Phases::ACCESS
    }

    fn access(&self, req: &mut AccessCtx<'_>) -> Result<(), Box<PluginReply>> {
        let ip = req.client_ip;
        if !self.refuses(ip) {
            return Ok(());
        }
        let message = self.message.clone().unwrap_or_else(|| format!("IP address not allowed: {ip}"));
        Err(Box::new(PluginReply::new(self.status, message)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxy_config::plugins::PluginConfig;

    fn build(config: serde_json::Value) -> Result<IpRestriction, BuildError> {
        match crate::plugins::typed_config(IpRestriction::NAME, &config)? {
            PluginConfig::IpRestriction(c) => IpRestriction::new(c),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_entries_name_their_field() {
        let e = build(serde_json::json!({"allow": ["10.0.0.0/8", "nope"]})).unwrap_err();
        assert_eq!(e.field, "config.allow.2");
        // Neither list: Kong's entity check, reported on `@entity`.
        assert_eq!(build(serde_json::json!({})).unwrap_err().field, "@entity");
    }

    #[test]
    fn deny_wins_and_allow_lists_refuse_the_rest() {
        let r = build(serde_json::json!({"allow": ["10.0.0.0/8"], "deny": ["10.1.0.0/16"]})).unwrap();
        for (ip, refused) in [("10.2.3.4", false), ("10.1.2.3", true), ("192.0.2.1", true), ("::ffff:10.2.3.4", false)]
        {
            assert_eq!(r.refuses(ip.parse().unwrap()), refused, "{ip}");
        }
        let r = build(serde_json::json!({"deny": ["2001:db8::/32"]})).unwrap();
        assert!(r.refuses("2001:db8::1".parse().unwrap()) && !r.refuses("127.0.0.1".parse().unwrap()));
    }
}
