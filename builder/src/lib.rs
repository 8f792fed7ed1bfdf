//! ferry builder crate
