//! What the proxy tells its operators: Prometheus [`metrics`], the [`access_log`], the
//! per-request record that feeds both ([`observe`]) and process [`logging`].
//!
//! Layer: above `wire` and `settings`; the connection layers report into it, it reads none of them.

pub(crate) mod access_log;
pub mod client_protocol;
pub mod logging;
pub(crate) mod metrics;
pub(crate) mod observe;

pub use client_protocol::ClientProtocol;
