//! The one place where a proxy-side failure becomes a response. Plain HTTP clients get Kong's
//! status codes and JSON bodies (`{"message": "..."}`); gRPC clients get a trailers-only reply
//! (`:status 200`, `grpc-status`, percent-encoded `grpc-message`) so that every gRPC library sees
//! the real reason instead of guessing from an HTTP status.

use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use thiserror::Error;

use crate::response_body::{trailers_only_headers, ProxyBody};
use crate::wire::grpc::Code;

/// Why the proxy answered a request itself.
#[derive(Debug, Error)]
pub(crate) enum ProxyError {
    #[error("no Route matched with those values")]
    NoRoute,
    #[error("no Service found with those values")]
    NoService,
    #[error("Non-gRPC request matched gRPC route")]
    NotGrpc,
    #[error("Please use HTTP2 protocol")]
    GrpcOverHttp1,
    #[error("gRPC request matched gRPCs route")]
    GrpcsOnly,
    #[error("Please use HTTPS protocol")]
    HttpsRequired { status: u16, location: Option<String> },
    #[error("failure to get a peer from the ring-balancer")]
    NoHealthyTarget,
    #[error("An invalid response was received from the upstream server")]
    UpstreamFailed { detail: String },
    #[error("The upstream server is timing out")]
    UpstreamTimeout,
    #[error("Deadline Exceeded")]
    DeadlineExceeded,
    /// A plugin answered the request itself (a refusal, a termination, a CORS preflight).
    #[error("{}", .0.message)]
    Plugin(Box<PluginReply>),
    #[error("Bad request")]
    BadRequest,
    /// The client's request is malformed (its head, or its body's framing): the reason names
    /// the field or token.
    #[error("Bad request: {reason}")]
    InvalidRequest { reason: String },
    /// RFC 9112 §6.1: a transfer coding sluice does not implement (only `chunked` is).
    #[error("Transfer-Encoding '{coding}' is not implemented")]
    TransferCodingNotImplemented { coding: String },
    /// An HTTP/1.1 request head over `max_header_list_size` (HTTP/2's is answered by h2).
    #[error("Request header or cookie too large")]
    HeadTooLarge,
    /// A request body over the route's `request_buffering` limit.
    #[error("Request body over the route's buffering limit ({limit} bytes)")]
    BodyTooLarge { limit: usize },
}

impl ProxyError {
    /// The HTTP status a plain HTTP client gets (Kong's).
    pub(crate) fn http_status(&self) -> u16 {
        match self {
            ProxyError::NoRoute => 404,
            ProxyError::NoService => 503,
            ProxyError::NotGrpc => 415,
            ProxyError::GrpcOverHttp1 => 426,
            ProxyError::GrpcsOnly => 200,
            ProxyError::HttpsRequired { status, .. } => *status,
            ProxyError::NoHealthyTarget => 503,
            ProxyError::UpstreamFailed { .. } => 502,
            ProxyError::UpstreamTimeout | ProxyError::DeadlineExceeded => 504,
            ProxyError::Plugin(r) => r.status,
            ProxyError::BadRequest | ProxyError::InvalidRequest { .. } => 400,
            ProxyError::TransferCodingNotImplemented { .. } => 501,
            ProxyError::HeadTooLarge => 431,
            ProxyError::BodyTooLarge { .. } => 413,
        }
    }

