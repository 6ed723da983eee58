//! The upstream request of a transcoded call: the client's JSON body (bounded, collected) merged
//! with the fields the path and query set, encoded by reflection into the rpc's input message
//! and sent as one length-prefixed gRPC frame to `POST /pkg.Service/Method`.

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, TE, TRANSFER_ENCODING};
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use prost::Message;
use prost_reflect::{DynamicMessage, Kind, MessageDescriptor};
use proxy_config::transcode::BodyRule;
use serde_json::{Map, Value};

use super::{GatewayError, Transcode};
use crate::downstream::request_body::{ClientBody, RequestBody};
use crate::respond::ProxyError;

/// The largest JSON body transcoded (as request-transformer's bodies).
const BODY_LIMIT: usize = 8 * 1024 * 1024;

/// Rewrites the built upstream request `req` into the gRPC call `t` describes.
pub(crate) async fn finish(req: &mut Request<RequestBody>, t: &mut Transcode) -> Result<(), ProxyError> {
    let refuse = |e: GatewayError| ProxyError::Plugin(e.reply());
    let (mut parts, body) = std::mem::replace(req, Request::new(RequestBody::new(ClientBody::Empty).0)).into_parts();
    let bytes = match Limited::new(body, BODY_LIMIT).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return Err(refuse(GatewayError::TooLarge)),
        Err(e) => return Err(ProxyError::InvalidRequest { reason: e.to_string() }),
    };
    let fields = std::mem::take(&mut t.fields);
    let json = request_json(&t.binding.body, fields, &bytes).map_err(refuse)?;
    let input = t.binding.method.input();
    let message = match DynamicMessage::deserialize(input.clone(), &json) {
        Ok(m) => m,
        Err(e) => {
            let field = failing_field(&input, &json).unwrap_or_default();
            return Err(refuse(GatewayError::Message(format!("field '{field}': {e}"))));
        }
    };
    let frame = frame(&message);

    parts.method = Method::POST;
    let path: PathAndQuery = t.binding.grpc_path.parse().map_err(|_| ProxyError::BadRequest)?;
    let mut uri = std::mem::take(&mut parts.uri).into_parts();
    uri.path_and_query = Some(path);
    parts.uri = Uri::from_parts(uri).map_err(|_| ProxyError::BadRequest)?;
    let h = &mut parts.headers;
    for name in [CONTENT_ENCODING, TRANSFER_ENCODING] {
        h.remove(name);
    }
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert(TE, HeaderValue::from_static("trailers"));
    h.insert(CONTENT_LENGTH, HeaderValue::from(frame.len()));
    let body = ClientBody::Filtered(Box::pin(Full::new(frame).map_err(|never| match never {})));
    *req = Request::from_parts(parts, RequestBody::new(body).0);
    Ok(())
}

/// The request message as proto3 JSON: the body where the rule puts it, then the path's and
/// query's fields over it.
fn request_json(rule: &BodyRule, fields: Map<String, Value>, body: &[u8]) -> Result<Value, GatewayError> {
    let parsed = || -> Result<Value, GatewayError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Object(Map::new()));
        }
        serde_json::from_slice(body).map_err(|e| GatewayError::Json(e.to_string()))
    };
    let mut root = match rule {
        BodyRule::None if body.iter().all(u8::is_ascii_whitespace) => Value::Object(Map::new()),
        BodyRule::None => return Err(GatewayError::UnexpectedBody),
        BodyRule::Whole => match parsed()? {
            v @ Value::Object(_) => v,
            _ => return Err(GatewayError::NotObject),
        },
        BodyRule::Field(f) => {
            let mut m = Map::new();
            m.insert(f.name().to_string(), parsed()?);
            Value::Object(m)
        }
    };
    merge(&mut root, Value::Object(fields));
    Ok(root)
}

/// The dotted path of the first member of `json` that `desc` does not accept (prost-reflect's
/// errors do not say which); run only when the whole message failed.
fn failing_field(desc: &MessageDescriptor, json: &Value) -> Option<String> {
    let Value::Object(members) = json else { return None };
    members.iter().find_map(|(name, value)| {
        let alone = Value::Object(Map::from_iter([(name.clone(), value.clone())]));
        DynamicMessage::deserialize(desc.clone(), &alone).err()?;
        let nested =
            desc.get_field_by_name(name).or_else(|| desc.get_field_by_json_name(name)).and_then(|f| match f.kind() {
                Kind::Message(m) if !f.is_list() && !f.is_map() => failing_field(&m, value),
                _ => None,
            });
        Some(match nested {
            Some(inner) => format!("{name}.{inner}"),
            None => name.clone(),
        })
    })
}

/// `src` over `dst`, objects merged member by member.
fn merge(dst: &mut Value, src: Value) {
    match (dst, src) {
        (Value::Object(d), Value::Object(s)) => {
            for (k, v) in s {
                match d.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        d.insert(k, v);
                    }
                }
            }
        }
        (d, s) => *d = s,
    }
}

/// One uncompressed gRPC message frame.
fn frame(message: &DynamicMessage) -> Bytes {
    let len = message.encoded_len();
    let mut buf = BytesMut::with_capacity(5 + len);
    buf.put_u8(0);
    buf.put_u32(len as u32);
    message.encode_raw(&mut buf);
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn path_fields_win_over_the_body() {
        let fields = json!({"id": "7", "inner": {"n": "1"}}).as_object().unwrap().clone();
        let v = request_json(&BodyRule::Whole, fields, br#"{"id": "x", "inner": {"m": 2}, "z": true}"#).unwrap();
        assert_eq!(v, json!({"id": "7", "inner": {"m": 2, "n": "1"}, "z": true}));
        assert_eq!(request_json(&BodyRule::None, Map::new(), b"{}"), Err(GatewayError::UnexpectedBody));
        assert_eq!(request_json(&BodyRule::Whole, Map::new(), b"[1]"), Err(GatewayError::NotObject));
    }
}
