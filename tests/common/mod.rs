//! Helpers shared by the integration tests, one module per topic.
pub mod rig;
