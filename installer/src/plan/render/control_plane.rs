//! A master's control plane: apiserver, controller-manager and scheduler with
//! their certificates, configs and kubeconfigs.

use super::{kubeconfig, HostFiles, HostScope, Renderer, SYSTEMD_DIR};
use crate::plan::error::Result;
use crate::plan::model::Step;
use crate::plan::pki::Pki;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;

pub(super) struct ControlPlaneInput<'a> {
    pub scope: &'a HostScope<'a>,
    pub pki: &'a Pki,
    pub encryption_key: &'a str,
    pub kubeconfigs: &'a BTreeMap<String, String>,
}

const UNITS: [&str; 3] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

pub(super) fn render(h: &mut HostFiles, r: &Renderer, input: &ControlPlaneInput) -> Result<()> {
    let ctx = control_plane_ctx(input);
    certificates(h, input)?;
    configs(h, r, &ctx)?;
    for k in ["kube-controller-manager", "kube-scheduler", "admin"] {
        h.secret(
            format!("/etc/kubernetes/{k}.kubeconfig"),
            kubeconfig(input.kubeconfigs, k)?.into_bytes(),
            Step::ControlPlane,
        )?;
    }
    for unit in UNITS {
        h.text(
            format!("{SYSTEMD_DIR}/{unit}.service"),
            r.render(&format!("systemd/{unit}.service"), &ctx)?,
            Step::ControlPlane,
        )?;
        h.service(&format!("{unit}.service"), Step::ControlPlane, true);
    }
    Ok(())
}

fn control_plane_ctx(input: &ControlPlaneInput) -> Json {
    let s = input.scope;
    let cfg = &s.cluster.config;
    json!({"cluster": s.cluster_ctx, "host": s.host_ctx, "encryption_key": input.encryption_key, "apiserver": {
        "admission_plugins": cfg.apiserver_admission_plugins.value,
        "max_requests_inflight": cfg.apiserver_max_requests_inflight.value,
        "max_mutating_requests_inflight": cfg.apiserver_max_mutating_requests_inflight.value,
        "request_timeout": cfg.apiserver_request_timeout.value,
        "event_ttl": cfg.apiserver_event_ttl.value,
        "profiling": cfg.apiserver_enable_profiling.value,
        "audit_log_max_age": cfg.apiserver_audit_log_max_age.value,
        "audit_log_max_backup": cfg.apiserver_audit_log_max_backup.value,
        "audit_log_max_size": cfg.apiserver_audit_log_max_size.value}})
}

fn certificates(h: &mut HostFiles, input: &ControlPlaneInput) -> Result<()> {
    let pki = input.pki;
    super::access::check_credentials(h, pki, Step::ControlPlane)?;
    let ca_dir = input.scope.ca_dir();
    for f in [
        "ca.pem",
        "apiserver.pem",
        "apiserver-kubelet-client.pem",
        "front-proxy-ca.pem",
        "front-proxy-client.pem",
        "sa.pub",
    ] {
        h.text(ca_dir.join(f), pki.text(f)?, Step::ControlPlane)?;
    }
    for f in [
        "ca-key.pem",
        "apiserver-key.pem",
        "apiserver-kubelet-client-key.pem",
        "front-proxy-client-key.pem",
        "sa.key",
    ] {
        h.secret(ca_dir.join(f), pki.get(f)?.to_vec(), Step::ControlPlane)?;
    }
    for f in ["etcd/ca.pem", "etcd/apiserver-etcd-client.pem"] {
        h.text(ca_dir.join(f), pki.text(f)?, Step::ControlPlane)?;
    }
    h.secret(
        ca_dir.join("etcd/apiserver-etcd-client-key.pem"),
        pki.get("etcd/apiserver-etcd-client-key.pem")?.to_vec(),
        Step::ControlPlane,
    )
}

/// Audit policy, admission config and the (secret) encryption config.
fn configs(h: &mut HostFiles, r: &Renderer, ctx: &Json) -> Result<()> {
    h.text(
        "/etc/kubernetes/audit-policy.yaml",
        r.render("kubernetes/audit-policy.yaml", ctx)?,
        Step::ControlPlane,
    )?;
    h.text(
        "/etc/kubernetes/admission-config.yaml",
        r.render("kubernetes/admission-config.yaml", ctx)?,
        Step::ControlPlane,
    )?;
    h.secret(
        "/etc/kubernetes/encryption-config.yaml",
        r.render("kubernetes/encryption-config.yaml", ctx)?
            .into_bytes(),
        Step::ControlPlane,
    )
}
