//! The PATCH flavours kubectl and kube-rs send.
//!
//! - `application/merge-patch+json`: RFC 7386 (kubectl `annotate`, `label`, `patch --type merge`, and
//!   client-side apply of custom resources).
//! - `application/json-patch+json`: RFC 6902 (`kubectl patch --type json`).
//! - `application/strategic-merge-patch+json`: Kubernetes' strategic merge patch, enough of it for
//!   client-side `kubectl apply` of built-in kinds: maps merge, `null` deletes, lists replace except the
//!   well-known merge-keyed lists (containers by name, container ports by containerPort, Service ports by
//!   port, ...), with the `$patch`, `$retainKeys`, `$setElementOrder/` and `$deleteFromPrimitiveList/`
//!   directives honoured.
//! - `application/apply-patch+yaml`: server-side apply, approximated as "maps merge, everything else is
//!   replaced, fields this manager applied last time and dropped now are removed" (see [`server_side_apply`]).

use serde_json::{Map, Value};

use super::status::ApiError;

/// Which patch format a request body is in, from its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchKind {
    /// Maps a request content type to a patch kind.
    pub fn from_content_type(ct: &str) -> Result<Self, ApiError> {
        let base = ct.split(';').next().unwrap_or_default().trim();
        match base {
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/json-patch+json" => Ok(Self::Json),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Ok(Self::Apply),
            _ => Err(ApiError::unsupported_media_type(ct)),
        }
    }
}

/// Parses a JSON body into a value, as a 400 `Status` on failure.
pub fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
}

/// Applies an RFC 7386 merge patch, RFC 6902 JSON patch or strategic merge patch to `current`.
pub fn apply_patch(kind: PatchKind, current: &Value, body: &[u8], obj_kind: &str) -> Result<Value, ApiError> {
    let mut doc = current.clone();
    match kind {
        PatchKind::Merge => json_patch::merge(&mut doc, &parse_json(body)?),
        PatchKind::Json => {
            let ops: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding JSON patch: {e}")))?;
            json_patch::patch(&mut doc, &ops).map_err(|e| {
                let mut err = ApiError::bad_request(format!("the JSON patch could not be applied: {e}"));
                err.code = 422;
                err.reason = "Invalid";
                err
            })?;
        }
        PatchKind::Strategic => {
            let patch = parse_json(body)?;
            if !patch.is_object() {
                return Err(ApiError::bad_request("strategic merge patch must be a JSON object"));
            }
            if strategic_merge(&mut doc, &patch, &mut Vec::new(), obj_kind) {
                doc = Value::Object(Map::new());
            }
        }
        PatchKind::Apply => return Err(ApiError::bad_request("server-side apply is handled by the store")),
    }
    Ok(doc)
}

/// How a list field merges under strategic merge patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListStrategy {
    Replace,
    MergeKey(&'static str),
    MergePrimitives,
}

/// Patch strategies of the built-in list fields kubectl apply touches; everything else replaces.
fn list_strategy(kind: &str, path: &[String]) -> ListStrategy {
    let Some(last) = path.last().map(String::as_str) else {
        return ListStrategy::Replace;
    };
    let parent = path.len().checked_sub(2).and_then(|i| path.get(i)).map(String::as_str);
    let in_container = matches!(parent, Some("containers" | "initContainers" | "ephemeralContainers"));
    match last {
        "containers" | "initContainers" | "ephemeralContainers" => ListStrategy::MergeKey("name"),
        "ports" if in_container => ListStrategy::MergeKey("containerPort"),
        "ports" if kind == "Service" && path.len() == 2 && path[0] == "spec" => ListStrategy::MergeKey("port"),
        "env" if in_container => ListStrategy::MergeKey("name"),
        "volumeMounts" if in_container => ListStrategy::MergeKey("mountPath"),
        "volumeDevices" if in_container => ListStrategy::MergeKey("devicePath"),
        "volumes" | "imagePullSecrets" if parent == Some("spec") => ListStrategy::MergeKey("name"),
        "hostAliases" => ListStrategy::MergeKey("ip"),
        "topologySpreadConstraints" => ListStrategy::MergeKey("topologyKey"),
        "ownerReferences" if parent == Some("metadata") => ListStrategy::MergeKey("uid"),
        "finalizers" if parent == Some("metadata") => ListStrategy::MergePrimitives,
        "conditions" if path.first().map(String::as_str) == Some("status") => ListStrategy::MergeKey("type"),
        _ => ListStrategy::Replace,
    }
}

/// Removes strategic-merge directives from a value that is inserted as a whole.
fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter().filter(|(k, _)| !k.starts_with('$')).map(|(k, v)| (k.clone(), strip_directives(v))).collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

