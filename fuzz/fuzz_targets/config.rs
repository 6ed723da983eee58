//! The wire config (what the controller pushes and `KONG_DECLARATIVE_CONFIG` holds): parsing,
//! validation and hashing never panic, and a valid config hashes the same after a JSON round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(config) = proxy_config::parse(text) else { return };
    if proxy_config::validate(&config).is_err() {
        return;
    }
    let hash = proxy_config::config_hash(&config);
    let json = serde_json::to_string(&config).expect("a parsed config serializes");
    let again = proxy_config::parse(&json).expect("serialized config parses");
    assert_eq!(proxy_config::config_hash(&again), hash);
});
