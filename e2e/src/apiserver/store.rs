//! In-memory object storage with Kubernetes write semantics and a bounded event history.
//!
//! One global `resourceVersion` counter orders every write. Each write appends an event to a bounded
//! history that watches replay from (older than the history → `410 Gone`) and then follow live through a
//! `tokio::sync::watch` channel carrying the newest resourceVersion. Creating, changing or deleting a
//! CustomResourceDefinition (re-)registers its resource types, so discovery and routing see them at once.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Map, Value};
use tokio::sync::watch;

use super::clock;
use super::patch::{self, PatchKind};
use super::resources::{self, ResourceType};
use super::selector::{FieldSelector, LabelSelector};
use super::status::{ApiError, Subject};

/// Which part of an object a write targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Sub {
    /// The object itself (`.status` is kept as stored when the kind has a status subresource).
    Main,
    /// The `status` subresource (only `.status` changes).
    Status,
}

/// The kind of change a watch event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    /// The wire name (`ADDED`, `MODIFIED`, `DELETED`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One stored change, kept in the bounded history for watches.
#[derive(Debug, Clone)]
pub struct Event {
    pub rv: u64,
    pub group: String,
    pub plural: String,
    pub namespace: String,
    pub kind: EventType,
    /// The object after the change (the last state for deletions).
    pub object: Arc<Value>,
    /// The object before a modification, so selector watches can turn it into ADDED/DELETED.
    pub previous: Option<Arc<Value>>,
}

/// What a list or watch selects.
#[derive(Debug, Clone)]
pub struct Filter {
    pub group: String,
    pub plural: String,
    /// `None` lists across all namespaces (and for cluster-scoped kinds).
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    fn selects(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }

    fn covers(&self, group: &str, plural: &str, namespace: &str) -> bool {
        self.group == group && self.plural == plural && self.namespace.as_deref().is_none_or(|n| n == namespace)
    }

    /// The event type a watcher with this filter sees for `ev`, if any.
    pub fn event_type(&self, ev: &Event) -> Option<EventType> {
        if !self.covers(&ev.group, &ev.plural, &ev.namespace) {
            return None;
        }
        let now = self.selects(&ev.object);
        match ev.kind {
            EventType::Modified => {
                let before = ev.previous.as_deref().is_some_and(|p| self.selects(p));
                match (before, now) {
                    (true, true) => Some(EventType::Modified),
                    (false, true) => Some(EventType::Added),
                    (true, false) => Some(EventType::Deleted),
                    (false, false) => None,
                }
            }
            kind => now.then_some(kind),
        }
    }
}

/// An event as one watcher sees it: its type for that watcher and the object.
pub type Seen = (EventType, Arc<Value>);

/// A watch asked for events the history no longer holds.
#[derive(Debug, Clone, Copy)]
pub struct Expired {
    pub requested: u64,
    pub oldest: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ObjKey {
    group: String,
    plural: String,
    namespace: String,
    name: String,
}

#[derive(Debug, Clone)]
struct Stored {
    value: Value,
    /// The last configuration each server-side-apply field manager applied, per subresource.
    applied: BTreeMap<(String, Sub), Value>,
}

#[derive(Debug)]
struct State {
    rv: u64,
    builtins: Vec<ResourceType>,
    /// Types registered by stored CRDs, by CRD name.
    crd_types: BTreeMap<String, Vec<ResourceType>>,
    objects: BTreeMap<ObjKey, Stored>,
    history: VecDeque<Event>,
    /// The newest resourceVersion dropped from the history (0 when nothing was dropped).
    compacted: u64,
    next_cluster_ip: u32,
}

/// The object store. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Store {
    state: Mutex<State>,
    latest: watch::Sender<u64>,
    history_limit: usize,
}

/// Namespaces that exist from the start, as in a fresh cluster.
const INITIAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

fn meta_str<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get("metadata").and_then(|m| m.get(field)).and_then(Value::as_str).unwrap_or_default()
}

