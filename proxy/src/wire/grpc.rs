//! gRPC facts the proxy needs and nothing else: recognising a gRPC request, the `grpc-timeout`
//! header (parse, re-encode the remaining time), status codes, percent-encoding of `grpc-message`,
//! and the HTTP/2 reset → gRPC status mapping of PROTOCOL-HTTP2.md.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

/// gRPC status codes used by the proxy's own replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    Aborted = 10,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
}

impl Code {
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    pub fn header_value(self) -> HeaderValue {
        // Small integers are always valid header values.
        HeaderValue::from_static(match self {
            Code::Ok => "0",
            Code::Cancelled => "1",
            Code::Unknown => "2",
            Code::InvalidArgument => "3",
            Code::DeadlineExceeded => "4",
            Code::PermissionDenied => "7",
            Code::ResourceExhausted => "8",
            Code::Aborted => "10",
            Code::Unimplemented => "12",
            Code::Internal => "13",
            Code::Unavailable => "14",
            Code::Unauthenticated => "16",
        })
    }
}

/// True when the content-type says gRPC (`application/grpc`, `application/grpc+proto`, ...).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    is_grpc_content_type(headers.get(http::header::CONTENT_TYPE))
}

/// [`is_grpc`] on a `content-type` value already looked up.
pub fn is_grpc_content_type(value: Option<&HeaderValue>) -> bool {
    value.is_some_and(|v| v.as_bytes().len() >= 16 && v.as_bytes()[..16].eq_ignore_ascii_case(b"application/grpc"))
}

/// Header names as constants: a `&str` name is parsed and validated on every lookup.
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// Largest timeout we honour (about 100 days): anything larger means "no deadline" in practice.
const MAX_TIMEOUT: Duration = Duration::from_secs(100 * 24 * 3600);

/// Parses `grpc-timeout` (`1-8 digits` + `H|M|S|m|u|n`). `None` for absent or malformed values
/// (gRPC says a malformed timeout is treated as no timeout by intermediaries).
pub fn parse_timeout(headers: &HeaderMap) -> Option<Duration> {
    let raw = headers.get(&GRPC_TIMEOUT)?.as_bytes();
    if raw.len() < 2 || raw.len() > 9 {
        return None;
    }
    let (digits, unit) = raw.split_at(raw.len() - 1);
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let d = match unit[0] {
        b'H' => Duration::from_secs(n.saturating_mul(3600)),
        b'M' => Duration::from_secs(n.saturating_mul(60)),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    };
    Some(d.min(MAX_TIMEOUT))
}

/// Encodes a remaining duration as a `grpc-timeout` value with at most 8 digits, rounding up so a
/// positive remainder never becomes 0.
pub fn format_timeout(d: Duration) -> HeaderValue {
    const LIMIT: u128 = 99_999_999;
    let nanos = d.as_nanos().max(1);
    let candidates: [(u128, &str); 6] = [
        (1, "n"),
        (1_000, "u"),
        (1_000_000, "m"),
        (1_000_000_000, "S"),
        (60_000_000_000, "M"),
        (3_600_000_000_000, "H"),
    ];
    for (div, unit) in candidates {
        let v = nanos.div_ceil(div);
        if v <= LIMIT {
            // Digits and an ASCII unit letter are always a valid header value.
            return HeaderValue::from_str(&format!("{v}{unit}")).unwrap_or(HeaderValue::from_static("99999999H"));
        }
    }
    HeaderValue::from_static("99999999H")
}

/// Percent-encodes a `grpc-message` as the gRPC spec asks (printable ASCII except `%` stays).
pub fn encode_message(msg: &str) -> HeaderValue {
    let mut out = String::with_capacity(msg.len());
    for b in msg.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    // Only printable ASCII remains.
    HeaderValue::from_str(&out).unwrap_or(HeaderValue::from_static(""))
}

/// The gRPC status a client should see when an upstream stream ended with this HTTP/2 reset.
pub fn code_for_reset(reason: h2::Reason) -> Code {
    match reason {
        h2::Reason::REFUSED_STREAM => Code::Unavailable,
        h2::Reason::CANCEL => Code::Cancelled,
        h2::Reason::ENHANCE_YOUR_CALM => Code::ResourceExhausted,
        _ => Code::Internal,
    }
}

/// Splits a gRPC path `/package.Service/Method` into (service, method) for metrics; `None` when the
/// path is not shaped like one (such paths never become labels).
pub fn service_and_method(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('/')?;
    // Bytes, not `split_once('/')`: this runs for every gRPC call, and a char searcher costs more.
    let slash = rest.bytes().position(|b| b == b'/')?;
    let (service, method) = (&rest[..slash], &rest[slash + 1..]);
    if service.is_empty() || method.is_empty() || method.as_bytes().contains(&b'/') {
        return None;
    }
    Some((service, method))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(k: &'static str, v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(k, HeaderValue::from_static(v));
        h
    }

    #[test]
    fn grpc_content_types() {
        assert!(is_grpc(&headers("content-type", "application/grpc")));
        assert!(is_grpc(&headers("content-type", "application/grpc+proto")));
        assert!(is_grpc(&headers("content-type", "Application/GRPC")));
        assert!(!is_grpc(&headers("content-type", "application/json")));
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn timeouts_parse_per_unit() {
        let t = |v: &'static str| parse_timeout(&headers("grpc-timeout", v));
        assert_eq!(t("200m"), Some(Duration::from_millis(200)));
        assert_eq!(t("1S"), Some(Duration::from_secs(1)));
        assert_eq!(t("2M"), Some(Duration::from_secs(120)));
        assert_eq!(t("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(t("5u"), Some(Duration::from_micros(5)));
        assert_eq!(t("7n"), Some(Duration::from_nanos(7)));
        assert_eq!(t("123456789m"), None, "more than 8 digits");
        assert_eq!(t("m"), None);
        assert_eq!(t("10x"), None);
        assert_eq!(t("-1S"), None);
    }

    #[test]
    fn timeouts_format_round_trip_rounding_up() {
        for d in
            [Duration::from_nanos(1), Duration::from_millis(200), Duration::from_secs(5), Duration::from_secs(86_400)]
        {
            let v = format_timeout(d);
            let back = parse_timeout(&{
                let mut h = HeaderMap::new();
                h.insert("grpc-timeout", v.clone());
                h
            })
            .unwrap();
            assert!(back >= d, "{v:?} decoded to {back:?} < {d:?}");
            assert!(v.len() <= 9);
        }
    }

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(encode_message("no route 100%"), "no route 100%25");
        assert_eq!(encode_message("ünï"), "%C3%BCn%C3%AF");
        assert_eq!(encode_message("line\nbreak"), "line%0Abreak");
    }

    #[test]
    fn grpc_paths_split_into_service_and_method() {
        assert_eq!(service_and_method("/echo.Echo/Echo"), Some(("echo.Echo", "Echo")));
        assert_eq!(service_and_method("/a/b/c"), None);
        assert_eq!(service_and_method("/nomethod"), None);
    }
}
