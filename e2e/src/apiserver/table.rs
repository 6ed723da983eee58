//! Server-side printing: `meta.k8s.io/v1` Tables for `kubectl get`.
//!
//! kubectl asks for `application/json;as=Table;v=v1;g=meta.k8s.io` and, when it gets a plain list,
//! falls back to printing only NAME and AGE. Answering Tables gives the familiar columns: for Namespace,
//! Service, Ingress, EndpointSlice and Deployment a small hand-written set, for custom resources the CRD's
//! `additionalPrinterColumns` (simple `.a.b` JSONPaths), and Name + Age for everything else.
//! It also renders `PartialObjectMetadata`, which kube-rs metadata watches ask for the same way.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::resources::ResourceType;

/// One printed column: header, type, where the value comes from, and whether only `-o wide` shows it.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub type_: String,
    pub json_path: String,
    pub priority: i64,
}

/// How the client wants objects rendered, from its `Accept` header.
#[derive(Debug, Clone)]
pub enum Shape {
    /// The objects themselves.
    Full,
    /// `as=Table` (kubectl's human-readable output), with these columns after Name.
    Table(Vec<Column>),
    /// `as=PartialObjectMetadata` (kube-rs metadata watches): only kind, apiVersion and metadata.
    Metadata,
}

/// Whether an `Accept` header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').next().is_some_and(|first| first.contains("as=Table"))
}

/// Whether an `Accept` header asks for PartialObjectMetadata.
pub fn wants_metadata(accept: &str) -> bool {
    accept.split(',').next().is_some_and(|first| first.contains("as=PartialObjectMetadata"))
}

/// The PartialObjectMetadata form of an object.
pub fn partial(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

impl Shape {
    /// One object (a get, or a watch event) in this shape.
    pub fn one(&self, obj: &Value) -> Value {
        match self {
            Shape::Full => obj.clone(),
            Shape::Table(cols) => {
                let rv = obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("0");
                table(cols, std::slice::from_ref(obj), rv.parse().unwrap_or(0))
            }
            Shape::Metadata => partial(obj),
        }
    }

    /// A list in this shape; `full_list` is the ordinary `<Kind>List` rendering.
    pub fn list(&self, items: &[Value], rv: u64, full_list: impl FnOnce(&[Value]) -> Value) -> Value {
        match self {
            Shape::Full => full_list(items),
            Shape::Table(cols) => table(cols, items, rv),
            Shape::Metadata => json!({
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": {"resourceVersion": rv.to_string()},
                "items": items.iter().map(partial).collect::<Vec<_>>(),
            }),
        }
    }
}

fn col(name: &str, type_: &str, json_path: &str, priority: i64) -> Column {
    Column { name: name.into(), type_: type_.into(), json_path: json_path.into(), priority }
}

/// The columns for a built-in kind (after Name), ending with Age.
fn builtin_columns(rt: &ResourceType) -> Vec<Column> {
    let age = col("Age", "date", ".metadata.creationTimestamp", 0);
    let mut cols = match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "namespaces") => vec![col("Status", "string", ".status.phase", 0)],
        ("", "services") => vec![
            col("Type", "string", ".spec.type", 0),
            col("Cluster-IP", "string", ".spec.clusterIP", 0),
            col("External-IP", "string", "$externalIPs", 0),
            col("Port(s)", "string", "$servicePorts", 0),
        ],
        ("networking.k8s.io", "ingresses") => vec![
            col("Class", "string", ".spec.ingressClassName", 0),
            col("Hosts", "string", "$ingressHosts", 0),
            col("Address", "string", "$lbAddress", 0),
        ],
        ("networking.k8s.io", "ingressclasses") => vec![col("Controller", "string", ".spec.controller", 0)],
        ("discovery.k8s.io", "endpointslices") => vec![
            col("AddressType", "string", ".addressType", 0),
            col("Ports", "string", "$slicePorts", 0),
            col("Endpoints", "string", "$sliceEndpoints", 0),
        ],
        ("apps", "deployments") => vec![
            col("Ready", "string", "$deployReady", 0),
            col("Up-to-date", "integer", ".status.updatedReplicas", 0),
            col("Available", "integer", ".status.availableReplicas", 0),
        ],
        _ => Vec::new(),
    };
    cols.push(age);
    cols
}

