//! grpc-gateway's API from a Secret. A KongPlugin cannot point the proxy at a file, so its config
//! names a Secret key instead, and the controller ships the key's content:
//! - `proto_from: {secretKeyRef: {name, key}}` → `proto_text` (the `.proto` text) and
//!   `proto_name` (the key, so errors name it);
//! - `descriptor_set_from: {secretKeyRef: {name, key}}` → `descriptor_set` (the bytes, base64).
//!
//! The Secret is in the KongPlugin's namespace (a KongClusterPlugin names it with `namespace`)
//! and, like every Secret a plugin reads, is labelled `konghq.com/secret: "true"`. The proxy's
//! schema then compiles the result, so a bad proto is an Event naming the file, line and field.

use base64::Engine;
use serde_json::{Map, Value};

use crate::kong_plugins::SecretRef;

pub(crate) const NAME: &str = "grpc-gateway";

/// Replaces `proto_from` / `descriptor_set_from` in `config` with the Secret's content, read by
/// `read`; errors are `(field, message)`.
pub(crate) fn resolve(
    config: &mut Value,
    namespace: &str,
    read: impl Fn(&SecretRef) -> Result<Vec<u8>, String>,
) -> Result<(), Vec<(String, String)>> {
    let Some(members) = config.as_object_mut() else { return Ok(()) };
    let mut errors = Vec::new();
    for (from, into) in [("proto_from", "proto_text"), ("descriptor_set_from", "descriptor_set")] {
        let Some(reference) = members.remove(from) else { continue };
        let field = format!("config.{from}");
        let r = match secret_ref(&reference, namespace) {
            Ok(r) => r,
            Err(e) => {
                errors.push((field, e));
                continue;
            }
        };
        let bytes = match read(&r) {
            Ok(b) => b,
            Err(e) => {
                errors.push((format!("{field}.secretKeyRef"), e));
                continue;
            }
        };
        let value = if into == "proto_text" {
            match String::from_utf8(bytes) {
                Ok(text) => {
                    members.insert("proto_name".into(), Value::String(r.key.clone()));
                    text
                }
                Err(_) => {
                    errors.push((format!("{field}.secretKeyRef"), format!("key '{}' is not UTF-8 text", r.key)));
                    continue;
                }
            }
        } else {
            base64::engine::general_purpose::STANDARD.encode(bytes)
        };
        members.insert(into.into(), Value::String(value));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The field a schema error names, as the user wrote it: `config.proto_text` is
/// `config.proto_from` when the text came from a Secret (and likewise for the descriptor set).
pub(crate) fn user_field(written: Option<&Value>, field: String) -> String {
    for (from, into) in [("proto_from", "config.proto_text"), ("descriptor_set_from", "config.descriptor_set")] {
        if field == into && written.and_then(|c| c.get(from)).is_some() {
            return format!("config.{from}");
        }
    }
    field
}

/// `{secretKeyRef: {name, key[, namespace]}}`.
fn secret_ref(v: &Value, namespace: &str) -> Result<SecretRef, String> {
    let empty = Map::new();
    let r = v.get("secretKeyRef").and_then(Value::as_object);
    let Some(r) = r else { return Err("expected {secretKeyRef: {name, key}}".into()) };
    let unknown: Vec<&String> = r.keys().filter(|k| !["name", "key", "namespace"].contains(&k.as_str())).collect();
    if v.as_object().unwrap_or(&empty).len() != 1 || !unknown.is_empty() {
        return Err(format!("unknown field in {v}: only secretKeyRef {{name, key, namespace}}"));
    }
    let text = |k: &str| r.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    let (Some(name), Some(key)) = (text("name"), text("key")) else {
        return Err("secretKeyRef needs name and key".into());
    };
    Ok(SecretRef { namespace: text("namespace").unwrap_or_else(|| namespace.to_string()), name, key })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_become_content() {
        let mut c = json!({"proto_from": {"secretKeyRef": {"name": "api", "key": "lib.proto"}}});
        resolve(&mut c, "ns", |r| {
            assert_eq!((r.namespace.as_str(), r.name.as_str()), ("ns", "api"));
            Ok(b"syntax = \"proto3\";".to_vec())
        })
        .unwrap();
        assert_eq!(c, json!({"proto_text": "syntax = \"proto3\";", "proto_name": "lib.proto"}));
        let mut c = json!({"descriptor_set_from": {"secretKeyRef": {"name": "api", "key": "d", "namespace": "o"}}});
        resolve(&mut c, "ns", |r| if r.namespace == "o" { Ok(vec![0, 1]) } else { Err("wrong".into()) }).unwrap();
        assert_eq!(c, json!({"descriptor_set": "AAE="}));
        let mut c = json!({"proto_from": {"configMapKeyRef": {"name": "x", "key": "y"}}});
        let e = resolve(&mut c, "ns", |_| Ok(vec![])).unwrap_err();
        assert_eq!(e[0].0, "config.proto_from");
    }
}
