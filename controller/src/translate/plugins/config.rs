//! The configuration of a KongPlugin or KongClusterPlugin, as KIC builds it
//! (`kongstate/plugin.go`), then checked with the proxy's own plugin schema:
//! - `config`, or the whole config from `configFrom.secretKeyRef` (the Secret value parsed as
//!   JSON, else YAML; it must be an object), else `{}`;
//! - then each `configPatches[]` entry: the Secret value (JSON) added at the JSON Pointer `path`
//!   with RFC 6902 `add` (the root pointer replaces the whole config);
//! - KIC's CEL rules are checked here too (file mode has no API server to enforce them), and the
//!   fields sluice does not implement are rejected by name;
//! - grpc-gateway's `proto_from` / `descriptor_set_from` Secret or ConfigMap references replaced
//!   by the content (grpc_gateway_source.rs);
//! - finally `proxy_config::check_plugin_config`, so that a plugin the proxy would refuse never
//!   reaches it.
//!
//! Errors are `(field, message)` with the field as a path into the plugin object.

use std::collections::HashMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde_json::Value;

use super::grpc_gateway_source::{self, Store};
use crate::kong_plugins::{PluginDef, SecretRef, CONFIG_MAP_LABEL, SECRET_LABEL};
use crate::translate::certificates::secret_value;

pub(crate) type Secrets<'a> = HashMap<(String, String), &'a Secret>;
/// The labelled ConfigMaps by `(namespace, name)`.
pub(crate) type ConfigMaps<'a> = HashMap<(String, String), &'a ConfigMap>;
type FieldErrors = Vec<(String, String)>;

