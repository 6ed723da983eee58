//! `request-transformer`: Kong's request edits, built once per config
//! ([`RequestTransformer::new`]) and applied per request in Kong's order: `replace.uri`, then
//! `http_method`, then headers, body and query string, each list as remove, rename, replace (only
//! if present), add (only if absent), append.
//!
//! Values are templates (`$(headers.x)`, `$(query_params.y)`, `$(uri_captures[1])`, see
//! [`proxy_config::plugins::template`]); all of them render against the request as the client sent
//! it, before any edit.
//!
//! The body: [`RequestTransformer::apply_head`] edits the head and returns a [`BodyEdit`] only
//! when this request's body must be read: body operations on a JSON or
//! `application/x-www-form-urlencoded` body, or `http_method` turning a form POST into
//! GET/HEAD/TRACE (Kong then copies the form into the query string). The caller buffers the body
//! only then and calls [`BodyEdit::apply`]. Any other content type (gRPC included) is never read,
//! as in Kong. A `multipart/form-data` body with body operations is refused
//! ([`TransformError::Multipart`], 415): sluice does not rewrite multipart bodies (Kong does).
//!
//! On the request path ([`RequestTransformerPlugin`], Kong's PRIORITY 801, access phase) the head
//! is edited in place; what acts on the upstream request (Kong's `set_path`, which replaces the
//! whole upstream path, service path included; `host` set by a header operation, which becomes
//! the upstream Host / `:authority`; the body edit) is left as an [`UpstreamEdit`] that
//! [`finish`] applies once `phases::upstream_request` built the request. The body is collected
//! up to [`BODY_LIMIT`] bytes; a longer one is refused with 413.

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, TRANSFER_ENCODING};
use http::request::Parts;
use http::uri::{Authority, PathAndQuery};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use proxy_config::plugins::request_transformer::split_pair;
use proxy_config::plugins::template::{Key, Source, Template};
use proxy_config::plugins::RequestTransformerConfig;
use serde_json::{Map, Value};
use thiserror::Error;

use super::{AccessCtx, Phases, Plugin};
use crate::downstream::request_body::{ClientBody, RequestBody};
use crate::respond::{PluginReply, ProxyError};

pub(crate) const NAME: &str = proxy_config::plugins::request_transformer::NAME;

/// The largest request body collected for a body edit; a longer one is refused with 413.
pub(crate) const BODY_LIMIT: usize = 8 << 20;

/// The plugin on the request path; see the module doc.
#[derive(Debug)]
pub(crate) struct RequestTransformerPlugin(RequestTransformer);

impl RequestTransformerPlugin {
    pub(crate) fn new(c: &RequestTransformerConfig) -> Result<Self, super::BuildError> {
        RequestTransformer::new(c)
            .map(RequestTransformerPlugin)
            .map_err(|e| super::BuildError::new("config", e.to_string()))
    }
}

impl Plugin for RequestTransformerPlugin {
    fn name(&self) -> &'static str {
        NAME
    }
    fn priority(&self) -> u32 {
        801
    }
    fn phases(&self) -> Phases {
        Phases::ACCESS
    }
    fn access(&self, req: &mut AccessCtx<'_>) -> Result<(), Box<PluginReply>> {
        let t = &self.0;
        let captures = match t.reads_captures {
            true => captures_of(req.capture_paths, req.parts.uri.path()),
            false => UriCaptures::default(),
        };
        let body = t.apply_head(req.parts, &captures).map_err(|e| Box::new(reply(&e)))?;
        let path = t.uri.is_some().then(|| req.parts.uri.path().to_string());
        let host = if t.sets_host { req.parts.headers.get(HOST).cloned() } else { None };
        if path.is_some() || host.is_some() || body.is_some() {
            req.state.upstream_edit = Some(Box::new(UpstreamEdit { path, host, body }));
        }
        Ok(())
    }
}

fn reply(e: &TransformError) -> PluginReply {
    PluginReply::new(e.status().as_u16(), e.to_string())
}

/// The captures of the first of the route's regex paths that matches `path`.
fn captures_of(paths: &[regex::Regex], path: &str) -> UriCaptures {
    paths.iter().find_map(|re| re.captures(path).map(|c| UriCaptures::from_regex(re, &c))).unwrap_or_default()
}

/// What request-transformer does to the upstream request once it is built (grpc-web sets its
/// path too).
#[derive(Debug, Default)]
pub struct UpstreamEdit {
    /// `replace.uri`, rendered and escaped: the whole upstream path.
    path: Option<String>,
    /// The Host a header operation set: the upstream Host / `:authority`.
    host: Option<HeaderValue>,
    body: Option<BodyEdit>,
}

impl UpstreamEdit {
    /// Sets the whole upstream path (escaped, as received).
    pub(crate) fn set_path(&mut self, path: String) {
        self.path = Some(path);
    }
}

