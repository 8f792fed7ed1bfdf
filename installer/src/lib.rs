//! ferry installer crate

pub mod exec;
pub mod plan;
pub mod registry;
pub mod store;
