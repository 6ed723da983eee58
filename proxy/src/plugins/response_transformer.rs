//! `response-transformer`: Kong's header operations on the response head and its JSON body
//! operations, built once per config ([`ResponseTransformer::new`]) and applied per response.
//!
//! - Headers (Kong's header_filter): remove, rename, replace (only if present), add (only if
//!   absent), append, in that order. When the body will be edited, `content-length` is dropped.
//! - JSON body (Kong's body_filter): only for `application/json` responses and only when JSON
//!   operations exist ([`ResponseTransformer::edits_body`]); the caller buffers that body and
//!   passes it to [`ResponseTransformer::apply_body`]. A body that is not a JSON object passes
//!   unchanged (Kong logs and passes). gRPC responses (`application/grpc`) are never buffered.
//! - The buffer: a JSON body is collected up to [`JSON_BODY_LIMIT`] bytes ([`JsonBody`]). A body
//!   that grows past it is sent unedited (what was collected, then the rest as it comes) and a
//!   warning is logged: Kong buffers without bound, sluice does not.
//! - gRPC trailers (beyond Kong, which never touches them): [`ResponseTransformer::apply_trailers`]
//!   runs remove, rename and replace on the trailers too, so that metadata a gRPC server sends
//!   late can be dropped or rewritten like a header; `grpc-status` is never removed or renamed,
//!   neither there nor in a trailers-only reply's headers (a gRPC response without it is
//!   broken). `add.headers`/`append.headers` stay on the headers, where Kong puts them, so that
//!   no entry is sent twice.
//! - Added trailers (sluice's `add.trailers` / `append.trailers`): applied after remove, rename
//!   and replace to the trailers the upstream sends ([`ResponseTransformer::apply_trailers`]),
//!   and to a gRPC trailers-only reply's header block (a response head carrying `grpc-status`:
//!   its headers are its trailers). `add` sets a name only if absent, `append` adds a value.
//!   A response that ends without trailers gets none: sluice does not invent a trailer block
//!   (an HTTP/1.1 client would not see it, and a gRPC response always ends with one).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use proxy_config::plugins::request_transformer::split_pair;
use proxy_config::plugins::{JsonType, ResponseTransformerConfig};
use serde_json::{Map, Value};
use thiserror::Error;

use super::{BuildError, HeaderFilterCtx, Phases, Plugin};

pub(crate) const NAME: &str = proxy_config::plugins::response_transformer::NAME;

/// The largest JSON response body collected for editing; a longer one passes unedited.
pub(crate) const JSON_BODY_LIMIT: usize = 8 << 20;

/// The plugin (Kong's PRIORITY 800): headers in header_filter, then the JSON body and gRPC
/// trailers in body_filter.
#[derive(Debug)]
pub(crate) struct ResponseTransformerPlugin(Arc<ResponseTransformer>);

impl ResponseTransformerPlugin {
    pub(crate) fn new(c: &ResponseTransformerConfig) -> Result<Self, BuildError> {
        ResponseTransformer::new(c)
            .map(|t| ResponseTransformerPlugin(Arc::new(t)))
            .map_err(|e| BuildError::new("config", e.to_string()))
    }
}

impl Plugin for ResponseTransformerPlugin {
    fn name(&self) -> &'static str {
        NAME
    }
    fn priority(&self) -> u32 {
        800
    }
    fn phases(&self) -> Phases {
        Phases::HEADER_FILTER.union(Phases::BODY_FILTER)
    }
    fn header_filter(&self, resp: &mut HeaderFilterCtx<'_>) {
        if self.0.apply_headers(resp.headers) {
            resp.state.json_body = Some(self.0.clone());
        }
        if resp.headers.contains_key(GRPC_STATUS) {
            self.0.add_trailers(resp.headers);
        }
    }
    fn body_filter(&self, frame: &mut Frame<Bytes>) {
        if let Some(trailers) = frame.trailers_mut() {
            self.0.apply_trailers(trailers);
        }
    }
}

/// A config the schema check let through but the proxy cannot build (it names the entry).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ResponseTransformError {
    #[error("invalid header name in '{0}'")]
    HeaderName(String),
    #[error("invalid header value in '{0}'")]
    HeaderValue(String),
    #[error("invalid entry '{0}': expected 'name:value'")]
    Pair(String),
    #[error("invalid number in '{0}'")]
    Number(String),
}

