//! Kong's `grpc-web` (PRIORITY 3, access + header_filter): a browser's gRPC-Web call becomes a
//! gRPC call upstream, and the gRPC answer a gRPC-Web one, streaming both ways (the framing is
//! in [`crate::wire::grpc_web`]; `phases::body_filter` wraps the response body when
//! [`RequestState::grpc_web`] is set).
//!
//! Beyond Kong (what Envoy's filter does, and more):
//! - plain gRPC calls pass untouched, so one route serves gRPC and gRPC-Web (also a grpc/grpcs
//!   route: `phases::route` lets gRPC-Web and preflights through to this plugin instead of
//!   Kong's 415/426);
//! - every upstream trailer goes into the final `0x80` frame, not only `grpc-status`;
//! - CORS for browsers with no other plugin: the preflight allows `POST` and the headers a
//!   gRPC-Web client sends (`content-type`, `grpc-timeout`, `x-grpc-web`, `x-user-agent`, plus
//!   whatever the preflight asks for), responses expose `grpc-status` and `grpc-message`. With
//!   the `cors` plugin on the route (which runs first), its preflight answer and its
//!   `Access-Control-Allow-Origin` win; the exposed gRPC headers are added to its list;
//! - the proxy's own errors reach the client as gRPC-Web trailers-only replies (`phases::serve`).

use http::header::{self, HeaderName, HeaderValue};
use http::Method;
use http_body_util::BodyExt;
use proxy_config::plugins::GrpcWebConfig;

use super::{AccessCtx, BuildError, HeaderFilterCtx, Phases, Plugin, RequestState};
use crate::downstream::request_body::{ClientBody, ClientBodyError};
use crate::respond::PluginReply;
use crate::wire::grpc_web::{Mode, TextRequest, TextRequestError};

pub(crate) const NAME: &str = proxy_config::plugins::grpc_web::NAME;

/// The request headers a gRPC-Web client sends that a preflight must allow.
const ALLOW_HEADERS: &str = "content-type,grpc-timeout,x-grpc-web,x-user-agent";
/// The response headers a gRPC-Web client reads.
const EXPOSE_HEADERS: &str = "grpc-status,grpc-message";
const TE: HeaderName = HeaderName::from_static("te");

#[derive(Debug)]
pub(crate) struct GrpcWeb {
    allow_origin: HeaderValue,
    pass_stripped_path: bool,
}

impl GrpcWeb {
    pub(crate) fn new(c: &GrpcWebConfig) -> Result<Self, BuildError> {
        let allow_origin = HeaderValue::from_str(&c.allow_origin_header)
            .map_err(|_| BuildError::new("config.allow_origin_header", "invalid header value"))?;
        Ok(GrpcWeb { allow_origin, pass_stripped_path: c.pass_stripped_path })
    }

    /// Kong's answer to any `OPTIONS` request: a CORS preflight that lets gRPC-Web through.
    fn preflight(&self, req: &AccessCtx<'_>) -> PluginReply {
        let mut reply = PluginReply::empty(200);
        let h = &mut reply.headers;
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, self.allow_origin.clone());
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST"));
        let asked = req.parts.headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS).and_then(|v| v.to_str().ok());
        let allow = match asked {
            Some(a) if !a.trim().is_empty() => HeaderValue::from_str(&format!("{ALLOW_HEADERS},{a}"))
                .unwrap_or(HeaderValue::from_static(ALLOW_HEADERS)),
            _ => HeaderValue::from_static(ALLOW_HEADERS),
        };
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allow);
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
        reply
    }
}

