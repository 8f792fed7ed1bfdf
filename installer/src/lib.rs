//! ferry installer crate

pub mod deploy;
pub mod exec;
pub mod images;
pub mod install;
pub mod interrupt;
pub mod plan;
pub mod registry;
pub mod store;
pub mod unpack;
mod unpack_writer;
pub mod upgrade;