    /// The gRPC status a gRPC client gets.
    pub(crate) fn grpc_code(&self) -> Code {
        match self {
            ProxyError::NoRoute => Code::Unimplemented,
            ProxyError::GrpcsOnly => Code::Cancelled,
            ProxyError::NoService | ProxyError::NoHealthyTarget | ProxyError::UpstreamFailed { .. } => {
                Code::Unavailable
            }
            ProxyError::UpstreamTimeout | ProxyError::DeadlineExceeded => Code::DeadlineExceeded,
            ProxyError::Plugin(r) => r.grpc_code.unwrap_or_else(|| plugin_grpc_code(r.status)),
            ProxyError::NotGrpc | ProxyError::GrpcOverHttp1 | ProxyError::HttpsRequired { .. } => Code::Internal,
            ProxyError::BadRequest | ProxyError::HeadTooLarge => Code::Internal,
            ProxyError::InvalidRequest { .. } => Code::InvalidArgument,
            ProxyError::TransferCodingNotImplemented { .. } => Code::Unimplemented,
            ProxyError::BodyTooLarge { .. } => Code::ResourceExhausted,
        }
    }
}

/// The gRPC status of a plugin's reply, by its HTTP status. The statuses plugins use map to the
/// gRPC code that says the same (401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 413 and 429 RESOURCE_EXHAUSTED, 400
/// INVALID_ARGUMENT, 503 UNAVAILABLE; request-size-limiting's 411 INVALID_ARGUMENT, no length declared,
/// and 417 RESOURCE_EXHAUSTED, a declared length over the limit after `Expect: 100-continue`); the rest follow gRPC's own HTTP-to-gRPC status mapping
/// (404 UNIMPLEMENTED, 502/504 UNAVAILABLE, anything else UNKNOWN)
/// except where Kong's PDK map is more precise (200 OK, 409 ABORTED, 499 CANCELLED, 500 INTERNAL,
/// 501 UNIMPLEMENTED, 504 DEADLINE_EXCEEDED).
pub(crate) fn plugin_grpc_code(status: u16) -> Code {
    match status {
        200 => Code::Ok,
        400 | 411 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 | 501 => Code::Unimplemented,
        409 => Code::Aborted,
        413 | 417 | 429 => Code::ResourceExhausted,
        499 => Code::Cancelled,
        500 => Code::Internal,
        502 | 503 => Code::Unavailable,
        504 => Code::DeadlineExceeded,
        _ => Code::Unknown,
    }
}

/// A plugin's own answer in place of the upstream's (Kong's `kong.response.exit` / `error`).
#[derive(Debug, Clone, Default)]
pub struct PluginReply {
    pub status: u16,
    /// Kong's `{"message": ...}` for HTTP clients, `grpc-message` for gRPC ones; empty with
    /// `empty` replies (a CORS preflight).
    pub message: String,
    /// A body of its own instead of the JSON message: (content type, body).
    pub body: Option<(String, String)>,
    /// Headers the plugin sets on its reply.
    pub headers: HeaderMap,
    /// No body at all (not even the JSON message).
    pub empty: bool,
    /// The gRPC status when the HTTP status's mapping does not say it (rate-limiting's 500 for
    /// an unreachable Redis is UNAVAILABLE).
    pub grpc_code: Option<Code>,
}

impl PluginReply {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        PluginReply { status, message: message.into(), ..PluginReply::default() }
    }
    /// A reply without a body (headers only).
    pub fn empty(status: u16) -> Self {
        PluginReply { status, empty: true, ..PluginReply::default() }
    }
    pub fn with_body(mut self, body: Option<(String, String)>) -> Self {
        self.body = body;
        self
    }
}