/// One instance, ready to apply.
#[derive(Debug, Clone, Default)]
pub struct ResponseTransformer {
    remove: Vec<HeaderName>,
    rename: Vec<(HeaderName, HeaderName)>,
    replace: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
    append: Vec<(HeaderName, HeaderValue)>,
    add_trailers: Vec<(HeaderName, HeaderValue)>,
    append_trailers: Vec<(HeaderName, HeaderValue)>,
    json: JsonOps,
}

const GRPC_STATUS: &str = "grpc-status";

#[derive(Debug, Clone, Default)]
struct JsonOps {
    remove: Vec<String>,
    rename: Vec<(String, String)>,
    replace: Vec<(String, Value)>,
    add: Vec<(String, Value)>,
    append: Vec<(String, Value)>,
}

impl JsonOps {
    fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.replace.is_empty()
            && self.add.is_empty()
            && self.append.is_empty()
    }
}

fn header_name(entry: &str, name: &str) -> Result<HeaderName, ResponseTransformError> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| ResponseTransformError::HeaderName(entry.to_string()))
}

fn header_pairs(list: &[String]) -> Result<Vec<(HeaderName, HeaderValue)>, ResponseTransformError> {
    list.iter()
        .map(|entry| {
            let (n, v) = split_pair(entry).ok_or_else(|| ResponseTransformError::Pair(entry.clone()))?;
            let v = HeaderValue::from_str(v).map_err(|_| ResponseTransformError::HeaderValue(entry.clone()))?;
            Ok((header_name(entry, n)?, v))
        })
        .collect()
}

/// Kong's `json_value`: the text as a string, a number, or `true` for "true" (else `false`).
fn json_value(entry: &str, text: &str, ty: Option<JsonType>) -> Result<Value, ResponseTransformError> {
    Ok(match ty {
        None | Some(JsonType::String) => Value::String(text.to_string()),
        Some(JsonType::Boolean) => Value::Bool(text == "true"),
        Some(JsonType::Number) => match text.parse::<i64>() {
            Ok(i) => Value::from(i),
            Err(_) => text
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| ResponseTransformError::Number(entry.to_string()))?,
        },
    })
}

fn json_pairs(list: &[String], types: &[JsonType]) -> Result<Vec<(String, Value)>, ResponseTransformError> {
    list.iter()
        .enumerate()
        .map(|(i, entry)| {
            let (n, v) = split_pair(entry).ok_or_else(|| ResponseTransformError::Pair(entry.clone()))?;
            Ok((n.to_string(), json_value(entry, v, types.get(i).copied())?))
        })
        .collect()
}

fn rename_pairs(list: &[String]) -> Result<Vec<(&str, &str)>, ResponseTransformError> {
    list.iter().map(|entry| split_pair(entry).ok_or_else(|| ResponseTransformError::Pair(entry.clone()))).collect()
}

impl ResponseTransformer {
    pub fn new(c: &ResponseTransformerConfig) -> Result<Self, ResponseTransformError> {
        Ok(ResponseTransformer {
            remove: c.remove.headers.iter().map(|n| header_name(n, n)).collect::<Result<_, _>>()?,
            rename: rename_pairs(&c.rename.headers)?
                .into_iter()
                .zip(&c.rename.headers)
                .map(|((a, b), entry)| Ok((header_name(entry, a)?, header_name(entry, b)?)))
                .collect::<Result<_, ResponseTransformError>>()?,
            replace: header_pairs(&c.replace.headers)?,
            add: header_pairs(&c.add.headers)?,
            append: header_pairs(&c.append.headers)?,
            add_trailers: header_pairs(&c.add.trailers)?,
            append_trailers: header_pairs(&c.append.trailers)?,
            json: JsonOps {
                remove: c.remove.json.clone(),
                rename: rename_pairs(&c.rename.json)?
                    .into_iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect(),
                replace: json_pairs(&c.replace.json, &c.replace.json_types)?,
                add: json_pairs(&c.add.json, &c.add.json_types)?,
                append: json_pairs(&c.append.json, &c.append.json_types)?,
            },
        })
    }

    /// Whether this response's body is to be edited (JSON operations and a JSON content type):
    /// only then does the caller buffer it and call [`Self::apply_body`].
    pub fn edits_body(&self, headers: &HeaderMap) -> bool {
        !self.json.is_empty() && is_json(headers)
    }

