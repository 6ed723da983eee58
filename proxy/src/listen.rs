//! Accepting connections: the accept loop and per-connection setup ([`server`]), the PROXY
//! protocol header ([`proxy_protocol`]), TLS with certificates by SNI ([`tls`]) and the client side of TLS
//! upstreams ([`upstream_tls`]), and HTTP/2
//! preface detection on plaintext listeners ([`sniff`]). Each accepted connection is handed to
//! [`crate::downstream`].
//!
//! Layer: above `downstream`; below `config` (whose runtime holds the TLS certificate store).

pub(crate) mod proxy_protocol;
pub(crate) mod server;
pub(crate) mod sniff;
pub(crate) mod tls;
pub(crate) mod upstream_tls;
