//! ferry installer crate

pub mod plan;
pub mod store;