/// Applies `edit` to the upstream request, in place: path, host, then the body (collected,
/// bounded).
pub(crate) async fn finish(req: &mut Request<RequestBody>, edit: UpstreamEdit) -> Result<(), ProxyError> {
    let refuse = |e: TransformError| ProxyError::Plugin(Box::new(reply(&e)));
    if let Some(path) = &edit.path {
        let query = req.uri().query().map(str::to_string);
        set_uri_path(req.uri_mut(), path, query.as_deref()).map_err(refuse)?;
    }
    if let Some(host) = edit.host {
        if req.version() == Version::HTTP_2 {
            let bad_host = || refuse(TransformError::HeaderValue(HOST.to_string()));
            let authority = Authority::try_from(host.as_bytes()).map_err(|_| bad_host())?;
            let mut up = std::mem::take(req.uri_mut()).into_parts();
            up.authority = Some(authority);
            *req.uri_mut() = Uri::from_parts(up).map_err(|_| bad_host())?;
        } else {
            req.headers_mut().insert(HOST, host);
        }
    }
    let Some(body_edit) = edit.body else { return Ok(()) };
    let (mut parts, body) = std::mem::replace(req, Request::new(RequestBody::new(ClientBody::Empty).0)).into_parts();
    let bytes = match Limited::new(body, BODY_LIMIT).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return Err(refuse(TransformError::TooLarge)),
        Err(e) => return Err(ProxyError::InvalidRequest { reason: e.to_string() }),
    };
    let edited = body_edit.apply(&mut parts, bytes).map_err(refuse)?;
    let body = ClientBody::Filtered(Box::pin(Full::new(edited).map_err(|never| match never {})));
    *req = Request::from_parts(parts, RequestBody::new(body).0);
    Ok(())
}

#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum BuildError {
    #[error("invalid entry '{0}': expected 'name:value'")]
    Pair(String),
    #[error("invalid header name in '{0}'")]
    HeaderName(String),
    #[error("invalid method '{0}'")]
    Method(String),
    #[error("{0}")]
    Template(String),
}

/// Why a request cannot be transformed; [`TransformError::status`] is the answer.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum TransformError {
    #[error("request-transformer: multipart/form-data bodies are not transformed by sluice")]
    Multipart,
    #[error("request-transformer: header '{0}' rendered to an invalid value")]
    HeaderValue(String),
    #[error("request-transformer: the rendered path '{0}' is not a valid path")]
    Path(String),
    #[error("request-transformer: the request body is over 8 MiB and is not transformed")]
    TooLarge,
}

impl TransformError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            TransformError::Multipart => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            TransformError::HeaderValue(_) | TransformError::Path(_) => StatusCode::BAD_REQUEST,
            TransformError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }
}

/// The named and numbered groups of the route's regex path that matched (Kong's
/// `uri_captures`): `[0]` is the whole match. Empty for prefix paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UriCaptures {
    numbered: Vec<Option<String>>,
    named: Vec<(String, String)>,
}

impl UriCaptures {
    /// The captures of `re` matching the request path.
    pub(crate) fn from_regex(re: &regex::Regex, caps: &regex::Captures<'_>) -> Self {
        UriCaptures {
            numbered: caps.iter().map(|m| m.map(|m| m.as_str().to_string())).collect(),
            named: re
                .capture_names()
                .flatten()
                .filter_map(|n| caps.name(n).map(|m| (n.to_string(), m.as_str().to_string())))
                .collect(),
        }
    }

    fn get(&self, key: &Key) -> Option<&str> {
        match key {
            Key::Index(i) => self.numbered.get(*i)?.as_deref(),
            Key::Name(n) => self.named.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str()),
        }
    }
}

/// A header entry: the name and its value template (pre-built when it is a literal).
#[derive(Debug, Clone)]
struct HeaderOp {
    name: HeaderName,
    value: Template,
    literal: Option<HeaderValue>,
}

/// A query or body entry.
#[derive(Debug, Clone)]
struct ParamOp {
    name: String,
    value: Template,
}

#[derive(Debug, Clone, Default)]
struct ParamOps {
    remove: Vec<String>,
    rename: Vec<(String, String)>,
    replace: Vec<ParamOp>,
    add: Vec<ParamOp>,
    append: Vec<ParamOp>,
}

impl ParamOps {
    fn build(
        c: &RequestTransformerConfig,
        list: impl Fn(&proxy_config::plugins::request_transformer::Ops) -> &Vec<String>,
        replace: &[String],
    ) -> Result<Self, BuildError> {
        let ops = |entries: &[String]| -> Result<Vec<ParamOp>, BuildError> {
            entries
                .iter()
                .map(|e| {
                    let (n, v) = split_pair(e).ok_or_else(|| BuildError::Pair(e.clone()))?;
                    Ok(ParamOp { name: n.to_string(), value: Template::parse(v).map_err(BuildError::Template)? })
                })
                .collect()
        };
        Ok(ParamOps {
            remove: list(&c.remove).clone(),
            rename: list(&c.rename)
                .iter()
                .map(|e| {
                    split_pair(e)
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                        .ok_or_else(|| BuildError::Pair(e.clone()))
                })
                .collect::<Result<_, _>>()?,
            replace: ops(replace)?,
            add: ops(list(&c.add))?,
            append: ops(list(&c.append))?,
        })
    }

    fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.replace.is_empty()
            && self.add.is_empty()
            && self.append.is_empty()
    }

    fn render(&self, env: &Env<'_>) -> RenderedParams {
        let r = |ops: &[ParamOp]| ops.iter().map(|o| (o.name.clone(), env.render(&o.value))).collect();
        RenderedParams {
            remove: self.remove.clone(),
            rename: self.rename.clone(),
            replace: r(&self.replace),
            add: r(&self.add),
            append: r(&self.append),
        }
    }
}

/// Param operations with their values rendered for one request.
#[derive(Debug, Clone, Default)]
struct RenderedParams {
    remove: Vec<String>,
    rename: Vec<(String, String)>,
    replace: Vec<(String, String)>,
    add: Vec<(String, String)>,
    append: Vec<(String, String)>,
}