    /// The header phase: Kong's order remove, rename, replace, add, append; drops
    /// `content-length` when the body will be edited. Returns [`Self::edits_body`].
    pub fn apply_headers(&self, headers: &mut HeaderMap) -> bool {
        let edits_body = self.edits_body(headers);
        self.edit(headers, true);
        add_append(headers, &self.add, &self.append);
        if edits_body {
            headers.remove(CONTENT_LENGTH);
        }
        edits_body
    }

    /// A response's trailers (gRPC's status and late metadata): remove, rename and replace as on
    /// headers (`grpc-status` is never removed or renamed), then `add.trailers`/`append.trailers`.
    pub fn apply_trailers(&self, trailers: &mut HeaderMap) {
        self.edit(trailers, true);
        self.add_trailers(trailers);
    }

    /// `add.trailers` (only if absent) and `append.trailers` on a trailer block, or on the header
    /// block of a gRPC trailers-only reply.
    pub fn add_trailers(&self, block: &mut HeaderMap) {
        add_append(block, &self.add_trailers, &self.append_trailers);
    }

    /// remove, rename, replace.
    fn edit(&self, h: &mut HeaderMap, keep_grpc_status: bool) {
        let protected = |n: &HeaderName| keep_grpc_status && n.as_str() == "grpc-status";
        for n in &self.remove {
            if !protected(n) {
                h.remove(n);
            }
        }
        for (from, to) in &self.rename {
            if protected(from) || from == to {
                continue;
            }
            if let http::header::Entry::Occupied(e) = h.entry(from) {
                let mut values = e.remove_entry_mult().1.collect::<Vec<_>>().into_iter();
                if let Some(first) = values.next() {
                    h.insert(to.clone(), first);
                    values.for_each(|v| {
                        h.append(to.clone(), v);
                    });
                }
            }
        }
        for (n, v) in &self.replace {
            if h.contains_key(n) {
                h.insert(n.clone(), v.clone());
            }
        }
    }

    /// The body phase for a JSON response ([`Self::edits_body`]): Kong's remove, rename,
    /// replace, add, append on the top-level members. A body that is not a JSON object is
    /// returned unchanged.
    pub fn apply_body(&self, body: Bytes) -> Bytes {
        let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(&body) else { return body };
        self.json.apply(&mut obj);
        match serde_json::to_vec(&Value::Object(obj)) {
            Ok(v) => Bytes::from(v),
            Err(_) => body,
        }
    }
}

/// Kong's add (only if absent) then append.
fn add_append(h: &mut HeaderMap, add: &[(HeaderName, HeaderValue)], append: &[(HeaderName, HeaderValue)]) {
    for (n, v) in add {
        if !h.contains_key(n) {
            h.insert(n.clone(), v.clone());
        }
    }
    for (n, v) in append {
        h.append(n.clone(), v.clone());
    }
}

/// A JSON response body on its way to the client, collected (up to [`JSON_BODY_LIMIT`]) and
/// edited by [`ResponseTransformer::apply_body`] at its end; trailers follow the edited body.
/// Past the limit it is passed on unedited.
pub(crate) struct JsonBody<B> {
    inner: B,
    transformer: Arc<ResponseTransformer>,
    buf: BytesMut,
    /// Trailers held back until the edited body is out.
    trailers: Option<HeaderMap>,
    /// Over the limit: frames pass as they come.
    passing: bool,
    done: bool,
}

