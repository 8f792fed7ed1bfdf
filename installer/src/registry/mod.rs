//! The registry mirror: serve the unpacked images read-only over the OCI
//! distribution API, or push them into an existing registry.

pub mod api;
pub mod catalog;
pub mod reference;
pub mod server;

pub use catalog::Catalog;
pub use server::{serve, ServeError, ServeOptions};
