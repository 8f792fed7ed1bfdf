//! ferry installer crate
