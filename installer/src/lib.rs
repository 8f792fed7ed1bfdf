//! ferry installer crate

pub mod addon_artifacts;
pub mod addon_render;
pub mod calico;
pub mod closure;
pub mod config;
pub mod deploy;
pub mod exec;
pub mod images;
pub mod inventory;
pub mod kinds;
pub mod pki;
pub mod plan;
pub mod registry;
pub mod render;
pub mod store;
pub mod unpack;
mod unpack_writer;
pub mod validate;
