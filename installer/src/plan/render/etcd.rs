//! An etcd member: its certificates and unit.

use super::{HostFiles, HostScope, Renderer, SYSTEMD_DIR};
use crate::plan::error::Result;
use crate::plan::model::Step;
use crate::plan::pki::Pki;
use serde_json::{json, Value as Json};

pub(super) struct EtcdInput<'a> {
    pub scope: &'a HostScope<'a>,
    pub pki: &'a Pki,
    /// The member's name in the etcd cluster.
    pub member: &'a str,
    /// How it starts: with the first members, or joining a running cluster.
    pub start: &'a crate::plan::etcd_members::Member,
}

pub(super) fn render(h: &mut HostFiles, r: &Renderer, input: &EtcdInput) -> Result<()> {
    certificates(h, input)?;
    h.text(
        format!("{SYSTEMD_DIR}/etcd.service"),
        r.render("systemd/etcd.service", &etcd_ctx(input))?,
        Step::Etcd,
    )?;
    h.service("etcd.service", Step::Etcd, true);
    scheduled_backup(h, r, input)
}

/// Where each member keeps its scheduled snapshots.
pub const SCHEDULED_SNAPSHOT_DIR: &str = "/var/lib/ferry/snapshots/scheduled";

/// The member's snapshot timer (ETCD_BACKUP_SCHEDULE; none when empty).
fn scheduled_backup(h: &mut HostFiles, r: &Renderer, input: &EtcdInput) -> Result<()> {
    let cfg = &input.scope.cluster.config;
    if cfg.etcd_backup_schedule.value.is_empty() {
        return Ok(());
    }
    let mut ctx = etcd_ctx(input);
    ctx["backup"] = json!({"schedule": cfg.etcd_backup_schedule.value,
        "keep": cfg.etcd_backup_keep.value, "dir": SCHEDULED_SNAPSHOT_DIR});
    for unit in ["ferry-etcd-backup.service", "ferry-etcd-backup.timer"] {
        h.text(
            format!("{SYSTEMD_DIR}/{unit}"),
            r.render(&format!("systemd/{unit}"), &ctx)?,
            Step::Etcd,
        )?;
    }
    h.service("ferry-etcd-backup.timer", Step::Etcd, true);
    Ok(())
}

fn etcd_ctx(input: &EtcdInput) -> Json {
    let s = input.scope;
    let cfg = &s.cluster.config;
    json!({"cluster": s.cluster_ctx, "host": s.host_ctx, "etcd": {
        "name": input.member, "data_dir": cfg.etcd_data_dir.value, "wal_dir": cfg.etcd_wal_dir.value,
        "client_port": cfg.etcd_client_port.value, "peer_port": cfg.etcd_peer_port.value,
        "initial_cluster": input.start.initial_cluster, "initial_cluster_state": input.start.state.as_str(), "auto_compaction_retention": cfg.etcd_auto_compaction_retention.value,
        "snapshot_count": cfg.etcd_snapshot_count.value}})
}

fn certificates(h: &mut HostFiles, input: &EtcdInput) -> Result<()> {
    let pki = input.pki;
    let member = input.member;
    let etcd_dir = input.scope.ca_dir().join("etcd");
    h.text(
        etcd_dir.join("ca.pem"),
        pki.text("etcd/ca.pem")?,
        Step::Etcd,
    )?;
    for (kind, src) in [
        ("server", format!("etcd/{member}-server")),
        ("peer", format!("etcd/{member}-peer")),
        ("healthcheck-client", "etcd/healthcheck-client".to_string()),
    ] {
        h.text(
            etcd_dir.join(format!("{kind}.pem")),
            pki.text(&format!("{src}.pem"))?,
            Step::Etcd,
        )?;
        h.secret(
            etcd_dir.join(format!("{kind}-key.pem")),
            pki.get(&format!("{src}-key.pem"))?.to_vec(),
            Step::Etcd,
        )?;
    }
    Ok(())
}
