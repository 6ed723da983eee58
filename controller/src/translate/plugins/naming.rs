//! Plugin entity ids, instance names and tags exactly as KIC generates them, so
//! that a config written by sluice diffs cleanly against one written by KIC:
//! - `id`: go-kong's `Plugin.FillID`, a UUIDv5 in the `plugins` namespace (itself the UUIDv5 of
//!   `plugins` under go-kong's Kong-entities namespace) of
//!   `<name>[:service/<S>][:route/<R>][:consumer/<C>]`;
//! - `instance_name`: the KongPlugin's, suffixed `-` + the first 9 hex digits of the SHA-256 of
//!   `_service-<S>_route-<R>_consumer-<C>_group-<G>`, so one KongPlugin can name an instance on
//!   each entity it is attached to (Kong wants instance names unique);
//! - tags: the KongPlugin's `k8s-name`, `k8s-namespace` (cluster plugins have none), `k8s-kind`,
//!   `k8s-uid`, `k8s-group`, `k8s-version`.

use ring::digest::{digest, SHA1_FOR_LEGACY_USE_ONLY, SHA256};

use crate::translate::{names, ObjectRef};

/// go-kong's namespace of Kong entity ids.
const KONG_ENTITIES_NAMESPACE: [u8; 16] =
    [0xfd, 0x02, 0x80, 0x1f, 0x09, 0x57, 0x4a, 0x15, 0xa5, 0x5a, 0xc8, 0xd9, 0x60, 0x6f, 0x30, 0xb5];

/// RFC 9562 UUID version 5: SHA-1 of namespace + name.
fn uuid5(namespace: &[u8; 16], name: &[u8]) -> [u8; 16] {
    let mut input = Vec::with_capacity(16 + name.len());
    input.extend_from_slice(namespace);
    input.extend_from_slice(name);
    let hash = digest(&SHA1_FOR_LEGACY_USE_ONLY, &input);
    let mut b = [0u8; 16];
    b.copy_from_slice(&hash.as_ref()[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    b
}

fn format_uuid(b: &[u8; 16]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// The id of a plugin named `name` on the given service, route and/or consumer (all `None` =
/// global).
pub(crate) fn plugin_id(name: &str, service: Option<&str>, route: Option<&str>, consumer: Option<&str>) -> String {
    let namespace = uuid5(&KONG_ENTITIES_NAMESPACE, b"plugins");
    let mut key = name.to_string();
    if let Some(s) = service {
        key.push_str(":service/");
        key.push_str(s);
    }
    if let Some(r) = route {
        key.push_str(":route/");
        key.push_str(r);
    }
    if let Some(c) = consumer {
        key.push_str(":consumer/");
        key.push_str(c);
    }
    format_uuid(&uuid5(&namespace, key.as_bytes()))
}

/// The instance name of a KongPlugin's `instance_name` on one entity.
pub(crate) fn instance_name(base: &str, service: Option<&str>, route: Option<&str>, consumer: Option<&str>) -> String {
    if service.is_none() && route.is_none() && consumer.is_none() {
        return base.to_string();
    }
    let key = format!(
        "_service-{}_route-{}_consumer-{}_group-",
        service.unwrap_or(""),
        route.unwrap_or(""),
        consumer.unwrap_or("")
    );
    let hash = digest(&SHA256, key.as_bytes());
    let hex: String = hash.as_ref().iter().map(|x| format!("{x:02x}")).collect();
    format!("{base}-{}", &hex[..9])
}

/// The tags of a plugin entity generated from `object`.
pub(crate) fn tags(object: &ObjectRef) -> Vec<String> {
    let mut t = names::tags(object, &[]);
    if object.namespace.is_empty() {
        t.retain(|tag| tag != names::TAG_NAMESPACE);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid5_matches_the_rfc_algorithm() {
        // Python: uuid.uuid5(uuid.NAMESPACE_DNS, "python.org")
        let dns = [0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8];
        assert_eq!(format_uuid(&uuid5(&dns, b"python.org")), "886313e1-3b8a-5372-9b90-0c9aee199e5d");
    }

    #[test]
    fn ids_depend_on_name_and_scope() {
        let route = plugin_id("cors", None, Some("default.web.web..80"), None);
        assert_eq!(route, plugin_id("cors", None, Some("default.web.web..80"), None));
        assert_ne!(route, plugin_id("cors", Some("default.web.web..80"), None, None));
        assert_ne!(route, plugin_id("cors", None, None, None));
        assert_ne!(route, plugin_id("correlation-id", None, Some("default.web.web..80"), None));
        assert_ne!(route, plugin_id("cors", None, Some("default.web.web..80"), Some("alice")));
        assert_eq!(&route[14..15], "5");
    }

    #[test]
    fn instance_names_get_a_per_entity_suffix() {
        let a = instance_name("mine", None, Some("r1"), None);
        let b = instance_name("mine", None, Some("r2"), None);
        assert!(a.starts_with("mine-") && a.len() == "mine-".len() + 9, "{a}");
        assert_ne!(a, b);
        assert_ne!(a, instance_name("mine", Some("r1"), None, None));
        assert_eq!(instance_name("mine", None, None, None), "mine");
        assert_ne!(a, instance_name("mine", None, Some("r1"), Some("alice")));
    }

    #[test]
    fn cluster_plugins_have_no_namespace_tag() {
        let o =
            ObjectRef { kind: "KongClusterPlugin".into(), namespace: String::new(), name: "g".into(), uid: "u".into() };
        let t = tags(&o);
        assert!(!t.iter().any(|t| t.starts_with(names::TAG_NAMESPACE)), "{t:?}");
        assert!(t.contains(&"k8s-group:configuration.konghq.com".to_string()), "{t:?}");
        assert_eq!(names::object_from_tags(&t), Some(o));
    }
}