/// One instance, ready to apply.
#[derive(Debug, Clone)]
pub(crate) struct RequestTransformer {
    uri: Option<Template>,
    method: Option<Method>,
    remove_headers: Vec<HeaderName>,
    rename_headers: Vec<(HeaderName, HeaderName)>,
    replace_headers: Vec<HeaderOp>,
    add_headers: Vec<HeaderOp>,
    append_headers: Vec<HeaderOp>,
    query: ParamOps,
    body: ParamOps,
    /// Whether a request's query string must be parsed (query operations or a template reading it).
    reads_query: bool,
    /// Whether a template reads `uri_captures`.
    reads_captures: bool,
    /// Whether a header operation may set `host`.
    sets_host: bool,
}

fn header_name(entry: &str, name: &str) -> Result<HeaderName, BuildError> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| BuildError::HeaderName(entry.to_string()))
}

fn header_ops(list: &[String]) -> Result<Vec<HeaderOp>, BuildError> {
    list.iter()
        .map(|e| {
            let (n, v) = split_pair(e).ok_or_else(|| BuildError::Pair(e.clone()))?;
            let value = Template::parse(v).map_err(BuildError::Template)?;
            let literal = value.literal().and_then(|l| HeaderValue::from_str(l).ok());
            Ok(HeaderOp { name: header_name(e, n)?, value, literal })
        })
        .collect()
}

impl RequestTransformer {
    pub(crate) fn new(c: &RequestTransformerConfig) -> Result<Self, BuildError> {
        let method = match &c.http_method {
            Some(m) => Some(Method::from_bytes(m.as_bytes()).map_err(|_| BuildError::Method(m.clone()))?),
            None => None,
        };
        let mut t = RequestTransformer {
            uri: c.replace.uri.as_deref().map(Template::parse).transpose().map_err(BuildError::Template)?,
            method,
            remove_headers: c.remove.headers.iter().map(|n| header_name(n, n)).collect::<Result<_, _>>()?,
            rename_headers: c
                .rename
                .headers
                .iter()
                .map(|e| {
                    let (a, b) = split_pair(e).ok_or_else(|| BuildError::Pair(e.clone()))?;
                    Ok((header_name(e, a)?, header_name(e, b)?))
                })
                .collect::<Result<_, BuildError>>()?,
            replace_headers: header_ops(&c.replace.headers)?,
            add_headers: header_ops(&c.add.headers)?,
            append_headers: header_ops(&c.append.headers)?,
            query: ParamOps::build(c, |o| &o.querystring, &c.replace.querystring)?,
            body: ParamOps::build(c, |o| &o.body, &c.replace.body)?,
            reads_query: false,
            reads_captures: false,
            sets_host: false,
        };
        let templates = t
            .uri
            .iter()
            .chain([&t.replace_headers, &t.add_headers, &t.append_headers].into_iter().flatten().map(|o| &o.value))
            .chain(
                [&t.query, &t.body]
                    .into_iter()
                    .flat_map(|p| [&p.replace, &p.add, &p.append].into_iter().flatten().map(|o| &o.value)),
            );
        let sources: Vec<Source> = templates.flat_map(|t| t.vars()).map(|v| v.source).collect();
        t.reads_query = sources.contains(&Source::QueryParams) || !t.query.is_empty() || t.moves_form_to_query();
        t.reads_captures = sources.contains(&Source::UriCaptures);
        t.sets_host =
            [&t.replace_headers, &t.add_headers, &t.append_headers].into_iter().flatten().any(|o| o.name == HOST)
                || t.rename_headers.iter().any(|(_, to)| to == HOST);
        Ok(t)
    }

    /// Whether `http_method` makes Kong copy a form body into the query string.
    fn moves_form_to_query(&self) -> bool {
        self.method.as_ref().is_some_and(|m| *m == Method::GET || *m == Method::HEAD || *m == Method::TRACE)
    }

    /// Edits the request head (path, method, headers, query string). Returns the body edit when
    /// this request's body must be read ([`BodyEdit`]); `None` = leave the body alone (never
    /// buffered). The query string is edited by the body edit instead when it depends on the body.
    pub(crate) fn apply_head(
        &self,
        parts: &mut Parts,
        captures: &UriCaptures,
    ) -> Result<Option<BodyEdit>, TransformError> {
        let kind = body_kind(parts.headers.get(CONTENT_TYPE));
        let body_ops = !self.body.is_empty() && kind.is_some();
        if body_ops && kind == Some(BodyKind::Multipart) {
            return Err(TransformError::Multipart);
        }
        let to_query = self.moves_form_to_query() && kind == Some(BodyKind::Form);
        let query = if self.reads_query { Params::parse(parts.uri.query().unwrap_or("")) } else { Params::default() };

        // Render every template against the request as it came in.
        let (path, headers, query_ops, body_ops_rendered) = {
            let env = Env { headers: &parts.headers, query: &query, captures };
            let path = self.uri.as_ref().map(|t| env.render(t));
            let render_headers = |ops: &[HeaderOp]| -> Result<Vec<(HeaderName, HeaderValue)>, TransformError> {
                ops.iter()
                    .map(|o| {
                        let v = match &o.literal {
                            Some(v) => v.clone(),
                            None => HeaderValue::from_str(&env.render(&o.value))
                                .map_err(|_| TransformError::HeaderValue(o.name.to_string()))?,
                        };
                        Ok((o.name.clone(), v))
                    })
                    .collect()
            };
            let headers = [
                render_headers(&self.replace_headers)?,
                render_headers(&self.add_headers)?,
                render_headers(&self.append_headers)?,
            ];
            let query_ops = (!self.query.is_empty()).then(|| self.query.render(&env));
            let body_rendered = body_ops.then(|| self.body.render(&env));
            (path, headers, query_ops, body_rendered)
        };

        if let Some(path) = path {
            set_path(parts, &path)?;
        }
        if let Some(m) = &self.method {
            parts.method = m.clone();
        }
        let [replace, add, append] = headers;
        self.edit_headers(&mut parts.headers, replace, add, append);

        if !to_query && !body_ops {
            if let Some(ops) = query_ops {
                let mut q = query;
                q.apply(&ops, false);
                set_query(parts, &q.encode(true))?;
            }
            return Ok(None);
        }
        Ok(Some(BodyEdit {
            kind: kind.unwrap_or(BodyKind::Form),
            body_ops: body_ops_rendered,
            query: (to_query || query_ops.is_some()).then_some(QueryEdit {
                base: query,
                ops: query_ops,
                from_form: to_query,
            }),
        }))
    }

