//! Kong's plugins as sluice speaks them: one typed `config` per plugin (Kong's field names and
//! defaults, serde with `deny_unknown_fields`) and the checks Kong's schemas make, with Kong-like
//! messages naming each field (`config.allow.2`). A field Kong has that sluice cannot honour is
//! rejected with an error naming it, never accepted and ignored (docs/plugins.md lists them).
//!
//! The controller calls [`check_plugin_config`] per KongPlugin so that a bad configuration becomes
//! an Event; the proxy calls [`PluginConfig::from_entity`] when a config is pushed and builds its
//! per-request state from the typed value.

pub mod acl;
pub mod basic_auth;
mod check;
pub mod correlation_id;
pub mod cors;
pub mod grpc_gateway;
pub mod grpc_web;
pub mod ip_restriction;
pub mod jwt;
pub mod key_auth;
pub mod opentelemetry;
pub mod prometheus;
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

pub use acl::AclConfig;
pub use basic_auth::BasicAuthConfig;
pub use correlation_id::{CorrelationIdConfig, Generator};
pub use cors::{CorsConfig, CorsMethod};
pub use grpc_gateway::GrpcGatewayConfig;
pub use grpc_web::GrpcWebConfig;
pub use ip_restriction::{IpCidr, IpRestrictionConfig};
pub use jwt::{Claim, JwtConfig};
pub use key_auth::KeyAuthConfig;
pub use opentelemetry::OpentelemetryConfig;
pub use prometheus::PrometheusConfig;
pub use rate_limiting::{LimitBy, Policy, RateLimitingConfig, RedisConfig};
pub use request_size_limiting::{RequestSizeLimitingConfig, SizeUnit};
pub use request_termination::RequestTerminationConfig;
pub use request_transformer::RequestTransformerConfig;
pub use response_transformer::{JsonType, ResponseTransformerConfig};

/// The plugin names sluice implements, sorted.
pub const PLUGIN_NAMES: &[&str] = &[
    acl::NAME,
    basic_auth::NAME,
    correlation_id::NAME,
    cors::NAME,
    grpc_gateway::NAME,
    grpc_web::NAME,
    ip_restriction::NAME,
    jwt::NAME,
    key_auth::NAME,
    opentelemetry::NAME,
    prometheus::NAME,
    rate_limiting::NAME,
    request_size_limiting::NAME,
    request_termination::NAME,
    request_transformer::NAME,
    response_transformer::NAME,
];

/// One plugin instance's typed `config`.
#[derive(Debug, Clone, PartialEq)]
pub enum PluginConfig {
    Acl(AclConfig),
    BasicAuth(BasicAuthConfig),
    CorrelationId(CorrelationIdConfig),
    Cors(CorsConfig),
    GrpcGateway(GrpcGatewayConfig),
    GrpcWeb(GrpcWebConfig),
    IpRestriction(IpRestrictionConfig),
    Jwt(JwtConfig),
    KeyAuth(KeyAuthConfig),
    Opentelemetry(OpentelemetryConfig),
    Prometheus(PrometheusConfig),
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
            acl::NAME => acl::check(&mut c, v),
            basic_auth::NAME => basic_auth::check(&mut c, v),
            correlation_id::NAME => correlation_id::check(&mut c, v),
            cors::NAME => cors::check(&mut c, v),
            grpc_gateway::NAME => grpc_gateway::check(&mut c, v),
            grpc_web::NAME => grpc_web::check(&mut c, v),
            ip_restriction::NAME => ip_restriction::check(&mut c, v),
            jwt::NAME => jwt::check(&mut c, v),
            key_auth::NAME => key_auth::check(&mut c, v),
            opentelemetry::NAME => opentelemetry::check(&mut c, v),
            prometheus::NAME => prometheus::check(&mut c, v),
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
            acl::NAME => PluginConfig::Acl(typed(config)?),
            basic_auth::NAME => PluginConfig::BasicAuth(typed(config)?),
            correlation_id::NAME => PluginConfig::CorrelationId(typed(config)?),
            cors::NAME => PluginConfig::Cors(typed(config)?),
            grpc_gateway::NAME => PluginConfig::GrpcGateway(typed(config)?),
            grpc_web::NAME => PluginConfig::GrpcWeb(typed(config)?),
            ip_restriction::NAME => PluginConfig::IpRestriction(typed(config)?),
            jwt::NAME => PluginConfig::Jwt(typed(config)?),
            key_auth::NAME => PluginConfig::KeyAuth(typed(config)?),
            opentelemetry::NAME => PluginConfig::Opentelemetry(typed(config)?),
            prometheus::NAME => PluginConfig::Prometheus(typed(config)?),
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
            PluginConfig::Acl(_) => acl::NAME,
            PluginConfig::BasicAuth(_) => basic_auth::NAME,
            PluginConfig::CorrelationId(_) => correlation_id::NAME,
            PluginConfig::Cors(_) => cors::NAME,
            PluginConfig::GrpcGateway(_) => grpc_gateway::NAME,
            PluginConfig::GrpcWeb(_) => grpc_web::NAME,
            PluginConfig::IpRestriction(_) => ip_restriction::NAME,
            PluginConfig::Jwt(_) => jwt::NAME,
            PluginConfig::KeyAuth(_) => key_auth::NAME,
            PluginConfig::Opentelemetry(_) => opentelemetry::NAME,
            PluginConfig::Prometheus(_) => prometheus::NAME,
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
        jwt::NAME => 1450,
        key_auth::NAME => 1250,
        basic_auth::NAME => 1100,
        grpc_gateway::NAME => 998,
        ip_restriction::NAME => 990,
        rate_limiting::NAME => 910,
        request_size_limiting::NAME => 951,
        acl::NAME => 950,
        opentelemetry::NAME => 14,
        grpc_web::NAME => 3,
        request_transformer::NAME => 801,
        response_transformer::NAME => 800,
        prometheus::NAME => 13,
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
