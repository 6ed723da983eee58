//! The client's answer to a transcoded call. The upstream's gRPC response is collected whole
//! (its status arrives in the trailers, after the messages, and decides the HTTP status), then:
//! `grpc-status` 0 → 200 and the message as proto3 JSON (a unary call's one object, a server
//! stream's messages as one JSON array, `response_body` picking one field); any other status →
//! Google's HTTP status for the code (`google/rpc/code.proto`) and `{"code", "message"}`.
//! A server stream is therefore not streamed to the client: it is sent once it has ended.

use bytes::{Buf, Bytes};
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
pub(crate) async fn respond(resp: Response<ProxyBody>, b: &Binding) -> Response<ProxyBody> {
    let (head, body) = resp.into_parts();
    let is_grpc = head.headers.get(CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if head.status != StatusCode::OK || !is_grpc {
        // Not a gRPC answer (the proxy's own reply, an upstream's HTTP error): passed on.
        return Response::from_parts(head, body);
    }
    let mut out = transcode(&head.headers, body, b).await;
    for (name, value) in &head.headers {
        let grpc = name.as_str().starts_with("grpc-") || name == CONTENT_TYPE || name == CONTENT_LENGTH;
        if !grpc && name != "trailer" {
            out.headers_mut().append(name, value.clone());
        }
    }
    out
}

async fn transcode(head: &HeaderMap, body: ProxyBody, b: &Binding) -> Response<ProxyBody> {
    // Trailers-only: the status is in the head and there is no body worth reading.
    let (data, trailers) = if head.contains_key("grpc-status") {
        (Bytes::new(), head.clone())
    } else {
        match body.collect().await {
            Ok(c) => {
                let trailers = c.trailers().cloned().unwrap_or_default();
                (c.to_bytes(), trailers)
            }
            Err(e) => return error(14, &format!("upstream stream broke off: {e}")),
        }
    };
    let code = trailers.get("grpc-status").and_then(|v| v.to_str().ok()?.parse::<u32>().ok());
    match code {
        Some(0) => {}
        Some(code) => return error(code, &grpc_message(&trailers)),
        None => return error(2, "the upstream's response has no grpc-status"),
    }
    let body = match messages(&data, b) {
        Ok(mut values) if !b.method.is_server_streaming() => match values.len() {
            1 => values.remove(0),
            n => return error(13, &format!("a unary call answered {n} messages")),
        },
        Ok(values) => Value::Array(values),
        Err(why) => return error(13, &why),
    };
    json_response(200, body.to_string())
}

/// Each framed message of `data` as proto3 JSON.
fn messages(mut data: &[u8], b: &Binding) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    let options = SerializeOptions::new().skip_default_fields(b.response_body.is_none());
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
        let message =
            DynamicMessage::decode(b.method.output(), msg).map_err(|e| format!("undecodable response: {e}"))?;
        let mut value = message
            .serialize_with_options(serde_json::value::Serializer, &options)
            .map_err(|e| format!("response not representable as JSON: {e}"))?;
        if let Some(f) = &b.response_body {
            value = value.get_mut(f.json_name()).map(Value::take).unwrap_or(Value::Null);
        }
        out.push(value);
    }
    Ok(out)
}

/// `grpc-message`, percent-decoded.
fn grpc_message(trailers: &HeaderMap) -> String {
    let raw = trailers.get("grpc-message").map(HeaderValue::as_bytes).unwrap_or_default();
    percent_encoding::percent_decode(raw).decode_utf8_lossy().into_owned()
}

/// Google's JSON error for a gRPC code.
fn error(code: u32, message: &str) -> Response<ProxyBody> {
    json_response(http_status(code), json!({"code": code, "message": message}).to_string())
}

fn json_response(status: u16, body: String) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(body.clone()));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
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
