//! The controller's annotation parsers: any keys (mostly the known `konghq.com/*` ones) with any
//! values never panic, and a hostile value (quote, control character, over 1 KiB) is always
//! reported by `check_hostile`, which rejects the whole object.
#![no_main]

use std::collections::BTreeMap;

use controller::translate::annotations::{self as a, check_hostile, route_annotations, service_annotations};
use controller::translate::ObjectRef;
use libfuzzer_sys::fuzz_target;

const KEYS: &[&str] = &[
    a::PROTOCOL,
    a::PROTOCOLS,
    a::PATH,
    a::STRIP_PATH,
    a::PRESERVE_HOST,
    a::METHODS,
    a::HEADERS_SEPARATOR,
    a::HOST_ALIASES,
    a::HOST_HEADER,
    a::REGEX_PRIORITY,
    a::REGEX_PREFIX,
    a::HTTPS_REDIRECT,
    a::SNIS,
    a::CONNECT_TIMEOUT,
    a::READ_TIMEOUT,
    a::WRITE_TIMEOUT,
    a::RETRIES,
    a::REQUEST_BUFFERING,
    a::RESPONSE_BUFFERING,
    a::PATH_HANDLING,
    a::TLS_VERIFY,
    a::TLS_VERIFY_DEPTH,
    a::CA_CERTIFICATES_SECRETS,
    a::TAGS,
    a::SERVICE_UPSTREAM,
    a::FORCE_SSL_REDIRECT,
    a::INGRESS_CLASS,
    "konghq.com/headers.x-fuzz",
    "konghq.com/plugins",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut annotations = BTreeMap::new();
    for item in text.split('\0') {
        let Some(first) = item.chars().next() else { continue };
        let value = &item[first.len_utf8()..];
        // The first character picks a known key; past the list, the value is `key=value`.
        let key = match KEYS.get(first as usize % (KEYS.len() + 1)) {
            Some(k) => k.to_string(),
            None => match value.split_once('=') {
                Some((k, v)) => {
                    annotations.insert(k.to_string(), v.to_string());
                    continue;
                }
                None => continue,
            },
        };
        annotations.insert(key, value.to_string());
    }
    let object = ObjectRef { kind: "Ingress".into(), namespace: "ns".into(), name: "fuzz".into(), uid: String::new() };
    let hostile = check_hostile(&object, &annotations);
    let ours = annotations.iter().filter(|(k, _)| k.starts_with(a::PREFIX));
    let has_hostile_value = ours
        .clone()
        .any(|(_, v)| v.len() > a::MAX_VALUE_LEN || v.chars().any(|c| c == '"' || c == '\'' || c.is_control()));
    if has_hostile_value {
        assert!(hostile.is_some(), "hostile value not reported: {annotations:?}");
    }
    let mut problems = Vec::new();
    let _ = route_annotations(&object, &annotations, &mut problems);
    let _ = service_annotations(&object, &annotations, &mut problems);
});
