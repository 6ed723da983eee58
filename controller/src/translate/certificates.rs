//! TLS Secrets → Kong certificates and SNIs (as KIC builds them), and CA Secrets → `ca_certificates`.
//!
//! A TLS host is bound to the first Secret that claims it, in Ingress age order (oldest first), as
//! KIC does; a later claim by another Secret is reported. A Secret whose PEM does not parse is left
//! out with a problem on the Secret and on every Ingress that references it; the rest is kept.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use kube::ResourceExt;
use proxy_config::patterns::valid_host_pattern;
use proxy_config::{CaCertificate, Certificate, Sni};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::annotations::{field, ServiceAnnotations, CA_CERTIFICATES_CONFIGMAP, CA_CERTIFICATES_SECRET};
use super::{names, Context, ObjectRef};

type Key = (String, String);

/// Reads a Secret value from `data` (or `stringData`, as written in manifests).
pub(crate) fn secret_value(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    if let Some(v) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return Some(v.0.clone());
    }
    secret.string_data.as_ref().and_then(|d| d.get(key)).map(|s| s.as_bytes().to_vec())
}

/// PEM text holding at least one certificate, every block well-formed.
pub(crate) fn check_certs(pem: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(pem).map_err(|_| "not UTF-8 PEM text".to_string())?;
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        cert.map_err(|e| format!("invalid PEM certificate: {e}"))?;
        n += 1;
    }
    if n == 0 {
        return Err("no PEM certificate found".into());
    }
    Ok(text.to_string())
}

/// The certificate chain and private key of a TLS Secret, checked.
pub(crate) fn load_tls(secret: &Secret) -> Result<(String, String), (String, String)> {
    let cert = secret_value(secret, "tls.crt").ok_or_else(|| ("data.tls.crt".to_string(), "missing".to_string()))?;
    let key = secret_value(secret, "tls.key").ok_or_else(|| ("data.tls.key".to_string(), "missing".to_string()))?;
    let cert = check_certs(&cert).map_err(|e| ("data.tls.crt".to_string(), e))?;
    PrivateKeyDer::from_pem_slice(&key).map_err(|e| ("data.tls.key".to_string(), format!("invalid PEM key: {e}")))?;
    let key = String::from_utf8(key).map_err(|_| ("data.tls.key".to_string(), "not UTF-8 PEM text".to_string()))?;
    Ok((cert, key))
}

/// Certificates for the TLS sections of the accepted Ingresses (given oldest first).
pub(crate) fn translate(ctx: &mut Context<'_>, ingresses: &[&Ingress]) {
    let mut sni_owner: HashMap<String, Key> = HashMap::new();
    let mut loaded: HashMap<Key, Option<(String, String)>> = HashMap::new();
    for ing in ingresses {
        let obj = ObjectRef::of(*ing);
        let Some(tls) = ing.spec.as_ref().and_then(|s| s.tls.as_ref()) else { continue };
        for (i, section) in tls.iter().enumerate() {
            let Some(secret_name) = section.secret_name.as_deref().filter(|s| !s.is_empty()) else { continue };
            let hosts = section.hosts.as_deref().unwrap_or_default();
            if hosts.is_empty() {
                continue;
            }
            let field = format!("spec.tls[{i}].secretName");
            let key: Key = (obj.namespace.clone(), secret_name.to_string());
            let Some(secret) = ctx.secrets_by_name.get(&key).copied() else {
                ctx.problem(
                    &obj,
                    field,
                    format!("Secret {}/{secret_name} not found; its TLS hosts are left out", key.0),
                );
                continue;
            };
            let secret_ref = ObjectRef::of(secret);
            if ctx.is_excluded(&secret_ref) {
                ctx.problem(&obj, field, format!("Secret {}/{secret_name} was rejected by the proxy; left out", key.0));
                continue;
            }
            let pem = loaded
                .entry(key.clone())
                .or_insert_with(|| match load_tls(secret) {
                    Ok(pair) => Some(pair),
                    Err((f, e)) => {
                        ctx.problems.push(super::Problem::new(&secret_ref, f, format!("{e}; certificate left out")));
                        None
                    }
                })
                .clone();
            let Some((cert, private_key)) = pem else {
                ctx.problem(&obj, field, format!("Secret {}/{secret_name} is not a valid TLS Secret; left out", key.0));
                continue;
            };
            let id = names::uuid("certificate", &format!("{}/{}", key.0, key.1));
            let mut snis = Vec::new();
            for (h, host) in hosts.iter().enumerate() {
                let host = host.to_ascii_lowercase();
                if valid_host_pattern(&host).is_err() || host.contains(':') {
                    ctx.problem(&obj, format!("spec.tls[{i}].hosts[{h}]"), format!("invalid TLS host '{host}'"));
                    continue;
                }
                match sni_owner.get(&host) {
                    None => {
                        sni_owner.insert(host.clone(), key.clone());
                        snis.push(host);
                    }
                    Some(owner) if *owner == key => {}
                    Some(owner) => ctx.problem(
                        &obj,
                        format!("spec.tls[{i}].hosts[{h}]"),
                        format!(
                            "host '{host}' is already served by Secret {}/{} (the oldest Ingress wins)",
                            owner.0, owner.1
                        ),
                    ),
                }
            }
            let entry = ctx.certificates.entry(id.clone()).or_insert_with(|| Certificate {
                id: Some(id),
                cert,
                key: private_key,
                snis: Vec::new(),
                tags: names::tags(&secret_ref, &[]),
            });
            entry.snis.extend(snis.into_iter().map(Sni::Name));
        }
    }
    // Certificates without SNIs are kept only when a service presents them to its upstream.
    let presented: std::collections::HashSet<String> = ctx
        .kong_services
        .values()
        .filter_map(|k| k.service.client_certificate.as_ref())
        .map(|r| r.to_string())
        .collect();
    ctx.certificates.retain(|id, c| !c.snis.is_empty() || presented.contains(id));
    for c in ctx.certificates.values_mut() {
        c.snis.sort_by(|a, b| a.name().cmp(b.name()));
    }
}

