//! Kong's plugins as sluice speaks them: one typed `config` per plugin (Kong's field names and
//! defaults, serde with `deny_unknown_fields`) and the checks Kong's schemas make, with Kong-like
//! messages naming each field (`config.allow.2`). A field Kong has that sluice cannot honour is
//! rejected with an error naming it, never accepted and ignored (docs/plugins.md lists them).
//!
//! The controller calls [`check_plugin_config`] per KongPlugin so that a bad configuration becomes
//! an Event; the proxy calls [`PluginConfig::from_entity`] when a config is pushed and builds its
//! per-request state from the typed value.

mod check;
pub mod correlation_id;
pub mod cors;
pub mod ip_restriction;
pub mod rate_limiting;
pub mod request_size_limiting;
pub mod request_termination;
pub mod request_transformer;
pub mod response_transformer;
pub mod template;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::errors::FieldError;
use check::Checker;

pub use correlation_id::{CorrelationIdConfig, Generator};
pub use cors::{CorsConfig, CorsMethod};
pub use ip_restriction::{IpCidr, IpRestrictionConfig};
pub use rate_limiting::{LimitBy, Policy, RateLimitingConfig, RedisConfig};
pub use request_size_limiting::{RequestSizeLimitingConfig, SizeUnit};
pub use request_termination::RequestTerminationConfig;
pub use request_transformer::RequestTransformerConfig;
pub use response_transformer::{JsonType, ResponseTransformerConfig};

/// The plugin names sluice implements, sorted.
pub const PLUGIN_NAMES: &[&str] = &[
    correlation_id::NAME,
    cors::NAME,
    ip_restriction::NAME,
    rate_limiting::NAME,
    request_size_limiting::NAME,
    request_termination::NAME,
    request_transformer::NAME,
    response_transformer::NAME,
];

/// One plugin instance's typed `config`.
#[derive(Debug, Clone, PartialEq)]
pub enum PluginConfig {
    CorrelationId(CorrelationIdConfig),
    Cors(CorsConfig),
    IpRestriction(IpRestrictionConfig),
    RateLimiting(RateLimitingConfig),
    RequestSizeLimiting(RequestSizeLimitingConfig),
    RequestTermination(RequestTerminationConfig),
    RequestTransformer(RequestTransformerConfig),
    ResponseTransformer(ResponseTransformerConfig),
}

impl PluginConfig {
    /// Checks and parses a plugin entity's `name` and `config` (`null` = all defaults). `Err`
    /// lists every problem, each naming its field as Kong's `flattened_errors` do (`name`,
    /// `config`, `config.<field>`).
    pub fn from_entity(name: &str, config: &Value) -> Result<Self, Vec<FieldError>> {
        let mut c = Checker::default();
        let v = Some(config);
        match name {
            correlation_id::NAME => correlation_id::check(&mut c, v),
            cors::NAME => cors::check(&mut c, v),
            ip_restriction::NAME => ip_restriction::check(&mut c, v),
            rate_limiting::NAME => rate_limiting::check(&mut c, v),
            request_size_limiting::NAME => request_size_limiting::check(&mut c, v),
            request_termination::NAME => request_termination::check(&mut c, v),
            request_transformer::NAME => request_transformer::check(&mut c, v),
            response_transformer::NAME => response_transformer::check(&mut c, v),
            _ => {
                c.err("name", format!("plugin '{name}' not enabled; sluice supports: {}", PLUGIN_NAMES.join(", ")));
            }
        }
        if !c.errors.is_empty() {
            return Err(c.errors);
        }
        Ok(match name {
            correlation_id::NAME => PluginConfig::CorrelationId(typed(config)?),
            cors::NAME => PluginConfig::Cors(typed(config)?),
            ip_restriction::NAME => PluginConfig::IpRestriction(typed(config)?),
            rate_limiting::NAME => PluginConfig::RateLimiting(typed(config)?),
            request_size_limiting::NAME => PluginConfig::RequestSizeLimiting(typed(config)?),
            request_termination::NAME => PluginConfig::RequestTermination(typed(config)?),
            request_transformer::NAME => PluginConfig::RequestTransformer(typed(config)?),
            _ => PluginConfig::ResponseTransformer(typed(config)?),
        })
    }

    /// The plugin's name as in the entity.
    pub fn name(&self) -> &'static str {
        match self {
            PluginConfig::CorrelationId(_) => correlation_id::NAME,
            PluginConfig::Cors(_) => cors::NAME,
            PluginConfig::IpRestriction(_) => ip_restriction::NAME,
            PluginConfig::RateLimiting(_) => rate_limiting::NAME,
            PluginConfig::RequestSizeLimiting(_) => request_size_limiting::NAME,
            PluginConfig::RequestTermination(_) => request_termination::NAME,
            PluginConfig::RequestTransformer(_) => request_transformer::NAME,
            PluginConfig::ResponseTransformer(_) => response_transformer::NAME,
        }
    }

    /// Kong's `PRIORITY` for the plugin: higher runs first within a phase.
    pub fn priority(&self) -> u32 {
        priority(self.name()).unwrap_or(0)
    }
}

/// What the schema above accepts but the proxy does not run, refused by field so that nothing is
/// accepted and ignored, and so that the controller (which validates with this crate) never
/// pushes a plugin the proxy would refuse: correlation-id's `tracker` generator (made of nginx
/// variables). docs/plugins.md lists it with what is refused per request instead.
fn not_run_yet(name: &str, config: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if name == correlation_id::NAME && config.get("generator").and_then(Value::as_str) == Some("tracker") {
        out.push((
            "config.generator".to_string(),
            "generator 'tracker' is not supported by sluice (uuid, uuid#counter)".to_string(),
        ));
    }
    out
}

/// Kong's `PRIORITY` of a plugin sluice implements (`handler.lua`).
pub fn priority(name: &str) -> Option<u32> {
    Some(match name {
        correlation_id::NAME => 100_001,
        cors::NAME => 2000,
        ip_restriction::NAME => 990,
        rate_limiting::NAME => 910,
        request_size_limiting::NAME => 951,
        request_transformer::NAME => 801,
        response_transformer::NAME => 800,
        request_termination::NAME => 2,
        _ => return None,
    })
}

/// Checks one plugin's `name` and `config` against the plugin's schema; empty = valid.
pub fn check_plugin_config(name: &str, config: &Value) -> Vec<FieldError> {
    match PluginConfig::from_entity(name, config) {
        Err(errors) => errors,
        Ok(_) => {
            not_run_yet(name, config).into_iter().map(|(field, message)| FieldError::new(field, message)).collect()
        }
    }
}

/// The typed config of one plugin, after [`check_plugin_config`] found nothing; serde supplies
/// Kong's defaults (`null` members count as absent).
fn typed<T: DeserializeOwned>(config: &Value) -> Result<T, Vec<FieldError>> {
    let mut v = if config.is_null() { Value::Object(Default::default()) } else { config.clone() };
    check::strip_nulls(&mut v);
    serde_json::from_value(v).map_err(|e| vec![FieldError::new("config", e.to_string())])
}

#[cfg(test)]
mod tests;
