//! The registry mirror: serve the unpacked images read-only over the OCI
//! distribution API, or push them into an existing registry.

pub mod api;
pub mod catalog;
pub mod push;
pub mod reference;
pub mod server;

pub use catalog::Catalog;
pub use push::{push, PushOptions, PushReport};
pub use server::{serve, ServeError, ServeOptions};