/// Merges a strategic merge patch map into `doc`. Returns true when the patch says `$patch: delete`.
fn strategic_merge(doc: &mut Value, patch: &Value, path: &mut Vec<String>, kind: &str) -> bool {
    let Some(pm) = patch.as_object() else {
        *doc = patch.clone();
        return false;
    };
    match pm.get("$patch").and_then(Value::as_str) {
        Some("delete") => return true,
        Some("replace") => {
            *doc = strip_directives(patch);
            return false;
        }
        _ => {}
    }
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    let mut orders: Vec<(String, Vec<Value>)> = Vec::new();
    for (key, pv) in pm {
        if let Some(field) = key.strip_prefix("$setElementOrder/") {
            if let Some(order) = pv.as_array() {
                orders.push((field.to_string(), order.clone()));
            }
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(gone)) = (doc.get_mut(field), pv.as_array()) {
                list.retain(|x| !gone.contains(x));
            }
            continue;
        }
        if key.starts_with('$') {
            continue;
        }
        let Some(dm) = doc.as_object_mut() else { break };
        match pv {
            Value::Null => {
                dm.remove(key);
            }
            Value::Object(_) => {
                path.push(key.clone());
                let slot = dm.entry(key.clone()).or_insert(Value::Null);
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if strategic_merge(slot, pv, path, kind) {
                    dm.remove(key);
                }
                path.pop();
            }
            Value::Array(items) => {
                path.push(key.clone());
                let strategy = list_strategy(kind, path);
                let slot = dm.entry(key.clone()).or_insert(Value::Array(Vec::new()));
                merge_list(slot, items, strategy, path, kind);
                path.pop();
            }
            other => {
                dm.insert(key.clone(), other.clone());
            }
        }
    }
    if let Some(retain) = pm.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = retain.iter().filter_map(Value::as_str).collect();
        if let Some(dm) = doc.as_object_mut() {
            dm.retain(|k, _| keep.contains(&k.as_str()));
        }
    }
    for (field, order) in orders {
        let strategy = {
            path.push(field.clone());
            let s = list_strategy(kind, path);
            path.pop();
            s
        };
        if let Some(Value::Array(list)) = doc.get_mut(&field) {
            reorder(list, &order, strategy);
        }
    }
    false
}

fn same_element(a: &Value, b: &Value, strategy: ListStrategy) -> bool {
    match strategy {
        ListStrategy::MergeKey(k) => a.get(k).is_some() && a.get(k) == b.get(k),
        _ => a == b,
    }
}

/// Honours `$setElementOrder`: listed elements first, in the given order, then the rest as they were.
fn reorder(list: &mut Vec<Value>, order: &[Value], strategy: ListStrategy) {
    let mut rest = std::mem::take(list);
    for o in order {
        if let Some(i) = rest.iter().position(|x| same_element(x, o, strategy)) {
            list.push(rest.remove(i));
        }
    }
    list.append(&mut rest);
}

fn merge_list(slot: &mut Value, items: &[Value], strategy: ListStrategy, path: &mut Vec<String>, kind: &str) {
    let replace_marker = items.iter().any(|x| x.get("$patch").and_then(Value::as_str) == Some("replace"));
    if strategy == ListStrategy::Replace || replace_marker || !slot.is_array() {
        let kept = items.iter().filter(|x| x.get("$patch").is_none()).map(strip_directives).collect();
        *slot = Value::Array(kept);
        return;
    }
    let Some(list) = slot.as_array_mut() else { return };
    match strategy {
        ListStrategy::MergePrimitives => {
            for x in items {
                if !list.contains(x) {
                    list.push(x.clone());
                }
            }
        }
        ListStrategy::MergeKey(_) => {
            for p in items {
                let delete = p.get("$patch").and_then(Value::as_str) == Some("delete");
                match list.iter().position(|x| same_element(x, p, strategy)) {
                    Some(i) if delete => {
                        list.remove(i);
                    }
                    Some(i) => {
                        let _ = strategic_merge(&mut list[i], p, path, kind);
                    }
                    None if delete => {}
                    None => list.push(strip_directives(p)),
                }
            }
        }
        ListStrategy::Replace => {}
    }
}

/// Server-side apply, approximated: `applied` is merged into `current` (maps merge recursively, lists and
/// scalars are replaced), then every field this manager applied last time (`previous`) and no longer
/// applies is removed. Conflicts between managers are not detected (`force` is implied).
pub fn server_side_apply(current: &Value, applied: &Value, previous: Option<&Value>) -> Value {
    let mut out = current.clone();
    deep_merge(&mut out, applied);
    if let Some(prev) = previous {
        remove_dropped(&mut out, prev, applied);
    }
    out
}

