//! sluice-proxy as a library: everything but the process entry point, so that tests can run the
//! whole data plane in-process on `127.0.0.1:0`.
//!
//! Layers, lowest first; a module only ever `use`s modules of its own layer or a lower one
//! (ARCHITECTURE.md, "Layers"):
//! 1. [`memo`], [`wire`]: protocol vocabulary (HTTP/1.1 framing, gRPC codes, hop-by-hop headers).
//! 2. [`settings`]: the process settings (Kong's listen grammar, trusted IPs).
//! 3. [`telemetry`]: metrics, access log, the per-request record.
//! 4. [`response_body`], [`respond`]: the response body type and the one mapping of failures to replies.
//! 5. [`downstream`]: client connections (HTTP/1.x, HTTP/2) and the request body.
//! 6. [`upstream`]: the connection pool, upstream HTTP/1.1 and HTTP/2, the balancer.
//! 7. [`listen`]: accept, PROXY protocol, TLS, preface sniffing; [`router`]; [`plugins`].
//! 8. [`config`]: the runtime snapshot, the admin socket, the status port.
//! 9. The request path in Kong's phases: [`phases`].
//! 10. The wiring of it all: [`app`].

// Public: what the binary, the integration tests, the fuzz targets and the benches use; the rest
// is the crate's own (`unreachable_pub` keeps `pub` for what leaves the crate).
#![warn(unreachable_pub)]

pub mod app;
pub(crate) mod config;
pub mod downstream;
pub(crate) mod listen;
pub(crate) mod memo;
pub(crate) mod phases;
pub(crate) mod plugins;
pub(crate) mod respond;
pub(crate) mod response_body;
pub mod router;
pub mod settings;
pub mod telemetry;
pub mod upstream;
pub mod wire;
