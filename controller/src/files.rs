//! `--manifests` mode: the snapshot comes from YAML files instead of a cluster.
//!
//! Every multi-document YAML (or JSON) file under the path is read; each document is sorted into the
//! snapshot by `apiVersion`/`kind` (`List` documents are unpacked). Unknown kinds are ignored with a
//! debug log; a document that does not parse as its kind becomes a problem and is skipped, so one
//! broken file never hides the others. Change detection polls file sizes and mtimes (every 250 ms in
//! the sync loop): no extra dependency, and it works on every filesystem, including bind mounts and
//! ConfigMap volumes where inotify events are unreliable.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

use crate::kong_plugins::CONFIG_MAP_LABEL;
use crate::snapshot::Snapshot;
use crate::translate::{ObjectRef, Problem};

/// Reading the manifests failed as a whole.
#[derive(Debug, Error)]
pub enum FilesError {
    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// What one read of the manifests produced.
#[derive(Debug, Default, Clone)]
pub struct Loaded {
    pub snapshot: Snapshot,
    /// Documents that could not be read (the rest is in the snapshot).
    pub problems: Vec<Problem>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FilesError + '_ {
    move |source| FilesError::Io { path: path.to_path_buf(), source }
}

/// The manifest files under `path` (itself if it is a file), sorted; hidden files are skipped.
pub(crate) fn manifest_files(path: &Path) -> Result<Vec<PathBuf>, FilesError> {
    let meta = std::fs::metadata(path).map_err(io(path))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let p = entry.path();
            let hidden = p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
            if hidden {
                continue;
            }
            let ft = entry.file_type().map_err(io(&p))?;
            if ft.is_dir() || (ft.is_symlink() && p.is_dir()) {
                dirs.push(p);
            } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json")) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Reads every manifest under `path` into a sorted snapshot.
pub fn load(path: &Path) -> Result<Loaded, FilesError> {
    let mut loaded = Loaded::default();
    for file in manifest_files(path)? {
        let text = std::fs::read_to_string(&file).map_err(io(&file))?;
        parse_documents(&text, &file.display().to_string(), &mut loaded);
    }
    loaded.snapshot.sort();
    Ok(loaded)
}

/// A cheap fingerprint of the manifests (paths, sizes, mtimes): when it changes, reload.
pub(crate) fn fingerprint(path: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    manifest_files(path)
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            let len = meta.as_ref().map(|m| m.len()).unwrap_or(0);
            let mtime = meta.and_then(|m| m.modified().ok());
            (p, len, mtime)
        })
        .collect()
}

/// Parses multi-document YAML text into `loaded` (`source` names the text in problems and logs).
pub fn parse_documents(text: &str, source: &str, loaded: &mut Loaded) {
    let file = ObjectRef { kind: "File".into(), namespace: String::new(), name: source.into(), uid: String::new() };
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = match serde_yaml_ng::Value::deserialize(doc) {
            Ok(v) => v,
            Err(e) => {
                loaded.problems.push(Problem::new(&file, format!("documents[{i}]"), format!("invalid YAML: {e}")));
                // The YAML stream cannot be resumed after a syntax error.
                return;
            }
        };
        if value.is_null() {
            continue;
        }
        match serde_json::to_value(&value) {
            Ok(json) => add_value(json, source, loaded),
            Err(e) => {
                loaded.problems.push(Problem::new(
                    &file,
                    format!("documents[{i}]"),
                    format!("not a JSON-compatible document: {e}"),
                ));
            }
        }
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter().try_fold(v, |v, k| v.get(k)).and_then(Value::as_str).unwrap_or("")
}

