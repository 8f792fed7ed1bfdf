//! ferry's registry mirror on `[registry]` hosts: its TLS pair and unit.

use super::{HostFiles, HostScope, Renderer, SYSTEMD_DIR};
use crate::plan::error::Result;
use crate::plan::model::Step;
use crate::plan::pki::Pki;
use serde_json::json;

pub(super) struct RegistryInput<'a> {
    pub scope: &'a HostScope<'a>,
    pub pki: &'a Pki,
}

pub(super) fn render(h: &mut HostFiles, r: &Renderer, input: &RegistryInput) -> Result<()> {
    let s = input.scope;
    h.text(
        "/etc/ferry/registry/tls.pem",
        input.pki.text("registry.pem")?,
        Step::Registry,
    )?;
    h.secret(
        "/etc/ferry/registry/tls-key.pem",
        input.pki.get("registry-key.pem")?.to_vec(),
        Step::Registry,
    )?;
    let ctx = json!({"cluster": s.cluster_ctx, "host": s.host_ctx,
        "registry": {"port": s.cluster.registry_port}});
    h.text(
        format!("{SYSTEMD_DIR}/ferry-registry.service"),
        r.render("systemd/ferry-registry.service", &ctx)?,
        Step::Registry,
    )?;
    h.service("ferry-registry.service", Step::Registry, true);
    Ok(())
}
