//! KongConsumers to Kong consumers, with the credentials of the Secrets they name (KIC's
//! `credentials`): a Secret in the consumer's namespace labelled `konghq.com/credential` with
//! `key-auth` (`key`), `basic-auth` (`username`, `password`), `jwt` (`key`, `algorithm`, `secret`
//! or `rsa_public_key`) or `acl` (`group`).
//!
//! A bad credential (a missing Secret, no or an unknown label, a missing or non-UTF-8 key) costs
//! only that credential: it is left out and a problem names the Secret (or the consumer's
//! `credentials[i]`) and the field. Values are never put in a problem (they are credentials).
//! A consumer without `username` and `custom_id`, or whose username clashes with another's, is
//! left out whole. `konghq.com/plugins` on a KongConsumer asks for consumer-scoped plugins, which
//! [`super::plugins`] resolves with the route and service ones (KIC's combinations); a consumer
//! that cannot have a plugin it asked for is left out there. `consumerGroups` are not supported:
//! a problem says so.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use proxy_config::consumers::{AclGroup, BasicAuthCredential, JwtSecret, KeyAuthCredential, JWT_ALGORITHMS};
use proxy_config::Consumer;

use super::annotations::{INGRESS_CLASS, PLUGINS};
use super::{names, plugins, Context, ObjectRef};
use crate::kong_consumers::{KongConsumer, CREDENTIAL_LABEL};

/// Every KongConsumer of the controller's class (or without a class annotation), sorted by
/// namespace and name; the plugins they ask for are recorded in `ctx.consumer_plugin_requests`.
pub(crate) fn translate(ctx: &mut Context<'_>) -> Vec<Consumer> {
    let mut out = Vec::new();
    let mut usernames = HashSet::new();
    let mut sorted: Vec<&KongConsumer> = ctx.snapshot.kong_consumers.iter().map(|k| k.as_ref()).collect();
    sorted.sort_by_cached_key(|k| (k.namespace().unwrap_or_default(), k.name_any()));
    for kc in sorted {
        let object = ObjectRef::of(kc);
        if ctx.is_excluded(&object) {
            continue;
        }
        let class = kc.annotations().get(INGRESS_CLASS);
        if class.is_some_and(|c| *c != ctx.settings.ingress_class) {
            continue;
        }
        if let Some(c) = consumer(ctx, kc, &object) {
            let unique = c.username.as_ref().is_none_or(|u| usernames.insert(u.clone()));
            if unique {
                if let Some(value) = kc.annotations().get(PLUGINS) {
                    let wanted = plugins::from_annotation(&plugins::PluginName::parse_list(value));
                    let consumer = c.display_name().to_string();
                    ctx.consumer_plugin_requests.push(plugins::ConsumerRequest { consumer, referrer: object, wanted });
                }
                out.push(c);
            } else {
                ctx.problem(&object, "username", "another KongConsumer has this username: consumer left out");
            }
        }
    }
    out
}

fn consumer(ctx: &mut Context<'_>, kc: &KongConsumer, object: &ObjectRef) -> Option<Consumer> {
    let username = kc.username.clone().filter(|u| !u.is_empty());
    let custom_id = kc.custom_id.clone().filter(|u| !u.is_empty());
    if username.is_none() && custom_id.is_none() {
        ctx.problem(object, "username", "one of username and custom_id is required: consumer left out");
        return None;
    }
    if kc.consumer_groups.as_ref().is_some_and(|g| !g.is_empty()) {
        ctx.problem(object, "consumerGroups", "consumer groups are not supported by sluice: ignored");
    }
    let spec = kc.spec.clone().unwrap_or_default();
    if spec.control_plane_ref.is_some() {
        ctx.problem(object, "spec.controlPlaneRef", "not supported by sluice: ignored");
    }
    let mut c = Consumer {
        username,
        custom_id,
        tags: names::tags(object, &spec.tags.unwrap_or_default()),
        ..Default::default()
    };
    let namespace = kc.namespace().unwrap_or_default();
    for (i, name) in kc.credentials.iter().flatten().enumerate() {
        let Some(secret) = ctx.secrets_by_name.get(&(namespace.clone(), name.clone())).copied() else {
            ctx.problem(object, format!("credentials[{i}]"), format!("Secret {namespace}/{name} not found"));
            continue;
        };
        if let Err(CredentialError { field, message }) = add_credential(&mut c, secret) {
            ctx.problem(&ObjectRef::of(secret), field, format!("{message}: credential left out of consumer"));
        }
    }
    Some(c)
}

/// Why one credential Secret cannot be used: the field at fault and the reason (no value).
struct CredentialError {
    field: String,
    message: String,
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> CredentialError {
    CredentialError { field: field.into(), message: message.into() }
}

/// A Secret's data (and `stringData`, as files carry it) by key, as UTF-8 text.
fn data(secret: &Secret) -> Result<BTreeMap<String, String>, CredentialError> {
    let mut out = BTreeMap::new();
    for (k, v) in secret.data.iter().flatten() {
        let text = String::from_utf8(v.0.clone()).map_err(|_| bad(format!("data.{k}"), "not UTF-8 text"))?;
        out.insert(k.clone(), text);
    }
    for (k, v) in secret.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone());
    }
    Ok(out)
}

fn add_credential(c: &mut Consumer, secret: &Secret) -> Result<(), CredentialError> {
    let label = format!("metadata.labels.{CREDENTIAL_LABEL}");
    let Some(kind) = secret.labels().get(CREDENTIAL_LABEL).cloned() else {
        return Err(bad(label, "missing: the credential type (key-auth, basic-auth, jwt, acl)"));
    };
    let d = data(secret)?;
    let need =
        |key: &str| d.get(key).filter(|v| !v.is_empty()).cloned().ok_or_else(|| bad(format!("data.{key}"), "required"));
    match kind.as_str() {
        "key-auth" => c.keyauth_credentials.push(KeyAuthCredential { id: None, key: need("key")?, tags: vec![] }),
        "basic-auth" => c.basicauth_credentials.push(BasicAuthCredential {
            id: None,
            username: need("username")?,
            password: need("password")?,
            tags: vec![],
        }),
        "jwt" => {
            let algorithm = d.get("algorithm").cloned().unwrap_or_else(|| "HS256".into());
            if !JWT_ALGORITHMS.contains(&algorithm.as_str()) {
                return Err(bad("data.algorithm", format!("expected one of: {}", JWT_ALGORITHMS.join(", "))));
            }
            let (secret, rsa_public_key) = if algorithm.starts_with("HS") {
                (Some(need("secret")?), None)
            } else {
                let pem = need("rsa_public_key")?;
                if !pem.contains("-----BEGIN") {
                    return Err(bad("data.rsa_public_key", "not a PEM public key"));
                }
                (None, Some(pem))
            };
            c.jwt_secrets.push(JwtSecret {
                id: None,
                key: need("key")?,
                algorithm,
                secret,
                rsa_public_key,
                tags: vec![],
            })
        }
        "acl" => c.acls.push(AclGroup { id: None, group: need("group")?, tags: vec![] }),
        other => {
            return Err(bad(label, format!("unknown credential type '{other}' (key-auth, basic-auth, jwt, acl)")));
        }
    }
    Ok(())
}
