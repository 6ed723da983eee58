//! Just enough Kubernetes protobuf decoding for kubectl's `create` generators.
//!
//! `kubectl create namespace|secret|configmap` send their bodies as `application/vnd.kubernetes.protobuf`
//! (typed client-go clients), not JSON, and do not fall back. The envelope is the magic `k8s\0` followed
//! by a `runtime.Unknown` message (typeMeta = 1 {apiVersion = 1, kind = 2}, raw = 2). This module decodes
//! Namespace, Secret and ConfigMap bodies (ObjectMeta name, generateName, namespace, labels, annotations,
//! finalizers) into JSON; any other kind gets `415` with a hint to pipe `--dry-run=client -o yaml` into
//! `kubectl apply -f -`. Responses stay JSON, which those clients accept.

use serde_json::{json, Map, Value};

use super::status::ApiError;

const MAGIC: &[u8] = b"k8s\0";

/// One decoded protobuf field value.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn malformed() -> ApiError {
    ApiError::bad_request("malformed protobuf body")
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, ApiError> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or_else(malformed)?;
        *pos += 1;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(out);
        }
    }
    Err(malformed())
}

/// Splits a message into `(field number, value)` pairs.
fn fields(buf: &[u8]) -> Result<Vec<(u64, Field<'_>)>, ApiError> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let value = match key & 7 {
            0 => Field::Varint(varint(buf, &mut pos)?),
            1 | 5 => {
                pos += if key & 7 == 1 { 8 } else { 4 };
                Field::Fixed
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).map_err(|_| malformed())?;
                let end = pos.checked_add(len).filter(|e| *e <= buf.len()).ok_or_else(malformed)?;
                let bytes = &buf[pos..end];
                pos = end;
                Field::Bytes(bytes)
            }
            _ => return Err(malformed()),
        };
        out.push((key >> 3, value));
    }
    if pos > buf.len() {
        return Err(malformed());
    }
    Ok(out)
}

fn text(bytes: &[u8]) -> Result<String, ApiError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| malformed())
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A `map<string, string|bytes>` entry (key = 1, value = 2) added to `map`.
fn map_entry(map: &mut Map<String, Value>, entry: &[u8], bytes_value: bool) -> Result<(), ApiError> {
    let (mut key, mut value) = (String::new(), Value::String(String::new()));
    for (n, f) in fields(entry)? {
        match (n, f) {
            (1, Field::Bytes(b)) => key = text(b)?,
            (2, Field::Bytes(b)) => value = Value::String(if bytes_value { base64(b) } else { text(b)? }),
            _ => {}
        }
    }
    map.insert(key, value);
    Ok(())
}

fn object_meta(buf: &[u8]) -> Result<Value, ApiError> {
    let mut meta = Map::new();
    let (mut labels, mut annotations, mut finalizers) = (Map::new(), Map::new(), Vec::new());
    for (n, f) in fields(buf)? {
        match (n, f) {
            (1, Field::Bytes(b)) => drop(meta.insert("name".into(), json!(text(b)?))),
            (2, Field::Bytes(b)) => drop(meta.insert("generateName".into(), json!(text(b)?))),
            (3, Field::Bytes(b)) => drop(meta.insert("namespace".into(), json!(text(b)?))),
            (11, Field::Bytes(b)) => map_entry(&mut labels, b, false)?,
            (12, Field::Bytes(b)) => map_entry(&mut annotations, b, false)?,
            (14, Field::Bytes(b)) => finalizers.push(json!(text(b)?)),
            _ => {}
        }
    }
    if !labels.is_empty() {
        meta.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        meta.insert("annotations".into(), Value::Object(annotations));
    }
    if !finalizers.is_empty() {
        meta.insert("finalizers".into(), Value::Array(finalizers));
    }
    meta.retain(|_, v| v.as_str() != Some(""));
    Ok(Value::Object(meta))
}

/// Decodes a protobuf request body of a supported kind into its JSON form.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let unknown = body.strip_prefix(MAGIC).ok_or_else(malformed)?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (n, f) in fields(unknown)? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                for (m, g) in fields(tm)? {
                    match (m, g) {
                        (1, Field::Bytes(b)) => api_version = text(b)?,
                        (2, Field::Bytes(b)) => kind = text(b)?,
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    let mut obj = json!({"apiVersion": api_version, "kind": kind});
    let (mut data, mut other_data) = (Map::new(), Map::new());
    for (n, f) in fields(raw)? {
        match (kind.as_str(), n, f) {
            (_, 1, Field::Bytes(b)) => obj["metadata"] = object_meta(b)?,
            ("Namespace", 2, Field::Bytes(b)) => {
                let fin: Result<Vec<Value>, ApiError> = fields(b)?
                    .into_iter()
                    .filter_map(|(m, g)| match (m, g) {
                        (1, Field::Bytes(s)) => Some(text(s).map(Value::String)),
                        _ => None,
                    })
                    .collect();
                let fin = fin?;
                if !fin.is_empty() {
                    obj["spec"] = json!({ "finalizers": fin });
                }
            }
            ("Namespace", _, _) => {}
            ("Secret", 2, Field::Bytes(b)) => map_entry(&mut data, b, true)?,
            ("Secret", 3, Field::Bytes(b)) => obj["type"] = json!(text(b)?),
            ("Secret", 4, Field::Bytes(b)) => map_entry(&mut other_data, b, false)?,
            ("Secret", 5, Field::Varint(v)) => obj["immutable"] = json!(v != 0),
            ("ConfigMap", 2, Field::Bytes(b)) => map_entry(&mut data, b, false)?,
            ("ConfigMap", 3, Field::Bytes(b)) => map_entry(&mut other_data, b, true)?,
            ("ConfigMap", 4, Field::Varint(v)) => obj["immutable"] = json!(v != 0),
            ("Secret" | "ConfigMap", _, _) => {}
            _ => {
                return Err(ApiError {
                    message: format!(
                        "the test API server decodes protobuf only for Namespace, Secret and ConfigMap, not {kind}; \
                         send JSON instead (kubectl create ... --dry-run=client -o yaml | kubectl apply -f -)"
                    ),
                    ..ApiError::unsupported_media_type("application/vnd.kubernetes.protobuf")
                })
            }
        }
    }
    if !data.is_empty() {
        obj["data"] = Value::Object(data);
    }
    if !other_data.is_empty() {
        let field = if kind == "Secret" { "stringData" } else { "binaryData" };
        obj[field] = Value::Object(other_data);
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ld(field: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(field << 3) | 2, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn decodes_a_secret_envelope() {
        let meta = [ld(1, b"tls"), ld(3, b"demo"), ld(11, &[ld(1, b"a"), ld(2, b"b")].concat())].concat();
        let entry = [ld(1, b"k"), ld(2, b"hi!")].concat();
        let raw = [ld(1, &meta), ld(2, &entry), ld(3, b"kubernetes.io/tls")].concat();
        let tm = [ld(1, b"v1"), ld(2, b"Secret")].concat();
        let body = [MAGIC.to_vec(), ld(1, &tm), ld(2, &raw)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(v["kind"], "Secret");
        assert_eq!(v["metadata"], json!({"name": "tls", "namespace": "demo", "labels": {"a": "b"}}));
        assert_eq!(v["data"], json!({"k": "aGkh"}));
        assert_eq!(v["type"], "kubernetes.io/tls");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"a"), "YQ==");
        assert!(decode(b"nope").is_err());
    }
}
