//! `/version` and legacy (unaggregated) API discovery.
//!
//! kubectl asks `/api` and `/apis` for aggregated discovery first; the server answers the plain
//! `APIVersions`/`APIGroupList` documents with `Content-Type: application/json`, which makes kubectl fall
//! back to fetching each group/version's `APIResourceList`. That keeps one code path for kubectl and
//! kube-rs and reflects CRDs as soon as they are stored.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::resources::{group_version, version_priority, ResourceType};

/// The Kubernetes version the server claims. kubectl's version-dispatching wrapper picks its client from
/// it, so it is a version the installed kubectl (1.32) speaks.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0-sluice-test",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.23",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `/api`: the core group's versions.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

/// Named groups (not core) with their served versions, preferred version first.
fn groups(types: &[ResourceType]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in types.iter().filter(|t| !t.group.is_empty()) {
        let versions = out.entry(t.group.clone()).or_default();
        if !versions.contains(&t.version) {
            versions.push(t.version.clone());
        }
    }
    for versions in out.values_mut() {
        versions.sort_by_key(|v| version_priority(v));
    }
    out
}

fn group_doc(group: &str, versions: &[String]) -> Value {
    let entries: Vec<Value> =
        versions.iter().map(|v| json!({"groupVersion": group_version(group, v), "version": v})).collect();
    json!({
        "name": group,
        "versions": entries,
        "preferredVersion": entries.first().cloned().unwrap_or_else(|| json!({})),
    })
}

/// `/apis`: every named group.
pub fn group_list(types: &[ResourceType]) -> Value {
    let groups: Vec<Value> = groups(types).iter().map(|(g, vs)| group_doc(g, vs)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`: one group, if served.
pub fn group(types: &[ResourceType], name: &str) -> Option<Value> {
    let groups = groups(types);
    let versions = groups.get(name)?;
    let mut doc = group_doc(name, versions);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

/// `/api/v1` or `/apis/<group>/<version>`: the APIResourceList, if that group/version is served.
pub fn resource_list(types: &[ResourceType], group: &str, version: &str) -> Option<Value> {
    let entries: Vec<Value> = types
        .iter()
        .filter(|t| t.group == group && t.version == version)
        .flat_map(ResourceType::discovery_entries)
        .collect();
    if entries.is_empty() {
        return None;
    }
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version(group, version),
        "resources": entries,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::builtins;

    #[test]
    fn discovery_lists_builtins_with_short_names_and_status() {
        let types = builtins();
        let core = resource_list(&types, "", "v1").unwrap();
        let names: Vec<&str> =
            core["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
        assert!(names.contains(&"services") && names.contains(&"services/status"));
        let svc = core["resources"].as_array().unwrap().iter().find(|r| r["name"] == "services").unwrap();
        assert_eq!(svc["shortNames"], json!(["svc"]));
        let list = group_list(&types);
        assert!(list["groups"].as_array().unwrap().iter().any(|g| g["name"] == "networking.k8s.io"));
        assert!(group(&types, "nope").is_none());
        assert!(resource_list(&types, "apps", "v2").is_none());
    }
}
