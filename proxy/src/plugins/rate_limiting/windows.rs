//! The fixed windows rate-limiting counts in, aligned as Kong aligns them: to the UTC second,
//! minute, hour and day, and to the first day of the UTC month and year. Every proxy computes
//! the same window start from the clock alone, so replicas sharing Redis share counters.

use std::time::{SystemTime, UNIX_EPOCH};

/// One window of one period: where it starts and when it ends (Unix seconds, UTC).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Window {
    pub start: u64,
    pub end: u64,
}

/// The current Unix time in seconds.
pub(crate) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The window of `period` (index into `WINDOWS`: second … year) that holds `now`.
pub(crate) fn window(period: usize, now: u64) -> Window {
    let fixed = |len: u64| Window { start: now - now % len, end: now - now % len + len };
    match period {
        0 => fixed(1),
        1 => fixed(60),
        2 => fixed(3600),
        3 => fixed(86_400),
        4 => {
            let (y, m, _) = civil(now / 86_400);
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            Window { start: days(y, m, 1) * 86_400, end: days(ny, nm, 1) * 86_400 }
        }
        _ => {
            let (y, _, _) = civil(now / 86_400);
            Window { start: days(y, 1, 1) * 86_400, end: days(y + 1, 1, 1) * 86_400 }
        }
    }
}

/// (year, month, day) of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil(z: u64) -> (u64, u64, u64) {
    let z = z + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + u64::from(m <= 2), m, d)
}

/// Days since 1970-01-01 of a date (H. Hinnant's `days_from_civil`), for years from 1970.
fn days(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_align_to_utc_calendar() {
        // 2024-02-29T13:45:30Z
        let t = 1_709_214_330;
        assert_eq!(window(0, t), Window { start: t, end: t + 1 });
        assert_eq!(window(1, t), Window { start: t - 30, end: t + 30 });
        assert_eq!(window(2, t), Window { start: 1_709_211_600, end: 1_709_215_200 });
        assert_eq!(window(3, t), Window { start: 1_709_164_800, end: 1_709_251_200 });
        // February 2024 (leap year) → March 1st.
        assert_eq!(window(4, t), Window { start: 1_706_745_600, end: 1_709_251_200 });
        assert_eq!(window(5, t), Window { start: 1_704_067_200, end: 1_735_689_600 });
        // December rolls into the next year.
        let dec = 1_734_000_000; // 2024-12-12
        assert_eq!(window(4, dec), Window { start: 1_733_011_200, end: 1_735_689_600 });
        assert_eq!(civil(0), (1970, 1, 1));
    }
}