/// The config of `def`, or everything wrong with it (never empty).
pub(crate) fn build(
    def: &PluginDef,
    secrets: &Secrets<'_>,
    config_maps: &ConfigMaps<'_>,
) -> Result<Value, FieldErrors> {
    let mut errors = FieldErrors::new();
    if def.plugin.is_empty() {
        errors.push(("plugin".into(), "required field missing".into()));
    }
    for field in &def.unsupported {
        errors.push(((*field).to_string(), "not supported by sluice".into()));
    }
    if def.config.is_some() && def.config_from.is_some() {
        errors.push(("configFrom".into(), "Using both config and configFrom fields is not allowed.".into()));
    }
    if def.config_from.is_some() && !def.config_patches.is_empty() {
        errors.push(("configPatches".into(), "Using both configFrom and configPatches fields is not allowed.".into()));
    }
    if def.config.as_ref().is_some_and(|c| !c.is_object() && !c.is_null()) {
        errors.push(("config".into(), "must be an object".into()));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut config = match (&def.config, &def.config_from) {
        (Some(c), _) if c.is_object() => c.clone(),
        (_, Some((field, r))) => {
            let raw = read(secrets, r).map_err(|e| vec![(field.clone(), e)])?;
            let value = serde_json::from_slice::<Value>(&raw)
                .ok()
                .or_else(|| serde_yaml_ng::from_slice::<Value>(&raw).ok())
                .filter(Value::is_object);
            value
                .ok_or_else(|| vec![(field.clone(), format!("{} is neither a JSON nor a YAML object", describe(r)))])?
        }
        _ => Value::Object(Default::default()),
    };
    for (i, (field, path, r)) in def.config_patches.iter().enumerate() {
        let raw = read(secrets, r).map_err(|e| vec![(field.clone(), e)])?;
        let value: Value = serde_json::from_slice(&raw)
            .map_err(|e| vec![(field.clone(), format!("{} is not JSON: {e}", describe(r)))])?;
        add(&mut config, path, value).map_err(|e| vec![(format!("configPatches[{i}].path"), e)])?;
    }
    if def.plugin == grpc_gateway_source::NAME {
        grpc_gateway_source::resolve(&mut config, &def.object.namespace, |store, r| match store {
            Store::Secret => read(secrets, r),
            Store::ConfigMap => read_config_map(config_maps, r),
        })?;
    }
    let problems: FieldErrors = proxy_config::check_plugin_config(&def.plugin, &config)
        .into_iter()
        .map(|e| (if e.field == "name" { "plugin".to_string() } else { e.field }, e.message))
        .map(|(field, message)| (grpc_gateway_source::user_field(def.config.as_ref(), field), message))
        .collect();
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

fn describe(r: &SecretRef) -> String {
    format!("key '{}' of Secret {}/{}", r.key, r.namespace, r.name)
}

/// The bytes of a Secret key.
fn read(secrets: &Secrets<'_>, r: &SecretRef) -> Result<Vec<u8>, String> {
    let Some(secret) = secrets.get(&(r.namespace.clone(), r.name.clone())) else {
        return Err(format!("Secret {}/{} not found", r.namespace, r.name));
    };
    secret_value(secret, &r.key).ok_or_else(|| {
        let stripped = secret.data.is_none() && secret.string_data.is_none();
        if stripped {
            format!(
                "Secret {}/{} has no data: label it {SECRET_LABEL}: \"true\" so that the controller reads it",
                r.namespace, r.name
            )
        } else {
            format!("Secret {}/{} has no key '{}'", r.namespace, r.name, r.key)
        }
    })
}

/// The bytes of a ConfigMap key (`data`, else `binaryData`).
fn read_config_map(config_maps: &ConfigMaps<'_>, r: &SecretRef) -> Result<Vec<u8>, String> {
    let Some(c) = config_maps.get(&(r.namespace.clone(), r.name.clone())) else {
        return Err(format!(
            "ConfigMap {}/{} not found (the controller reads only ConfigMaps labelled {CONFIG_MAP_LABEL}: \"true\")",
            r.namespace, r.name
        ));
    };
    let text = c.data.as_ref().and_then(|d| d.get(&r.key)).map(|v| v.as_bytes().to_vec());
    let binary = || c.binary_data.as_ref().and_then(|d| d.get(&r.key)).map(|v| v.0.clone());
    text.or_else(binary).ok_or_else(|| format!("ConfigMap {}/{} has no key '{}'", r.namespace, r.name, r.key))
}

/// RFC 6902 `add` of `value` at the JSON Pointer `path`; the root pointer (`""` or `"/"`)
/// replaces the document, which must stay an object.
pub(crate) fn add(config: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() || path == "/" {
        if !value.is_object() {
            return Err("a patch of the whole config must be an object".into());
        }
        *config = value;
        return Ok(());
    }
    let pointer = PointerBuf::parse(path).map_err(|e| format!("invalid JSON Pointer '{path}': {e}"))?;
    json_patch::patch(config, &[PatchOperation::Add(AddOperation { path: pointer, value })])
        .map_err(|e| format!("cannot add at '{path}': {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patches_add_members_and_array_items() {
        let mut c = json!({"add": {"headers": ["a:1"]}});
        add(&mut c, "/add/headers/-", json!("b:2")).unwrap();
        add(&mut c, "/add/headers/0", json!("z:0")).unwrap();
        add(&mut c, "/remove", json!({"headers": ["x"]})).unwrap();
        add(&mut c, "/add/querystring", json!(["q:1"])).unwrap();
        assert_eq!(
            c,
            json!({"add": {"headers": ["z:0", "a:1", "b:2"], "querystring": ["q:1"]}, "remove": {"headers": ["x"]}})
        );
        // An existing member is replaced (RFC 6902 add on an object member).
        add(&mut c, "/remove", json!({})).unwrap();
        assert_eq!(c["remove"], json!({}));
    }

    #[test]
    fn patches_need_an_existing_parent_and_a_valid_pointer() {
        let mut c = json!({});
        assert!(add(&mut c, "/a/b", json!(1)).is_err());
        assert!(add(&mut c, "no-slash", json!(1)).is_err());
        assert!(add(&mut c, "", json!([1])).is_err());
        add(&mut c, "", json!({"message": "x"})).unwrap();
        assert_eq!(c, json!({"message": "x"}));
        assert_eq!(c, json!({"message": "x"}), "a failed patch leaves the config alone");
    }
}
