use clap::Subcommand;

#[derive(Subcommand)]
pub enum RegistryCommand {
    /// Serve the unpacked images read-only over the OCI distribution API.
    Serve,
    /// Copy every image into an existing registry.
    Push,
}

pub fn run(cmd: RegistryCommand) -> anyhow::Result<()> {
    let _ = cmd;
    anyhow::bail!("registry: not built yet")
}
