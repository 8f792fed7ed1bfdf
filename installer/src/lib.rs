//! ferry installer crate

pub mod plan;
pub mod registry;
pub mod store;
