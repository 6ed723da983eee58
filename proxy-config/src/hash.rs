//! The configuration hash: MD5 over the canonical JSON of a parsed config, 32 hex digits, as in
//! Kong's `configuration_hash`. "Canonical" means the serialization of the parsed struct: defaults
//! filled, unknown fields impossible, map keys sorted, so equal meaning gives an equal hash.

use md5::{Digest, Md5};

use crate::schema::Config;

/// What `/status` reports when no configuration (or an empty one) is loaded.
pub const EMPTY_HASH: &str = "00000000000000000000000000000000";

/// The hash of `config`; [`EMPTY_HASH`] for a config that routes nothing.
pub fn config_hash(config: &Config) -> String {
    if config.is_empty() {
        return EMPTY_HASH.to_string();
    }
    // Serializing plain data structs cannot fail.
    let json = serde_json::to_vec(config).unwrap_or_default();
    let digest = Md5::digest(&json);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
