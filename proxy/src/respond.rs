//! The one place where a proxy-side failure becomes a response. Plain HTTP clients get Kong's
//! status codes and JSON bodies (`{"message": "..."}`); gRPC clients get a trailers-only reply
//! (`:status 200`, `grpc-status`, percent-encoded `grpc-message`) so that every gRPC library sees
//! the real reason instead of guessing from an HTTP status.

use http::{header, HeaderValue, Response, StatusCode};
use thiserror::Error;

use crate::body::{trailers_only_headers, ProxyBody};
use crate::wire::grpc::Code;

/// Why the proxy answered a request itself.
#[derive(Debug, Error)]
pub enum ProxyError {
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
    #[error("{message}")]
    Terminated { status: u16, message: String, body: Option<(String, String)> },
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
}

impl ProxyError {
    /// The HTTP status a plain HTTP client gets (Kong's).
    pub fn http_status(&self) -> u16 {
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
            ProxyError::Terminated { status, .. } => *status,
            ProxyError::BadRequest | ProxyError::InvalidRequest { .. } => 400,
            ProxyError::TransferCodingNotImplemented { .. } => 501,
            ProxyError::HeadTooLarge => 431,
        }
    }

    /// The gRPC status a gRPC client gets.
    pub fn grpc_code(&self) -> Code {
        match self {
            ProxyError::NoRoute => Code::Unimplemented,
            ProxyError::GrpcsOnly => Code::Cancelled,
            ProxyError::NoService | ProxyError::NoHealthyTarget | ProxyError::UpstreamFailed { .. } => {
                Code::Unavailable
            }
            ProxyError::UpstreamTimeout | ProxyError::DeadlineExceeded => Code::DeadlineExceeded,
            ProxyError::Terminated { status, .. } => kong_grpc_code(*status),
            ProxyError::NotGrpc | ProxyError::GrpcOverHttp1 | ProxyError::HttpsRequired { .. } => Code::Internal,
            ProxyError::BadRequest | ProxyError::HeadTooLarge => Code::Internal,
            ProxyError::InvalidRequest { .. } => Code::InvalidArgument,
            ProxyError::TransferCodingNotImplemented { .. } => Code::Unimplemented,
        }
    }

    /// Whether the reply came from the upstream (it never does for these).
    pub fn is_gateway_error(&self) -> bool {
        matches!(self, ProxyError::UpstreamFailed { .. } | ProxyError::UpstreamTimeout | ProxyError::NoHealthyTarget)
    }
}

/// Kong's HTTP → gRPC map for its own replies (pdk/response.lua).
fn kong_grpc_code(status: u16) -> Code {
    match status {
        200 => Code::Ok,
        404 | 501 => Code::Unimplemented,
        429 => Code::ResourceExhausted,
        499 => Code::Cancelled,
        503 => Code::Unavailable,
        504 => Code::DeadlineExceeded,
        _ => Code::Internal,
    }
}

/// The response for `err`. `grpc` is true when the request is gRPC over HTTP/2 (gRPC over
/// HTTP/1.1 gets the HTTP answer: its client cannot read trailers).
pub fn error_response(err: &ProxyError, grpc: bool) -> Response<ProxyBody> {
    let grpc_shaped = grpc && !matches!(err, ProxyError::GrpcOverHttp1 | ProxyError::NotGrpc);
    if grpc_shaped {
        let mut resp = Response::new(ProxyBody::Empty);
        *resp.headers_mut() = trailers_only_headers(err.grpc_code(), &err.to_string());
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
    if let ProxyError::Terminated { body: Some((content_type, body)), .. } = err {
        let mut resp = Response::new(ProxyBody::full(body.clone()));
        *resp.status_mut() = status;
        if let Ok(v) = HeaderValue::from_str(content_type) {
            resp.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        return resp;
    }
    json_response(status, &err.to_string())
}

/// Kong's JSON message body.
pub fn json_response(status: StatusCode, message: &str) -> Response<ProxyBody> {
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
    fn https_redirect_sets_location() {
        let err = ProxyError::HttpsRequired { status: 301, location: Some("https://a/b".into()) };
        let r = error_response(&err, false);
        assert_eq!(r.status(), 301);
        assert_eq!(r.headers()["location"], "https://a/b");
    }
}
