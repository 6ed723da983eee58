//! `sluice-controller` as a library: everything but argument parsing lives here so that tests,
//! benchmarks and the thin binary share one code path.
//!
//! The pipeline (ARCHITECTURE.md):
//! [`watch`] (Kubernetes reflectors) or [`files`] (`--manifests`) fill a [`snapshot::Snapshot`] →
//! [`translate::translate`] turns it into a Kong declarative config plus per-object problems (pure) →
//! [`sync`] debounces, pushes through [`push`] to the proxy's admin socket, falls back when the proxy
//! rejects entities, and then writes [`status`], [`events`] and [`metrics`].
//! [`webhook`] (optional) refuses bad objects at admission with the translator's own checks.
#![warn(unreachable_pub)]

pub mod app;
pub mod crds;
pub mod endpoints;
mod events;
pub mod files;
mod gateway_status;
mod kong_consumers;
mod kong_plugins;
mod leader;
pub mod metrics;
mod policy;
pub mod push;
pub mod settings;
mod snapshot;
pub mod status;
pub mod sync;
pub mod sync_trace;
pub mod translate;
pub mod watch;
pub mod webhook;

pub use settings::Settings;
pub use snapshot::Snapshot;
pub use translate::{translate, ObjectRef, Problem, Translation};
