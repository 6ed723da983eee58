//! End-to-end test support for sluice: [`ControlPlane`] runs a real etcd + kube-apiserver (built
//! from their Go modules, see `scripts/k8s-tools.sh`), [`install`] applies sluice's CRDs and install
//! manifests to it, [`Kubectl`] drives it with the real kubectl, and [`BackendNet`] gives backends a
//! private address in a network namespace (Kubernetes rejects loopback EndpointSlice addresses).
#![warn(unreachable_pub)]

mod control_plane;
pub mod install;
mod kubectl;
mod netns;
pub mod podrunner;
pub mod sluice;

pub use control_plane::{ControlPlane, ControlPlaneError};
pub use kubectl::{Kubectl, KubectlError};
pub use netns::{BackendNet, NetnsError};