fn metadata_mut(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    let Value::Object(obj) = v else { unreachable!("made an object above") };
    let meta = obj.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    match meta {
        Value::Object(m) => m,
        _ => unreachable!("made an object above"),
    }
}

/// The object without the parts that do not count as a spec change (metadata and status).
fn spec_part(v: &Value) -> Value {
    let mut c = v.clone();
    if let Some(m) = c.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    c
}

/// The object without its resourceVersion, to detect no-op writes.
fn without_rv(v: &Value) -> Value {
    let mut c = v.clone();
    metadata_mut(&mut c).remove("resourceVersion");
    c
}

/// Sets `apiVersion` and `kind` to what the requested resource type serves.
pub fn render(rt: &ResourceType, v: &Value) -> Value {
    let mut out = v.clone();
    if let Some(m) = out.as_object_mut() {
        m.insert("apiVersion".into(), json!(rt.api_version()));
        m.insert("kind".into(), json!(rt.kind));
    }
    out
}

impl State {
    fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.all_types().find(|t| t.group == group && t.version == version && t.plural == plural)
    }

    fn all_types(&self) -> impl Iterator<Item = &ResourceType> {
        self.builtins.iter().chain(self.crd_types.values().flatten())
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn record(&mut self, limit: usize, ev: Event) {
        self.history.push_back(ev);
        while self.history.len() > limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
    }

    /// The `openAPIV3Schema` of the CRD version serving `rt`, if `rt` is a custom resource.
    fn crd_schema(&self, rt: &ResourceType) -> Option<Value> {
        let name = format!("{}.{}", rt.plural, rt.group);
        self.crd_types.get(&name)?;
        let key = ObjKey {
            group: "apiextensions.k8s.io".into(),
            plural: "customresourcedefinitions".into(),
            namespace: String::new(),
            name,
        };
        let crd = &self.objects.get(&key)?.value;
        crd.pointer("/spec/versions")?
            .as_array()?
            .iter()
            .find(|v| v.get("name").and_then(Value::as_str) == Some(rt.version.as_str()))?
            .pointer("/schema/openAPIV3Schema")
            .cloned()
    }

    /// Applies the CRD schema's `default`s to a custom resource, as the API server does on writes.
    fn default_custom_resource(&self, rt: &ResourceType, obj: &mut Value) {
        if let Some(schema) = self.crd_schema(rt) {
            apply_schema_defaults(obj, &schema);
        }
    }

    fn namespace_exists(&self, ns: &str) -> bool {
        let key =
            ObjKey { group: String::new(), plural: "namespaces".into(), namespace: String::new(), name: ns.into() };
        self.objects.contains_key(&key)
    }
}

/// Fills absent fields that have a `default` in a structural schema, top-down (objects, `items`,
/// `additionalProperties`); `metadata` is left alone.
pub fn apply_schema_defaults(value: &mut Value, schema: &Value) {
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            for (key, sub) in props.into_iter().flatten() {
                if key == "metadata" {
                    continue;
                }
                if !map.contains_key(key) {
                    if let Some(default) = sub.get("default") {
                        map.insert(key.clone(), default.clone());
                    }
                }
                if let Some(child) = map.get_mut(key) {
                    apply_schema_defaults(child, sub);
                }
            }
            if let Some(extra) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for (key, child) in map.iter_mut() {
                    if props.is_none_or(|p| !p.contains_key(key)) {
                        apply_schema_defaults(child, extra);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    apply_schema_defaults(item, item_schema);
                }
            }
        }
        _ => {}
    }
}

/// Service port defaults Kubernetes applies on every write: `protocol: TCP`, `targetPort` = `port`.
fn default_service_ports(obj: &mut Value) {
    let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) else { return };
    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
        p.entry("protocol").or_insert_with(|| json!("TCP"));
        if let Some(port) = p.get("port").cloned() {
            p.entry("targetPort").or_insert(port);
        }
    }
}

