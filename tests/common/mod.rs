//! Helpers shared by the integration tests, one module per topic.
//! Each test binary uses a subset, so unused items are expected.
#![allow(dead_code)]

pub mod mirror;
pub mod rig;
pub mod upstream;
