//! ferry installer crate

pub mod plan;