/// Applies server-side defaults Kubernetes would add on create.
fn default_on_create(state: &mut State, rt: &ResourceType, obj: &mut Value) -> Result<(), ApiError> {
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "secrets") if obj.get("type").and_then(Value::as_str).is_none_or(str::is_empty) => {
            obj["type"] = json!("Opaque");
        }
        ("", "namespaces") => {
            obj["status"] = json!({"phase": "Active"});
        }
        ("", "services") => {
            let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else { return Ok(()) };
            let ty = spec.entry("type").or_insert_with(|| json!("ClusterIP")).as_str().unwrap_or_default().to_string();
            spec.entry("sessionAffinity").or_insert_with(|| json!("None"));
            if ty != "ExternalName" && spec.get("clusterIP").and_then(Value::as_str).unwrap_or_default().is_empty() {
                state.next_cluster_ip += 1;
                let n = state.next_cluster_ip;
                let ip = format!("10.96.{}.{}", n / 250, n % 250 + 1);
                spec.insert("clusterIP".into(), json!(ip));
                spec.insert("clusterIPs".into(), json!([ip]));
            }
            default_service_ports(obj);
        }
        _ if resources::is_crd(&rt.group, &rt.plural) => {
            resources::from_crd(obj)?;
            obj["status"] = resources::crd_status(obj);
        }
        _ => {}
    }
    Ok(())
}

impl Store {
    /// A store with the built-in kinds and the initial namespaces, keeping `history_limit` events.
    pub fn new(history_limit: usize) -> Self {
        let (latest, _) = watch::channel(0);
        let store = Self {
            state: Mutex::new(State {
                rv: 0,
                builtins: resources::builtins(),
                crd_types: BTreeMap::new(),
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                compacted: 0,
                next_cluster_ip: 0,
            }),
            latest,
            history_limit: history_limit.max(1),
        };
        let ns_type = resources::builtins().into_iter().find(|t| t.plural == "namespaces");
        if let Some(rt) = ns_type {
            for ns in INITIAL_NAMESPACES {
                let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
                // Creating a fixed, valid namespace in an empty store cannot fail.
                let _ = store.create(&rt, "", body, false);
            }
        }
        store
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every servable resource type (built-ins first, then CRD-registered ones).
    pub fn resource_types(&self) -> Vec<ResourceType> {
        self.lock().all_types().cloned().collect()
    }

    /// The resource type served at `group/version/plural`.
    pub fn resolve(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.lock().lookup(group, version, plural).cloned()
    }

    /// The CRD object that registered `rt`, if `rt` is a custom resource.
    pub fn crd_of(&self, rt: &ResourceType) -> Option<Value> {
        let state = self.lock();
        let name = format!("{}.{}", rt.plural, rt.group);
        state.crd_types.get(&name)?;
        let key = ObjKey {
            group: "apiextensions.k8s.io".into(),
            plural: "customresourcedefinitions".into(),
            namespace: String::new(),
            name,
        };
        state.objects.get(&key).map(|s| s.value.clone())
    }

    /// The newest resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    /// A receiver that changes whenever a write is stored.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }

    fn key(rt: &ResourceType, ns: &str, name: &str) -> ObjKey {
        ObjKey {
            group: rt.group.clone(),
            plural: rt.plural.clone(),
            namespace: if rt.namespaced { ns.to_string() } else { String::new() },
            name: name.to_string(),
        }
    }

    /// Reads one object.
    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
        let state = self.lock();
        state
            .objects
            .get(&Self::key(rt, ns, name))
            .map(|s| render(rt, &s.value))
            .ok_or_else(|| ApiError::not_found(rt.subject(name)))
    }

    /// The objects a filter selects (sorted by namespace and name) and the resourceVersion of the list.
    pub fn list(&self, rt: &ResourceType, filter: &Filter) -> (Vec<Value>, u64) {
        let state = self.lock();
        let items = state
            .objects
            .iter()
            .filter(|(k, s)| filter.covers(&k.group, &k.plural, &k.namespace) && filter.selects(&s.value))
            .map(|(_, s)| render(rt, &s.value))
            .collect();
        (items, state.rv)
    }

