//! `ip-restriction` (Kong `kong/plugins/ip-restriction/schema.lua`): allow and deny lists of IPs
//! and CIDR ranges checked against the client address (the trusted one, after PROXY protocol and
//! trusted-IP handling). [`IpCidr`] is parsed once here; the proxy only calls
//! [`IpRestrictionConfig::allows`].

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::check::{join, Checker};

pub const NAME: &str = "ip-restriction";

/// An address or a CIDR range (`10.0.0.0/8`, `::1`, `2001:db8::/32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpCidr {
    addr: IpAddr,
    prefix: u8,
}

impl IpCidr {
    /// Whether `ip` is in the range; an IPv4-mapped IPv6 client (`::ffff:a.b.c.d`) matches IPv4 ranges.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpCidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid ip or cidr range: '{s}'");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?
            }
            Some(_) => return Err(bad()),
        };
        Ok(IpCidr { addr, prefix })
    }
}

impl fmt::Display for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for IpCidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpCidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpRestrictionConfig {
    #[serde(default)]
    pub allow: Vec<IpCidr>,
    #[serde(default)]
    pub deny: Vec<IpCidr>,
    /// The refusal's status; Kong's default is 403.
    #[serde(default)]
    pub status: Option<u16>,
    /// The refusal's message; Kong's default is "IP address not allowed: <client ip>".
    #[serde(default)]
    pub message: Option<String>,
}

impl IpRestrictionConfig {
    /// Kong's rule: a client in `deny` is refused; with a non-empty `allow`, a client not in it
    /// is refused; everyone else passes.
    pub fn allows(&self, client: IpAddr) -> bool {
        if self.deny.iter().any(|c| c.contains(client)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|c| c.contains(client))
    }

    /// The refusal's status (`status`, default 403).
    pub fn status(&self) -> u16 {
        self.status.unwrap_or(403)
    }

    /// The refusal's message (`message`, default Kong's "IP address not allowed: <ip>").
    pub fn message(&self, client: IpAddr) -> String {
        self.message.clone().unwrap_or_else(|| format!("IP address not allowed: {client}"))
    }
}

pub(crate) fn check(c: &mut Checker, v: Option<&Value>) {
    let m = c.record("config", v, &["allow", "deny", "status", "message"], &[]);
    let mut listed = false;
    if let Some(m) = m {
        for key in ["allow", "deny"] {
            for (at, s) in c.strings(m, "config", key) {
                listed = true;
                if let Err(msg) = s.parse::<IpCidr>() {
                    c.err(at, msg);
                }
            }
        }
        c.between(m, "config", "status", 100, 599);
        c.string(m, "config", "message");
        if m.get("allow").is_some_and(|v| !v.is_array() && !v.is_null())
            || m.get("deny").is_some_and(|v| !v.is_array() && !v.is_null())
        {
            return; // already named as "expected an array"
        }
    }
    if !listed {
        c.err(
            "@entity",
            format!(
                "at least one of these fields must be non-empty: '{}', '{}'",
                join("config", "allow"),
                join("config", "deny")
            ),
        );
    }
}
