//! `KONG_*_LISTEN` values: parsing never panics, and whatever parses prints back to a value that
//! parses to the same spec (so logs and errors show what is really bound).
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy::settings::listen::ListenSpec;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(spec) = text.parse::<ListenSpec>() else { return };
    let shown = spec.to_string();
    let again: ListenSpec = match shown.parse() {
        Ok(s) => s,
        Err(e) => panic!("{text:?} parsed, but its display {shown:?} does not: {e}"),
    };
    assert_eq!(again, spec, "{text:?} → {shown:?}");
});
