//! A proxied request's life in Kong's phases. [`forward`] is the entry point.
//!
//! Layer: the highest but `app`; it may use every other layer, none uses it.

pub mod forward;
