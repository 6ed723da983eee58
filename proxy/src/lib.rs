//! sluice-proxy as a library: everything but the process entry point, so that tests can run the
//! whole data plane in-process on `127.0.0.1:0`.

pub mod listen;
pub mod router;
pub mod tls;
