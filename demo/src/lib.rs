//! The demo gRPC backend and its helpers, shared by the `sluice-demo-backend` and `sluice-grpc-call` binaries and
//! by the proxy and end-to-end tests, which need a real gRPC server that reports what it saw.
//!
//! - [`spawn`] starts a backend serving `hello.HelloService`, `echo.Echo`, `com.example.User`, `library.Library`
//!   (the grpc-gateway demo API), gRPC reflection and
//!   `grpc.health.v1.Health` on a real TCP socket, optionally over TLS.
//! - [`Stats`] tells a test which calls started, completed or were cancelled by the client, and what metadata the
//!   last call of each method carried.
//! - [`knobs`] lists the request metadata that makes a handler sleep, fail or stream differently.
//! - [`tls::self_signed`] makes certificates for tests; [`grpc_call`] is the CLI client's engine.

// `pub` only for what the binaries and the other crates' tests use.
#![warn(unreachable_pub)]

pub mod backend;
pub mod error;
pub mod grpc_call;
mod json_bytes;
mod killable;
pub mod knobs;
pub mod library;
mod observe;
mod services;
pub mod stats;
pub mod tls;

pub use backend::{spawn, spawn_on, Backend, BackendOptions};
pub use error::DemoError;
pub use stats::{MethodStats, RequestSeen, Stats};
pub use tls::self_signed;

/// Generated code for `hello.proto` (package `hello`).
#[allow(clippy::all, clippy::pedantic, rust_2018_idioms)]
pub mod hello {
    tonic::include_proto!("hello");
}

/// Generated code for `echo.proto` (package `echo`).
#[allow(clippy::all, clippy::pedantic, rust_2018_idioms)]
pub mod echo {
    tonic::include_proto!("echo");
}

/// Generated code for `user.proto` (package `com.example`).
#[allow(clippy::all, clippy::pedantic, rust_2018_idioms)]
pub mod user {
    tonic::include_proto!("com.example");
}

/// Generated code for `library.proto` (package `library`), the grpc-gateway demo API.
#[allow(clippy::all, clippy::pedantic, rust_2018_idioms)]
pub mod library_pb {
    tonic::include_proto!("library");
}

/// The encoded `FileDescriptorSet` of `library.proto` with its imports (google/api, well-known types).
pub const LIBRARY_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("library_descriptor");

/// The encoded `FileDescriptorSet` of the three demo protos, served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("demo_descriptor");

/// Largest message the backend and the CLI accept or send: 64 MiB, so 16 MiB payload tests pass with room to spare.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// Full method paths served by the backend, as they appear in `:path` and in [`Stats`].
pub mod methods {
    pub const SAY_HELLO: &str = "/hello.HelloService/SayHello";
    pub const LOTS_OF_REPLIES: &str = "/hello.HelloService/LotsOfReplies";
    pub const LOTS_OF_GREETINGS: &str = "/hello.HelloService/LotsOfGreetings";
    pub const BIDI_HELLO: &str = "/hello.HelloService/BidiHello";
    pub const ECHO: &str = "/echo.Echo/Echo";
    pub const ECHO_V2: &str = "/echo.Echo/EchoV2";
    pub const LOGIN: &str = "/com.example.User/Login";
    pub const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";
}
