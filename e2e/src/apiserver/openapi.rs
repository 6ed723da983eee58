//! OpenAPI v3 documents, only as far as kubectl 1.32 needs them.
//!
//! kubectl (`apply`, `create -f`, `replace`) validates with `--validate=strict` by default: it looks in
//! `/openapi/v3` for the group/version of each object and checks that the PATCH operation for its
//! `x-kubernetes-group-version-kind` declares the `fieldValidation` query parameter; then it lets the server
//! validate. Without OpenAPI it aborts ("failed to download openapi"). So every served group/version gets a
//! document with one PATCH operation per resource type, carrying that parameter and no schemas.
//!
//! The PATCH operations deliberately declare no request body: kubectl's client-side apply then does not
//! look for a strategic-merge schema here and falls back to the patch strategies compiled into kubectl for
//! built-in kinds (and to JSON merge patch for custom resources). `/openapi/v2` is not served (404);
//! kubectl only needs it when v3 is missing.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use serde_json::{json, Value};

use super::resources::ResourceType;

/// The URL path segment of a group/version, as the OpenAPI v3 root names it (`api/v1`, `apis/apps/v1`).
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn patch_operation(t: &ResourceType) -> Value {
    let param = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    json!({
        "patch": {
            "operationId": format!("patch{}", t.kind),
            "parameters": [param("dryRun"), param("fieldManager"), param("fieldValidation"), param("force")],
            "responses": {"200": {"description": "OK"}},
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": {"group": t.group, "version": t.version, "kind": t.kind},
        }
    })
}

/// The document for one group/version, if any resource type is served there.
fn gv_document(types: &[ResourceType], group: &str, version: &str) -> Option<Value> {
    let mut paths = serde_json::Map::new();
    for t in types.iter().filter(|t| t.group == group && t.version == version) {
        let base = format!("/{}", gv_path(group, version));
        let path = if t.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", t.plural)
        } else {
            format!("{base}/{}/{{name}}", t.plural)
        };
        paths.insert(path, patch_operation(t));
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "sluice test API server (test tool)", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

fn hash_of(v: &Value) -> String {
    let mut h = DefaultHasher::new();
    v.to_string().hash(&mut h);
    format!("{:016X}", h.finish())
}

/// The document at `/openapi/<rest>`, if served: the v3 root, or one group/version's document.
pub fn serve(types: &[ResourceType], rest: &[&str], _query: Option<&str>) -> Option<Value> {
    match rest {
        ["v3"] => {
            let mut gvs: BTreeMap<String, String> = BTreeMap::new();
            for t in types {
                let p = gv_path(&t.group, &t.version);
                if let std::collections::btree_map::Entry::Vacant(slot) = gvs.entry(p) {
                    slot.insert(hash_of(&gv_document(types, &t.group, &t.version)?));
                }
            }
            let paths: serde_json::Map<String, Value> = gvs
                .into_iter()
                .map(|(p, hash)| {
                    let url = format!("/openapi/v3/{p}?hash={hash}");
                    (p, json!({"serverRelativeURL": url}))
                })
                .collect();
            Some(json!({"paths": paths}))
        }
        ["v3", "api", version] => gv_document(types, "", version),
        ["v3", "apis", group, version] => gv_document(types, group, version),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::builtins;

    #[test]
    fn root_links_every_group_version_and_documents_patch() {
        let types = builtins();
        let root = serve(&types, &["v3"], None).unwrap();
        let url = root["paths"]["apis/networking.k8s.io/v1"]["serverRelativeURL"].as_str().unwrap();
        assert!(url.starts_with("/openapi/v3/apis/networking.k8s.io/v1?hash="));
        let doc = serve(&types, &["v3", "apis", "networking.k8s.io", "v1"], None).unwrap();
        let op = &doc["paths"]["/apis/networking.k8s.io/v1/namespaces/{namespace}/ingresses/{name}"]["patch"];
        assert_eq!(op["x-kubernetes-group-version-kind"]["kind"], "Ingress");
        assert!(op["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation"));
        assert!(serve(&types, &["v2"], None).is_none());
    }
}
