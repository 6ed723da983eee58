//! Protocol vocabulary shared by both halves of the proxy, with no knowledge of either: HTTP/1.1
//! framing ([`h1`]), an HTTP/2 receive body ([`h2_body`]), hop-by-hop headers ([`hop_by_hop`]),
//! gRPC status codes and timeouts ([`grpc`]), gRPC-Web framing ([`grpc_web`]), the `Date` header ([`http_date`]).
//!
//! Layer: the lowest; it imports nothing from the crate but [`crate::memo`].

pub mod grpc;
pub mod grpc_web;
pub mod h1;
pub(crate) mod h2_body;
pub(crate) mod hop_by_hop;
pub(crate) mod http_date;
