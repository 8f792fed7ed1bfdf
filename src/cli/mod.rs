//! Subcommand definitions and dispatch, one file per command family.

pub mod bundle;
pub mod bundle_build;
pub mod bundle_check;
pub mod bundle_unpack;
pub mod certs;
pub mod destroy;
pub mod drill;
pub mod etcd;
pub mod install;
pub mod node;
pub mod plan;
pub mod registry;
pub mod registry_push;
pub mod trust;
pub mod upgrade;

/// Exit codes: 0 ok, 1 failure, 2 usage error (clap), 3 verification failure.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    let verification = err.chain().any(|cause| {
        cause
            .downcast_ref::<ferry_bundles::Error>()
            .is_some_and(ferry_bundles::Error::is_verification)
    });
    if verification {
        3
    } else {
        1
    }
}
