//! The wire contract between `sluice-controller` and `sluice-proxy`: Kong's declarative config,
//! format 3.0, the subset sluice implements (the types in [`schema`]; ARCHITECTURE.md "The life of a config").
//!
//! This crate is deliberately small and I/O free: serde types ([`schema`]), the rules Kong's schema
//! enforces ([`validate`], with per-entity errors in Kong's `flattened_errors` shape, [`errors`]),
//! the regex dialect both sides must agree on ([`patterns`]), Kong's plugin schemas ([`plugins`])
//! and the configuration hash ([`hash`]).
//! The controller and the proxy depend on it and never on each other.
#![warn(unreachable_pub)]

pub mod consumers;
mod errors;
mod hash;
pub mod patterns;
pub mod plugins;
mod schema;
pub mod validate;

pub use consumers::Consumer;
pub use errors::{EntityError, FieldError, FlattenedError, ParseError};
pub use hash::{config_hash, EMPTY_HASH};
pub use schema::*;
pub use validate::{check_plugin_config, validate};

/// Parses a declarative config from JSON or YAML text (JSON is YAML, but the JSON parser gives
/// better messages, so it is tried first when the text looks like JSON).
pub fn parse(text: &str) -> Result<Config, ParseError> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        serde_json::from_str(text).map_err(|e| ParseError::Json(e.to_string()))
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| ParseError::Yaml(e.to_string()))
    }
}

/// Parses and validates in one step: what the proxy does with a pushed body.
pub fn parse_and_validate(text: &str) -> Result<Config, FlattenedError> {
    let config = parse(text).map_err(FlattenedError::from_parse)?;
    validate(&config)?;
    Ok(config)
}

#[cfg(test)]
mod tests;
