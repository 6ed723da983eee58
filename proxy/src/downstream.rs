//! The client side of the proxy: one HTTP/1.x ([`h1`]) or HTTP/2 ([`h2`]) connection per socket,
//! the client's request body as it flows upstream ([`request_body`]), and HTTP/2 Rapid Reset
//! protection ([`rapid_reset`]). A connection hands each request to a [`Handler`] (the proxy's
//! [`crate::phases`], or the status port) and writes back the [`ProxyBody`] it returns.
//!
//! Layer: above `wire`, `settings`, `telemetry`, `body`/`respond`; below everything else.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};

use crate::response_body::ProxyBody;
use request_body::ClientBody;

pub mod h1;
pub(crate) mod h2;
pub(crate) mod rapid_reset;
pub(crate) mod request_body;

/// Facts about the downstream connection a request arrived on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client (from the PROXY protocol header when the listener has `proxy_protocol`).
    pub client: SocketAddr,
    /// The TCP peer (the load balancer when PROXY protocol is used).
    pub peer: SocketAddr,
    pub local_port: u16,
    pub tls: bool,
    pub sni: Option<Arc<str>>,
}

/// What a listener serves.
pub trait Handler: Send + Sync + 'static {
    fn call(
        self: Arc<Self>,
        req: Request<ClientBody>,
        conn: Arc<ConnInfo>,
    ) -> impl Future<Output = Result<Response<ProxyBody>, Infallible>> + Send + 'static;
}