    fn edit_headers(
        &self,
        h: &mut HeaderMap,
        replace: Vec<(HeaderName, HeaderValue)>,
        add: Vec<(HeaderName, HeaderValue)>,
        append: Vec<(HeaderName, HeaderValue)>,
    ) {
        for n in &self.remove_headers {
            h.remove(n);
        }
        for (from, to) in &self.rename_headers {
            if from == to {
                continue;
            }
            if let http::header::Entry::Occupied(e) = h.entry(from) {
                let values: Vec<HeaderValue> = e.remove_entry_mult().1.collect();
                h.remove(to);
                for v in values {
                    h.append(to.clone(), v);
                }
            }
        }
        for (n, v) in replace {
            if n == HOST || h.contains_key(&n) {
                h.insert(n, v);
            }
        }
        for (n, v) in add {
            if !h.contains_key(&n) {
                h.insert(n, v);
            }
        }
        for (n, v) in append {
            h.append(n, v);
        }
    }
}

/// The body part of one request's transformation; see [`RequestTransformer::apply_head`].
#[derive(Debug)]
pub(crate) struct BodyEdit {
    kind: BodyKind,
    body_ops: Option<RenderedParams>,
    query: Option<QueryEdit>,
}

#[derive(Debug)]
struct QueryEdit {
    base: Params,
    ops: Option<RenderedParams>,
    from_form: bool,
}

impl BodyEdit {
    /// Edits the buffered body (and, when it depends on the body, the query string) and returns
    /// the body to send; `content-length` is set to its length. A body that does not parse as
    /// its content type (or a JSON body that is not an object) is sent unchanged, as in Kong.
    pub(crate) fn apply(self, parts: &mut Parts, body: Bytes) -> Result<Bytes, TransformError> {
        if let Some(q) = self.query {
            let mut query = q.base;
            let mut changed = false;
            if q.from_form {
                for (name, values) in Params::parse(&String::from_utf8_lossy(&body)).0 {
                    query.entry(&name).extend(values);
                    changed = true;
                }
            }
            if let Some(ops) = &q.ops {
                query.apply(ops, false);
                changed = true;
            }
            // Kong leaves the query string alone when the form is empty and nothing else edits it.
            if changed {
                set_query(parts, &query.encode(true))?;
            }
        }
        let Some(ops) = self.body_ops else { return Ok(body) };
        let edited = match self.kind {
            BodyKind::Json => edit_json(&ops, &body),
            BodyKind::Form => {
                let text = match std::str::from_utf8(&body) {
                    Ok(t) => t,
                    Err(_) => return Ok(body),
                };
                let mut params = Params::parse(text);
                params.apply(&ops, body.is_empty());
                Some(Bytes::from(params.encode(false)))
            }
            BodyKind::Multipart => None,
        };
        let Some(edited) = edited else { return Ok(body) };
        parts.headers.remove(TRANSFER_ENCODING);
        parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(edited.len()));
        Ok(edited)
    }
}

/// Kong's JSON body edit: remove, rename and replace only on a non-empty body; values are strings.
fn edit_json(ops: &RenderedParams, body: &[u8]) -> Option<Bytes> {
    let mut obj = if body.is_empty() {
        Map::new()
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => m,
            _ => return None,
        }
    };
    let truthy = |obj: &Map<String, Value>, k: &str| obj.get(k).is_some_and(|v| *v != Value::Bool(false));
    if !body.is_empty() {
        for k in &ops.remove {
            obj.remove(k);
        }
        for (from, to) in &ops.rename {
            if from != to {
                if let Some(v) = obj.remove(from) {
                    obj.insert(to.clone(), v);
                }
            }
        }
        for (k, v) in &ops.replace {
            if truthy(&obj, k) {
                obj.insert(k.clone(), Value::String(v.clone()));
            }
        }
    }
    for (k, v) in &ops.add {
        if !truthy(&obj, k) {
            obj.insert(k.clone(), Value::String(v.clone()));
        }
    }
    for (k, v) in &ops.append {
        let v = Value::String(v.clone());
        let merged = match obj.remove(k) {
            Some(Value::String(s)) => Value::Array(vec![Value::String(s), v]),
            Some(Value::Array(mut a)) => {
                a.push(v);
                Value::Array(a)
            }
            _ => Value::Array(vec![v]),
        };
        obj.insert(k.clone(), merged);
    }
    serde_json::to_vec(&Value::Object(obj)).ok().map(Bytes::from)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Json,
    Form,
    Multipart,
}

