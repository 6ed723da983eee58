//! Kong's `ip-restriction` (PRIORITY 990, access): refuses clients by address. `deny` is checked
//! first, then `allow`; a refused request gets `status` (403) and `message` ("IP address not
//! allowed: <ip>"), which `respond` sends to a gRPC client as PERMISSION_DENIED (for 403) with the
//! message. The address is Kong's forwarded client address ([`super::AccessCtx::client_ip`]: the
//! PROXY protocol address, or `X-Real-IP` from a trusted peer).

use serde::Deserialize;

use super::{AccessCtx, BuildError, Phases, Plugin};
use crate::respond::PluginReply;
use crate::settings::trust::TrustedIps;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    allow: Option<Vec<String>>,
    #[serde(default)]
    deny: Option<Vec<String>>,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug)]
pub struct IpRestriction {
    allow: Option<TrustedIps>,
    deny: Option<TrustedIps>,
    status: u16,
    message: Option<String>,
}

fn cidrs(field: &str, list: Option<Vec<String>>) -> Result<Option<TrustedIps>, BuildError> {
    let Some(list) = list.filter(|l| !l.is_empty()) else { return Ok(None) };
    for (i, entry) in list.iter().enumerate() {
        if entry.contains(',')
            || entry.trim().is_empty()
            || entry.trim() == "unix:"
            || entry.parse::<TrustedIps>().is_err()
        {
            return Err(BuildError::new(
                format!("config.{field}.{}", i + 1),
                format!("invalid ip or cidr range: '{entry}'"),
            ));
        }
    }
    list.join(",").parse().map(Some).map_err(|_| BuildError::new(format!("config.{field}"), "invalid ip or cidr range"))
}

impl IpRestriction {
    pub const NAME: &'static str = "ip-restriction";

    pub fn build(config: serde_json::Value) -> Result<Self, BuildError> {
        let c: Config = super::parse_config(config)?;
        let allow = cidrs("allow", c.allow)?;
        let deny = cidrs("deny", c.deny)?;
        if allow.is_none() && deny.is_none() {
            return Err(BuildError::new("config", "at least one of these fields must be non-empty: 'allow', 'deny'"));
        }
        let status = c.status.unwrap_or(403);
        if !(100..=599).contains(&status) {
            return Err(BuildError::new("config.status", format!("value should be between 100 and 599, got {status}")));
        }
        Ok(IpRestriction { allow, deny, status, message: c.message })
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
        let refused =
            self.deny.as_ref().is_some_and(|d| d.contains(ip)) || self.allow.as_ref().is_some_and(|a| !a.contains(ip));
        if !refused {
            return Ok(());
        }
        let message = self.message.clone().unwrap_or_else(|| format!("IP address not allowed: {ip}"));
        Err(Box::new(PluginReply::new(self.status, message)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_entries_name_their_field() {
        let e = IpRestriction::build(serde_json::json!({"allow": ["10.0.0.0/8", "nope"]})).unwrap_err();
        assert_eq!(e.field, "config.allow.2");
        assert_eq!(IpRestriction::build(serde_json::json!({})).unwrap_err().field, "config");
    }
}