    /// Events after `cursor` that `filter` covers (with the type the watcher sees), and the new cursor.
    pub fn events_since(&self, cursor: u64, filter: &Filter) -> Result<(Vec<Seen>, u64), Expired> {
        let state = self.lock();
        if cursor < state.compacted {
            return Err(Expired { requested: cursor, oldest: state.compacted + 1 });
        }
        let start = state.history.partition_point(|e| e.rv <= cursor);
        let events =
            state.history.range(start..).filter_map(|e| filter.event_type(e).map(|t| (t, e.object.clone()))).collect();
        Ok((events, state.rv))
    }

    /// Whether a watch starting after `rv` can still be served from the history.
    pub fn check_watchable(&self, rv: u64) -> Result<(), Expired> {
        let state = self.lock();
        if rv < state.compacted {
            Err(Expired { requested: rv, oldest: state.compacted + 1 })
        } else {
            Ok(())
        }
    }

    /// Records one change of `key` (at resourceVersion `rv`) and wakes the watchers.
    fn publish(
        &self,
        state: &mut State,
        rv: u64,
        key: &ObjKey,
        kind: EventType,
        object: Value,
        previous: Option<Value>,
    ) {
        let ev = Event {
            rv,
            group: key.group.clone(),
            plural: key.plural.clone(),
            namespace: key.namespace.clone(),
            kind,
            object: Arc::new(object),
            previous: previous.map(Arc::new),
        };
        state.record(self.history_limit, ev);
        self.latest.send_replace(rv);
    }

    /// Gives `object` the next resourceVersion, which it returns.
    fn stamp(state: &mut State, object: &mut Value) -> u64 {
        let rv = state.next_rv();
        metadata_mut(object).insert("resourceVersion".into(), json!(rv.to_string()));
        rv
    }

    /// POST: stores a new object.
    pub fn create(&self, rt: &ResourceType, ns: &str, body: Value, dry_run: bool) -> Result<Value, ApiError> {
        let mut state = self.lock();
        self.create_locked(&mut state, rt, ns, body, dry_run)
    }

    fn create_locked(
        &self,
        state: &mut State,
        rt: &ResourceType,
        ns: &str,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the request body must be a JSON object"));
        }
        let mut name = meta_str(&obj, "name").to_string();
        if name.is_empty() {
            let prefix = meta_str(&obj, "generateName");
            if prefix.is_empty() {
                return Err(ApiError::invalid(
                    &rt.kind,
                    rt.subject(""),
                    "metadata.name",
                    "Required value: name or generateName is required",
                ));
            }
            name = format!("{prefix}{}", clock::name_suffix());
        }
        let body_ns = meta_str(&obj, "namespace").to_string();
        let namespace = if rt.namespaced {
            if !body_ns.is_empty() && !ns.is_empty() && body_ns != ns {
                return Err(ApiError::bad_request(format!(
                    "the namespace of the provided object ({body_ns}) does not match the namespace sent on the request ({ns})"
                )));
            }
            let n = if ns.is_empty() { body_ns } else { ns.to_string() };
            if n.is_empty() {
                return Err(ApiError::bad_request("a namespaced object needs a namespace"));
            }
            if !state.namespace_exists(&n) {
                return Err(ApiError::not_found(Subject { group: "", plural: "namespaces", name: &n }));
            }
            n
        } else {
            String::new()
        };
        let key = Self::key(rt, &namespace, &name);
        if state.objects.contains_key(&key) {
            return Err(ApiError::already_exists(rt.subject(&name)));
        }
        if rt.status_subresource {
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
        default_on_create(state, rt, &mut obj)?;
        state.default_custom_resource(rt, &mut obj);
        if dry_run {
            return Ok(render(rt, &obj));
        }
        let rv = state.next_rv();
        {
            let meta = metadata_mut(&mut obj);
            meta.insert("name".into(), json!(name));
            if rt.namespaced {
                meta.insert("namespace".into(), json!(namespace));
            } else {
                meta.remove("namespace");
            }
            meta.remove("generateName");
            meta.remove("deletionTimestamp");
            meta.remove("deletionGracePeriodSeconds");
            meta.insert("uid".into(), json!(clock::new_uid()));
            meta.insert("creationTimestamp".into(), json!(clock::now_rfc3339()));
            meta.insert("resourceVersion".into(), json!(rv.to_string()));
            meta.insert("generation".into(), json!(1));
        }
        let obj = render(rt, &obj);
        if resources::is_crd(&rt.group, &rt.plural) {
            state.crd_types.insert(name.clone(), resources::from_crd(&obj)?);
        }
        state.objects.insert(key.clone(), Stored { value: obj.clone(), applied: BTreeMap::new() });
        self.publish(state, rv, &key, EventType::Added, obj.clone(), None);
        Ok(obj)
    }

