//! `request-transformer` (Kong `kong/plugins/request-transformer/schema.lua`): edits the request
//! before it goes upstream: `http_method`, `replace.uri`, and remove / rename / replace / add /
//! append on headers, query string and body. Entries are `"name:value"` (Kong splits at the first
//! colon and drops the colons that follow); values may be templates ([`super::template`]).
//!
//! Beyond Kong's schema, sluice rejects what Kong accepts and then ignores or cannot do: `host` in
//! remove/rename/add/append (Kong skips it; only `replace` sets it), an empty value, a template
//! in a rename target, and any Lua beyond the template lookups.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::check::{bad_header, join, valid_header_name, Checker};
use super::template::Template;

pub const NAME: &str = "request-transformer";

/// remove / rename / add / append lists (`remove` holds bare names, the others `name:value`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ops {
    #[serde(default)]
    pub body: Vec<String>,
    #[serde(default)]
    pub headers: Vec<String>,
    #[serde(default)]
    pub querystring: Vec<String>,
}

/// `replace`: the lists plus `uri`, the new upstream path (a template).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaceOps {
    #[serde(default)]
    pub body: Vec<String>,
    #[serde(default)]
    pub headers: Vec<String>,
    #[serde(default)]
    pub querystring: Vec<String>,
    #[serde(default)]
    pub uri: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestTransformerConfig {
    /// The upstream request's method (upper case letters).
    #[serde(default)]
    pub http_method: Option<String>,
    #[serde(default)]
    pub remove: Ops,
    #[serde(default)]
    pub rename: Ops,
    #[serde(default)]
    pub replace: ReplaceOps,
    #[serde(default)]
    pub add: Ops,
    #[serde(default)]
    pub append: Ops,
}

impl RequestTransformerConfig {
    /// Whether any operation edits the body.
    pub fn has_body_ops(&self) -> bool {
        !(self.remove.body.is_empty()
            && self.rename.body.is_empty()
            && self.replace.body.is_empty()
            && self.add.body.is_empty()
            && self.append.body.is_empty())
    }
}

/// Kong's split of an entry, `^([^:]+):*(.-)$`: the name up to the first colon, the value after
/// the run of colons that follows. `None` without a colon or with an empty name.
pub fn split_pair(entry: &str) -> Option<(&str, &str)> {
    let (name, value) = entry.split_once(':')?;
    if name.is_empty() {
        return None;
    }
    Some((name, value.trim_start_matches(':')))
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Remove,
    Rename,
    Value,
}

pub(crate) fn check(c: &mut Checker, v: Option<&Value>) {
    let fields = ["http_method", "remove", "rename", "replace", "add", "append"];
    let Some(m) = c.record("config", v, &fields, &[]) else { return };
    if let Some(method) = c.string(m, "config", "http_method") {
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            c.err(join("config", "http_method"), format!("invalid value: {method}"));
        }
    }
    for (op, kind) in [
        ("remove", Kind::Remove),
        ("rename", Kind::Rename),
        ("replace", Kind::Value),
        ("add", Kind::Value),
        ("append", Kind::Value),
    ] {
        let path = join("config", op);
        let fields: &[&str] = if op == "replace" {
            &["body", "headers", "querystring", "uri"]
        } else {
            &["body", "headers", "querystring"]
        };
        let Some(ops) = c.record(&path, m.get(op), fields, &[]) else { continue };
        check_list(c, ops, &path, "headers", op, kind);
        check_list(c, ops, &path, "querystring", op, kind);
        check_list(c, ops, &path, "body", op, kind);
        if op == "replace" {
            if let Some(uri) = c.string(ops, &path, "uri") {
                let at = join(&path, "uri");
                match Template::parse(uri) {
                    Err(msg) => c.err(at, msg),
                    Ok(_) if !uri.starts_with('/') && !uri.starts_with("$(") => c.err(at, "should start with: /"),
                    Ok(_) => {}
                }
            }
        }
    }
}

fn check_list(c: &mut Checker, ops: &Map<String, Value>, path: &str, list: &str, op: &str, kind: Kind) {
    let headers = list == "headers";
    for (at, entry) in c.strings(ops, path, list) {
        if kind == Kind::Remove {
            if headers && !valid_header_name(entry) {
                c.err(at, bad_header(entry));
            } else if headers && entry.eq_ignore_ascii_case("host") {
                c.err(at, "'host' cannot be removed (Kong ignores it); use replace to set it");
            } else if entry.is_empty() {
                c.err(at, "expected a non-empty name");
            }
            continue;
        }
        let Some((name, value)) = split_pair(entry) else {
            c.err(at, format!("invalid value: {entry}"));
            continue;
        };
        if value.is_empty() {
            c.err(at, format!("key '{name}' has no value"));
            continue;
        }
        if headers && !valid_header_name(name) {
            c.err(at, bad_header(name));
            continue;
        }
        if headers && name.eq_ignore_ascii_case("host") && op != "replace" {
            c.err(at, format!("'host' cannot be used with {op} (Kong ignores it); use replace to set it"));
            continue;
        }
        if kind == Kind::Rename {
            if headers && !valid_header_name(value) {
                c.err(at, bad_header(value));
            } else if headers && value.eq_ignore_ascii_case("host") {
                c.err(at, "'host' cannot be a rename target; use replace to set it");
            } else if value.contains("$(") {
                c.err(at, format!("rename target '{value}' must be a plain name, not a template"));
            }
            continue;
        }
        match Template::parse(value) {
            Err(msg) => c.err(at, msg),
            Ok(t) if headers => {
                if let Some(lit) = t.literal() {
                    if lit.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
                        c.err(at, format!("invalid header value for '{name}'"));
                    }
                }
            }
            Ok(_) => {}
        }
    }
}
