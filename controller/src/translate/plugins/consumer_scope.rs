//! Consumer-scoped plugins: `konghq.com/plugins` on a KongConsumer, combined with the route and
//! service references of the same KongPlugin the way KIC combines them
//! (`internal/util/rels/relations.go` in KIC):
//! - a KongPlugin that KongConsumers ask for and that no route or service of the consumer's
//!   namespace asks for → one instance per consumer (Kong's `consumer` row);
//! - the same KongPlugin also asked for by routes or services → one instance per consumer ×
//!   route and per consumer × service (`route+consumer`, `service+consumer`), and **no**
//!   consumer-only, route-only or service-only instance: this is how KIC says "limit consumer X
//!   on route Y". Route+service(+consumer) instances cannot be written with KIC's annotations.
//!
//! A combination is keyed by the referrer's namespace and the plugin object, as KIC keys it, so
//! a KongClusterPlugin named from two namespaces is combined per namespace.
//!
//! Kong's `no_consumer` plugins (the authentication plugins and acl) cannot be consumer-scoped,
//! and one consumer cannot have two consumer-only instances of one plugin name: either is a
//! problem on the KongConsumer naming the plugin, and the consumer is left out (fail closed, as
//! a route that cannot have a plugin it asked for: its credentials stop working rather than its
//! limits). Consumer-scoped instances are nested under their consumer (`consumers[].plugins`),
//! so a consumer known only by its `custom_id` can have them too.

use std::collections::{BTreeMap, BTreeSet};

use proxy_config::consumers::AUTH_PLUGINS;

use super::{find, Catalog, PluginError, Ready, Wanted};
use crate::translate::{annotations, Context, ObjectRef, Problem};

/// Kong's `no_consumer` plugins besides the authentication ones.
const NO_CONSUMER: &[&str] = &["acl", "cors"];

/// A KongConsumer that asks for plugins, by its Kong consumer's name (username, else custom_id).
#[derive(Debug, Clone)]
pub(crate) struct ConsumerRequest {
    pub consumer: String,
    pub referrer: ObjectRef,
    pub wanted: Vec<Wanted>,
}

/// `(referrer namespace, plugin object)`: what KIC combines on.
pub(super) type Key = (String, ObjectRef);

/// The consumer-scoped plugins of a translation.
#[derive(Default)]
pub(super) struct ConsumerScoped {
    /// The consumers asking for each plugin.
    pub(super) by_plugin: BTreeMap<Key, (Ready, Vec<String>)>,
    /// The plugins also asked for by a route or service (no consumer-only instance then).
    pub(super) combined: BTreeSet<Key>,
    /// Consumers left out, by name.
    pub(super) failed: BTreeSet<String>,
    /// Which KongConsumer each consumer came from.
    pub(super) referrers: BTreeMap<String, ObjectRef>,
}

impl ConsumerScoped {
    /// The consumers a plugin used by `referrer` is combined with (`[None]` = not combined), and
    /// records the combination.
    pub(super) fn consumers_for(&mut self, referrer: &ObjectRef, plugin: &ObjectRef) -> Vec<Option<String>> {
        let key = (referrer.namespace.clone(), plugin.clone());
        match self.by_plugin.get(&key) {
            Some((_, consumers)) => {
                let out = consumers.iter().cloned().map(Some).collect();
                self.combined.insert(key);
                out
            }
            None => vec![None],
        }
    }

    /// The consumer-only instances `(consumer, ready)`: plugins no route or service combined
    /// with. Two of one plugin name on one consumer leave that consumer out.
    pub(super) fn consumer_only(&mut self, problems: &mut Vec<Problem>) -> Vec<(String, Ready)> {
        let mut names: BTreeMap<(String, String), ObjectRef> = BTreeMap::new();
        let mut out = Vec::new();
        for (key, (ready, consumers)) in &self.by_plugin {
            if self.combined.contains(key) {
                continue;
            }
            for c in consumers {
                let slot = (c.clone(), ready.def.plugin.clone());
                if let Some(other) = names.get(&slot).filter(|o| **o != ready.def.object) {
                    if let Some(referrer) = self.referrers.get(c) {
                        let e = PluginError::Conflict {
                            plugin: Box::new(ready.def.object.clone()),
                            name: ready.def.plugin.clone(),
                            other: other.to_string(),
                        };
                        problems.push(Problem::new(
                            referrer,
                            annotations::field(annotations::PLUGINS),
                            format!("{e}; consumer {c} left out"),
                        ));
                    }
                    self.failed.insert(c.clone());
                    continue;
                }
                names.insert(slot, ready.def.object.clone());
                out.push((c.clone(), ready.clone()));
            }
        }
        out
    }
}

/// Resolves what each KongConsumer asks for. See the module documentation.
pub(super) fn resolve(
    ctx: &Context<'_>,
    catalog: &mut Catalog<'_>,
    requests: Vec<ConsumerRequest>,
    problems: &mut Vec<Problem>,
) -> ConsumerScoped {
    let mut out = ConsumerScoped::default();
    for r in requests {
        out.referrers.insert(r.consumer.clone(), r.referrer.clone());
        let mut ok = Vec::new();
        for wanted in &r.wanted {
            let result = find(ctx, catalog, &r.referrer, &wanted.plugin).cloned().and_then(|def| {
                let excluded = ctx.is_excluded(&def.object);
                catalog.ready(&def, excluded)
            });
            let result = result.and_then(|ready| {
                let name = ready.def.plugin.as_str();
                if AUTH_PLUGINS.contains(&name) || NO_CONSUMER.contains(&name) {
                    return Err(PluginError::NotConsumerScoped {
                        plugin: Box::new(ready.def.object.clone()),
                        name: name.to_string(),
                    });
                }
                Ok(ready)
            });
            match result {
                Ok(ready) => ok.push(ready),
                Err(e) => {
                    let consumer = &r.consumer;
                    problems.push(Problem::new(
                        &r.referrer,
                        wanted.field.clone(),
                        format!("{e}; consumer {consumer} left out"),
                    ));
                    if let Some((plugin, errors)) = e.plugin() {
                        for (field, message) in errors {
                            problems.push(Problem::new(
                                plugin,
                                field,
                                format!("{message}; consumer {consumer} of {} left out", r.referrer),
                            ));
                        }
                    }
                    out.failed.insert(r.consumer.clone());
                }
            }
        }
        if out.failed.contains(&r.consumer) {
            continue;
        }
        for ready in ok {
            let key = (r.referrer.namespace.clone(), ready.def.object.clone());
            let entry = out.by_plugin.entry(key).or_insert_with(|| (ready, Vec::new()));
            if !entry.1.contains(&r.consumer) {
                entry.1.push(r.consumer.clone());
            }
        }
    }
    out
}
