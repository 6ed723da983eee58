//! The upstream side: pooled connections per target and transport ([`pool`]), sending a request
//! and reading the response over HTTP/1.1 ([`h1`]) or HTTP/2 ([`h2`]), and target selection with
//! health ([`balancer`]); target health fed by live traffic and probes ([`health`],
//! [`active_checks`]); what a refused HTTP/2 request sent, for a retry ([`replay`]); host names
//! resolved through a cache ([`dns`]).
//!
//! Layer: above `downstream` (it sends the client's [`crate::downstream::request_body`]); it knows
//! nothing of routes, plugins or phases.

pub(crate) mod active_checks;
pub(crate) mod balancer;
pub mod dns;
pub mod h1;
pub(crate) mod h2;
pub(crate) mod health;
pub(crate) mod pool;
pub(crate) mod replay;
