//! `response-transformer` (Kong `kong/plugins/response-transformer/schema.lua`): edits the
//! response on its way to the client: headers (remove / rename / replace / add / append) and, for
//! JSON bodies, top-level JSON members with `json_types` saying how `replace`/`add`/`append`
//! values are typed (boolean, number, string).
//!
//! Beyond Kong's schema, sluice rejects what Kong accepts and then ignores: an empty value (Kong
//! skips the entry), a `number` value that is not a number (Kong skips it), more `json_types`
//! than `json` entries, and header names that are not HTTP tokens.
//!
//! Beyond Kong's fields, sluice adds `add.trailers` and `append.trailers` (`name:value`, checked
//! as `headers`): entries for the trailers of a gRPC (or any HTTP/2) response. They may not name
//! `grpc-status` or `grpc-message` (the call's outcome is the upstream's to say) nor a field
//! that HTTP forbids in trailers ([`FORBIDDEN_TRAILERS`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::check::{bad_header, join, valid_token, Checker};
use super::request_transformer::split_pair;

pub const NAME: &str = "response-transformer";

/// `remove` / `rename`: `json` members and `headers` (`rename` as `old:new`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameOps {
    #[serde(default)]
    pub json: Vec<String>,
    #[serde(default)]
    pub headers: Vec<String>,
}

/// `replace` / `add` / `append`: `name:value` entries; `json_types[i]` types `json[i]`
/// (missing = string). `trailers` (sluice's own, `add` and `append` only) edits the response's
/// trailers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueOps {
    #[serde(default)]
    pub json: Vec<String>,
    #[serde(default)]
    pub json_types: Vec<JsonType>,
    #[serde(default)]
    pub headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trailers: Vec<String>,
}

/// Names `add.trailers` / `append.trailers` refuse: the gRPC outcome, and what HTTP forbids in
/// trailers (framing, routing, connection-specific fields) or HTTP/2 refuses to send.
pub const FORBIDDEN_TRAILERS: &[&str] = &[
    "grpc-status",
    "grpc-message",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "te",
    "trailer",
    "host",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JsonType {
    Boolean,
    Number,
    String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseTransformerConfig {
    #[serde(default)]
    pub remove: NameOps,
    #[serde(default)]
    pub rename: NameOps,
    #[serde(default)]
    pub replace: ValueOps,
    #[serde(default)]
    pub add: ValueOps,
    #[serde(default)]
    pub append: ValueOps,
}

impl ResponseTransformerConfig {
    /// Whether any operation edits a JSON body.
    pub fn has_json_ops(&self) -> bool {
        !(self.remove.json.is_empty()
            && self.rename.json.is_empty()
            && self.replace.json.is_empty()
            && self.add.json.is_empty()
            && self.append.json.is_empty())
    }
}

pub(crate) fn check(c: &mut Checker, v: Option<&Value>) {
    let Some(m) = c.record("config", v, &["remove", "rename", "replace", "add", "append"], &[]) else { return };
    for op in ["remove", "rename", "replace", "add", "append"] {
        let path = join("config", op);
        let valued = !matches!(op, "remove" | "rename");
        let fields: &[&str] = match op {
            "add" | "append" => &["json", "json_types", "headers", "trailers"],
            "replace" => &["json", "json_types", "headers"],
            _ => &["json", "headers"],
        };
        let Some(ops) = c.record(&path, m.get(op), fields, &[]) else { continue };
        for (at, h) in c.strings(ops, &path, "headers") {
            check_header(c, &at, h, op);
        }
        for (at, t) in c.strings(ops, &path, "trailers") {
            let before = c.errors.len();
            check_header(c, &at, t, op);
            let Some(name) = split_pair(t).map(|(n, _)| n.to_ascii_lowercase()) else { continue };
            if c.errors.len() == before && FORBIDDEN_TRAILERS.contains(&name.as_str()) {
                c.err(at, format!("trailer '{name}' may not be added (refused: {})", FORBIDDEN_TRAILERS.join(", ")));
            }
        }
        let types: Vec<(String, &str)> = if valued { c.strings(ops, &path, "json_types") } else { Vec::new() };
        for (at, t) in &types {
            if !["boolean", "number", "string"].contains(t) {
                c.err(at.clone(), "expected one of: boolean, number, string");
            }
        }
        let json = c.strings(ops, &path, "json");
        if types.len() > json.len() {
            c.err(
                join(&path, "json_types"),
                format!(
                    "has {} entries but {}.json has {}: each type belongs to one json entry",
                    types.len(),
                    path,
                    json.len()
                ),
            );
        }
        for (i, (at, entry)) in json.iter().enumerate() {
            if op == "remove" {
                if entry.is_empty() {
                    c.err(at.clone(), "expected a non-empty name");
                }
                continue;
            }
            let Some((name, value)) = split_pair(entry) else {
                c.err(at.clone(), format!("invalid value: {entry}"));
                continue;
            };
            if value.is_empty() {
                c.err(at.clone(), format!("key '{name}' has no value"));
            } else if types.get(i).map(|(_, t)| *t) == Some("number")
                && value.parse::<f64>().map_or(true, |n| !n.is_finite())
            {
                c.err(
                    at.clone(),
                    format!("value '{value}' of '{name}' is not a number (config.{op}.json_types.{})", i + 1),
                );
            }
        }
    }
}

fn check_header(c: &mut Checker, at: &str, entry: &str, op: &str) {
    if op == "remove" {
        if !valid_token(entry) {
            c.err(at, bad_header(entry));
        }
        return;
    }
    let Some((name, value)) = split_pair(entry) else {
        c.err(at, format!("invalid value: {entry}"));
        return;
    };
    if !valid_token(name) {
        c.err(at, bad_header(name));
    } else if value.is_empty() {
        c.err(at, format!("key '{name}' has no value"));
    } else if op == "rename" && !valid_token(value) {
        c.err(at, bad_header(value));
    } else if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        c.err(at, format!("invalid header value for '{name}'"));
    }
}
