use clap::Subcommand;

#[derive(Subcommand)]
pub enum BundleCommand {
    /// Generate a minisign-compatible key pair (KEYBASE.pub, KEYBASE.key with mode 0600).
    Keygen(super::bundle_check::KeygenArgs),
    /// Pull every binary and image of a Kubernetes release into one signed bundle.
    Build(super::bundle_build::BuildArgs),
    /// Show a bundle's components, images and sizes (reads bundle.json only).
    Inspect(super::bundle_check::InspectArgs),
    /// Check the signature and every file of a bundle.
    Verify(super::bundle_check::VerifyArgs),
    /// Verify and unpack a bundle into the data directory.
    Unpack(super::bundle_unpack::UnpackArgs),
}

pub fn run(cmd: BundleCommand) -> anyhow::Result<()> {
    match cmd {
        BundleCommand::Keygen(args) => super::bundle_check::keygen(args),
        BundleCommand::Build(args) => super::bundle_build::run(args),
        BundleCommand::Inspect(args) => super::bundle_check::inspect(args),
        BundleCommand::Verify(args) => super::bundle_check::verify(args),
        BundleCommand::Unpack(args) => super::bundle_unpack::run(args),
    }
}
