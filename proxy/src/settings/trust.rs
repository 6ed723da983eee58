//! Which peers may tell the proxy who the client is (`KONG_TRUSTED_IPS`): their `X-Forwarded-*`
//! headers are kept and extended; from anyone else they are replaced. Kong's default is to trust
//! nobody, and so is ours.

use std::net::IpAddr;
use std::str::FromStr;

use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
#[error("invalid KONG_TRUSTED_IPS entry '{0}': expected an IP address or CIDR block")]
pub struct TrustError(pub String);

/// A list of CIDR blocks.
#[derive(Debug, Clone, Default)]
pub struct TrustedIps {
    blocks: Vec<(IpAddr, u8)>,
}

impl TrustedIps {
    pub fn none() -> Self {
        TrustedIps::default()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.blocks.iter().any(|(net, bits)| match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), *bits),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), *bits),
            _ => false,
        })
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let full = (bits / 8) as usize;
    let rest = bits % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[full] & mask == b[full] & mask
}

impl FromStr for TrustedIps {
    type Err = TrustError;
    fn from_str(s: &str) -> Result<Self, TrustError> {
        let mut blocks = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            if item == "unix:" {
                continue;
            }
            let (addr, bits) = match item.split_once('/') {
                Some((a, b)) => (a, Some(b)),
                None => (item, None),
            };
            let ip: IpAddr = addr.parse().map_err(|_| TrustError(item.to_string()))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                Some(b) => b.parse::<u8>().ok().filter(|b| *b <= max).ok_or_else(|| TrustError(item.to_string()))?,
                None => max,
            };
            blocks.push((ip, bits));
        }
        Ok(TrustedIps { blocks })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_blocks_match() {
        let t: TrustedIps = "10.0.0.0/8, 192.168.1.7, ::1".parse().unwrap();
        assert!(t.contains("10.9.8.7".parse().unwrap()));
        assert!(t.contains("192.168.1.7".parse().unwrap()));
        assert!(!t.contains("192.168.1.8".parse().unwrap()));
        assert!(t.contains("::1".parse().unwrap()));
        assert!(t.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!TrustedIps::none().contains("10.0.0.1".parse().unwrap()));
        assert!("0.0.0.0/0".parse::<TrustedIps>().unwrap().contains("1.2.3.4".parse().unwrap()));
        assert_eq!("10.0.0.0/33".parse::<TrustedIps>().unwrap_err(), TrustError("10.0.0.0/33".into()));
    }
}
