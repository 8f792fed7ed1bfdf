//! Every host's baseline: kernel modules, sysctl, swap off, and chrony when
//! the inventory names `[chrony]` hosts.

use super::{HostFiles, HostScope, Renderer, SYSTEMD_DIR};
use crate::plan::error::Result;
use crate::plan::kernel;
use crate::plan::model::{Role, Step};
use crate::plan::validate::NodeSpec;
use serde_json::json;

pub(super) struct BaselineInput<'a> {
    pub scope: &'a HostScope<'a>,
    /// The `[chrony]` hosts; none leaves the hosts' time sync alone.
    pub chrony_hosts: &'a [&'a NodeSpec],
    /// The hosts' networks, which the chrony servers answer.
    pub host_nets: &'a [String],
}

pub(super) fn render(h: &mut HostFiles, r: &Renderer, input: &BaselineInput) -> Result<()> {
    let s = input.scope;
    let base = json!({"cluster": s.cluster_ctx, "host": s.host_ctx});
    let ipvs = s.cluster.proxy_mode == "ipvs";
    let ex_lb = s.has(Role::ExLb);
    let kernel_ctx = json!({"cluster": s.cluster_ctx, "kernel": {
        "modules": kernel::MODULES,
        "ipvs_modules": if ipvs { &kernel::IPVS_MODULES[..] } else { &[] },
        "sysctls": kernel::SYSCTLS,
        "ex_lb_sysctls": if ex_lb { &kernel::EX_LB_SYSCTLS[..] } else { &[] },
    }});
    h.kernel(kernel::modules(ipvs), kernel::sysctls(ex_lb));
    h.text(
        "/etc/modules-load.d/k8s.conf",
        r.render("baseline/modules-load.conf", &kernel_ctx)?,
        Step::Baseline,
    )?;
    h.text(
        "/etc/sysctl.d/99-kubernetes-cri.conf",
        r.render("baseline/sysctl.conf", &kernel_ctx)?,
        Step::Baseline,
    )?;
    h.text(
        format!("{SYSTEMD_DIR}/ferry-swapoff.service"),
        r.render("systemd/ferry-swapoff.service", &base)?,
        Step::Baseline,
    )?;
    h.service("systemd-modules-load.service", Step::Baseline, false);
    h.service("systemd-sysctl.service", Step::Baseline, false);
    h.service("ferry-swapoff.service", Step::Baseline, true);
    if !input.chrony_hosts.is_empty() {
        chrony(h, r, input)?;
    }
    Ok(())
}

fn chrony(h: &mut HostFiles, r: &Renderer, input: &BaselineInput) -> Result<()> {
    let s = input.scope;
    let ips = |others_only: bool| -> Vec<String> {
        input
            .chrony_hosts
            .iter()
            .filter(|x| !others_only || x.name != s.node.name)
            .map(|x| x.ip.to_string())
            .collect()
    };
    let ctx = json!({"cluster": s.cluster_ctx, "host": s.host_ctx,
        "chrony": {"servers": ips(false), "peers": ips(true), "allow": input.host_nets}});
    h.text(
        "/etc/chrony/chrony.conf",
        r.render("baseline/chrony.conf", &ctx)?,
        Step::Baseline,
    )?;
    h.service("chrony.service", Step::Baseline, true);
    Ok(())
}
