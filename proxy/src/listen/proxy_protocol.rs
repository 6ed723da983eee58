//! The PROXY protocol (haproxy's `proxy-protocol.txt`, versions 1 and 2) on `proxy_protocol`
//! listeners: a load balancer in front of sluice prepends the real client address to the stream.
//!
//! [`read_proxy_header`] consumes exactly the header and nothing after it, because the next byte is
//! the first byte of TLS or HTTP and is read by someone else. Without a way to push bytes back, this
//! means reading the text form in small steps up to its CRLF and the binary form by its declared
//! length. The caller bounds the time this may take (a handshake timeout).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The 12-byte signature that starts a version 2 header.
pub(crate) const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The longest version 1 header, CRLF included.
pub(crate) const V1_MAX_LEN: usize = 107;

/// The shortest header of either version (`PROXY UNKNOWN\r\n` is 15 bytes, a v2 header 16), so this
/// many bytes can always be read without reading past a header.
const MIN_HEADER_LEN: usize = 15;

/// What the header says about the connection. Both are `None` for v1 `UNKNOWN`, v2 `LOCAL` (health
/// checks from the balancer itself) and v2 addresses that are neither IPv4 nor IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ProxyHeader {
    /// The original client.
    pub source: Option<SocketAddr>,
    /// The address the client connected to.
    pub destination: Option<SocketAddr>,
}

/// Why a header was refused.
#[derive(Debug, Error)]
pub(crate) enum ProxyProtocolError {
    #[error("connection closed inside the PROXY protocol header")]
    Truncated,
    #[error("reading the PROXY protocol header: {0}")]
    Io(std::io::Error),
    #[error("no PROXY protocol header: the connection starts with {0}")]
    Missing(String),
    #[error("PROXY v1 header longer than {V1_MAX_LEN} bytes without CRLF")]
    V1TooLong,
    #[error("PROXY v1 header {line}: {problem}")]
    V1Malformed { line: String, problem: String },
    #[error("PROXY v2 header: unsupported version {0} (expected 2)")]
    V2Version(u8),
    #[error("PROXY v2 header: unknown command {0:#x} (expected LOCAL 0x0 or PROXY 0x1)")]
    V2Command(u8),
    #[error("PROXY v2 header: unknown address family {0:#x}")]
    V2Family(u8),
    #[error("PROXY v2 header: unknown transport protocol {0:#x}")]
    V2Transport(u8),
    #[error("PROXY v2 header: {family} addresses need {need} bytes but the header holds {got}")]
    V2AddressTooShort { family: &'static str, need: usize, got: usize },
}

impl From<std::io::Error> for ProxyProtocolError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            ProxyProtocolError::Truncated
        } else {
            ProxyProtocolError::Io(e)
        }
    }
}

/// Reads one PROXY protocol header (v1 or v2) from the start of `io`, consuming exactly its bytes.
pub(crate) async fn read_proxy_header<R: AsyncRead + Unpin>(io: &mut R) -> Result<ProxyHeader, ProxyProtocolError> {
    let mut buf = [0u8; V1_MAX_LEN];
    io.read_exact(&mut buf[..MIN_HEADER_LEN]).await?;
    if buf[..12] == V2_SIGNATURE {
        io.read_exact(&mut buf[MIN_HEADER_LEN..16]).await?;
        let mut fixed = [0u8; 4];
        fixed.copy_from_slice(&buf[12..16]);
        return read_v2(io, fixed).await;
    }
    if buf.starts_with(b"PROXY ") {
        return read_v1(io, buf, MIN_HEADER_LEN).await;
    }
    Err(ProxyProtocolError::Missing(escape(&buf[..MIN_HEADER_LEN])))
}

/// Reads the rest of a v1 line (`have` bytes of it are in `buf`) and parses it.
async fn read_v1<R: AsyncRead + Unpin>(
    io: &mut R,
    mut buf: [u8; V1_MAX_LEN],
    mut have: usize,
) -> Result<ProxyHeader, ProxyProtocolError> {
    loop {
        if let Some(cr) = buf[..have].windows(2).position(|w| w == b"\r\n") {
            // Reading stops at the first CRLF, so it can come earlier only within the first
            // MIN_HEADER_LEN bytes, which no valid header is shorter than.
            if cr + 2 != have {
                return Err(malformed(&buf[..cr], "line too short for a PROXY header"));
            }
            return parse_v1(&buf[..cr]);
        }
        if have == V1_MAX_LEN {
            return Err(ProxyProtocolError::V1TooLong);
        }
        // The line ends with "\r\n": when the last byte is not '\r', at least two more bytes belong
        // to the header, so reading two at once cannot overshoot.
        let step = if buf[have - 1] == b'\r' { 1 } else { 2.min(V1_MAX_LEN - have) };
        io.read_exact(&mut buf[have..have + step]).await?;
        have += step;
    }
}