    /// PUT: replaces an object (or only its status).
    pub fn replace(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        body: Value,
        sub: Sub,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let mut state = self.lock();
        let key = Self::key(rt, ns, name);
        let old = state.objects.get(&key).cloned().ok_or_else(|| ApiError::not_found(rt.subject(name)))?;
        let body_rv = meta_str(&body, "resourceVersion");
        if !body_rv.is_empty() && body_rv != meta_str(&old.value, "resourceVersion") {
            return Err(ApiError::conflict(rt.subject(name)));
        }
        self.update_locked(&mut state, rt, key, old, body, sub, dry_run, None)
    }

    /// PATCH: applies a merge, JSON, strategic merge or server-side-apply patch.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        kind: PatchKind,
        body: &[u8],
        sub: Sub,
        field_manager: Option<&str>,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let mut state = self.lock();
        let key = Self::key(rt, ns, name);
        let custom = state.crd_types.values().flatten().any(|t| t.group == rt.group && t.plural == rt.plural);
        if kind == PatchKind::Strategic && custom {
            let mut e = ApiError::unsupported_media_type("application/strategic-merge-patch+json");
            e.message = "strategic merge patch is not supported for custom resources; use a merge or JSON patch".into();
            return Err(e);
        }
        if kind == PatchKind::Apply {
            let manager = field_manager
                .filter(|m| !m.is_empty())
                .ok_or_else(|| ApiError::bad_request("PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"))?
                .to_string();
            let applied: Value = serde_yaml_ng::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
            if !applied.is_object() {
                return Err(ApiError::bad_request("an apply patch must be an object"));
            }
            let Some(old) = state.objects.get(&key).cloned() else {
                if sub == Sub::Status {
                    return Err(ApiError::not_found(rt.subject(name)));
                }
                let mut obj = applied.clone();
                metadata_mut(&mut obj).insert("name".into(), json!(name));
                let created = self.create_locked(&mut state, rt, ns, obj, dry_run)?;
                if let Some(s) = state.objects.get_mut(&key) {
                    s.applied.insert((manager, sub), applied);
                }
                return Ok(created);
            };
            let previous = old.applied.get(&(manager.clone(), sub)).cloned();
            let merged = patch::server_side_apply(&old.value, &applied, previous.as_ref());
            if meta_str(&merged, "resourceVersion") != meta_str(&old.value, "resourceVersion") {
                return Err(ApiError::conflict(rt.subject(name)));
            }
            return self.update_locked(&mut state, rt, key, old, merged, sub, dry_run, Some((manager, applied)));
        }
        let old = state.objects.get(&key).cloned().ok_or_else(|| ApiError::not_found(rt.subject(name)))?;
        let patched = patch::apply_patch(kind, &old.value, body, &rt.kind)?;
        if meta_str(&patched, "resourceVersion") != meta_str(&old.value, "resourceVersion") {
            return Err(ApiError::conflict(rt.subject(name)));
        }
        self.update_locked(&mut state, rt, key, old, patched, sub, dry_run, None)
    }

    #[allow(clippy::too_many_arguments)]
    fn update_locked(
        &self,
        state: &mut State,
        rt: &ResourceType,
        key: ObjKey,
        old: Stored,
        body: Value,
        sub: Sub,
        dry_run: bool,
        applied: Option<(String, Value)>,
    ) -> Result<Value, ApiError> {
        if !body.is_object() {
            return Err(ApiError::bad_request("the request body must be a JSON object"));
        }
        for (field, want) in [("name", key.name.as_str()), ("namespace", key.namespace.as_str())] {
            let got = meta_str(&body, field);
            if !got.is_empty() && got != want {
                return Err(ApiError::bad_request(format!(
                    "the {field} of the object ({got}) does not match the {field} on the URL ({want})"
                )));
            }
        }
        let is_crd = resources::is_crd(&rt.group, &rt.plural);
        let mut new = match sub {
            Sub::Status => {
                let mut n = old.value.clone();
                match body.get("status") {
                    Some(s) => n["status"] = s.clone(),
                    None => {
                        if let Some(m) = n.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
                n
            }
            Sub::Main => {
                let mut n = body;
                let old_meta = old.value.get("metadata").cloned().unwrap_or_else(|| json!({}));
                let meta = metadata_mut(&mut n);
                for keep in ["name", "namespace", "uid", "creationTimestamp", "generation", "deletionTimestamp"] {
                    match old_meta.get(keep) {
                        Some(v) => meta.insert(keep.into(), v.clone()),
                        None => meta.remove(keep),
                    };
                }
                if rt.status_subresource {
                    match old.value.get("status") {
                        Some(s) => n["status"] = s.clone(),
                        None => {
                            if let Some(m) = n.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
                if is_crd {
                    resources::from_crd(&n)?;
                    n["status"] = resources::crd_status(&n);
                    if let Some(old_status) = old.value.get("status") {
                        // Keep the condition timestamps when the CRD is re-applied unchanged.
                        if n["status"]["acceptedNames"] == old_status["acceptedNames"]
                            && n["status"]["storedVersions"] == old_status["storedVersions"]
                        {
                            n["status"] = old_status.clone();
                        }
                    }
                }
                n
            }
        };
        new = render(rt, &new);
        state.default_custom_resource(rt, &mut new);
        if rt.group.is_empty() && rt.plural == "services" {
            default_service_ports(&mut new);
            // Like Kubernetes, an update that leaves the allocated cluster IPs unset keeps them.
            for field in ["clusterIP", "clusterIPs"] {
                let unset = new.pointer(&format!("/spec/{field}")).is_none_or(Value::is_null);
                if let (true, Some(old_value), Some(spec)) = (
                    unset,
                    old.value.pointer(&format!("/spec/{field}")).cloned(),
                    new.get_mut("spec").and_then(Value::as_object_mut),
                ) {
                    spec.insert(field.into(), old_value);
                }
            }
        }
        metadata_mut(&mut new).insert("resourceVersion".into(), old.value["metadata"]["resourceVersion"].clone());
        let mut stored_applied = old.applied.clone();
        if let Some((manager, cfg)) = applied {
            stored_applied.insert((manager, sub), cfg);
        }
        let finalizing = !meta_str(&new, "deletionTimestamp").is_empty()
            && new.pointer("/metadata/finalizers").and_then(Value::as_array).is_none_or(Vec::is_empty);
        if without_rv(&new) == without_rv(&old.value) && !finalizing {
            if !dry_run {
                if let Some(s) = state.objects.get_mut(&key) {
                    s.applied = stored_applied;
                }
            }
            return Ok(render(rt, &old.value));
        }
        if spec_part(&new) != spec_part(&old.value) {
            let generation = old.value.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0) + 1;
            metadata_mut(&mut new).insert("generation".into(), json!(generation));
        }
        if dry_run {
            return Ok(new);
        }
        if finalizing {
            drop(old);
            state.objects.insert(key.clone(), Stored { value: new, applied: stored_applied });
            return self.remove_locked(state, rt, &key);
        }
        let rv = Self::stamp(state, &mut new);
        if is_crd {
            state.crd_types.insert(key.name.clone(), resources::from_crd(&new)?);
        }
        state.objects.insert(key.clone(), Stored { value: new.clone(), applied: stored_applied });
        self.publish(state, rv, &key, EventType::Modified, new.clone(), Some(old.value));
        Ok(new)
    }

    /// DELETE: removes an object, or marks it for deletion while it still has finalizers.
    pub fn delete(&self, rt: &ResourceType, ns: &str, name: &str, dry_run: bool) -> Result<Value, ApiError> {
        let mut state = self.lock();
        let key = Self::key(rt, ns, name);
        let old = state.objects.get(&key).cloned().ok_or_else(|| ApiError::not_found(rt.subject(name)))?;
        if dry_run {
            return Ok(render(rt, &old.value));
        }
        let has_finalizers =
            old.value.pointer("/metadata/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if !meta_str(&old.value, "deletionTimestamp").is_empty() {
                return Ok(render(rt, &old.value));
            }
            let mut marked = old.value.clone();
            let meta = metadata_mut(&mut marked);
            meta.insert("deletionTimestamp".into(), json!(clock::now_rfc3339()));
            meta.insert("deletionGracePeriodSeconds".into(), json!(0));
            let rv = Self::stamp(&mut state, &mut marked);
            state.objects.insert(key.clone(), Stored { value: marked.clone(), applied: old.applied });
            self.publish(&mut state, rv, &key, EventType::Modified, marked.clone(), Some(old.value));
            return Ok(render(rt, &marked));
        }
        self.remove_locked(&mut state, rt, &key)
    }

    /// DELETE on a collection: deletes every selected object; returns what was deleted.
    pub fn delete_collection(&self, rt: &ResourceType, filter: &Filter, dry_run: bool) -> Result<Vec<Value>, ApiError> {
        let (items, _) = self.list(rt, filter);
        let mut out = Vec::new();
        for item in items {
            let (ns, name) = (meta_str(&item, "namespace"), meta_str(&item, "name"));
            match self.delete(rt, ns, name, dry_run) {
                Ok(v) => out.push(v),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Removes an object for good, with the cascades Kubernetes performs for namespaces and CRDs.
    fn remove_locked(&self, state: &mut State, rt: &ResourceType, key: &ObjKey) -> Result<Value, ApiError> {
        let Some(old) = state.objects.remove(key) else {
            return Err(ApiError::not_found(rt.subject(&key.name)));
        };
        let mut gone = old.value;
        let rv = Self::stamp(state, &mut gone);
        self.publish(state, rv, key, EventType::Deleted, gone.clone(), None);
        let dependents: Vec<ObjKey> = if key.group.is_empty() && key.plural == "namespaces" {
            state.objects.keys().filter(|k| k.namespace == key.name).cloned().collect()
        } else if resources::is_crd(&key.group, &key.plural) {
            let types = state.crd_types.remove(&key.name).unwrap_or_default();
            state
                .objects
                .keys()
                .filter(|k| types.iter().any(|t| t.group == k.group && t.plural == k.plural))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        for dep in dependents {
            if let Some(s) = state.objects.remove(&dep) {
                let mut v = s.value;
                let rv = Self::stamp(state, &mut v);
                self.publish(state, rv, &dep, EventType::Deleted, v, None);
            }
        }
        Ok(render(rt, &gone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_defaults_fill_nested_absent_fields() {
        let schema = json!({"properties": {
            "metadata": {"type": "object"},
            "spec": {"properties": {
                "refs": {"items": {"properties": {"kind": {"default": "Gateway"}, "name": {}}}},
                "mode": {"default": "x"},
                "labels": {"additionalProperties": {"properties": {"w": {"default": 1}}}},
            }},
        }});
        let mut obj = json!({"metadata": {}, "spec": {"refs": [{"name": "a"}, {"name": "b", "kind": "K"}],
            "labels": {"l": {}}}});
        apply_schema_defaults(&mut obj, &schema);
        assert_eq!(obj["spec"]["refs"], json!([{"name": "a", "kind": "Gateway"}, {"name": "b", "kind": "K"}]));
        assert_eq!(obj["spec"]["mode"], "x");
        assert_eq!(obj["spec"]["labels"]["l"]["w"], 1);
        assert_eq!(obj["metadata"], json!({}));
    }
}