/// The certificate of TLS Secret `namespace/name`, presented to a service's upstream
/// (`konghq.com/client-cert`), added to the config; `None` with a problem on `referrer` when
/// unusable. The id is the one an Ingress TLS section naming the same Secret gets, so one Secret
/// is one certificate.
pub(crate) fn client_certificate(
    ctx: &mut Context<'_>,
    namespace: &str,
    name: &str,
    referrer: &ObjectRef,
) -> Option<proxy_config::EntityRef> {
    let field = super::annotations::field(super::annotations::CLIENT_CERT);
    let Some(secret) = ctx.secrets_by_name.get(&(namespace.to_string(), name.to_string())).copied() else {
        ctx.problem(referrer, field, format!("client certificate Secret {namespace}/{name} not found; left out"));
        return None;
    };
    let secret_ref = ObjectRef::of(secret);
    let id = names::uuid("certificate", &format!("{namespace}/{name}"));
    if !ctx.certificates.contains_key(&id) {
        match load_tls(secret) {
            Ok((cert, key)) => {
                let tags = names::tags(&secret_ref, &[]);
                let c = Certificate { id: Some(id.clone()), cert, key, snis: Vec::new(), tags };
                ctx.certificates.insert(id.clone(), c);
            }
            Err((f, e)) => {
                ctx.problem(&secret_ref, f, format!("{e}; certificate left out"));
                ctx.problem(
                    referrer,
                    field,
                    format!("client certificate Secret {namespace}/{name} is invalid; left out"),
                );
                return None;
            }
        }
    }
    Some(proxy_config::EntityRef::Object(proxy_config::EntityRefObject { name: None, id: Some(id) }))
}

