//! A transcoded server stream, sent as a JSON array that streams: `[` with the first message,
//! then `,` and each message as it arrives (each upstream DATA frame's complete messages go out
//! as one downstream frame, so each message is flushed when it is whole), then `]`. Nothing but
//! the one message being reassembled is held.
//!
//! The HTTP status goes out with the first message, so:
//! - a gRPC status before any message gets the usual answer ([`super::response`]): Google's HTTP
//!   status and `{"code", "message"}` (or `200 []` for an OK stream with no message);
//! - a non-OK status after some messages (or an upstream reset, or an undecodable message) ends
//!   the array with one last element `{"error": {"code", "message"}}`, the shape grpc-gateway
//!   uses for stream errors, and the array is closed, so the body stays valid JSON.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use prost_reflect::SerializeOptions;
use proxy_config::transcode::Binding;
use serde_json::json;

use super::response::{error, grpc_status, json_response, to_json};
use crate::response_body::{BodyError, ProxyBody};

/// A message longer than this ends the stream with an error instead of being buffered.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// The client's answer to a server-streaming call whose upstream answered 200 `application/grpc`
/// (without `grpc-status` in the head): waits for the first message or the end of the stream.
pub(super) async fn respond(body: ProxyBody, b: Arc<Binding>) -> http::Response<ProxyBody> {
    let mut s = JsonArray { inner: body, buf: BytesMut::new(), b, opened: false, done: false, pending: None };
    match poll_fn(|cx| s.poll_event(cx)).await {
        Event::Messages(first) => {
            s.pending = Some(first);
            let mut resp = json_response(200, ProxyBody::Upstream(Box::pin(s)));
            resp.headers_mut().remove(http::header::CONTENT_LENGTH);
            resp
        }
        Event::End(0, _) => json_response(200, ProxyBody::full("[]")),
        Event::End(code, message) => error(code, &message),
    }
}

/// What the upstream body produced next.
enum Event {
    /// The JSON of one or more whole messages, each with its `[` or `,` before it.
    Messages(Bytes),
    /// The call's gRPC status.
    End(u32, String),
}

/// The streamed JSON array (see the module doc).
struct JsonArray {
    inner: ProxyBody,
    /// The start of a message not yet whole.
    buf: BytesMut,
    b: Arc<Binding>,
    /// `[` was sent.
    opened: bool,
    /// `]` was sent.
    done: bool,
    /// The first messages, read before the response head was sent.
    pending: Option<Bytes>,
}

impl JsonArray {
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        loop {
            let frame = match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => return Poll::Ready(Event::End(14, format!("upstream stream broke off: {e}"))),
                None => return Poll::Ready(Event::End(2, "the upstream's response has no grpc-status".into())),
            };
            match frame.into_data() {
                Ok(data) => {
                    self.buf.extend_from_slice(&data);
                    match self.whole_messages() {
                        Ok(Some(json)) => return Poll::Ready(Event::Messages(json)),
                        Ok(None) => {}
                        Err(why) => return Poll::Ready(Event::End(13, why)),
                    }
                }
                Err(frame) => {
                    let Ok(trailers) = frame.into_trailers() else { continue };
                    if !self.buf.is_empty() {
                        return Poll::Ready(Event::End(13, "truncated gRPC message".into()));
                    }
                    let (code, message) = grpc_status(&trailers);
                    return Poll::Ready(Event::End(code, message));
                }
            }
        }
    }

    /// The JSON of every whole message in `buf`, or `None` when there is none yet.
    fn whole_messages(&mut self) -> Result<Option<Bytes>, String> {
        let options = SerializeOptions::new().skip_default_fields(self.b.response_body.is_none());
        let mut out = Vec::new();
        while self.buf.len() >= 5 {
            if self.buf[0] != 0 {
                return Err("the upstream sent a compressed message".into());
            }
            let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
            if len > MAX_MESSAGE {
                return Err(format!("a response message of {len} bytes is over {MAX_MESSAGE}"));
            }
            if self.buf.len() < 5 + len {
                self.buf.reserve(5 + len - self.buf.len());
                break;
            }
            self.buf.advance(5);
            let msg = self.buf.split_to(len);
            let value = to_json(&msg, &self.b, &options)?;
            out.push(if self.opened { b',' } else { b'[' });
            self.opened = true;
            serde_json::to_writer(&mut out, &value).map_err(|e| e.to_string())?;
        }
        Ok((!out.is_empty()).then(|| Bytes::from(out)))
    }

    /// The end of the array for the call's status.
    fn close(&mut self, code: u32, message: &str) -> Bytes {
        self.done = true;
        let mut out = Vec::with_capacity(64);
        if code != 0 {
            out.push(if self.opened { b',' } else { b'[' });
            let element = json!({"error": {"code": code, "message": message}});
            out.extend_from_slice(element.to_string().as_bytes());
        } else if !self.opened {
            out.push(b'[');
        }
        out.push(b']');
        Bytes::from(out)
    }
}

impl Body for JsonArray {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Some(first) = this.pending.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        if this.done {
            return Poll::Ready(None);
        }
        let data = match ready!(this.poll_event(cx)) {
            Event::Messages(json) => json,
            Event::End(code, message) => this.close(code, &message),
        };
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.pending.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
