//! `request-size-limiting` (Kong `kong/plugins/request-size-limiting/schema.lua`): the largest
//! request body the proxy lets through, and whether a `Content-Length` is required.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::check::{join, Checker};

pub const NAME: &str = "request-size-limiting";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SizeUnit {
    #[default]
    Megabytes,
    Kilobytes,
    Bytes,
}

impl SizeUnit {
    /// Kong's factors: binary units (a "megabyte" is 2^20 bytes).
    pub fn bytes(self) -> u64 {
        match self {
            SizeUnit::Megabytes => 1 << 20,
            SizeUnit::Kilobytes => 1 << 10,
            SizeUnit::Bytes => 1,
        }
    }
}

pub const SIZE_UNITS: [&str; 3] = ["megabytes", "kilobytes", "bytes"];

fn default_size() -> u64 {
    128
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSizeLimitingConfig {
    #[serde(default = "default_size")]
    pub allowed_payload_size: u64,
    #[serde(default)]
    pub size_unit: SizeUnit,
    #[serde(default)]
    pub require_content_length: bool,
}

impl Default for RequestSizeLimitingConfig {
    fn default() -> Self {
        RequestSizeLimitingConfig {
            allowed_payload_size: default_size(),
            size_unit: SizeUnit::default(),
            require_content_length: false,
        }
    }
}

impl RequestSizeLimitingConfig {
    /// The limit in bytes (saturating: a limit beyond `u64` is no limit).
    pub fn limit_bytes(&self) -> u64 {
        self.allowed_payload_size.saturating_mul(self.size_unit.bytes())
    }
}

pub(crate) fn check(c: &mut Checker, v: Option<&Value>) {
    let fields = ["allowed_payload_size", "size_unit", "require_content_length"];
    let Some(m) = c.record("config", v, &fields, &[]) else { return };
    if let Some(n) = c.integer(m, "config", "allowed_payload_size") {
        if n < 0 {
            c.err(join("config", "allowed_payload_size"), "value must be greater than or equal to 0");
        }
    }
    c.one_of(m, "config", "size_unit", &SIZE_UNITS);
    c.boolean(m, "config", "require_content_length");
}