/// The id of the CA certificate held by Secret `namespace/name` (key `ca.crt`, or `cert` as in KIC's
/// CA Secrets), adding it to the config; `None` with a problem on `referrer` when unusable.
pub(crate) fn ca_certificate(
    ctx: &mut Context<'_>,
    namespace: &str,
    name: &str,
    referrer: &ObjectRef,
) -> Option<String> {
    let field = field(CA_CERTIFICATES_SECRET);
    let Some(secret) = ctx.secrets_by_name.get(&(namespace.to_string(), name.to_string())).copied() else {
        ctx.problem(referrer, field, format!("CA Secret {namespace}/{name} not found; left out"));
        return None;
    };
    let secret_ref = ObjectRef::of(secret);
    let id = names::uuid("ca_certificate", &format!("{namespace}/{name}"));
    if ctx.ca_certificates.contains_key(&id) {
        return Some(id);
    }
    let pem = secret_value(secret, "ca.crt").or_else(|| secret_value(secret, "cert"));
    match pem.as_deref().map(check_certs) {
        Some(Ok(cert)) => {
            let tags = names::tags(&secret_ref, &[]);
            ctx.ca_certificates.insert(id.clone(), CaCertificate { id: id.clone(), cert, cert_digest: None, tags });
            Some(id)
        }
        Some(Err(e)) => {
            ctx.problem(&secret_ref, "data.ca.crt", format!("{e}; CA certificate left out"));
            ctx.problem(referrer, field, format!("CA Secret {namespace}/{name} is invalid; left out"));
            None
        }
        None => {
            ctx.problem(referrer, field, format!("CA Secret {namespace}/{name} has no ca.crt; left out"));
            None
        }
    }
}

/// The ids of the CA certificates a verifying TLS upstream is checked against: the Secrets named by
/// `konghq.com/ca-certificates-secret` and the ConfigMaps named by
/// `konghq.com/ca-certificates-configmap`, in `namespace`. Unusable ones are left out with a problem
/// on `referrer`, and so are both lists when the service is not TLS with `konghq.com/tls-verify`.
pub(crate) fn upstream_ca_ids(
    ctx: &mut Context<'_>,
    namespace: &str,
    ann: &ServiceAnnotations,
    referrer: &ObjectRef,
    tls: bool,
) -> Vec<String> {
    if ann.ca_certificates_secrets.is_empty() && ann.ca_certificates_config_maps.is_empty() {
        return Vec::new();
    }
    if !tls || ann.tls_verify != Some(true) {
        let key =
            if ann.ca_certificates_secrets.is_empty() { CA_CERTIFICATES_CONFIGMAP } else { CA_CERTIFICATES_SECRET };
        let message = "ignored: CA certificates need konghq.com/tls-verify: \"true\" and protocol https or grpcs";
        ctx.problem(referrer, field(key), message);
        return Vec::new();
    }
    let mut ids: Vec<String> = Vec::new();
    for secret in &ann.ca_certificates_secrets {
        ids.extend(ca_certificate(ctx, namespace, secret, referrer));
    }
    for config_map in &ann.ca_certificates_config_maps {
        ids.extend(ca_certificate_from_config_map(ctx, namespace, config_map, referrer));
    }
    ids.sort();
    ids.dedup();
    ids
}

/// The id of the CA bundle in ConfigMap `namespace/name` (key `ca.crt`), adding it to the config;
/// `None` with a problem on `referrer` when unusable. The id is the one a BackendTLSPolicy naming
/// the same ConfigMap gives it (one entity).
fn ca_certificate_from_config_map(
    ctx: &mut Context<'_>,
    namespace: &str,
    name: &str,
    referrer: &ObjectRef,
) -> Option<String> {
    let field = field(CA_CERTIFICATES_CONFIGMAP);
    let snapshot = ctx.snapshot;
    let found =
        snapshot.config_maps.iter().find(|c| c.namespace().as_deref() == Some(namespace) && c.name_any() == name);
    let Some(config_map) = found else {
        ctx.problem(referrer, field, format!("CA ConfigMap {namespace}/{name} not found; left out"));
        return None;
    };
    let id = names::uuid("ca_certificate", &format!("configmap/{namespace}/{name}"));
    if ctx.ca_certificates.contains_key(&id) {
        return Some(id);
    }
    let Some(pem) = config_map.data.as_ref().and_then(|d| d.get("ca.crt")) else {
        ctx.problem(referrer, field, format!("CA ConfigMap {namespace}/{name} has no ca.crt; left out"));
        return None;
    };
    match check_certs(pem.as_bytes()) {
        Ok(cert) => {
            let tags = names::tags(&ObjectRef::of(config_map.as_ref()), &[]);
            ctx.ca_certificates.insert(id.clone(), CaCertificate { id: id.clone(), cert, cert_digest: None, tags });
            Some(id)
        }
        Err(e) => {
            ctx.problem(&ObjectRef::of(config_map.as_ref()), "data.ca.crt", format!("{e}; CA certificate left out"));
            ctx.problem(referrer, field, format!("CA ConfigMap {namespace}/{name} is invalid; left out"));
            None
        }
    }
}
