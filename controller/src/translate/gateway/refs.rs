//! ReferenceGrant checks: a reference into another namespace is allowed only
//! when a ReferenceGrant in the *target* namespace lists the referrer (group, kind, namespace) in
//! `from` and the target (group, kind, optional name) in `to`. Evaluated on every translation, so
//! creating or deleting a grant takes effect on the next rebuild (the grants are watched).

use std::sync::Arc;

use gateway_api::apis::standard::referencegrants::ReferenceGrant;
use kube::ResourceExt;

use super::GATEWAY_GROUP;

/// One side of a reference.
#[derive(Debug, Clone, Copy)]
pub(crate) struct From<'a> {
    pub kind: &'a str,
    pub namespace: &'a str,
}

/// The object referred to. `group` is `""` for core kinds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct To<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

/// Whether the reference from a Gateway API object is allowed: always within a namespace, else
/// only with a grant.
pub(crate) fn permitted(grants: &[Arc<ReferenceGrant>], from: From<'_>, to: To<'_>) -> bool {
    permitted_from_group(grants, GATEWAY_GROUP, from, to)
}

/// Like [`permitted`], for a referrer of any API group (`""` for core kinds; an Ingress or
/// Service naming a KongPlugin in another namespace).
pub(crate) fn permitted_from_group(grants: &[Arc<ReferenceGrant>], group: &str, from: From<'_>, to: To<'_>) -> bool {
    if from.namespace == to.namespace {
        return true;
    }
    grants.iter().filter(|g| g.namespace().as_deref() == Some(to.namespace)).any(|g| {
        let from_ok =
            g.spec.from.iter().any(|f| f.group == group && f.kind == from.kind && f.namespace == from.namespace);
        let to_ok = g.spec.to.iter().any(|t| {
            t.group == to.group && t.kind == to.kind && t.name.as_deref().is_none_or(|n| n.is_empty() || n == to.name)
        });
        from_ok && to_ok
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(ns: &str, from_kind: &str, from_ns: &str, to_name: Option<&str>) -> Arc<ReferenceGrant> {
        let mut value = serde_json::json!({
            "apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
            "metadata": {"name": "g", "namespace": ns},
            "spec": {"from": [{"group": GATEWAY_GROUP, "kind": from_kind, "namespace": from_ns}],
                     "to": [{"group": "", "kind": "Service"}]}
        });
        if let Some(n) = to_name {
            value["spec"]["to"][0]["name"] = n.into();
        }
        Arc::new(serde_json::from_value(value).unwrap())
    }

    const TO: To<'static> = To { group: "", kind: "Service", namespace: "backends", name: "echo" };

    #[test]
    fn same_namespace_needs_no_grant() {
        assert!(permitted(&[], From { kind: "GRPCRoute", namespace: "backends" }, TO));
    }

    #[test]
    fn cross_namespace_needs_a_matching_grant() {
        let from = From { kind: "GRPCRoute", namespace: "apps" };
        assert!(!permitted(&[], from, TO));
        assert!(permitted(&[grant("backends", "GRPCRoute", "apps", None)], from, TO));
        assert!(permitted(&[grant("backends", "GRPCRoute", "apps", Some("echo"))], from, TO));
        assert!(!permitted(&[grant("backends", "GRPCRoute", "apps", Some("other"))], from, TO));
        // A grant for HTTPRoute does not permit a GRPCRoute; a grant elsewhere does not count.
        assert!(!permitted(&[grant("backends", "HTTPRoute", "apps", None)], from, TO));
        assert!(!permitted(&[grant("apps", "GRPCRoute", "apps", None)], from, TO));
        assert!(!permitted(&[grant("backends", "GRPCRoute", "elsewhere", None)], from, TO));
    }
}
