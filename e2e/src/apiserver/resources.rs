//! The kinds the test API server serves: the built-in catalogue and the ones CRDs register.
//!
//! Discovery, routing and storage all look resources up here, so a CustomResourceDefinition created
//! through the API becomes servable (and discoverable by kubectl and kube-rs) the moment it is stored.

use serde_json::{json, Value};

use super::status::{ApiError, Subject};

/// Every verb a stored resource supports.
pub const VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

/// One servable group/version/resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    /// API group; empty for the core group.
    pub group: String,
    /// The version this entry serves (one entry per served version).
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Whether the kind has a `status` subresource (then main-resource writes keep the old status).
    pub status_subresource: bool,
}

impl ResourceType {
    /// `apiVersion` of objects served through this entry.
    pub fn api_version(&self) -> String {
        group_version(&self.group, &self.version)
    }

    /// Names this resource in error details.
    pub fn subject<'a>(&'a self, name: &'a str) -> Subject<'a> {
        Subject { group: &self.group, plural: &self.plural, name }
    }

    /// The APIResource entries of this resource for an APIResourceList (the resource, then its status).
    pub fn discovery_entries(&self) -> Vec<Value> {
        let mut main = json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": VERBS,
        });
        if !self.short_names.is_empty() {
            main["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            main["categories"] = json!(self.categories);
        }
        let mut out = vec![main];
        if self.status_subresource {
            out.push(json!({
                "name": format!("{}/status", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        out
    }
}

/// `group/version`, or just `version` for the core group.
pub fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

struct Builtin {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    status: bool,
}

const fn b(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    status: bool,
) -> Builtin {
    Builtin { group, version, plural, kind, namespaced, short, status }
}

const BUILTINS: &[Builtin] = &[
    b("", "v1", "namespaces", "Namespace", false, &["ns"], true),
    b("", "v1", "services", "Service", true, &["svc"], true),
    b("", "v1", "endpoints", "Endpoints", true, &["ep"], false),
    b("", "v1", "secrets", "Secret", true, &[], false),
    b("", "v1", "configmaps", "ConfigMap", true, &["cm"], false),
    b("", "v1", "events", "Event", true, &["ev"], false),
    b("", "v1", "serviceaccounts", "ServiceAccount", true, &["sa"], false),
    b("", "v1", "pods", "Pod", true, &["po"], true),
    b("apps", "v1", "deployments", "Deployment", true, &["deploy"], true),
    b("events.k8s.io", "v1", "events", "Event", true, &["ev"], false),
    b("coordination.k8s.io", "v1", "leases", "Lease", true, &[], false),
    b("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", true, &[], false),
    b("networking.k8s.io", "v1", "ingresses", "Ingress", true, &["ing"], true),
    b("networking.k8s.io", "v1", "ingressclasses", "IngressClass", false, &[], false),
    b("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", false, &[], false),
    b("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", false, &[], false),
    b("rbac.authorization.k8s.io", "v1", "roles", "Role", true, &[], false),
    b("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", true, &[], false),
    b(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
        true,
    ),
];

/// The built-in resources, in discovery order.
pub fn builtins() -> Vec<ResourceType> {
    BUILTINS
        .iter()
        .map(|x| ResourceType {
            group: x.group.to_string(),
            version: x.version.to_string(),
            plural: x.plural.to_string(),
            singular: x.kind.to_ascii_lowercase(),
            kind: x.kind.to_string(),
            list_kind: format!("{}List", x.kind),
            namespaced: x.namespaced,
            short_names: x.short.iter().map(|s| s.to_string()).collect(),
            categories: Vec::new(),
            status_subresource: x.status,
        })
        .collect()
}

/// Whether `(group, plural)` is the CRD resource itself.
pub fn is_crd(group: &str, plural: &str) -> bool {
    group == "apiextensions.k8s.io" && plural == "customresourcedefinitions"
}

/// The resource types a CustomResourceDefinition object registers: one per served version.
pub fn from_crd(crd: &Value) -> Result<Vec<ResourceType>, ApiError> {
    let name = crd.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let subject = Subject { group: "apiextensions.k8s.io", plural: "customresourcedefinitions", name };
    let invalid = |field: &str, why: &str| ApiError::invalid("CustomResourceDefinition", subject, field, why);
    let text = |ptr: &str| crd.pointer(ptr).and_then(Value::as_str).unwrap_or_default().to_string();
    let group = text("/spec/group");
    let plural = text("/spec/names/plural");
    let kind = text("/spec/names/kind");
    if group.is_empty() {
        return Err(invalid("spec.group", "Required value"));
    }
    if plural.is_empty() {
        return Err(invalid("spec.names.plural", "Required value"));
    }
    if kind.is_empty() {
        return Err(invalid("spec.names.kind", "Required value"));
    }
    if name != format!("{plural}.{group}") {
        return Err(invalid("metadata.name", "must be spec.names.plural+\".\"+spec.group"));
    }
    let namespaced = match text("/spec/scope").as_str() {
        "Namespaced" => true,
        "Cluster" => false,
        _ => return Err(invalid("spec.scope", "Unsupported value: must be Namespaced or Cluster")),
    };
    let mut singular = text("/spec/names/singular");
    if singular.is_empty() {
        singular = kind.to_ascii_lowercase();
    }
    let mut list_kind = text("/spec/names/listKind");
    if list_kind.is_empty() {
        list_kind = format!("{kind}List");
    }
    let strings = |ptr: &str| -> Vec<String> {
        crd.pointer(ptr)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default()
    };
    let short_names = strings("/spec/names/shortNames");
    let categories = strings("/spec/names/categories");
    let versions = crd.pointer("/spec/versions").and_then(Value::as_array).cloned().unwrap_or_default();
    if versions.is_empty() {
        return Err(invalid("spec.versions", "Required value"));
    }
    let mut out = Vec::new();
    for v in &versions {
        let vname = v.get("name").and_then(Value::as_str).unwrap_or_default();
        if vname.is_empty() {
            return Err(invalid("spec.versions.name", "Required value"));
        }
        if v.get("served").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        out.push(ResourceType {
            group: group.clone(),
            version: vname.to_string(),
            plural: plural.clone(),
            singular: singular.clone(),
            kind: kind.clone(),
            list_kind: list_kind.clone(),
            namespaced,
            short_names: short_names.clone(),
            categories: categories.clone(),
            status_subresource: v.pointer("/subresources/status").is_some(),
        });
    }
    Ok(out)
}

/// The status the server gives a stored CRD: its names accepted and the CRD established.
pub fn crd_status(crd: &Value) -> Value {
    let storage: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .filter_map(|v| v.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    let names = crd.pointer("/spec/names").cloned().unwrap_or_else(|| json!({}));
    let now = super::clock::now_rfc3339();
    let cond = |t: &str, reason: &str, message: &str| json!({"type": t, "status": "True", "lastTransitionTime": now, "reason": reason, "message": message});
    json!({
        "acceptedNames": names,
        "conditions": [
            cond("NamesAccepted", "NoConflicts", "no conflicts found"),
            cond("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "storedVersions": storage,
    })
}

/// Kubernetes version ordering: GA before beta before alpha, higher numbers first; others last by name.
pub fn version_priority(v: &str) -> (u8, u32, u32, String) {
    let Some(rest) = v.strip_prefix('v') else {
        return (3, 0, 0, v.to_string());
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let Ok(major) = digits.parse::<u32>() else {
        return (3, 0, 0, v.to_string());
    };
    let tail = &rest[digits.len()..];
    let (stage, minor_text) = if tail.is_empty() {
        (0, "")
    } else if let Some(m) = tail.strip_prefix("beta") {
        (1, m)
    } else if let Some(m) = tail.strip_prefix("alpha") {
        (2, m)
    } else {
        return (3, 0, 0, v.to_string());
    };
    let minor = if minor_text.is_empty() { 0 } else { minor_text.parse::<u32>().unwrap_or(0) };
    (stage, u32::MAX - major, u32::MAX - minor, String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_like_kubernetes() {
        let mut v = vec!["v1alpha2", "v1beta1", "v2", "v1", "foo", "v1beta2"];
        v.sort_by_key(|x| version_priority(x));
        assert_eq!(v, ["v2", "v1", "v1beta2", "v1beta1", "v1alpha2", "foo"]);
    }

    #[test]
    fn crd_registers_served_versions() {
        let crd = json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
                "versions": [
                    {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}}},
                    {"name": "v1beta1", "served": false, "storage": false}]}
        });
        let types = from_crd(&crd).unwrap();
        assert_eq!(types.len(), 1);
        assert_eq!(types[0].singular, "widget");
        assert!(types[0].status_subresource && types[0].namespaced);
        let bad = json!({"metadata": {"name": "x"}, "spec": crd["spec"].clone()});
        assert_eq!(from_crd(&bad).unwrap_err().code, 422);
    }
}
