//! End-to-end test support for sluice.
//!
//! The main piece is [`apiserver`]: a small in-memory Kubernetes API server (a test tool, not a real API
//! server) that real `kubectl` and kube-rs talk to, so scenario tests can run the controller and proxy
//! without a cluster. Start one with [`TestApiServer::start`]; drive it with the real kubectl through
//! [`Kubectl`].

pub mod apiserver;
pub mod control_plane;
pub mod install;
pub mod kubectl;
pub mod netns;
pub mod podrunner;
pub mod sluice;

pub use apiserver::{ApiServer, Options, ServerError, TestApiServer};
pub use control_plane::{ControlPlane, ControlPlaneError};
pub use kubectl::{Kubectl, KubectlError};
pub use netns::{BackendNet, NetnsError};
