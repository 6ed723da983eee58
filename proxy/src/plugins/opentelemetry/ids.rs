//! Trace and span ids: random, never all-zero (W3C calls a zero id invalid), from a per-thread
//! xorshift generator seeded from the OS-random `RandomState`, so that a request pays a few
//! arithmetic instructions for its ids and its sampling draw, never a system call.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0x5bd1_e995);
    h.finish() | 1
}

/// The next random 64-bit value of this thread (xorshift64*).
pub(crate) fn next_u64() -> u64 {
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

pub(crate) fn span_id() -> [u8; 8] {
    loop {
        let v = next_u64();
        if v != 0 {
            return v.to_be_bytes();
        }
    }
}

pub(crate) fn trace_id() -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&span_id());
    out[8..].copy_from_slice(&next_u64().to_be_bytes());
    out
}

/// `true` with probability `rate` (0 never, 1 always).
pub(crate) fn sample(rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    if rate <= 0.0 {
        return false;
    }
    // The top 53 bits as a uniform float in [0, 1).
    ((next_u64() >> 11) as f64 / (1u64 << 53) as f64) < rate
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    hex_into(&mut out, bytes);
    // Hex digits only.
    String::from_utf8(out).unwrap_or_default()
}

/// Writes the lower-case hex of `bytes` at the start of `out` (which holds at least twice as many).
pub(crate) fn hex_into(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[(b >> 4) as usize];
        out[2 * i + 1] = DIGITS[(b & 15) as usize];
    }
}

/// Hex into `N` bytes, right-aligned (a 64-bit b3 or jaeger trace id is padded with zeros on the
/// left); `None` when not hex, too long, empty or all zero.
pub(crate) fn from_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.trim();
    if s.is_empty() || s.len() > N * 2 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    let padded = format!("{s:0>width$}", width = N * 2);
    for (i, pair) in padded.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    (out != [0u8; N]).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_pads() {
        let id = trace_id();
        assert_eq!(from_hex::<16>(&hex(&id)), Some(id));
        assert_eq!(
            from_hex::<16>("abc"),
            Some({
                let mut a = [0u8; 16];
                a[14] = 0x0a;
                a[15] = 0xbc;
                a
            })
        );
        assert_eq!(from_hex::<8>("0000000000000000"), None);
        assert_eq!(from_hex::<8>("xyz"), None);
        assert_eq!(from_hex::<8>("00000000000000001"), None);
    }

    #[test]
    fn sampling_follows_the_rate() {
        let hits = (0..100_000).filter(|_| sample(0.25)).count();
        assert!((24_000..26_000).contains(&hits), "{hits}");
        assert!(!(0..1000).any(|_| sample(0.0)));
        assert!((0..1000).all(|_| sample(1.0)));
    }
}
