//! Entity names, ids and tags exactly as KIC builds them, in one place so that
//! every sub-translator and the push fallback (which maps names/tags back to objects) agree.

use md5::{Digest, Md5};

use super::ObjectRef;

/// Tag prefixes KIC puts on every entity; the push fallback reads them back.
pub(crate) const TAG_NAME: &str = "k8s-name:";
pub(crate) const TAG_NAMESPACE: &str = "k8s-namespace:";
pub(crate) const TAG_KIND: &str = "k8s-kind:";
pub(crate) const TAG_UID: &str = "k8s-uid:";
pub(crate) const TAG_GROUP: &str = "k8s-group:";
pub(crate) const TAG_VERSION: &str = "k8s-version:";

/// Kong service of a Kubernetes Service port: `<ns>.<svc>.<port|portName>`.
pub(crate) fn service_name(namespace: &str, service: &str, port_key: &str) -> String {
    format!("{namespace}.{service}.{port_key}")
}

/// Upstream name and Kong service host: `<svc>.<ns>.<port|portName>.svc`.
pub(crate) fn upstream_name(namespace: &str, service: &str, port_key: &str) -> String {
    format!("{service}.{namespace}.{port_key}.svc")
}

/// Route of an Ingress rule: `<ns>.<ingress>.<svc>.<host>.<port>`; `*` becomes `_` and an empty host
/// leaves an empty segment (`default.web.svc..80`).
pub(crate) fn route_name(namespace: &str, ingress: &str, service: &str, host: &str, port_key: &str) -> String {
    format!("{namespace}.{ingress}.{service}.{}.{port_key}", host.replace('*', "_"))
}

/// Route of an Ingress default backend: `<ns>.<ingress>`.
pub(crate) fn default_backend_route_name(namespace: &str, ingress: &str) -> String {
    format!("{namespace}.{ingress}")
}

/// A deterministic UUID (version 3 layout: MD5 of a namespaced key), so ids never change between
/// runs or replicas.
pub(crate) fn uuid(kind: &str, key: &str) -> String {
    let mut h = Md5::new();
    h.update(b"sluice.konghq.com/");
    h.update(kind.as_bytes());
    h.update(b"/");
    h.update(key.as_bytes());
    let mut b: [u8; 16] = h.finalize().into();
    b[6] = (b[6] & 0x0f) | 0x30;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// The tags of an entity generated from `object`, then the object's `konghq.com/tags`.
pub(crate) fn tags(object: &ObjectRef, extra: &[String]) -> Vec<String> {
    let (group, version) = group_version(&object.kind);
    let mut t = vec![
        format!("{TAG_NAME}{}", object.name),
        format!("{TAG_NAMESPACE}{}", object.namespace),
        format!("{TAG_KIND}{}", object.kind),
    ];
    if !object.uid.is_empty() {
        t.push(format!("{TAG_UID}{}", object.uid));
    }
    if !group.is_empty() {
        t.push(format!("{TAG_GROUP}{group}"));
    }
    t.push(format!("{TAG_VERSION}{version}"));
    for e in extra {
        if !t.contains(e) {
            t.push(e.clone());
        }
    }
    t
}

/// Reads the object an entity came from out of its tags (the inverse of [`tags`]).
pub(crate) fn object_from_tags(tags: &[String]) -> Option<ObjectRef> {
    let find = |p: &str| tags.iter().find_map(|t| t.strip_prefix(p)).map(str::to_string);
    Some(ObjectRef {
        kind: find(TAG_KIND)?,
        namespace: find(TAG_NAMESPACE).unwrap_or_default(),
        name: find(TAG_NAME)?,
        uid: find(TAG_UID).unwrap_or_default(),
    })
}

fn group_version(kind: &str) -> (&'static str, &'static str) {
    match kind {
        "Ingress" | "IngressClass" => ("networking.k8s.io", "v1"),
        "EndpointSlice" => ("discovery.k8s.io", "v1"),
        "GRPCRoute" | "HTTPRoute" | "Gateway" | "GatewayClass" | "ReferenceGrant" => {
            ("gateway.networking.k8s.io", "v1")
        }
        "KongPlugin" | "KongClusterPlugin" | "KongConsumer" => ("configuration.konghq.com", "v1"),
        _ => ("", "v1"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kic_names() {
        assert_eq!(service_name("default", "grpcbin", "80"), "default.grpcbin.80");
        assert_eq!(upstream_name("default", "grpcbin", "grpc"), "grpcbin.default.grpc.svc");
        assert_eq!(route_name("default", "ing", "svc", "*.example.com", "80"), "default.ing.svc._.example.com.80");
        assert_eq!(
            route_name("default", "test-ingress", "test-service", "", "80"),
            "default.test-ingress.test-service..80"
        );
        assert_eq!(default_backend_route_name("ns", "ing"), "ns.ing");
    }

    #[test]
    fn uuid_is_stable_and_well_formed() {
        let a = uuid("certificate", "default/tls");
        assert_eq!(a, uuid("certificate", "default/tls"));
        assert_ne!(a, uuid("certificate", "default/tls2"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "3");
    }

    #[test]
    fn tags_round_trip() {
        let o = ObjectRef { kind: "Service".into(), namespace: "ns".into(), name: "web".into(), uid: "u-1".into() };
        let t = tags(&o, &["team-a".to_string()]);
        assert!(t.contains(&"k8s-version:v1".to_string()) && t.contains(&"team-a".to_string()));
        assert_eq!(object_from_tags(&t), Some(o));
        assert_eq!(object_from_tags(&["x".to_string()]), None);
    }
}