/// Columns from a CRD version's `additionalPrinterColumns` (Age alone when it declares none).
pub fn crd_columns(crd: &Value, version: &str) -> Vec<Column> {
    let declared = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .and_then(|vs| vs.iter().find(|v| v.get("name").and_then(Value::as_str) == Some(version)))
        .and_then(|v| v.get("additionalPrinterColumns"))
        .and_then(Value::as_array);
    match declared {
        Some(cols) if !cols.is_empty() => cols
            .iter()
            .map(|c| {
                let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
                Column {
                    name: s("name"),
                    type_: s("type"),
                    json_path: s("jsonPath"),
                    priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                }
            })
            .collect(),
        _ => vec![col("Age", "date", ".metadata.creationTimestamp", 0)],
    }
}

fn lookup<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    path.trim_start_matches('.').split('.').filter(|s| !s.is_empty()).try_fold(obj, |cur, seg| cur.get(seg))
}

fn join(items: impl Iterator<Item = String>) -> Option<String> {
    let v: Vec<String> = items.filter(|s| !s.is_empty()).collect();
    (!v.is_empty()).then(|| v.join(","))
}

fn strings_at<'a>(obj: &'a Value, path: &str) -> impl Iterator<Item = &'a Value> {
    lookup(obj, path).and_then(Value::as_array).into_iter().flatten()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Kubernetes' short human duration (`45s`, `3m12s`, `5h`, `2d3h`, `40d`, `3y`).
pub fn human_duration(secs: u64) -> String {
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86_400);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{m}m{}s", s % 60),
        s if s < 3 * 3600 => format!("{m}m"),
        s if s < 8 * 3600 => format!("{h}h{}m", m % 60),
        s if s < 48 * 3600 => format!("{h}h"),
        s if s < 8 * 86_400 => format!("{d}d{}h", h % 24),
        s if s < 2 * 365 * 86_400 => format!("{d}d"),
        _ => format!("{}y", d / 365),
    }
}

fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<i64>().ok());
    let (y, mo, d, h, mi, se) = (n(0..4)?, n(5..7)?, n(8..10)?, n(11..13)?, n(14..16)?, n(17..19)?);
    // Days from civil (Howard Hinnant), the inverse of clock::format_rfc3339.
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + mi * 60 + se).ok()
}

fn cell(obj: &Value, c: &Column) -> Value {
    let computed = match c.json_path.as_str() {
        "$externalIPs" => Some(
            join(strings_at(obj, ".status.loadBalancer.ingress").filter_map(|i| i.get("ip").map(text)))
                .or_else(|| join(strings_at(obj, ".spec.externalIPs").map(text)))
                .unwrap_or_else(|| "<none>".into()),
        ),
        "$servicePorts" => Some(
            join(strings_at(obj, ".spec.ports").map(|p| {
                let port = p.get("port").map(text).unwrap_or_default();
                let proto = p.get("protocol").map(text).unwrap_or_else(|| "TCP".into());
                match p.get("nodePort") {
                    Some(np) => format!("{port}:{}/{proto}", text(np)),
                    None => format!("{port}/{proto}"),
                }
            }))
            .unwrap_or_else(|| "<none>".into()),
        ),
        "$ingressHosts" => Some(
            join(strings_at(obj, ".spec.rules").filter_map(|r| r.get("host").map(text))).unwrap_or_else(|| "*".into()),
        ),
        "$lbAddress" => Some(
            join(
                strings_at(obj, ".status.loadBalancer.ingress")
                    .filter_map(|i| i.get("ip").or(i.get("hostname")).map(text)),
            )
            .unwrap_or_default(),
        ),
        "$slicePorts" => Some(
            join(strings_at(obj, ".ports").filter_map(|p| p.get("port").map(text))).unwrap_or_else(|| "<unset>".into()),
        ),
        "$sliceEndpoints" => Some(
            join(strings_at(obj, ".endpoints").flat_map(|e| strings_at(e, ".addresses").map(text)))
                .unwrap_or_else(|| "<unset>".into()),
        ),
        "$deployReady" => {
            let n = |p: &str| lookup(obj, p).and_then(Value::as_i64).unwrap_or(0);
            Some(format!(
                "{}/{}",
                n(".status.readyReplicas"),
                lookup(obj, ".spec.replicas").and_then(Value::as_i64).unwrap_or(1)
            ))
        }
        _ => None,
    };
    if let Some(s) = computed {
        return json!(s);
    }
    let Some(v) = lookup(obj, &c.json_path) else { return Value::Null };
    if c.type_ == "date" {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        return match v.as_str().and_then(parse_rfc3339) {
            Some(t) => json!(human_duration(now.saturating_sub(t))),
            None => Value::Null,
        };
    }
    match v {
        Value::Array(_) | Value::Object(_) => json!(v.to_string()),
        other => other.clone(),
    }
}