impl Plugin for GrpcWeb {
    fn name(&self) -> &'static str {
        NAME
    }
    fn priority(&self) -> u32 {
        3
    }
    fn phases(&self) -> Phases {
        Phases::ACCESS.union(Phases::REQUEST_BODY).union(Phases::HEADER_FILTER)
    }

    fn access(&self, req: &mut AccessCtx<'_>) -> Result<(), Box<PluginReply>> {
        if req.parts.method == Method::OPTIONS {
            return Err(Box::new(self.preflight(req)));
        }
        let Some(mode) = Mode::of(&req.parts.headers) else {
            // Native gRPC shares the route; anything else is refused, as in Kong.
            if req.grpc {
                return Ok(());
            }
            return Err(Box::new(PluginReply::new(400, "Invalid Content-Type: expected application/grpc-web")));
        };
        if req.parts.method != Method::POST {
            return Err(Box::new(PluginReply::new(405, "gRPC-Web calls use POST")));
        }
        let h = &mut req.parts.headers;
        if let Some(ct) = h.get(header::CONTENT_TYPE) {
            let up = Mode::upstream_content_type(ct);
            h.insert(header::CONTENT_TYPE, up);
        }
        if mode == Mode::Text {
            h.remove(header::CONTENT_LENGTH);
        }
        h.insert(TE, HeaderValue::from_static("trailers"));
        req.state.grpc_web = Some(mode);
        if !self.pass_stripped_path {
            // Kong's default: the upstream gets the client's path (the gRPC method), not the
            // route-stripped one.
            let path = req.parts.uri.path().to_string();
            req.state.upstream_edit.get_or_insert_with(Default::default).set_path(path);
        }
        Ok(())
    }

    fn request_body(&self, body: ClientBody, _headers: &http::HeaderMap, state: &mut RequestState) -> ClientBody {
        if state.grpc_web != Some(Mode::Text) {
            return body;
        }
        ClientBody::Filtered(Box::pin(TextRequest::new(body).map_err(|e| match e {
            TextRequestError::Body(e) => e,
            TextRequestError::Decode(d) => ClientBodyError::Refused(Box::new(d)),
        })))
    }

    fn header_filter(&self, resp: &mut HeaderFilterCtx<'_>) {
        let Some(mode) = resp.state.grpc_web else { return };
        response_head(resp.headers, mode, &self.allow_origin);
    }
}

/// A gRPC response head (or the proxy's trailers-only reply) as a gRPC-Web client reads it.
fn response_head(h: &mut http::HeaderMap, mode: Mode, allow_origin: &HeaderValue) {
    let grpc = h.get(header::CONTENT_TYPE).is_none_or(|v| v.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        h.insert(header::CONTENT_TYPE, mode.content_type());
        h.remove(header::CONTENT_LENGTH);
    }
    if !h.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin.clone());
    }
    let exposed = match h.get(header::ACCESS_CONTROL_EXPOSE_HEADERS).and_then(|v| v.to_str().ok()) {
        None => HeaderValue::from_static(EXPOSE_HEADERS),
        Some(list) => {
            let has = |name: &str| list.split(',').any(|x| x.trim().eq_ignore_ascii_case(name));
            let missing: Vec<&str> = ["grpc-status", "grpc-message"].into_iter().filter(|n| !has(n)).collect();
            if missing.is_empty() {
                return;
            }
            match HeaderValue::from_str(&format!("{list},{}", missing.join(","))) {
                Ok(v) => v,
                Err(_) => return,
            }
        }
    };
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, exposed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_heads_become_grpc_web_and_keep_a_cors_plugins_choices() {
        let star = HeaderValue::from_static("*");
        let mut h = http::HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("7"));
        response_head(&mut h, Mode::Text, &star);
        assert_eq!(h[header::CONTENT_TYPE], "application/grpc-web-text+proto");
        assert!(!h.contains_key(header::CONTENT_LENGTH));
        assert_eq!(
            (&h[header::ACCESS_CONTROL_ALLOW_ORIGIN], &h[header::ACCESS_CONTROL_EXPOSE_HEADERS]),
            (&star, &HeaderValue::from_static(EXPOSE_HEADERS))
        );

        let mut h = http::HeaderMap::new();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("https://app.example"));
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("x-a, GRPC-Status"));
        response_head(&mut h, Mode::Binary, &star);
        assert_eq!(h[header::CONTENT_TYPE], "application/grpc-web+proto");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example");
        assert_eq!(h[header::ACCESS_CONTROL_EXPOSE_HEADERS], "x-a, GRPC-Status,grpc-message");

        // A non-gRPC answer keeps its content type.
        let mut h = http::HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        response_head(&mut h, Mode::Binary, &star);
        assert_eq!(h[header::CONTENT_TYPE], "text/html");
    }
}
