//! Downstream HTTP/1.x: the server side of a client's HTTP/1.0 or HTTP/1.1 connection, run on the
//! connection's task.
//!
//! One request at a time: its head is parsed with httparse into an `http::Request`, the handler's
//! future is polled here, and the response is written as its body yields. Pipelined requests wait
//! in the read buffer. A request body (RFC 9112 §6: `content-length`, or chunked) is read by this
//! loop when the request's [`H1RequestBody`] asks for more, from whichever task polls it. The
//! response is framed by its `content-length`, else chunked (HTTP/1.1) or by closing (HTTP/1.0);
//! HEAD, 1xx, 204 and 304 responses have no body. hyper's rules are kept: a request head must
//! arrive within the header timeout (also the keep-alive idle limit), a head over the limit gets
//! 431, a malformed one 400, both `transfer-encoding` and `content-length` mean chunked and a
//! closed connection afterwards, `expect: 100-continue` is answered when the body is first read,
//! and a response is given `date` when it has none. A body left unread closes the connection.
//!
//! - `conn`: the connection loop ([`serve`]), its buffers, timeouts and closing;
//! - `head`: request head parsing and validation;
//! - `body`: the request body, read by the loop for the task that polls it;
//! - `writer`: the response head and body on the wire;
//! - `error`: why a connection ends, and what the client is answered.

mod body;
mod conn;
mod error;
mod head;
mod writer;

pub use body::{H1BodyError, H1RequestBody};
pub use conn::{serve, H1Limits};
pub use error::H1ServerError;
pub use head::{decode_request, parse_request, valid_host, DecodedRequest, RequestHead};