fn deep_merge(doc: &mut Value, patch: &Value) {
    match (doc.as_object_mut(), patch.as_object()) {
        (Some(dm), Some(pm)) => {
            for (k, v) in pm {
                match dm.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => deep_merge(existing, v),
                    _ => {
                        dm.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        _ => *doc = patch.clone(),
    }
}

fn remove_dropped(doc: &mut Value, prev: &Value, now: &Value) {
    let (Some(dm), Some(pm)) = (doc.as_object_mut(), prev.as_object()) else { return };
    for (k, pv) in pm {
        match now.get(k) {
            None => {
                dm.remove(k);
            }
            Some(nv) if pv.is_object() && nv.is_object() => {
                if let Some(child) = dm.get_mut(k) {
                    remove_dropped(child, pv, nv);
                }
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smp(doc: Value, patch: Value, kind: &str) -> Value {
        apply_patch(PatchKind::Strategic, &doc, patch.to_string().as_bytes(), kind).unwrap()
    }

    #[test]
    fn strategic_maps_merge_and_null_deletes() {
        let doc = json!({"metadata": {"annotations": {"a": "1", "b": "2"}}, "spec": {"x": 1}});
        let out = smp(doc, json!({"metadata": {"annotations": {"a": null, "c": "3"}}}), "Service");
        assert_eq!(out, json!({"metadata": {"annotations": {"b": "2", "c": "3"}}, "spec": {"x": 1}}));
    }

    #[test]
    fn service_ports_merge_by_port_with_delete_and_order() {
        let doc = json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 81, "name": "x"}],
            "selector": {"app": "a", "old": "y"}}});
        let patch = json!({"spec": {
            "$setElementOrder/ports": [{"port": 90}, {"port": 80}],
            "ports": [{"port": 80, "name": "web"}, {"port": 81, "$patch": "delete"}, {"port": 90}],
            "selector": {"old": null}}});
        let out = smp(doc, patch, "Service");
        assert_eq!(out["spec"]["ports"], json!([{"port": 90}, {"port": 80, "name": "web"}]));
        assert_eq!(out["spec"]["selector"], json!({"app": "a"}));
    }

    #[test]
    fn unkeyed_lists_replace_and_containers_merge() {
        let doc = json!({"spec": {"rules": [1, 2], "template": {"spec": {"containers": [
            {"name": "a", "image": "i1", "ports": [{"containerPort": 1}]}, {"name": "b", "image": "i2"}]}}}});
        let patch = json!({"spec": {"rules": [3], "template": {"spec": {"containers": [
            {"name": "a", "image": "i3", "ports": [{"containerPort": 2}]}]}}}});
        let out = smp(doc, patch, "Deployment");
        assert_eq!(out["spec"]["rules"], json!([3]));
        let cs = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(cs[0]["image"], "i3");
        assert_eq!(cs[0]["ports"], json!([{"containerPort": 1}, {"containerPort": 2}]));
        assert_eq!(cs[1]["name"], "b");
    }

    #[test]
    fn retain_keys_and_patch_replace() {
        let doc = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}});
        assert_eq!(smp(doc.clone(), patch, "Deployment")["spec"]["strategy"], json!({"type": "Recreate"}));
        let patch = json!({"spec": {"strategy": {"$patch": "replace", "type": "X"}}});
        assert_eq!(smp(doc, patch, "Deployment")["spec"]["strategy"], json!({"type": "X"}));
    }

    #[test]
    fn finalizers_merge_and_delete_from_primitive_list() {
        let doc = json!({"metadata": {"finalizers": ["a", "b"]}});
        let out =
            smp(doc, json!({"metadata": {"finalizers": ["c"], "$deleteFromPrimitiveList/finalizers": ["a"]}}), "X");
        assert_eq!(out["metadata"]["finalizers"], json!(["b", "c"]));
    }

    #[test]
    fn merge_and_json_patches() {
        let doc = json!({"a": {"b": 1, "c": 2}, "l": [1]});
        let out = apply_patch(PatchKind::Merge, &doc, br#"{"a": {"b": null}, "l": [2]}"#, "X").unwrap();
        assert_eq!(out, json!({"a": {"c": 2}, "l": [2]}));
        let ops = br#"[{"op": "add", "path": "/l/-", "value": 5}, {"op": "remove", "path": "/a/c"}]"#;
        let out = apply_patch(PatchKind::Json, &doc, ops, "X").unwrap();
        assert_eq!(out, json!({"a": {"b": 1}, "l": [1, 5]}));
        let failing = br#"[{"op": "test", "path": "/a/b", "value": 9}]"#;
        assert_eq!(apply_patch(PatchKind::Json, &doc, failing, "X").unwrap_err().code, 422);
        assert!(PatchKind::from_content_type("text/plain").is_err());
    }

    #[test]
    fn server_side_apply_removes_what_the_manager_dropped() {
        let current = json!({"spec": {"a": 1, "b": 2, "other": 3}, "status": {}});
        let prev = json!({"spec": {"a": 1, "b": 2}});
        let now = json!({"spec": {"a": 5}});
        assert_eq!(server_side_apply(&current, &now, Some(&prev)), json!({"spec": {"a": 5, "other": 3}, "status": {}}));
    }
}