/// The response for `err`. `grpc` is true when the request is gRPC over HTTP/2 (gRPC over
/// HTTP/1.1 gets the HTTP answer: its client cannot read trailers).
pub(crate) fn error_response(err: &ProxyError, grpc: bool) -> Response<ProxyBody> {
    let grpc_shaped = grpc && !matches!(err, ProxyError::GrpcOverHttp1 | ProxyError::NotGrpc);
    if grpc_shaped {
        let mut resp = Response::new(ProxyBody::Empty);
        *resp.headers_mut() = trailers_only_headers(err.grpc_code(), &err.to_string());
        if let ProxyError::Plugin(r) = err {
            for (name, value) in &r.headers {
                resp.headers_mut().insert(name, value.clone());
            }
        }
        return resp;
    }
    let status = StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let ProxyError::HttpsRequired { location: Some(location), .. } = err {
        if status.is_redirection() {
            let mut resp = Response::new(ProxyBody::Empty);
            *resp.status_mut() = status;
            if let Ok(v) = HeaderValue::from_str(location) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            return resp;
        }
    }
    if let ProxyError::Plugin(r) = err {
        let mut resp = match &r.body {
            _ if r.empty => Response::new(ProxyBody::Empty),
            Some((content_type, body)) => {
                let mut resp = Response::new(ProxyBody::full(body.clone()));
                if let Ok(v) = HeaderValue::from_str(content_type) {
                    resp.headers_mut().insert(header::CONTENT_TYPE, v);
                }
                resp
            }
            None => json_response(status, &r.message),
        };
        *resp.status_mut() = status;
        for (name, value) in &r.headers {
            resp.headers_mut().insert(name, value.clone());
        }
        return resp;
    }
    json_response(status, &err.to_string())
}

/// Kong's JSON message body.
pub(crate) fn json_response(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({ "message": message }).to_string();
    let mut resp = Response::new(ProxyBody::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_errors_are_trailers_only_with_status_200() {
        let r = error_response(&ProxyError::NoRoute, true);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["grpc-status"], "12");
        assert_eq!(r.headers()["content-type"], "application/grpc");
        assert_eq!(r.headers()["grpc-message"], "no Route matched with those values");
        assert!(http_body::Body::is_end_stream(r.body()));
    }

    #[test]
    fn http_errors_use_kong_codes_and_json() {
        let r = error_response(&ProxyError::NoRoute, false);
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()["content-type"], "application/json; charset=utf-8");
        assert_eq!(error_response(&ProxyError::NotGrpc, true).status(), 415);
        assert_eq!(error_response(&ProxyError::GrpcOverHttp1, true).status(), 426);
        assert_eq!(error_response(&ProxyError::UpstreamFailed { detail: String::new() }, false).status(), 502);
    }

    #[test]
    fn grpc_code_table() {
        assert_eq!(ProxyError::NoHealthyTarget.grpc_code(), Code::Unavailable);
        assert_eq!(ProxyError::UpstreamFailed { detail: String::new() }.grpc_code(), Code::Unavailable);
        assert_eq!(ProxyError::DeadlineExceeded.grpc_code(), Code::DeadlineExceeded);
        assert_eq!(ProxyError::GrpcsOnly.grpc_code(), Code::Cancelled);
        let r = error_response(&ProxyError::GrpcsOnly, true);
        assert_eq!((r.status().as_u16(), r.headers()["grpc-status"].to_str().unwrap()), (200, "1"));
    }

    #[test]
    fn plugin_refusals_are_json_for_http_and_trailers_only_for_grpc() {
        let err = ProxyError::Plugin(Box::new(PluginReply::new(403, "IP address not allowed: 10.0.0.1")));
        let r = error_response(&err, true);
        assert_eq!((r.status().as_u16(), r.headers()["grpc-status"].to_str().unwrap()), (200, "7"));
        assert_eq!(r.headers()["grpc-message"], "IP address not allowed: 10.0.0.1");
        let r = error_response(&err, false);
        assert_eq!(r.status(), 403);
        assert_eq!(r.headers()["content-type"], "application/json; charset=utf-8");
        for (http, grpc) in
            [(401, 16), (403, 7), (413, 8), (429, 8), (400, 3), (411, 3), (417, 8), (503, 14), (404, 12), (418, 2)]
        {
            assert_eq!(plugin_grpc_code(http).as_u8(), grpc, "{http}");
        }
    }

    #[test]
    fn https_redirect_sets_location() {
        let err = ProxyError::HttpsRequired { status: 301, location: Some("https://a/b".into()) };
        let r = error_response(&err, false);
        assert_eq!(r.status(), 301);
        assert_eq!(r.headers()["location"], "https://a/b");
    }
}
