//! grpc-gateway's API from a Secret or a ConfigMap. A KongPlugin cannot point the proxy at a
//! file, so its config names a key instead, and the controller ships the key's content:
//! - `proto_from: {secretKeyRef|configMapKeyRef: {name, key}}` → `proto_text` (the `.proto`
//!   text) and `proto_name` (the key, so errors name it);
//! - `descriptor_set_from: {secretKeyRef|configMapKeyRef: {name, key}}` → `descriptor_set` (the
//!   bytes, base64; in a ConfigMap under `binaryData`).
//!
//! The object is in the KongPlugin's namespace (a KongClusterPlugin names it with `namespace`).
//! Like every Secret a plugin reads, the Secret is labelled `konghq.com/secret: "true"`; the
//! ConfigMap is labelled `konghq.com/configmap: "true"` (of any other ConfigMap the controller
//! keeps only `ca.crt`, for BackendTLSPolicy). The proxy's schema then compiles the result, so a bad proto is an Event naming the
//! file, line and field.

use base64::Engine;
use serde_json::{Map, Value};

use crate::kong_plugins::SecretRef;

pub(crate) const NAME: &str = "grpc-gateway";

/// Which kind of object a reference names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Store {
    Secret,
    ConfigMap,
}

impl Store {
    /// The reference's field name.
    fn field(self) -> &'static str {
        match self {
            Store::Secret => "secretKeyRef",
            Store::ConfigMap => "configMapKeyRef",
        }
    }
}

/// Replaces `proto_from` / `descriptor_set_from` in `config` with the content of the key they
/// name, read by `read`; errors are `(field, message)`.
pub(crate) fn resolve(
    config: &mut Value,
    namespace: &str,
    read: impl Fn(Store, &SecretRef) -> Result<Vec<u8>, String>,
) -> Result<(), Vec<(String, String)>> {
    let Some(members) = config.as_object_mut() else { return Ok(()) };
    let mut errors = Vec::new();
    for (from, into) in [("proto_from", "proto_text"), ("descriptor_set_from", "descriptor_set")] {
        let Some(reference) = members.remove(from) else { continue };
        let field = format!("config.{from}");
        let (store, r) = match key_ref(&reference, namespace) {
            Ok(r) => r,
            Err(e) => {
                errors.push((field, e));
                continue;
            }
        };
        let field = format!("{field}.{}", store.field());
        let bytes = match read(store, &r) {
            Ok(b) => b,
            Err(e) => {
                errors.push((field, e));
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
                    errors.push((field, format!("key '{}' is not UTF-8 text", r.key)));
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

/// The objects a grpc-gateway plugin's `config` reads (the admission webhook fetches them).
pub(crate) fn references(def: &crate::kong_plugins::PluginDef) -> Vec<(Store, SecretRef)> {
    let Some(config) = def.config.as_ref().filter(|_| def.plugin == NAME) else { return Vec::new() };
    ["proto_from", "descriptor_set_from"]
        .iter()
        .filter_map(|from| config.get(from))
        .filter_map(|v| key_ref(v, &def.object.namespace).ok())
        .collect()
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

/// `{secretKeyRef: {name, key[, namespace]}}` or `{configMapKeyRef: {name, key[, namespace]}}`.
fn key_ref(v: &Value, namespace: &str) -> Result<(Store, SecretRef), String> {
    const EXPECTED: &str = "exactly one of secretKeyRef and configMapKeyRef, each {name, key, namespace}";
    let empty = Map::new();
    let members = v.as_object().unwrap_or(&empty);
    let found: Vec<(Store, &Map<String, Value>)> = [Store::Secret, Store::ConfigMap]
        .into_iter()
        .filter_map(|s| members.get(s.field()).and_then(Value::as_object).map(|r| (s, r)))
        .collect();
    let [(store, r)] = found[..] else { return Err(format!("expected {EXPECTED}")) };
    let unknown = r.keys().any(|k| !["name", "key", "namespace"].contains(&k.as_str()));
    if members.len() != 1 || unknown {
        return Err(format!("unknown field in {v}: {EXPECTED}"));
    }
    let text = |k: &str| r.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    let (Some(name), Some(key)) = (text("name"), text("key")) else {
        return Err(format!("{} needs name and key", store.field()));
    };
    Ok((store, SecretRef { namespace: text("namespace").unwrap_or_else(|| namespace.to_string()), name, key }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_become_content() {
        let mut c = json!({"proto_from": {"secretKeyRef": {"name": "api", "key": "lib.proto"}}});
        resolve(&mut c, "ns", |store, r| {
            assert_eq!((store, r.namespace.as_str(), r.name.as_str()), (Store::Secret, "ns", "api"));
            Ok(b"syntax = \"proto3\";".to_vec())
        })
        .unwrap();
        assert_eq!(c, json!({"proto_text": "syntax = \"proto3\";", "proto_name": "lib.proto"}));
        let mut c = json!({"descriptor_set_from": {"secretKeyRef": {"name": "api", "key": "d", "namespace": "o"}}});
        resolve(&mut c, "ns", |_, r| if r.namespace == "o" { Ok(vec![0, 1]) } else { Err("wrong".into()) }).unwrap();
        assert_eq!(c, json!({"descriptor_set": "AAE="}));
        let mut c = json!({"descriptor_set_from": {"configMapKeyRef": {"name": "api", "key": "d"}}});
        resolve(&mut c, "ns", |store, _| if store == Store::ConfigMap { Ok(vec![2]) } else { Err("wrong".into()) })
            .unwrap();
        assert_eq!(c, json!({"descriptor_set": "Ag=="}));
        let mut c = json!({"proto_from": {"configMapKeyRef": {"name": "x", "key": "y"}}});
        let e = resolve(&mut c, "ns", |_, _| Err("ConfigMap ns/x not found".into())).unwrap_err();
        assert_eq!(e[0], ("config.proto_from.configMapKeyRef".to_string(), "ConfigMap ns/x not found".to_string()));
        for bad in [
            json!({"proto_from": {"fileRef": {"name": "x", "key": "y"}}}),
            json!({"proto_from": {"configMapKeyRef": {"name": "x", "key": "y"}, "secretKeyRef": {"name": "x", "key": "y"}}}),
            json!({"proto_from": {"configMapKeyRef": {"name": "x", "key": "y", "optional": true}}}),
        ] {
            let mut c = bad.clone();
            let e = resolve(&mut c, "ns", |_, _| Ok(vec![])).unwrap_err();
            assert_eq!(e[0].0, "config.proto_from", "{bad}");
        }
    }
}