impl<B> JsonBody<B> {
    pub(crate) fn new(inner: B, transformer: Arc<ResponseTransformer>) -> Self {
        JsonBody { inner, transformer, buf: BytesMut::new(), trailers: None, passing: false, done: false }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for JsonBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
        }
        if this.passing {
            if !this.buf.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(this.buf.split().freeze()))));
            }
            return Pin::new(&mut this.inner).poll_frame(cx);
        }
        loop {
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        this.buf.extend_from_slice(&data);
                        if this.buf.len() > JSON_BODY_LIMIT {
                            tracing::warn!(
                                limit = JSON_BODY_LIMIT,
                                "response-transformer: JSON body over the buffer limit, sent unedited"
                            );
                            this.passing = true;
                            return Poll::Ready(Some(Ok(Frame::data(this.buf.split().freeze()))));
                        }
                    }
                    Err(frame) => {
                        if let Ok(t) = frame.into_trailers() {
                            this.trailers = Some(t);
                        }
                    }
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    this.done = true;
                    let edited = this.transformer.apply_body(this.buf.split().freeze());
                    return Poll::Ready(Some(Ok(Frame::data(edited))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl JsonOps {
    fn apply(&self, obj: &mut Map<String, Value>) {
        // Lua truthiness: a member that is absent or `false` counts as not there for replace/add.
        let truthy = |obj: &Map<String, Value>, k: &str| obj.get(k).is_some_and(|v| *v != Value::Bool(false));
        for k in &self.remove {
            obj.remove(k);
        }
        for (from, to) in &self.rename {
            if let Some(v) = obj.remove(from) {
                obj.insert(to.clone(), v);
            }
        }
        for (k, v) in &self.replace {
            if truthy(obj, k) {
                obj.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in &self.add {
            if !truthy(obj, k) {
                obj.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in &self.append {
            let merged = match obj.remove(k) {
                Some(Value::String(s)) => Value::Array(vec![Value::String(s), v.clone()]),
                Some(Value::Array(mut a)) => {
                    a.push(v.clone());
                    Value::Array(a)
                }
                _ => Value::Array(vec![v.clone()]),
            };
            obj.insert(k.clone(), merged);
        }
    }
}

/// Kong's `is_json_body`: one of the (comma-separated) content types is `application/json`,
/// parameters aside, case-insensitive.
fn is_json(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| {
        ct.split(',').any(|t| t.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")))
    })
}

#[cfg(test)]
mod tests {
    use crate::plugins::tests::{header_pairs, sorted};
    use proxy_config::plugins::PluginConfig;
    use serde_json::json;

    use super::*;

    fn transformer(config: Value) -> ResponseTransformer {
        match PluginConfig::from_entity("response-transformer", &config).unwrap() {
            PluginConfig::ResponseTransformer(c) => ResponseTransformer::new(&c).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    /// Header (name, value) pairs.
    type Pairs<'a> = &'a [(&'a str, &'a str)];

    #[test]
    fn header_operations_in_kongs_order() {
        let t = transformer(json!({
            "remove": {"headers": ["server", "x-gone"]},
            "rename": {"headers": ["x-old:x-new", "x-absent:x-never"]},
            "replace": {"headers": ["x-new:replaced", "x-missing:nope"]},
            "add": {"headers": ["x-added:1", "x-kept:ignored"]},
            "append": {"headers": ["x-kept:second", "X-Multi:m"]}
        }));
        let cases: &[(Pairs<'_>, Pairs<'_>)] = &[
            (
                &[("server", "s"), ("x-old", "a"), ("x-old", "b"), ("x-kept", "first"), ("content-length", "3")],
                &[
                    ("x-new", "replaced"),
                    ("x-added", "1"),
                    ("x-kept", "first"),
                    ("x-kept", "second"),
                    ("x-multi", "m"),
                    ("content-length", "3"),
                ],
            ),
            (&[], &[("x-added", "1"), ("x-kept", "ignored"), ("x-kept", "second"), ("x-multi", "m")]),
            // rename keeps every value when nothing replaces it afterwards
            (
                &[("x-gone", "1"), ("x-added", "0")],
                &[("x-added", "0"), ("x-kept", "ignored"), ("x-kept", "second"), ("x-multi", "m")],
            ),
        ];
        for (i, (input, want)) in cases.iter().enumerate() {
            let mut h = headers(input);
            assert!(!t.apply_headers(&mut h), "case {i}: no JSON ops");
            assert_eq!(header_pairs(&h), sorted(want), "case {i}");
        }
        let t = transformer(json!({"rename": {"headers": ["x-old:x-new"]}}));
        let mut h = headers(&[("x-old", "a"), ("x-old", "b"), ("x-new", "gone")]);
        t.apply_headers(&mut h);
        assert_eq!(header_pairs(&h), sorted(&[("x-new", "a"), ("x-new", "b")]));
    }

    #[test]
    fn json_bodies_are_edited_only_for_json_responses() {
        let t = transformer(json!({"remove": {"json": ["secret"]}}));
        for (ct, edits) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("text/plain, application/json", true),
            ("application/grpc", false),
            ("application/problem+json", false),
            ("text/html", false),
        ] {
            let mut h = headers(&[("content-type", ct), ("content-length", "10")]);
            assert_eq!(t.apply_headers(&mut h), edits, "{ct}");
            assert_eq!(h.contains_key(CONTENT_LENGTH), !edits, "{ct}: content-length dropped only when edited");
        }
        let mut h = headers(&[("content-type", "application/json")]);
        assert!(!transformer(json!({"add": {"headers": ["x:1"]}})).apply_headers(&mut h), "no JSON ops: no buffering");
    }

    #[test]
    fn json_operations_follow_kong() {
        let t = transformer(json!({
            "remove": {"json": ["secret"]},
            "rename": {"json": ["old:new"]},
            "replace": {"json": ["flag:yes", "f:x", "absent:x", "n:7"], "json_types": ["string", "string", "string", "number"]},
            "add": {"json": ["added:true", "f2:set", "present:no"], "json_types": ["boolean"]},
            "append": {"json": ["list:3", "s:b", "fresh:1.5", "num:x"], "json_types": ["number", "string", "number"]}
        }));
        let body = json!({"secret": 1, "old": {"a": 1}, "flag": "no", "f": false, "n": 1, "f2": false, "present": 0,
                          "list": [1, 2], "s": "a", "num": 5});
        let out: Value = serde_json::from_slice(&t.apply_body(Bytes::from(body.to_string()))).unwrap();
        assert_eq!(
            out,
            json!({"new": {"a": 1}, "flag": "yes", "f": false, "n": 7, "added": true, "f2": "set", "present": 0,
                   "list": [1, 2, 3], "s": ["a", "b"], "fresh": [1.5], "num": ["x"]})
        );
    }

    #[test]
    fn non_object_bodies_pass_unchanged() {
        let t = transformer(json!({"add": {"json": ["a:1"]}}));
        for body in ["", "not json", "[1,2]", "\"s\"", "{\"a\":"] {
            assert_eq!(t.apply_body(Bytes::from(body)), body, "{body}");
        }
        assert_eq!(t.apply_body(Bytes::from("{}")), "{\"a\":\"1\"}");
    }

    #[test]
    fn grpc_trailers_are_edited_and_keep_grpc_status() {
        let t = transformer(json!({
            "remove": {"headers": ["x-debug", "grpc-status"]},
            "rename": {"headers": ["x-internal:x-public", "grpc-status:x-status"]},
            "replace": {"headers": ["grpc-message:redacted"]},
            "add": {"headers": ["x-added:1"]},
            "append": {"headers": ["x-appended:1"]}
        }));
        let mut trailers = headers(&[
            ("grpc-status", "13"),
            ("grpc-message", "db password wrong"),
            ("x-debug", "1"),
            ("x-internal", "i"),
        ]);
        t.apply_trailers(&mut trailers);
        assert_eq!(
            header_pairs(&trailers),
            sorted(&[("grpc-status", "13"), ("grpc-message", "redacted"), ("x-public", "i")]),
            "add/append stay on the headers"
        );
        let mut ok = headers(&[("grpc-status", "0")]);
        t.apply_trailers(&mut ok);
        assert_eq!(header_pairs(&ok), sorted(&[("grpc-status", "0")]), "replace only acts on present entries");
    }

    #[test]
    fn trailers_are_added_and_appended_after_the_edits() {
        let t = transformer(json!({
            "remove": {"headers": ["x-debug"]},
            "add": {"headers": ["x-h:1"], "trailers": ["x-served-by:edge", "x-kept:new"]},
            "append": {"trailers": ["x-hop:a", "x-debug:late"]}
        }));
        let mut trailers = headers(&[("grpc-status", "0"), ("x-kept", "old"), ("x-debug", "1")]);
        t.apply_trailers(&mut trailers);
        assert_eq!(
            header_pairs(&trailers),
            sorted(&[
                ("grpc-status", "0"),
                ("x-kept", "old"),
                ("x-served-by", "edge"),
                ("x-hop", "a"),
                ("x-debug", "late")
            ]),
        );
        let mut head = headers(&[("content-type", "application/grpc")]);
        t.apply_headers(&mut head);
        assert_eq!(
            header_pairs(&head),
            sorted(&[("content-type", "application/grpc"), ("x-h", "1")]),
            "trailers stay out of the headers"
        );
    }

    #[test]
    fn typed_values() {
        for (text, ty, want) in [
            ("1", Some(JsonType::Number), json!(1)),
            ("-2.5", Some(JsonType::Number), json!(-2.5)),
            ("true", Some(JsonType::Boolean), json!(true)),
            ("yes", Some(JsonType::Boolean), json!(false)),
            ("1", Some(JsonType::String), json!("1")),
            ("a:b", None, json!("a:b")),
        ] {
            assert_eq!(json_value("e", text, ty).unwrap(), want, "{text} {ty:?}");
        }
        assert_eq!(json_value("e", "x", Some(JsonType::Number)), Err(ResponseTransformError::Number("e".into())));
    }
}