/// Kong's `get_content_type`: a case-insensitive substring match, JSON first.
fn body_kind(ct: Option<&HeaderValue>) -> Option<BodyKind> {
    let ct = ct?.to_str().ok()?.to_ascii_lowercase();
    if ct.contains("application/json") {
        Some(BodyKind::Json)
    } else if ct.contains("multipart/form-data") {
        Some(BodyKind::Multipart)
    } else if ct.contains("application/x-www-form-urlencoded") {
        Some(BodyKind::Form)
    } else {
        None
    }
}

/// The request as templates see it.
struct Env<'a> {
    headers: &'a HeaderMap,
    query: &'a Params,
    captures: &'a UriCaptures,
}

impl Env<'_> {
    fn render(&self, t: &Template) -> String {
        t.render(|source, key| match (source, key) {
            (Source::Headers, Key::Name(n)) => self.header(n),
            (Source::QueryParams, Key::Name(n)) => self.query.first(n).map(Cow::Borrowed),
            (Source::UriCaptures, k) => self.captures.get(k).map(Cow::Borrowed),
            _ => None,
        })
    }

    /// A header by name, case-insensitive, `_` matching `-` as nginx's header table does; several
    /// values are joined with ", ".
    fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        let lookup = |n: &str| {
            let values: Vec<&str> = self.headers.get_all(n).iter().filter_map(|v| v.to_str().ok()).collect();
            match values.len() {
                0 => None,
                1 => Some(Cow::Borrowed(values[0])),
                _ => Some(Cow::Owned(values.join(", "))),
            }
        };
        let lower = name.to_ascii_lowercase();
        lookup(&lower).or_else(|| lower.contains('_').then(|| lookup(&lower.replace('_', "-"))).flatten())
    }
}

/// Query or form parameters in order; a value of `None` is a bare key (`?flag`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Params(Vec<(String, Vec<Option<String>>)>);

impl Params {
    fn parse(s: &str) -> Self {
        let mut p = Params::default();
        for pair in s.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = match pair.split_once('=') {
                Some((k, v)) => (decode(k), Some(decode(v))),
                None => (decode(pair), None),
            };
            p.entry(&k).push(v);
        }
        p
    }

    fn entry(&mut self, name: &str) -> &mut Vec<Option<String>> {
        let i = match self.0.iter().position(|(k, _)| k == name) {
            Some(i) => i,
            None => {
                self.0.push((name.to_string(), Vec::new()));
                self.0.len() - 1
            }
        };
        &mut self.0[i].1
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.0.iter().position(|(k, _)| k == name)
    }

    /// The first value (a bare key reads as "true", as in Lua).
    fn first(&self, name: &str) -> Option<&str> {
        let values = &self.0[self.position(name)?].1;
        Some(values.first()?.as_deref().unwrap_or("true"))
    }

    /// Kong's order; `empty_body` skips remove/rename/replace as Kong does for an empty body.
    fn apply(&mut self, ops: &RenderedParams, empty_body: bool) {
        if !empty_body {
            for k in &ops.remove {
                self.0.retain(|(n, _)| n != k);
            }
            for (from, to) in &ops.rename {
                if from == to {
                    continue;
                }
                if let Some(i) = self.position(from) {
                    let (_, values) = self.0.remove(i);
                    self.0.retain(|(n, _)| n != to);
                    self.0.push((to.clone(), values));
                }
            }
            for (k, v) in &ops.replace {
                if let Some(i) = self.position(k) {
                    self.0[i].1 = vec![Some(v.clone())];
                }
            }
        }
        for (k, v) in &ops.add {
            if self.position(k).is_none() {
                self.0.push((k.clone(), vec![Some(v.clone())]));
            }
        }
        for (k, v) in &ops.append {
            let values = self.entry(k);
            // Kong's append_value: a bare key (Lua `true`) is replaced, not kept.
            values.retain(Option::is_some);
            values.push(Some(v.clone()));
        }
    }

    /// `k=v&...`; `sorted` orders keys as Kong's `set_query` does (a form body keeps its order).
    fn encode(&self, sorted: bool) -> String {
        let mut entries: Vec<&(String, Vec<Option<String>>)> = self.0.iter().collect();
        if sorted {
            entries.sort_by(|a, b| a.0.cmp(&b.0));
        }
        let mut out = String::new();
        for (k, values) in entries {
            for v in values {
                if !out.is_empty() {
                    out.push('&');
                }
                escape_into(&mut out, k);
                if let Some(v) = v {
                    out.push('=');
                    escape_into(&mut out, v);
                }
            }
        }
        out
    }
}

