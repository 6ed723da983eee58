//! sluice-proxy as a library: everything but the process entry point, so that tests can run the
//! whole data plane in-process on `127.0.0.1:0`.
//!
//! The life of a request: [`server`] accepts (PROXY protocol, TLS, [`sniff`]) and serves HTTP/2
//! with [`downstream_h2`] or HTTP/1.x with [`downstream_h1`] → [`forward`] routes
//! with [`router`] on the [`state`] snapshot, applies Kong's checks and [`plugins`], picks a target
//! with [`balancer`], sends through [`pool`] → [`body`] streams the answer back; failures become
//! responses in [`respond`]; [`observe`] feeds [`metrics`] and the [`access_log`].

pub mod access_log;
pub mod admin;
pub mod app;
pub mod balancer;
pub mod body;
pub mod downstream_h1;
pub mod downstream_h2;
pub mod forward;
pub mod grpc;
pub mod h1_wire;
pub mod h2_body;
pub mod http_date;
pub mod listen;
pub mod logging;
pub mod memo;
pub mod metrics;
pub mod observe;
pub mod plugins;
pub mod pool;
pub mod proxy_protocol;
pub mod rapid_reset;
pub mod request_body;
pub mod respond;
pub mod router;
pub mod server;
pub mod settings;
pub mod sniff;
pub mod state;
pub mod status;
pub mod tls;
pub mod trust;
pub mod upstream_h1;
pub mod upstream_h2;
