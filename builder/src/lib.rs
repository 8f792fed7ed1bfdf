//! ferry builder: catalog + profile -> binaries, archives and images fetched
//! through mirrors into a content-addressed cache -> one signed bundle.

mod addon_images;
mod assemble;
mod binaries;
pub mod cache;
pub mod catalog;
mod checksum;
mod embedded;
pub mod error;
mod fetch;
mod images;
mod layout;
mod lint;
pub mod mirror;
pub mod ospkg;
mod pipeline;
pub mod profile;
mod progress;
mod selfbin;

pub use cache::Cache;
pub use error::{Error, Result};
pub use pipeline::{build, BuildOptions, BuildReport};
