//! Kong's route `request_buffering` / `response_buffering` set to `true`: the body collected
//! whole, up to [`BUFFER_LIMIT`], before it moves on. A buffered request goes upstream with a
//! `content-length` (never chunked); a buffered response reaches the client only once the
//! upstream has sent all of it. Absent or `false`, bodies stream (sluice's default, unlike
//! Kong's, since gRPC calls are streams; the config rejects `true` on gRPC routes).

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
pub(crate) use proxy_config::BUFFER_LIMIT;

use crate::downstream::request_body::{ClientBody, RequestBody};
use crate::respond::ProxyError;
use crate::response_body::ProxyBody;

/// Collects the request body in `req` and puts it back whole, with its `content-length`.
/// Over [`BUFFER_LIMIT`]: 413.
pub(crate) async fn buffer_request(req: &mut Request<RequestBody>) -> Result<(), ProxyError> {
    let (mut parts, body) = std::mem::replace(req, Request::new(RequestBody::new(ClientBody::Empty).0)).into_parts();
    let bytes = match Limited::new(body, BUFFER_LIMIT).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return Err(ProxyError::BodyTooLarge { limit: BUFFER_LIMIT }),
        Err(e) => return Err(ProxyError::InvalidRequest { reason: e.to_string() }),
    };
    set_length(&mut parts.headers, &bytes);
    let body = ClientBody::Filtered(Box::pin(Full::new(bytes).map_err(|never| match never {})));
    *req = Request::from_parts(parts, RequestBody::new(body).0);
    Ok(())
}

/// Collects the upstream's response body before the client gets the head. Over
/// [`BUFFER_LIMIT`], or broken off by the upstream: 502; cut by a timeout: 504. Trailers of a
/// buffered response are not forwarded (HTTP routes only: gRPC routes never buffer).
pub(crate) async fn buffer_response(resp: Response<ProxyBody>) -> Result<Response<ProxyBody>, ProxyError> {
    let (mut head, body) = resp.into_parts();
    if matches!(body, ProxyBody::Empty | ProxyBody::Full(_)) {
        return Ok(Response::from_parts(head, body));
    }
    let bytes = match Limited::new(body, BUFFER_LIMIT).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            let detail = format!("response body over the route's buffering limit ({BUFFER_LIMIT} bytes)");
            return Err(ProxyError::UpstreamFailed { detail });
        }
        Err(e) => {
            let message = e.to_string();
            let timed_out =
                [ProxyError::DeadlineExceeded.to_string(), ProxyError::UpstreamTimeout.to_string()].contains(&message);
            return Err(match timed_out {
                true => ProxyError::DeadlineExceeded,
                false => ProxyError::UpstreamFailed { detail: message },
            });
        }
    };
    set_length(&mut head.headers, &bytes);
    Ok(Response::from_parts(head, ProxyBody::full(bytes)))
}

fn set_length(headers: &mut HeaderMap, bytes: &Bytes) {
    headers.remove(TRANSFER_ENCODING);
    headers.insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
}
