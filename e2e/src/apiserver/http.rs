//! Request routing and the REST verbs over the store.
//!
//! Paths follow the Kubernetes layout: `/api/v1/...` for the core group, `/apis/<group>/<version>/...`
//! for named groups, each with the optional `namespaces/<ns>/` prefix, then `<plural>[/<name>[/status]]`.
//! Every answer is JSON; errors are `Status` objects.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{json, Value};

use super::discovery;
use super::openapi;
use super::patch::PatchKind;
use super::protobuf;
use super::resources::ResourceType;
use super::selector::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::store::{Filter, Store, Sub};
use super::table::{self, Shape};
use super::watch::{self, Start, WatchParams};

/// The response body type: whole JSON documents or a watch stream.
pub type Body = BoxBody<Bytes, Infallible>;

/// Largest request body accepted (CRDs such as Gateway API's HTTPRoute are several hundred KiB).
const MAX_BODY: usize = 32 * 1024 * 1024;

/// Shared state of one server.
#[derive(Debug)]
pub struct App {
    pub store: Arc<Store>,
    pub addr: SocketAddr,
    pub bookmark_interval: Duration,
}

fn json_response(code: StatusCode, v: &Value) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(v.to_string())).boxed());
    *resp.status_mut() = code;
    resp.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    resp
}

fn ok(v: &Value) -> Response<Body> {
    json_response(StatusCode::OK, v)
}

fn error_response(e: &ApiError) -> Response<Body> {
    json_response(StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), &e.to_status())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    q.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn truthy(q: &HashMap<String, String>, key: &str) -> bool {
    q.get(key).is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// Serves one request; never fails (errors become `Status` responses).
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = match route(&app, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    tracing::debug!(%method, %path, status = resp.status().as_u16(), "request");
    Ok(resp)
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))
}

fn decode_object(content_type: &str, body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = if content_type.contains("yaml") {
        serde_yaml_ng::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
    } else if content_type.contains("protobuf") {
        protobuf::decode(body)?
    } else if content_type.contains("cbor") {
        return Err(ApiError::unsupported_media_type(content_type));
    } else {
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding JSON: {e}")))?
    };
    if !v.is_object() {
        return Err(ApiError::bad_request("the request body must be an object"));
    }
    Ok(v)
}

async fn route(app: &App, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let segs: Vec<String> = path.split('/').filter(|s| !s.is_empty()).map(percent_decode).collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let types = || app.store.resource_types();
    let get_only = req.method() == Method::GET;
    match segs.as_slice() {
        ["version"] if get_only => Ok(ok(&discovery::version())),
        ["healthz" | "readyz" | "livez"] if get_only => Ok(Response::new(Full::new(Bytes::from_static(b"ok")).boxed())),
        ["api"] if get_only => Ok(ok(&discovery::core_versions(&app.addr.to_string()))),
        ["apis"] if get_only => Ok(ok(&discovery::group_list(&types()))),
        ["openapi", rest @ ..] if get_only => {
            openapi::serve(&types(), rest, req.uri().query()).map(|v| ok(&v)).ok_or_else(|| ApiError::no_route(&path))
        }
        ["api", "v1"] if get_only => {
            discovery::resource_list(&types(), "", "v1").map(|v| ok(&v)).ok_or_else(|| ApiError::no_route(&path))
        }
        ["apis", group] if get_only => {
            discovery::group(&types(), group).map(|v| ok(&v)).ok_or_else(|| ApiError::no_route(&path))
        }
        ["apis", group, version] if get_only => {
            discovery::resource_list(&types(), group, version).map(|v| ok(&v)).ok_or_else(|| ApiError::no_route(&path))
        }
        ["api", "v1", rest @ ..] => {
            let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            resource(app, req, "", "v1", &rest).await
        }
        ["apis", group, version, rest @ ..] => {
            let (g, v) = (group.to_string(), version.to_string());
            let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            resource(app, req, &g, &v, &rest).await
        }
        _ => Err(ApiError::no_route(&path)),
    }
}

/// A request resolved to a resource type, an optional namespace, name and subresource.
struct Target {
    rt: ResourceType,
    namespace: String,
    name: Option<String>,
    sub: Sub,
}

fn resolve(store: &Store, group: &str, version: &str, rest: &[String]) -> Option<Target> {
    let (namespace, rest) = match rest {
        [ns_kw, ns, plural, ..] if ns_kw == "namespaces" => match store.resolve(group, version, plural) {
            Some(rt) if rt.namespaced => (ns.clone(), &rest[2..]),
            _ => (String::new(), rest),
        },
        _ => (String::new(), rest),
    };
    let rt = store.resolve(group, version, rest.first()?)?;
    let (name, sub) = match &rest[1..] {
        [] => (None, Sub::Main),
        [name] => (Some(name.clone()), Sub::Main),
        [name, s] if s == "status" && rt.status_subresource => (Some(name.clone()), Sub::Status),
        _ => return None,
    };
    if name.is_some() && rt.namespaced && namespace.is_empty() {
        return None;
    }
    Some(Target { rt, namespace, name, sub })
}

