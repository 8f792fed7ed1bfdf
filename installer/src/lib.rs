//! ferry installer crate

pub mod store;
