//! ferry installer crate

pub mod registry;
pub mod store;