fn malformed(line: &[u8], problem: impl Into<String>) -> ProxyProtocolError {
    ProxyProtocolError::V1Malformed { line: escape(line), problem: problem.into() }
}

/// Parses `PROXY <proto> ...` without its CRLF.
fn parse_v1(line: &[u8]) -> Result<ProxyHeader, ProxyProtocolError> {
    let text = std::str::from_utf8(line).map_err(|_| malformed(line, "not ASCII"))?;
    let mut fields = text.split(' ');
    let _proxy = fields.next();
    let proto = fields.next().unwrap_or("");
    if proto == "UNKNOWN" {
        // The rest of the line, whatever it holds, is to be ignored.
        return Ok(ProxyHeader::default());
    }
    if proto != "TCP4" && proto != "TCP6" {
        return Err(malformed(line, format!("unknown protocol '{proto}' (expected TCP4, TCP6 or UNKNOWN)")));
    }
    let rest: Vec<&str> = fields.collect();
    let [src, dst, sport, dport] = rest.as_slice() else {
        return Err(malformed(line, "expected 'PROXY TCP4|TCP6 SRC DST SRCPORT DSTPORT' separated by single spaces"));
    };
    let ip = |s: &str| -> Result<std::net::IpAddr, ProxyProtocolError> {
        let parsed = if proto == "TCP4" {
            s.parse::<Ipv4Addr>().map(Into::into).ok()
        } else {
            s.parse::<Ipv6Addr>().map(Into::into).ok()
        };
        parsed.ok_or_else(|| {
            malformed(line, format!("'{s}' is not an {} address", if proto == "TCP4" { "IPv4" } else { "IPv6" }))
        })
    };
    let port = |s: &str| -> Result<u16, ProxyProtocolError> {
        let digits = !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
        digits.then(|| s.parse::<u16>().ok()).flatten().ok_or_else(|| malformed(line, format!("'{s}' is not a port")))
    };
    Ok(ProxyHeader {
        source: Some(SocketAddr::new(ip(src)?, port(sport)?)),
        destination: Some(SocketAddr::new(ip(dst)?, port(dport)?)),
    })
}

/// Reads and parses the variable part of a v2 header; `fixed` holds bytes 13 to 16.
async fn read_v2<R: AsyncRead + Unpin>(io: &mut R, fixed: [u8; 4]) -> Result<ProxyHeader, ProxyProtocolError> {
    let [ver_cmd, fam, len_hi, len_lo] = fixed;
    let len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
    let version = ver_cmd >> 4;
    if version != 2 {
        return Err(ProxyProtocolError::V2Version(version));
    }
    let command = ver_cmd & 0x0f;
    if command > 1 {
        return Err(ProxyProtocolError::V2Command(command));
    }
    let (family, transport) = (fam >> 4, fam & 0x0f);
    if family > 3 {
        return Err(ProxyProtocolError::V2Family(family));
    }
    if transport > 2 {
        return Err(ProxyProtocolError::V2Transport(transport));
    }
    // The whole rest is read before looking at it, so that a refused header is still consumed
    // exactly; TLVs after the addresses are skipped.
    let mut body = vec![0u8; len];
    io.read_exact(&mut body).await?;
    if command == 0 {
        return Ok(ProxyHeader::default()); // LOCAL: the balancer's own connection
    }
    let need = |family: &'static str, need: usize| {
        if len < need {
            Err(ProxyProtocolError::V2AddressTooShort { family, need, got: len })
        } else {
            Ok(())
        }
    };
    match family {
        1 => {
            need("IPv4", 12)?;
            let ip = |at: usize| Ipv4Addr::new(body[at], body[at + 1], body[at + 2], body[at + 3]);
            let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
            Ok(ProxyHeader {
                source: Some(SocketAddr::from((ip(0), port(8)))),
                destination: Some(SocketAddr::from((ip(4), port(10)))),
            })
        }
        2 => {
            need("IPv6", 36)?;
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&body[at..at + 16]);
                Ipv6Addr::from(octets)
            };
            let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
            Ok(ProxyHeader {
                source: Some(SocketAddr::from((ip(0), port(32)))),
                destination: Some(SocketAddr::from((ip(16), port(34)))),
            })
        }
        // AF_UNSPEC, or AF_UNIX paths: no socket address to report.
        _ => Ok(ProxyHeader::default()),
    }
}

/// Bytes for an error message: printable ASCII as is, the rest as `\xNN`.
fn escape(bytes: &[u8]) -> String {
    let mut s = String::from("'");
    for &b in bytes {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            0x20..=0x7e if b != b'\\' && b != b'\'' => s.push(char::from(b)),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s.push('\'');
    s
}

#[cfg(test)]
mod tests;
