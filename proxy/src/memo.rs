//! One-entry memos: the value made for the last key, reused while the key repeats. Consecutive
//! requests on a worker thread mostly share a client, a listener port, a millisecond, so keeping
//! just the last rendering of each saves formatting and allocating it per request (the forwarding
//! headers in `forward`, the access log's timestamp and client, the `date` header).

/// The value in `slot` when it was made for `key`, else `make(key)`, kept in `slot` for next time.
// Always inlined: it sits on the request path, and as a call it costs more than the compare it does
// (bench/callgrind.sh).
#[inline(always)]
pub(crate) fn last<K: PartialEq + Copy, V: Clone>(slot: &mut Option<(K, V)>, key: K, make: impl FnOnce(K) -> V) -> V {
    match slot {
        Some((k, v)) if *k == key => v.clone(),
        _ => {
            let v = make(key);
            *slot = Some((key, v.clone()));
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::last;

    #[test]
    fn makes_a_value_only_when_the_key_changes() {
        let mut slot = None;
        let mut made = Vec::new();
        for key in [1, 1, 2, 2, 1] {
            let v = last(&mut slot, key, |k| {
                made.push(k);
                format!("v{k}")
            });
            assert_eq!(v, format!("v{key}"));
        }
        assert_eq!(made, [1, 2, 1]);
    }
}
