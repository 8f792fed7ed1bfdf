//! The registry mirror: serve the unpacked images read-only over the OCI
//! distribution API, or push them into an existing registry.

mod access;
pub mod api;
mod blobsend;
pub mod catalog;
mod conn;
mod h1;
mod h2;
mod io;
pub mod limits;
pub mod push;
pub mod reference;
pub mod server;

pub use catalog::Catalog;
pub use limits::Limits;
pub use push::{push, PushOptions, PushReport};
pub use server::{serve, ServeError, ServeOptions};
