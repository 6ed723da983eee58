//! The client's answer to a transcoded call. A unary call's gRPC response is collected (its
//! status arrives in the trailers, after the message, and decides the HTTP status), then:
//! `grpc-status` 0 → 200 and the message as proto3 JSON (`response_body` picking one field); any
//! other status → Google's HTTP status for the code (`google/rpc/code.proto`) and
//! `{"code", "message"}`. A server stream is sent as a JSON array that streams
//! ([`super::stream`]).

use std::sync::Arc;

use bytes::Buf;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use prost_reflect::{DynamicMessage, SerializeOptions};
use proxy_config::transcode::Binding;
use serde_json::{json, Value};

use crate::response_body::ProxyBody;

/// Google's HTTP status for a gRPC code.
pub(crate) fn http_status(code: u32) -> u16 {
    match code {
        0 => 200,
        1 => 499,
        3 | 9 | 11 => 400,
        4 => 504,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        12 => 501,
        14 => 503,
        16 => 401,
        _ => 500,
    }
}

/// Turns the upstream's gRPC response into the client's JSON one; the upstream's headers are
/// kept, but for the gRPC ones.
pub(crate) async fn respond(resp: Response<ProxyBody>, b: &Arc<Binding>) -> Response<ProxyBody> {
    let (head, body) = resp.into_parts();
    let is_grpc = head.headers.get(CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if head.status != StatusCode::OK || !is_grpc {
        // Not a gRPC answer (the proxy's own reply, an upstream's HTTP error): passed on.
        return Response::from_parts(head, body);
    }
    let mut out = if head.headers.contains_key("grpc-status") {
        // Trailers-only: the status is in the head and there is no body worth reading.
        match grpc_status(&head.headers) {
            (0, _) if b.method.is_server_streaming() => json_response(200, ProxyBody::full("[]")),
            (0, _) => error(13, "a unary call answered no message"),
            (code, message) => error(code, &message),
        }
    } else if b.method.is_server_streaming() {
        super::stream::respond(body, b.clone()).await
    } else {
        unary(body, b).await
    };
    for (name, value) in &head.headers {
        let grpc = name.as_str().starts_with("grpc-") || name == CONTENT_TYPE || name == CONTENT_LENGTH;
        if !grpc && name != "trailer" {
            out.headers_mut().append(name, value.clone());
        }
    }
    out
}

async fn unary(body: ProxyBody, b: &Binding) -> Response<ProxyBody> {
    let (data, trailers) = match body.collect().await {
        Ok(c) => {
            let trailers = c.trailers().cloned().unwrap_or_default();
            (c.to_bytes(), trailers)
        }
        Err(e) => return error(14, &format!("upstream stream broke off: {e}")),
    };
    match grpc_status(&trailers) {
        (0, _) => {}
        (code, message) => return error(code, &message),
    }
    let options = SerializeOptions::new().skip_default_fields(b.response_body.is_none());
    let mut values = match messages(&data) {
        Ok(m) => m.into_iter().map(|m| to_json(m, b, &options)).collect::<Result<Vec<_>, _>>(),
        Err(why) => Err(why),
    };
    let body = match values.as_mut().map(|v| (v.len(), v)) {
        Ok((1, v)) => v.remove(0),
        Ok((n, _)) => return error(13, &format!("a unary call answered {n} messages")),
        Err(why) => return error(13, why),
    };
    json_response(200, ProxyBody::full(body.to_string()))
}

/// The framed messages of `data`.
fn messages(mut data: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    while !data.is_empty() {
        if data.len() < 5 {
            return Err("truncated gRPC frame".into());
        }
        let compressed = data.get_u8();
        let len = data.get_u32() as usize;
        if compressed != 0 {
            return Err("the upstream sent a compressed message".into());
        }
        if data.len() < len {
            return Err("truncated gRPC message".into());
        }
        let (msg, rest) = data.split_at(len);
        data = rest;
        out.push(msg);
    }
    Ok(out)
}

/// One response message as proto3 JSON (its `response_body` field when the rule names one).
pub(super) fn to_json(msg: &[u8], b: &Binding, options: &SerializeOptions) -> Result<Value, String> {
    let message = DynamicMessage::decode(b.method.output(), msg).map_err(|e| format!("undecodable response: {e}"))?;
    let mut value = message
        .serialize_with_options(serde_json::value::Serializer, options)
        .map_err(|e| format!("response not representable as JSON: {e}"))?;
    if let Some(f) = &b.response_body {
        value = value.get_mut(f.json_name()).map(Value::take).unwrap_or(Value::Null);
    }
    Ok(value)
}

/// The call's gRPC code (2, UNKNOWN, when there is none) and its percent-decoded message.
pub(super) fn grpc_status(trailers: &HeaderMap) -> (u32, String) {
    let code = trailers.get("grpc-status").and_then(|v| v.to_str().ok()?.parse::<u32>().ok());
    match code {
        Some(code) => (code, grpc_message(trailers)),
        None => (2, "the upstream's response has no grpc-status".into()),
    }
}

/// `grpc-message`, percent-decoded.
fn grpc_message(trailers: &HeaderMap) -> String {
    let raw = trailers.get("grpc-message").map(HeaderValue::as_bytes).unwrap_or_default();
    percent_encoding::percent_decode(raw).decode_utf8_lossy().into_owned()
}

/// Google's JSON error for a gRPC code.
pub(super) fn error(code: u32, message: &str) -> Response<ProxyBody> {
    json_response(http_status(code), ProxyBody::full(json!({"code": code, "message": message}).to_string()))
}

/// A JSON answer; a whole body gets its `content-length`.
pub(super) fn json_response(status: u16, body: ProxyBody) -> Response<ProxyBody> {
    let length = match &body {
        ProxyBody::Full(Some(b)) => Some(b.len()),
        _ => None,
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(length) = length {
        h.insert(CONTENT_LENGTH, HeaderValue::from(length));
    }
    resp
}

#[cfg(test)]
mod tests {
    #[test]
    fn googles_status_mapping() {
        let statuses: Vec<u16> = (0..=16).map(super::http_status).collect();
        assert_eq!(statuses, [200, 499, 500, 400, 504, 404, 409, 403, 429, 400, 409, 400, 501, 500, 503, 500, 401]);
    }
}