/// Sorts one document into the snapshot.
fn add_value(mut value: Value, source: &str, loaded: &mut Loaded) {
    let api_version = str_at(&value, &["apiVersion"]).to_string();
    let kind = str_at(&value, &["kind"]).to_string();
    if kind == "List" || (kind.ends_with("List") && value.get("items").is_some_and(Value::is_array)) {
        if let Some(Value::Array(items)) = value.get_mut("items").map(Value::take) {
            for item in items {
                add_value(item, source, loaded);
            }
        }
        return;
    }
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    let cluster_scoped = matches!(kind.as_str(), "IngressClass" | "GatewayClass" | "Namespace" | "KongClusterPlugin");
    if !cluster_scoped && str_at(&value, &["metadata", "namespace"]).is_empty() {
        if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("namespace".into(), Value::String("default".into()));
        }
    }
    let s = &mut loaded.snapshot;
    let problems = &mut loaded.problems;
    match (group, kind.as_str()) {
        ("networking.k8s.io", "Ingress") => push(value, &kind, source, &mut s.ingresses, problems),
        ("networking.k8s.io", "IngressClass") => push(value, &kind, source, &mut s.ingress_classes, problems),
        ("", "Service") => push(value, &kind, source, &mut s.services, problems),
        ("", "Secret") => push(value, &kind, source, &mut s.secrets, problems),
        ("discovery.k8s.io", "EndpointSlice") => push(value, &kind, source, &mut s.endpoint_slices, problems),
        ("gateway.networking.k8s.io", "GatewayClass") => push(value, &kind, source, &mut s.gateway_classes, problems),
        ("gateway.networking.k8s.io", "Gateway") => push(value, &kind, source, &mut s.gateways, problems),
        ("gateway.networking.k8s.io", "GRPCRoute") => push(value, &kind, source, &mut s.grpc_routes, problems),
        ("gateway.networking.k8s.io", "HTTPRoute") => push(value, &kind, source, &mut s.http_routes, problems),
        ("gateway.networking.k8s.io", "ReferenceGrant") => {
            push(value, &kind, source, &mut s.reference_grants, problems)
        }
        ("gateway.networking.k8s.io", "BackendTLSPolicy") => {
            push(value, &kind, source, &mut s.backend_tls_policies, problems)
        }
        ("", "ConfigMap") => {
            // As the watch keeps them (watch::strip_config_map): whole when labelled, else `ca.crt`.
            let mut cm = value;
            let labelled = str_at(&cm, &["metadata", "labels", CONFIG_MAP_LABEL]) == "true";
            if !labelled {
                if let Some(c) = cm.as_object_mut() {
                    c.remove("binaryData");
                }
                if let Some(data) = cm.get_mut("data").and_then(Value::as_object_mut) {
                    data.retain(|k, _| k == "ca.crt");
                }
            }
            push(cm, &kind, source, &mut s.config_maps, problems)
        }
        ("", "Namespace") => push(value, &kind, source, &mut s.namespaces, problems),
        ("configuration.konghq.com", "KongUpstreamPolicy") => {
            push(value, &kind, source, &mut s.kong_upstream_policies, problems)
        }
        ("configuration.konghq.com", "KongConsumer") => push(value, &kind, source, &mut s.kong_consumers, problems),
        ("configuration.konghq.com", "KongPlugin") => push(value, &kind, source, &mut s.kong_plugins, problems),
        ("configuration.konghq.com", "KongClusterPlugin") => {
            push(value, &kind, source, &mut s.kong_cluster_plugins, problems)
        }
        _ => tracing::debug!(%source, %api_version, %kind, "ignoring a manifest of a kind sluice does not read"),
    }
}

fn push<K: DeserializeOwned>(
    value: Value,
    kind: &str,
    source: &str,
    into: &mut Vec<Arc<K>>,
    problems: &mut Vec<Problem>,
) {
    let object = ObjectRef {
        kind: kind.to_string(),
        namespace: str_at(&value, &["metadata", "namespace"]).to_string(),
        name: str_at(&value, &["metadata", "name"]).to_string(),
        uid: String::new(),
    };
    match serde_json::from_value::<K>(value) {
        Ok(o) => into.push(Arc::new(o)),
        Err(e) => problems.push(Problem::new(&object, "", format!("cannot read it from {source}: {e}; left out"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_sorted_by_kind() {
        let text = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec: {ingressClassName: kong}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: apps}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: ignored}
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Secret
  metadata: {name: tls}
  type: kubernetes.io/tls
  stringData: {tls.crt: x, tls.key: y}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g}
spec: {}
---
apiVersion: v1
kind: Service
metadata: {name: broken}
spec: {ports: "not a list"}
"#;
        let mut loaded = Loaded::default();
        parse_documents(text, "test.yaml", &mut loaded);
        let s = &loaded.snapshot;
        assert_eq!((s.ingresses.len(), s.services.len(), s.secrets.len(), s.grpc_routes.len()), (1, 1, 1, 1));
        assert_eq!(s.ingresses[0].metadata.namespace.as_deref(), Some("default"));
        assert_eq!(s.services[0].metadata.namespace.as_deref(), Some("apps"));
        assert_eq!(loaded.problems.len(), 1);
        assert_eq!(loaded.problems[0].object.name, "broken");
    }

    #[test]
    fn directories_are_read_recursively_and_fingerprinted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a.yaml"), "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n").unwrap();
        std::fs::write(dir.path().join("b.yml"), "apiVersion: v1\nkind: Service\nmetadata: {name: b}\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not yaml").unwrap();
        let loaded = load(dir.path()).unwrap();
        assert_eq!(loaded.snapshot.services.len(), 2);
        let before = fingerprint(dir.path());
        std::fs::write(dir.path().join("b.yml"), "apiVersion: v1\nkind: Service\nmetadata: {name: bb}\n").unwrap();
        assert_ne!(before, fingerprint(dir.path()));
        assert!(load(&dir.path().join("missing")).is_err());
    }
}