/// Percent-decoding with `+` as space (nginx's `decode_args`); invalid escapes are kept.
pub(crate) fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Percent-encodes all but RFC 3986's unreserved characters.
fn escape_into(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// Percent-encodes what may not appear in a path (keeps `/`, existing escapes and RFC 3986
/// path characters).
fn escape_path(p: &str) -> String {
    let mut out = String::with_capacity(p.len() + 1);
    if !p.starts_with('/') {
        out.push('/');
    }
    for b in p.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn rebuild(parts: &mut Parts, path: &str, query: Option<&str>, shown: &str) -> Result<(), TransformError> {
    rebuild_uri(&mut parts.uri, path, query, shown)
}

/// `uri` with `path` (already escaped) and `query`, scheme and authority kept.
fn set_uri_path(uri: &mut Uri, path: &str, query: Option<&str>) -> Result<(), TransformError> {
    rebuild_uri(uri, path, query, path)
}

fn rebuild_uri(uri: &mut Uri, path: &str, query: Option<&str>, shown: &str) -> Result<(), TransformError> {
    let pq = match query {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path.to_string(),
    };
    let pq: PathAndQuery = pq.parse().map_err(|_| TransformError::Path(shown.to_string()))?;
    let mut up = std::mem::take(uri).into_parts();
    up.path_and_query = Some(pq);
    *uri = Uri::from_parts(up).map_err(|_| TransformError::Path(shown.to_string()))?;
    Ok(())
}

/// Kong's `set_path`: the new path, the query string kept.
fn set_path(parts: &mut Parts, path: &str) -> Result<(), TransformError> {
    let query = parts.uri.query().map(str::to_string);
    rebuild(parts, &escape_path(path), query.as_deref(), path)
}

fn set_query(parts: &mut Parts, query: &str) -> Result<(), TransformError> {
    let path = parts.uri.path().to_string();
    rebuild(parts, &path, Some(query), &path)
}

#[cfg(test)]
mod tests {
    use crate::plugins::tests::{header_pairs, sorted};
    use proxy_config::plugins::PluginConfig;
    use serde_json::json;

    use super::*;

    fn transformer(config: Value) -> RequestTransformer {
        match PluginConfig::from_entity("request-transformer", &config).unwrap() {
            PluginConfig::RequestTransformer(c) => RequestTransformer::new(&c).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().method(method).uri(uri);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    /// Header (name, value) pairs.
    type Pairs<'a> = &'a [(&'a str, &'a str)];

    #[test]
    fn header_operations_in_kongs_order() {
        let t = transformer(json!({
            "remove": {"headers": ["x-gone"]},
            "rename": {"headers": ["x-old:x-new"]},
            "replace": {"headers": ["x-new:replaced", "x-absent:no", "host:upstream.example"]},
            "add": {"headers": ["x-added:1", "x-kept:ignored"]},
            "append": {"headers": ["x-kept:second"]}
        }));
        let cases: &[(Pairs<'_>, Pairs<'_>)] = &[
            (
                &[("x-gone", "1"), ("x-old", "a"), ("x-kept", "first"), ("host", "client.example")],
                &[
                    ("x-new", "replaced"),
                    ("x-added", "1"),
                    ("x-kept", "first"),
                    ("x-kept", "second"),
                    ("host", "upstream.example"),
                ],
            ),
            // replace sets host even when absent (Kong's special case); others act only when present
            (&[], &[("x-added", "1"), ("x-kept", "ignored"), ("x-kept", "second"), ("host", "upstream.example")]),
        ];
        for (i, (input, want)) in cases.iter().enumerate() {
            let mut parts = request("GET", "/", input);
            assert!(t.apply_head(&mut parts, &UriCaptures::default()).unwrap().is_none());
            assert_eq!(header_pairs(&parts.headers), sorted(want), "case {i}");
        }
        // rename moves every value and overwrites the target
        let t = transformer(json!({"rename": {"headers": ["x-old:x-new"]}}));
        let mut parts = request("GET", "/", &[("x-old", "a"), ("x-old", "b"), ("x-new", "gone")]);
        t.apply_head(&mut parts, &UriCaptures::default()).unwrap();
        assert_eq!(header_pairs(&parts.headers), sorted(&[("x-new", "a"), ("x-new", "b")]));
    }

    #[test]
    fn templates_read_the_request_as_it_came_in() {
        let re = regex::Regex::new(r"^/users/(?<id>\d+)/(\w+)$").unwrap();
        let caps = re.captures("/users/42/posts").unwrap();
        let captures = UriCaptures::from_regex(&re, &caps);
        let t = transformer(json!({
            "remove": {"headers": ["x-user"]},
            "replace": {"uri": "/v2/$(uri_captures.id)/$(uri_captures[2])"},
            "add": {"headers": ["x-who:$(headers.x_user or \"anon\")", "x-q:q=$(query_params.q)", "x-whole:$(uri_captures[0])",
                                 "x-multi:$(headers[\"x-m\"])", "x-flag:$(query_params.flag)", "x-none:[$(headers.nope)]"]}
        }));
        let mut parts =
            request("GET", "/users/42/posts?q=a+b%21&flag", &[("x-user", "ann"), ("x-m", "1"), ("x-m", "2")]);
        assert!(t.apply_head(&mut parts, &captures).unwrap().is_none());
        assert_eq!(parts.uri, "/v2/42/posts?q=a+b%21&flag", "the path is replaced, the query kept as sent");
        assert_eq!(
            header_pairs(&parts.headers),
            sorted(&[
                ("x-m", "1"),
                ("x-m", "2"),
                ("x-who", "ann"),
                ("x-q", "q=a b!"),
                ("x-whole", "/users/42/posts"),
                ("x-multi", "1, 2"),
                ("x-flag", "true"),
                ("x-none", "[]")
            ])
        );
        let mut parts = request("GET", "/x", &[]);
        t.apply_head(&mut parts, &UriCaptures::default()).unwrap();
        assert_eq!(parts.uri, "/v2//");
        assert_eq!(parts.headers["x-who"], "anon");
    }

    #[test]
    fn uri_replacement_keeps_scheme_authority_and_escapes() {
        let t = transformer(json!({"replace": {"uri": "/p/$(headers.x_seg)"}}));
        let mut parts = request("POST", "https://api.example/old?a=1", &[("x-seg", "a b\"c")]);
        t.apply_head(&mut parts, &UriCaptures::default()).unwrap();
        assert_eq!(parts.uri, "https://api.example/p/a%20b%22c?a=1");
        // a gRPC method path is replaced the same way (`:path`)
        let t = transformer(json!({"replace": {"uri": "/pkg.Svc/Other"}}));
        let mut parts = request("POST", "http://h/pkg.Svc/Call", &[("content-type", "application/grpc")]);
        assert!(t.apply_head(&mut parts, &UriCaptures::default()).unwrap().is_none());
        assert_eq!(parts.uri.path(), "/pkg.Svc/Other");
    }

    #[test]
    fn query_string_operations() {
        let t = transformer(json!({
            "remove": {"querystring": ["drop"]},
            "rename": {"querystring": ["old:new"]},
            "replace": {"querystring": ["r:replaced", "missing:x"]},
            "add": {"querystring": ["added:$(headers.x_v)", "kept:no"]},
            "append": {"querystring": ["multi:3", "flag:on"]}
        }));
        let cases = [
            (
                "/p?drop=1&old=o&r=1&kept=yes&multi=1&multi=2&flag&z=%2B+",
                "/p?added=h%20v&flag=on&kept=yes&multi=1&multi=2&multi=3&new=o&r=replaced&z=%2B%20",
            ),
            ("/p", "/p?added=h%20v&flag=on&kept=no&multi=3"),
        ];
        for (uri, want) in cases {
            let mut parts = request("GET", uri, &[("x-v", "h v")]);
            assert!(t.apply_head(&mut parts, &UriCaptures::default()).unwrap().is_none());
            assert_eq!(parts.uri, want, "{uri}");
        }
        // without query operations the query string is left byte for byte
        let mut parts = request("GET", "/p?b=2&a=%7e", &[]);
        transformer(json!({"add": {"headers": ["x:1"]}})).apply_head(&mut parts, &UriCaptures::default()).unwrap();
        assert_eq!(parts.uri, "/p?b=2&a=%7e");
    }

    #[test]
    fn method_and_form_to_query() {
        let t = transformer(json!({"http_method": "GET", "add": {"querystring": ["x:1"]}}));
        let mut parts = request(
            "POST",
            "/f?a=0",
            &[("content-type", "application/x-www-form-urlencoded"), ("content-length", "7")],
        );
        let edit = t.apply_head(&mut parts, &UriCaptures::default()).unwrap().expect("the form must be read");
        assert_eq!(parts.method, Method::GET);
        assert_eq!(parts.uri, "/f?a=0", "the query waits for the body");
        let body = edit.apply(&mut parts, Bytes::from("a=1&b=2")).unwrap();
        assert_eq!(parts.uri, "/f?a=0&a=1&b=2&x=1");
        assert_eq!(body, "a=1&b=2", "Kong keeps the body");

        let mut parts = request("POST", "/f", &[("content-type", "application/json")]);
        assert!(t.apply_head(&mut parts, &UriCaptures::default()).unwrap().is_none(), "only forms move to the query");
        assert_eq!((parts.method.as_str(), parts.uri.to_string().as_str()), ("GET", "/f?x=1"));

        let t = transformer(json!({"http_method": "HEAD"}));
        let mut parts = request("POST", "/f?b=1&a=2", &[("content-type", "application/x-www-form-urlencoded")]);
        let edit = t.apply_head(&mut parts, &UriCaptures::default()).unwrap().expect("the form must be read");
        assert_eq!(edit.apply(&mut parts, Bytes::new()).unwrap(), "");
        assert_eq!(
            (parts.method.as_str(), parts.uri.to_string().as_str()),
            ("HEAD", "/f?b=1&a=2"),
            "empty form: query untouched"
        );

        let t = transformer(json!({"http_method": "PUT"}));
        let mut parts = request("POST", "/f", &[("content-type", "application/x-www-form-urlencoded")]);
        assert!(t.apply_head(&mut parts, &UriCaptures::default()).unwrap().is_none());
        assert_eq!(parts.method, Method::PUT);
    }

    fn edit_body(t: &RequestTransformer, content_type: &str, body: &str) -> Option<(String, Parts)> {
        let mut parts =
            request("POST", "/b", &[("content-type", content_type), ("transfer-encoding", "chunked"), ("x-v", "hv")]);
        let edit = t.apply_head(&mut parts, &UriCaptures::default()).unwrap()?;
        let out = edit.apply(&mut parts, Bytes::from(body.to_string())).unwrap();
        Some((String::from_utf8(out.to_vec()).unwrap(), parts))
    }

    #[test]
    fn json_bodies() {
        let t = transformer(json!({
            "remove": {"body": ["secret"]},
            "rename": {"body": ["old:new"]},
            "replace": {"body": ["r:replaced", "f:x", "missing:x"]},
            "add": {"body": ["added:$(headers.x_v)", "kept:no", "f2:set"]},
            "append": {"body": ["s:b", "list:c", "fresh:d"]}
        }));
        let (out, parts) = edit_body(
            &t,
            "application/json; charset=utf-8",
            r#"{"secret":1,"old":{"a":1},"r":2,"f":false,"kept":"yes","f2":false,"s":"a","list":["x"]}"#,
        )
        .unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v,
            json!({"new": {"a": 1}, "r": "replaced", "f": false, "added": "hv", "kept": "yes", "f2": "set",
                   "s": ["a", "b"], "list": ["x", "c"], "fresh": ["d"]})
        );
        assert_eq!(parts.headers[CONTENT_LENGTH], out.len().to_string().as_str());
        assert!(!parts.headers.contains_key(TRANSFER_ENCODING));

        // an empty body gets add and append only; a body that is not an object passes unchanged
        let (out, _) = edit_body(&t, "application/json", "").unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v, json!({"added": "hv", "kept": "no", "f2": "set", "s": ["b"], "list": ["c"], "fresh": ["d"]}));
        for body in ["[1]", "not json", "{\"a\":"] {
            let (out, parts) = edit_body(&t, "application/json", body).unwrap();
            assert_eq!(out, body);
            assert!(parts.headers.contains_key(TRANSFER_ENCODING), "untouched body, untouched framing");
        }
    }

    #[test]
    fn form_bodies() {
        let t = transformer(json!({
            "remove": {"body": ["secret"]},
            "rename": {"body": ["old:new"]},
            "replace": {"body": ["r:re placed"]},
            "add": {"body": ["added:1"]},
            "append": {"body": ["m:3"]}
        }));
        let (out, parts) =
            edit_body(&t, "application/x-www-form-urlencoded", "secret=s&old=o&r=1&m=1&m=2&z=a+b").unwrap();
        assert_eq!(out, "r=re%20placed&m=1&m=2&m=3&z=a%20b&new=o&added=1");
        assert_eq!(parts.headers[CONTENT_LENGTH], out.len().to_string().as_str());
        let (out, _) = edit_body(&t, "application/x-www-form-urlencoded", "").unwrap();
        assert_eq!(out, "added=1&m=3");
    }

    #[test]
    fn bodies_read_only_when_needed() {
        let t = transformer(json!({"add": {"body": ["a:1"]}}));
        for (ct, read) in [
            (Some("application/json"), true),
            (Some("application/x-www-form-urlencoded; charset=utf-8"), true),
            (Some("application/grpc"), false),
            (Some("application/grpc+proto"), false),
            (Some("text/plain"), false),
            (None, false),
        ] {
            let mut parts = request("POST", "/", &ct.map(|c| vec![("content-type", c)]).unwrap_or_default());
            assert_eq!(t.apply_head(&mut parts, &UriCaptures::default()).unwrap().is_some(), read, "{ct:?}");
        }
        let mut parts = request("POST", "/", &[("content-type", "application/json")]);
        let none = transformer(json!({"add": {"headers": ["x:1"]}}));
        assert!(none.apply_head(&mut parts, &UriCaptures::default()).unwrap().is_none(), "no body ops: no read");
        // the query string is parsed only when something reads it
        for (config, reads) in [
            (json!({"add": {"headers": ["x:1"]}}), false),
            (json!({"add": {"headers": ["x:$(headers.y)"]}, "replace": {"uri": "/$(uri_captures[1])"}}), false),
            (json!({"add": {"body": ["x:$(query_params.q)"]}}), true),
            (json!({"replace": {"uri": "/$(query_params[\"q\"])"}}), true),
            (json!({"remove": {"querystring": ["q"]}}), true),
            (json!({"http_method": "GET"}), true),
        ] {
            assert_eq!(transformer(config.clone()).reads_query, reads, "{config}");
        }
    }

    #[test]
    fn refusals() {
        let t = transformer(json!({"remove": {"body": ["a"]}}));
        let mut parts = request("POST", "/", &[("content-type", "multipart/form-data; boundary=x")]);
        let e = t.apply_head(&mut parts, &UriCaptures::default()).unwrap_err();
        assert_eq!((e.clone_status(), e), (StatusCode::UNSUPPORTED_MEDIA_TYPE, TransformError::Multipart));
        // a multipart body without body operations passes
        let mut parts = request("POST", "/", &[("content-type", "multipart/form-data; boundary=x")]);
        assert!(transformer(json!({"add": {"headers": ["x:1"]}}))
            .apply_head(&mut parts, &UriCaptures::default())
            .unwrap()
            .is_none());

        let t = transformer(json!({"add": {"headers": ["x-q:$(query_params.q)"]}}));
        let mut parts = request("GET", "/?q=a%0Ab", &[]);
        let e = t.apply_head(&mut parts, &UriCaptures::default()).unwrap_err();
        assert_eq!((e.clone_status(), e), (StatusCode::BAD_REQUEST, TransformError::HeaderValue("x-q".into())));
    }

    impl TransformError {
        fn clone_status(&self) -> StatusCode {
            self.status()
        }
    }

    #[test]
    fn percent_codec() {
        for (raw, decoded) in [("a+b", "a b"), ("%41%4a", "AJ"), ("100%", "100%"), ("%zz", "%zz"), ("%e2%82%ac", "€")]
        {
            assert_eq!(decode(raw), decoded, "{raw}");
        }
        let mut out = String::new();
        escape_into(&mut out, "a b&c=d/€~");
        assert_eq!(out, "a%20b%26c%3Dd%2F%E2%82%AC~");
    }
}