/// A Table of `items` with the given columns (Name first); rows carry PartialObjectMetadata.
pub fn table(columns: &[Column], items: &[Value], resource_version: u64) -> Value {
    let mut defs =
        vec![json!({"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0})];
    defs.extend(columns.iter().map(|c| {
        json!({"name": c.name, "type": if c.type_ == "date" { "string" } else { c.type_.as_str() }, "format": "",
            "description": c.name, "priority": c.priority})
    }));
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| {
            let mut cells = vec![obj.pointer("/metadata/name").cloned().unwrap_or(Value::Null)];
            cells.extend(columns.iter().map(|c| cell(obj, c)));
            json!({ "cells": cells, "object": partial(obj) })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version.to_string()},
        "columnDefinitions": defs,
        "rows": rows,
    })
}

/// The columns for a resource type; `crd` is the CRD object when the type is a custom resource.
pub fn columns_for(rt: &ResourceType, crd: Option<&Value>) -> Vec<Column> {
    match crd {
        Some(c) => crd_columns(c, &rt.version),
        None => builtin_columns(rt),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::clock::format_rfc3339;
    use crate::apiserver::resources::builtins;

    #[test]
    fn durations_and_timestamps() {
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(200), "3m20s");
        assert_eq!(human_duration(3700), "61m");
        assert_eq!(human_duration(5 * 3600 + 60), "5h1m");
        assert_eq!(human_duration(3 * 86_400 + 7200), "3d2h");
        assert_eq!(parse_rfc3339(&format_rfc3339(1_795_000_000)), Some(1_795_000_000));
        assert!(wants_table("application/json;as=Table;v=v1;g=meta.k8s.io,application/json"));
        assert!(!wants_table("application/json"));
    }

    #[test]
    fn service_rows() {
        let rt = builtins().into_iter().find(|t| t.plural == "services").unwrap();
        let svc = json!({"metadata": {"name": "web", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1", "ports": [{"port": 80, "protocol": "TCP"}]}});
        let t = table(&columns_for(&rt, None), &[svc], 7);
        assert_eq!(t["rows"][0]["cells"][0], "web");
        assert_eq!(t["rows"][0]["cells"][3], "<none>");
        assert_eq!(t["rows"][0]["cells"][4], "80/TCP");
        assert_eq!(t["columnDefinitions"][5]["name"], "Age");
        let crd = json!({"spec": {"versions": [{"name": "v1", "additionalPrinterColumns": [
            {"name": "Hostnames", "type": "string", "jsonPath": ".spec.hostnames"}]}]}});
        let route = json!({"metadata": {"name": "r"}, "spec": {"hostnames": ["a"]}});
        let t = table(&crd_columns(&crd, "v1"), &[route], 1);
        assert_eq!(t["rows"][0]["cells"][1], "[\"a\"]");
    }
}
