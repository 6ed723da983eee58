//! HTTPRoute `timeouts` (GEP-1742) to the route's `request_timeout` and `backend_request_timeout`
//! (ms): Gateway API duration strings (GEP-2257) read here, in one place. GRPCRoute has no
//! `timeouts` field in the Gateway API version sluice reads.

use gateway_api::apis::standard::httproutes::HttpRouteRulesTimeouts;

/// A rule's timeouts in ms; `None` is no bound (absent, or the zero duration that disables it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RuleTimeouts {
    pub request: Option<u64>,
    pub backend_request: Option<u64>,
}

/// Reads a rule's `timeouts`; a value that is not a Gateway API duration is left out and
/// reported as `(field, message)` in `problems`.
pub(crate) fn rule_timeouts(
    base: &str,
    t: Option<&HttpRouteRulesTimeouts>,
    problems: &mut Vec<(String, String)>,
) -> RuleTimeouts {
    let Some(t) = t else { return RuleTimeouts::default() };
    let mut read = |name: &str, value: Option<&String>| {
        let value = value?;
        match parse_duration_ms(value) {
            Some(ms) => (ms > 0).then_some(ms),
            None => {
                let message = format!("invalid duration '{value}' (expected e.g. 1h30m, 10s, 500ms); ignored");
                problems.push((format!("{base}.timeouts.{name}"), message));
                None
            }
        }
    };
    let request = read("request", t.request.as_ref());
    let backend_request = read("backendRequest", t.backend_request.as_ref());
    RuleTimeouts { request, backend_request }
}

/// A GEP-2257 duration (`^([0-9]{1,5}(h|m|s|ms)){1,4}$`) in ms.
pub(crate) fn parse_duration_ms(s: &str) -> Option<u64> {
    let bytes = s.as_bytes();
    let (mut i, mut total, mut parts) = (0, 0u64, 0);
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let digits = i - start;
        if digits == 0 || digits > 5 {
            return None;
        }
        let n: u64 = s[start..i].parse().ok()?;
        let unit = match (bytes.get(i), bytes.get(i + 1)) {
            (Some(b'm'), Some(b's')) => {
                i += 2;
                1
            }
            (Some(b'h'), _) => 3_600_000,
            (Some(b'm'), _) => 60_000,
            (Some(b's'), _) => 1_000,
            _ => return None,
        };
        if unit != 1 {
            i += 1;
        }
        total += n * unit;
        parts += 1;
    }
    (parts > 0 && parts <= 4).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::parse_duration_ms;

    #[test]
    fn gateway_api_durations_parse_to_ms() {
        assert_eq!(parse_duration_ms("10s"), Some(10_000));
        assert_eq!(parse_duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("1m1s1ms"), Some(61_001));
        assert_eq!(parse_duration_ms("0s"), Some(0));
        for bad in ["", "10", "s", "1.5s", "123456s", "1h1h1h1h1h", "-1s", "10us"] {
            assert_eq!(parse_duration_ms(bad), None, "{bad}");
        }
    }
}