async fn resource(
    app: &App,
    req: Request<Incoming>,
    group: &str,
    version: &str,
    rest: &[String],
) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().to_string();
    let target = resolve(&app.store, group, version, rest).ok_or_else(|| ApiError::no_route(&path))?;
    let q = parse_query(req.uri().query());
    let dry_run = q.get("dryRun").is_some_and(|v| v == "All");
    let content_type =
        req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json").to_string();
    let method = req.method().clone();
    let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let Target { rt, namespace, name, sub } = target;
    let shape = if table::wants_table(accept) {
        Shape::Table(table::columns_for(&rt, app.store.crd_of(&rt).as_ref()))
    } else if table::wants_metadata(accept) {
        Shape::Metadata
    } else {
        Shape::Full
    };
    let store = &app.store;
    match (method, name) {
        (Method::GET, None) => {
            let filter = collection_filter(&rt, &namespace, &q)?;
            if truthy(&q, "watch") {
                return Ok(watch_response(app, rt, filter, &q, shape));
            }
            let (items, rv) = store.list(&rt, &filter);
            Ok(ok(&shape.list(&items, rv, |items| {
                json!({
                    "kind": rt.list_kind,
                    "apiVersion": rt.api_version(),
                    "metadata": {"resourceVersion": rv.to_string()},
                    "items": items,
                })
            })))
        }
        (Method::GET, Some(name)) => {
            let obj = store.get(&rt, &namespace, &name)?;
            Ok(ok(&shape.one(&obj)))
        }
        (Method::POST, None) => {
            let body = decode_object(&content_type, &read_body(req).await?)?;
            let created = store.create(&rt, &namespace, body, dry_run)?;
            Ok(json_response(StatusCode::CREATED, &created))
        }
        (Method::PUT, Some(name)) => {
            let body = decode_object(&content_type, &read_body(req).await?)?;
            store.replace(&rt, &namespace, &name, body, sub, dry_run).map(|v| ok(&v))
        }
        (Method::PATCH, Some(name)) => {
            let kind = PatchKind::from_content_type(&content_type)?;
            let body = read_body(req).await?;
            let manager = q.get("fieldManager").map(String::as_str);
            store.patch(&rt, &namespace, &name, kind, &body, sub, manager, dry_run).map(|v| ok(&v))
        }
        (Method::DELETE, Some(name)) => store.delete(&rt, &namespace, &name, dry_run).map(|v| ok(&v)),
        (Method::DELETE, None) => {
            let filter = collection_filter(&rt, &namespace, &q)?;
            let items = store.delete_collection(&rt, &filter, dry_run)?;
            Ok(ok(&json!({
                "kind": rt.list_kind,
                "apiVersion": rt.api_version(),
                "metadata": {"resourceVersion": store.current_rv().to_string()},
                "items": items,
            })))
        }
        (m, _) => Err(ApiError::method_not_allowed(format!("{m} is not supported on {path}"))),
    }
}

/// What a list, watch or collection delete selects: the namespace of the path (none for
/// cluster-scoped kinds or all namespaces) and the query's label and field selectors.
fn collection_filter(rt: &ResourceType, namespace: &str, q: &HashMap<String, String>) -> Result<Filter, ApiError> {
    Ok(Filter {
        group: rt.group.clone(),
        plural: rt.plural.clone(),
        namespace: (rt.namespaced && !namespace.is_empty()).then(|| namespace.to_string()),
        labels: LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or_default())?,
        fields: FieldSelector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or_default())?,
    })
}

fn watch_response(
    app: &App,
    rt: ResourceType,
    filter: Filter,
    q: &HashMap<String, String>,
    shape: Shape,
) -> Response<Body> {
    let rv = q.get("resourceVersion").map(String::as_str).unwrap_or_default();
    let initial = truthy(q, "sendInitialEvents");
    let start = match rv.parse::<u64>() {
        Ok(n) if n > 0 && !initial => Start::After(n),
        Ok(_) | Err(_) if rv.is_empty() || rv == "0" || initial => Start::CurrentState,
        _ => {
            return error_response(&ApiError::bad_request(format!("invalid resourceVersion {rv:?}")));
        }
    };
    let timeout = q.get("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()).map(Duration::from_secs);
    let params = WatchParams {
        start,
        initial_events_end: initial,
        bookmarks: truthy(q, "allowWatchBookmarks"),
        timeout,
        bookmark_interval: app.bookmark_interval,
        shape,
    };
    let rx = watch::spawn(app.store.clone(), rt, filter, params);
    let frames =
        stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx)) });
    let mut resp = Response::new(StreamBody::new(frames).boxed());
    resp.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-cache, private"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = parse_query(Some("labelSelector=app%3Dweb%2Ctier+in+%28a%29&watch=1&x"));
        assert_eq!(q["labelSelector"], "app=web,tier in (a)");
        assert!(truthy(&q, "watch"));
        assert_eq!(q["x"], "");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
