//! The running configuration: the immutable runtime built from one Kong declarative config and
//! swapped atomically ([`state`]), the unix-socket API that replaces it ([`admin`]), and the
//! status port that reports on it ([`status`], with target health from [`upstream_health`]).
//!
//! Layer: above `upstream`, `listen`, `router` and `plugins` (the runtime owns their built
//! forms); below `phases`, which read one snapshot per request.

pub(crate) mod admin;
pub(crate) mod retire;
pub(crate) mod state;
pub(crate) mod status;
pub(crate) mod upstream_health;
