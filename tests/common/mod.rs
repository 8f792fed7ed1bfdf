//! Helpers shared by the integration tests, one module per topic.
//! Each test binary uses a subset, so unused items are expected.
#![allow(dead_code)]

pub mod bundles;
pub mod cluster;
pub mod hostfiles;
pub mod kubeasz;
pub mod mirror;
pub mod plan;
pub mod ports;
pub mod rig;
pub mod testbundle;
pub mod upstream;
