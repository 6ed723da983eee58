//! Validation errors in Kong's `flattened_errors` shape, so that a controller written for Kong
//! (KIC reads `entity_type`/`entity_name`/`errors[].field`) can map them back to its objects.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The text could not be read as a config at all (not JSON/YAML, wrong types, unknown fields).
#[derive(Debug, Clone, Error, PartialEq)]
pub enum ParseError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("invalid YAML: {0}")]
    Yaml(String),
    /// Refused before parsing (see `nesting`): nesting past `max` levels.
    #[error("invalid YAML: nested deeper than {max} levels at line {line}")]
    TooDeep { line: usize, max: usize },
}

/// One problem with one field of an entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
    #[serde(rename = "type", default = "field_type")]
    pub kind: String,
}

fn field_type() -> String {
    "field".to_string()
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), message: message.into(), kind: field_type() }
    }
}

/// Everything wrong with one entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityError {
    pub entity_type: String,
    #[serde(default)]
    pub entity_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    #[serde(default)]
    pub entity_tags: Vec<String>,
    pub errors: Vec<FieldError>,
}

/// Kong's 400 body for `POST /config`: `code 14`, a message and the per-entity errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Error)]
#[error("{message}")]
pub struct FlattenedError {
    pub code: u32,
    pub name: String,
    pub message: String,
    pub flattened_errors: Vec<EntityError>,
}

impl FlattenedError {
    pub const CODE: u32 = 14;

    pub fn new(flattened_errors: Vec<EntityError>) -> Self {
        let summary: Vec<String> = flattened_errors
            .iter()
            .flat_map(|e| {
                e.errors
                    .iter()
                    .map(move |f| format!("{} '{}': {}: {}", e.entity_type, e.entity_name, f.field, f.message))
            })
            .collect();
        FlattenedError {
            code: Self::CODE,
            name: "invalid declarative configuration".to_string(),
            message: format!("declarative config is invalid: {}", summary.join("; ")),
            flattened_errors,
        }
    }

    /// A parse failure: the whole body is the broken "entity".
    pub fn from_parse(e: ParseError) -> Self {
        let mut err = FlattenedError::new(Vec::new());
        err.message = format!("failed parsing declarative configuration: {e}");
        err
    }
}
