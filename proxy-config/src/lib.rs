//! The wire contract between `sluice-controller` and `sluice-proxy`: Kong's declarative config,
//! format 3.0, the subset sluice implements (the types in [`schema`]; ARCHITECTURE.md "The life of a config").
//!
//! This crate is deliberately small and I/O free: serde types ([`schema`]), the rules Kong's schema
//! enforces ([`validate`]; Kong's hand-written shorthands are expanded first, `shorthand`), with per-entity errors in Kong's `flattened_errors` shape, [`errors`]),
//! the regex dialect both sides must agree on ([`patterns`]), Kong's plugin schemas ([`plugins`])
//! and the configuration hash ([`hash`]). One exception to "I/O free": grpc-gateway's `proto`
//! is a path that [`transcode`] reads when it compiles the API (the standalone proxy's source).
//! The controller and the proxy depend on it and never on each other.
#![warn(unreachable_pub)]

pub mod consumers;
mod errors;
mod hash;
pub mod nesting;
pub mod patterns;
pub mod plugins;
mod schema;
mod shorthand;
pub mod transcode;
pub mod validate;

pub use consumers::Consumer;
pub use errors::{EntityError, FieldError, FlattenedError, ParseError};
pub use hash::{config_hash, EMPTY_HASH};
pub use schema::*;
pub use validate::{check_plugin_config, validate};

/// Parses a declarative config from JSON or YAML text (JSON is YAML, but the JSON parser gives
/// better messages, so it is tried first when the text looks like JSON). YAML nested deeper than
/// [`nesting::MAX_DEPTH`] is refused before it is parsed.
///
/// Kong's shorthands (a service `url`, top-level `targets` and `snis`) are expanded into the
/// canonical form here, so everything downstream (validation, the hash, the proxy) sees one form.
pub fn parse(text: &str) -> Result<Config, ParseError> {
    let trimmed = text.trim_start();
    let mut config: Config = if trimmed.starts_with('{') {
        serde_json::from_str(text).map_err(|e| ParseError::Json(e.to_string()))?
    } else {
        nesting::check(text, nesting::MAX_DEPTH)?;
        serde_yaml_ng::from_str(text).map_err(|e| ParseError::Yaml(e.to_string()))?
    };
    shorthand::expand(&mut config);
    Ok(config)
}

/// Parses and validates in one step: what the proxy does with a pushed body.
pub fn parse_and_validate(text: &str) -> Result<Config, FlattenedError> {
    let config = parse(text).map_err(FlattenedError::from_parse)?;
    validate(&config)?;
    Ok(config)
}

#[cfg(test)]
mod tests;
