//! `ferry install`'s deploy: carry a [`ClusterPlan`] out on its hosts.
//!
//! connect -> preflight (every host, all problems at once, nothing changed
//! yet) -> the plan's steps in order (each step on all hosts in parallel,
//! `forks` at a time, except that running etcd members and apiservers go
//! one at a time behind health gates, see rolling.rs, and new etcd members
//! join one at a time, see etcd_step.rs) -> checks. A host that fails skips its later steps;
//! steps that need other hosts (control plane needs an etcd quorum, nodes and
//! addons need a control plane) are skipped when those failed. Every host
//! ends in the report table with its step, status and log path.

pub mod addons;
mod apply;
mod baseline;
pub mod before_upgrade;
pub mod certs;
pub mod destroy;
pub mod etcd_backup;
pub mod etcd_drill;
pub mod etcd_restore;
pub mod etcd_step;
pub mod etcdctl;
pub mod fingerprint;
mod identity;
pub mod joining;
mod leases;
pub mod master_drill;
pub mod node_roll;
mod packages;
pub mod placed;
pub mod preflight;
mod registry_sync;
pub mod remove;
pub mod report;
mod rolling;
pub mod rules;
pub mod status;

pub use preflight::Finding;
pub use report::{DeployReport, HostReport, Status};

use crate::exec::{
    fan_out, Executor, HostLog, LocalExecutor, SshDestination, SshExecutor, SshOptions,
};
use crate::plan::{ClusterPlan, HostPlan, PlannedService, Role, Step};
use crate::store::Store;
use ferry_bundles::BundleManifest;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

/// Where registry hosts keep their copy of the store (the mirror unit serves it).
pub const REMOTE_DATA_DIR: &str = "/var/lib/ferry";

/// Baseline units that act on the kernel (modules, sysctl, swap, clock). In a
/// container the kernel is the machine's own: these are not started there.
pub const KERNEL_UNITS: [&str; 5] = [
    "systemd-modules-load.service",
    "systemd-sysctl.service",
    "ferry-swapoff.service",
    "chrony.service",
    "chronyd.service",
];

pub const STEPS: [Step; 9] = [
    Step::Baseline,
    Step::Binaries,
    Step::Containerd,
    Step::Registry,
    Step::Etcd,
    Step::ControlPlane,
    Step::AccessLayer,
    Step::Nodes,
    Step::Addons,
];

#[derive(Debug, Clone)]
pub struct DeployOptions {
    pub forks: usize,
    pub ssh: SshOptions,
    /// `<cluster-dir>/logs`: one `<host>.log` per host.
    pub log_dir: PathBuf,
    /// Only these hosts (names or inventory hosts); all when None.
    pub limit: Option<BTreeSet<String>>,
    /// An upgrade: running nodes are drained and upgraded in batches.
    pub node_roll: Option<node_roll::NodeRoll>,
    /// Hash every placed file on every host instead of trusting a host whose
    /// fingerprint is the one recorded after the last deploy (fingerprint.rs).
    pub verify_hosts: bool,
}

pub struct DeployContext {
    pub store: Store,
    pub bundle: String,
    pub manifest: BundleManifest,
}

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("preflight found {} problem(s); nothing was changed:\n{}", .findings.iter().filter(|f| !f.warning).count(), format_findings(.findings))]
    Preflight {
        findings: Vec<Finding>,
        report: DeployReport,
    },
    #[error("--limit {0}: no host of the inventory has that name")]
    Limit(String),
}

/// One line per distinct preflight finding, naming every host that has it:
/// "  problem h4, h5: what" (seven test hosts missing the same module make one
/// line, not seven).
pub fn format_findings(findings: &[Finding]) -> String {
    group_findings(findings)
        .into_iter()
        .map(|(f, hosts)| {
            format!(
                "  {} {}: {}",
                if f.warning { "warning" } else { "problem" },
                hosts.join(", "),
                f.problem
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Findings with the same text and severity, with their hosts, in first-seen order.
fn group_findings(findings: &[Finding]) -> Vec<(&Finding, Vec<&str>)> {
    let mut groups: Vec<(&Finding, Vec<&str>)> = Vec::new();
    for f in findings {
        match groups
            .iter_mut()
            .find(|(g, _)| g.problem == f.problem && g.warning == f.warning)
        {
            Some((_, hosts)) => hosts.push(&f.host),
            None => groups.push((f, vec![f.host.as_str()])),
        }
    }
    groups
}

pub struct HostRun {
    pub plan: HostPlan,
    pub exec: Option<Executor>,
    pub step: String,
    pub status: Status,
    pub error: Option<String>,
    pub log: PathBuf,
    pub changed: Vec<PathBuf>,
    pub restarted: Vec<String>,
    /// Addon objects applied to the cluster from this host.
    pub applied_objects: usize,
    /// Something of the current step changed on this host.
    pub step_changed: bool,
    /// The host is a container (a test host): the kernel is the machine's.
    pub container: bool,
    /// OS packages preflight found missing, to install from the bundle.
    pub packages: Option<packages::PackageWork>,
    /// The host is as the last deploy of the same plan left it: nothing is done on it.
    pub unchanged: bool,
}

impl HostRun {
    pub fn exec(&self) -> Result<&Executor, String> {
        self.exec
            .as_ref()
            .ok_or_else(|| format!("{}: not connected", self.plan.name))
    }

    fn ok(&self) -> bool {
        self.status == Status::Ok
    }

    /// The host is still ok, was not found unchanged, and has work in `step`.
    fn needs(&self, step: Step) -> bool {
        self.ok() && !self.unchanged && apply::has_work(&self.plan, step)
    }

    /// Runs `script` on the host; its stdout, or an error naming the host,
    /// `what` failed, and what the script printed.
    async fn run_named(
        &self,
        script: &str,
        input: Option<&crate::exec::Source>,
        what: &str,
    ) -> Result<String, String> {
        let out = self
            .exec()?
            .run_with(script, input)
            .await
            .map_err(|e| format!("{}: {what}: {e}", self.plan.name))?;
        if out.success() {
            return Ok(out.stdout);
        }
        let printed = format!("{} {}", out.stdout.trim(), out.stderr.trim());
        Err(format!("{}: {what}: {}", self.plan.name, printed.trim()))
    }

    fn fail(&mut self, step: &str, error: String) {
        if let Some(e) = &self.exec {
            e.log().line(&format!("step {step}: FAILED: {error}"));
        }
        self.step = step.to_string();
        self.status = Status::Failed;
        self.error = Some(error);
    }

    fn report(&self) -> HostReport {
        HostReport {
            host: self.plan.name.clone(),
            step: self.step.clone(),
            status: self.status.clone(),
            error: self.error.clone(),
            log: self.log.clone(),
            changed_files: self.changed.clone(),
            restarted_units: self.restarted.clone(),
            applied_objects: self.applied_objects,
        }
    }
}

fn is_local(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "::1")
}

async fn connect(plan: &HostPlan, opts: &DeployOptions) -> HostRun {
    let log_path = opts.log_dir.join(format!("{}.log", plan.name));
    let log = HostLog::open(&log_path);
    log.line(&format!(
        "=== ferry install: host {} ({})",
        plan.name, plan.address
    ));
    let mut run = HostRun {
        plan: plan.clone(),
        exec: None,
        step: "connect".into(),
        status: Status::Ok,
        error: None,
        log: log_path,
        changed: Vec::new(),
        restarted: Vec::new(),
        applied_objects: 0,
        step_changed: false,
        container: false,
        packages: None,
        unchanged: false,
    };
    if is_local(&plan.ssh.host) {
        run.exec = Some(Executor::Local(LocalExecutor::new(&plan.name, log)));
        return run;
    }
    let dest = SshDestination {
        host: plan.ssh.host.clone(),
        port: (plan.ssh.port != 22).then_some(plan.ssh.port),
        user: Some(plan.ssh.user.clone()),
        identity_file: plan.ssh.identity_file.clone(),
        become_root: plan.ssh.become_root,
    };
    match SshExecutor::connect(&plan.name, &dest, &opts.ssh, log).await {
        Ok(e) => run.exec = Some(Executor::Ssh(e)),
        Err(e) => {
            let msg = e.to_string();
            // The log file is still written: open it again for the failure line.
            HostLog::open(&run.log).line(&format!("step connect: FAILED: {msg}"));
            run.status = Status::Failed;
            run.error = Some(msg);
        }
    }
    run
}

/// Runs the whole deploy. Preflight problems stop it before any change.
pub async fn deploy(
    plan: &ClusterPlan,
    ctx: &DeployContext,
    opts: &DeployOptions,
) -> Result<DeployReport, DeployError> {
    let started = Instant::now();
    let hosts = selected_hosts(plan, opts.limit.as_ref())?;
    let mut runs: Vec<HostRun> = fan_out(hosts, opts.forks, |h| connect(h, opts)).await;
    mark_unchanged(plan, ctx, &mut runs, opts).await;
    let findings = preflight_all(plan, ctx, &mut runs, opts.forks).await;
    if findings.iter().any(|f| !f.warning) {
        stop_after_preflight(&mut runs, &findings);
        let report = finish(runs, Vec::new(), started).await;
        return Err(DeployError::Preflight { findings, report });
    }
    let mut notes = warning_notes(&findings);
    notes.extend(install_packages_everywhere(ctx, &mut runs, opts.forks).await);
    for step in STEPS {
        notes.extend(run_step_everywhere(step, plan, ctx, &mut runs, opts).await);
    }
    check_units_everywhere(plan, ctx, &mut runs, opts.forks).await;
    notes.extend(unchanged_note(&runs));
    forget_failed(plan, &runs);
    Ok(finish(runs, notes, started).await)
}

/// Finds the hosts whose fingerprint is the one recorded after the last
/// deploy of the same plan (unless `--verify-hosts`); every other host's
/// record is dropped before anything changes there, so a run stopped midway
/// never leaves a record that no longer holds.
async fn mark_unchanged(
    plan: &ClusterPlan,
    ctx: &DeployContext,
    runs: &mut [HostRun],
    opts: &DeployOptions,
) {
    let verify = opts.verify_hosts;
    let todo = runs.iter_mut().filter(|r| r.ok()).collect();
    fan_out(todo, opts.forks, |r: &mut HostRun| async move {
        if !verify && fingerprint::unchanged(ctx, &plan.cluster_dir, r).await {
            r.unchanged = true;
            r.step = "unchanged".into();
        } else if let Err(e) = fingerprint::forget(&plan.cluster_dir, &r.plan.name) {
            r.fail("connect", format!("dropping the host's manifest: {e}"));
        }
    })
    .await;
}

/// The report's note on hosts left alone.
fn unchanged_note(runs: &[HostRun]) -> Option<String> {
    let names: Vec<&str> = runs
        .iter()
        .filter(|r| r.unchanged && r.ok())
        .map(|r| r.plan.name.as_str())
        .collect();
    (!names.is_empty()).then(|| {
        format!(
            "unchanged since their last deploy, by fingerprint (every placed file's size, mode, owner, inode and ctime; units; sysctls), so left alone: {} (--verify-hosts hashes every file)",
            names.join(", ")
        )
    })
}

/// A host that failed keeps no manifest: the next run does all its steps.
fn forget_failed(plan: &ClusterPlan, runs: &[HostRun]) {
    for r in runs.iter().filter(|r| r.status == Status::Failed) {
        if let Err(e) = fingerprint::forget(&plan.cluster_dir, &r.plan.name) {
            if let Ok(x) = r.exec() {
                x.log().line(&format!("dropping the host's manifest: {e}"));
            }
        }
    }
}

/// The plan's hosts that `limit` names (by name, inventory host or address);
/// all of them without a limit. A name no host has is an error.
fn selected_hosts<'p>(
    plan: &'p ClusterPlan,
    limit: Option<&BTreeSet<String>>,
) -> Result<Vec<&'p HostPlan>, DeployError> {
    let mut hosts: Vec<&HostPlan> = plan.hosts.iter().collect();
    let Some(limit) = limit else {
        return Ok(hosts);
    };
    let named =
        |h: &HostPlan, l: &String| &h.name == l || &h.inventory_host == l || &h.address == l;
    if let Some(unknown) = limit
        .iter()
        .find(|l| !plan.hosts.iter().any(|h| named(h, l)))
    {
        return Err(DeployError::Limit(unknown.clone()));
    }
    hosts.retain(|h| limit.iter().any(|l| named(h, l)));
    Ok(hosts)
}

/// Preflight on every connected host; findings are collected, not acted on
/// one by one. Includes hostnames that clash across hosts.
async fn preflight_all(
    plan: &ClusterPlan,
    ctx: &DeployContext,
    runs: &mut [HostRun],
    forks: usize,
) -> Vec<Finding> {
    let results = fan_out(
        runs.iter_mut().filter(|r| r.ok() && !r.unchanged).collect(),
        forks,
        |r: &mut HostRun| preflight_host(plan, ctx, r),
    )
    .await;
    let mut findings: Vec<Finding> = results.iter().flat_map(|(f, _)| f.clone()).collect();
    let facts: Vec<_> = results.into_iter().map(|(_, f)| f).collect();
    findings.extend(preflight::check_unique_hostnames(&facts));
    findings
}

/// One host's preflight: its findings (also written to its log) and its facts.
async fn preflight_host(
    plan: &ClusterPlan,
    ctx: &DeployContext,
    r: &mut HostRun,
) -> (Vec<Finding>, (String, preflight::HostFacts)) {
    r.step = "preflight".into();
    let exec = r.exec.as_ref().expect("connected host has an executor");
    let (findings, facts) = preflight::check_host(plan, &r.plan, &ctx.manifest, exec).await;
    for f in &findings {
        exec.log().line(&format!(
            "preflight {}: {}",
            if f.warning { "warning" } else { "problem" },
            f.problem
        ));
    }
    r.container = facts.container;
    r.packages = facts.packages.clone();
    (findings, (r.plan.name.clone(), facts))
}

/// Preflight found problems: the hosts that have them fail, the others are
/// not started.
fn stop_after_preflight(runs: &mut [HostRun], findings: &[Finding]) {
    for r in runs.iter_mut().filter(|r| r.ok()) {
        let mine: Vec<String> = findings
            .iter()
            .filter(|f| f.host == r.plan.name && !f.warning)
            .map(|f| f.problem.clone())
            .collect();
        if mine.is_empty() {
            r.status = Status::Skipped;
            r.error = Some("not started: preflight failed on other hosts".into());
        } else {
            r.fail("preflight", mine.join("; "));
        }
    }
}

/// The report's notes for preflight warnings: one per distinct warning.
fn warning_notes(findings: &[Finding]) -> Vec<String> {
    group_findings(findings)
        .into_iter()
        .map(|(f, hosts)| format!("{}: {}", hosts.join(", "), f.problem))
        .collect()
}

/// Runs `step` on every host that is still ok and has work in it, `forks`
/// at a time; returns the notes the hosts made.
async fn run_step_everywhere(
    step: Step,
    plan: &ClusterPlan,
    ctx: &DeployContext,
    runs: &mut [HostRun],
    opts: &DeployOptions,
) -> Vec<String> {
    let forks = opts.forks;
    skip_blocked(step, runs);
    let todo: Vec<usize> = (0..runs.len()).filter(|&i| runs[i].needs(step)).collect();
    match step {
        Step::Etcd => return etcd_step::run(plan, ctx, runs, todo, forks).await,
        Step::ControlPlane => {
            return rolling::run(step, plan, ctx, runs, todo, forks, rolling::Gate::Apiserver).await
        }
        Step::Nodes if opts.node_roll.is_some() => {
            let roll = opts.node_roll.expect("matched");
            return node_roll::run(plan, ctx, runs, todo, opts, &roll).await;
        }
        _ => {}
    }
    // Addons are applied to the cluster once, from the first master still ok.
    let first_master = runs.iter().position(|r| r.ok() && r.plan.has(Role::Master));
    let todo: Vec<(usize, &mut HostRun)> = runs
        .iter_mut()
        .enumerate()
        .filter(|(_, r)| r.needs(step))
        .collect();
    let notes = fan_out(todo, forks, |(i, r): (usize, &mut HostRun)| {
        let applies_addons = step == Step::Addons && Some(i) == first_master;
        run_step_on_host(step, plan, ctx, r, applies_addons)
    })
    .await;
    let mut notes: Vec<String> = notes.into_iter().flatten().collect();
    if step == Step::Addons {
        notes.extend(addons_from_unchanged_master(plan, runs, first_master).await);
    }
    notes
}

/// Addons go from the first master. When that master was unchanged (so had
/// no step to run) they are still applied if any other host did work; when
/// every host was unchanged they are read back in one call, and applied
/// only if one is missing or changed in the cluster.
async fn addons_from_unchanged_master(
    plan: &ClusterPlan,
    runs: &mut [HostRun],
    first_master: Option<usize>,
) -> Option<String> {
    let i = first_master?;
    if !runs[i].unchanged {
        return None;
    }
    let r = if runs.iter().all(|r| r.unchanged || !r.ok()) {
        let r = &mut runs[i];
        match addons::in_place(plan, r).await {
            Ok(Some(note)) => return Some(note),
            Ok(None) => r,
            Err(e) => {
                r.fail(Step::Addons.as_str(), e);
                return None;
            }
        }
    } else {
        &mut runs[i]
    };
    match apply_addons(plan, r).await {
        Ok(note) => note,
        Err(e) => {
            r.fail(Step::Addons.as_str(), e);
            None
        }
    }
}

/// Installs the OS packages preflight found missing, from the bundle's sets;
/// a note lists what each host got.
async fn install_packages_everywhere(
    ctx: &DeployContext,
    runs: &mut [HostRun],
    forks: usize,
) -> Vec<String> {
    let todo: Vec<&mut HostRun> = runs
        .iter_mut()
        .filter(|r| r.ok() && r.packages.is_some())
        .collect();
    let installed = fan_out(todo, forks, |r: &mut HostRun| async move {
        r.step = "packages".into();
        let work = r.packages.clone().expect("filtered on packages");
        if let Ok(e) = r.exec() {
            e.log()
                .line(&format!("--- step packages: {}", work.missing.join(" ")));
        }
        match packages::install(ctx, r, &work).await {
            Ok(()) => Some(format!("{}: {}", r.plan.name, work.missing.join(" "))),
            Err(e) => {
                r.fail("packages", e);
                None
            }
        }
    })
    .await;
    let lines: Vec<String> = installed.into_iter().flatten().collect();
    if lines.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "OS packages installed from the bundle: {}",
        lines.join("; ")
    )]
}

/// Marks the hosts that have work in `step` but cannot do it now, because
/// hosts they depend on failed, as skipped.
fn skip_blocked(step: Step, runs: &mut [HostRun]) {
    let standing = rules::Standing::of(runs.iter().map(|r| (&r.plan.roles, r.ok())));
    let skip: Vec<(usize, String)> = runs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.needs(step))
        .filter_map(|(i, r)| rules::blocked(step, &r.plan.roles, &standing).map(|why| (i, why)))
        .collect();
    for (i, why) in skip {
        let r = &mut runs[i];
        r.step = step.as_str().into();
        r.status = Status::Skipped;
        r.error = Some(format!("skipped: {why}"));
    }
}

/// One host's part of `step`, plus the cluster's addons when `applies_addons`;
/// returns the addons' note.
async fn run_step_on_host(
    step: Step,
    plan: &ClusterPlan,
    ctx: &DeployContext,
    r: &mut HostRun,
    applies_addons: bool,
) -> Option<String> {
    r.step = step.as_str().into();
    if let Ok(e) = r.exec() {
        e.log().line(&format!("--- step {}", step.as_str()));
    }
    if let Err(e) = placed::note_step(&plan.cluster_dir, &r.plan, step) {
        r.fail(step.as_str(), format!("recording what ferry places: {e}"));
        return None;
    }
    let done = match apply::run_step(ctx, r, step).await {
        Ok(()) if applies_addons => apply_addons(plan, r).await,
        other => other.map(|()| None),
    };
    done.unwrap_or_else(|e| {
        r.fail(step.as_str(), e);
        None
    })
}

async fn apply_addons(plan: &ClusterPlan, r: &mut HostRun) -> Result<Option<String>, String> {
    let applied = addons::apply(plan, r).await?;
    r.applied_objects = applied.objects;
    Ok(Some(applied.note))
}

/// Checks on every host still ok that was not found unchanged: each planned
/// unit is active, and enabled where the plan enables it. A host that passes
/// has its manifest recorded.
async fn check_units_everywhere(
    plan: &ClusterPlan,
    ctx: &DeployContext,
    runs: &mut [HostRun],
    forks: usize,
) {
    fan_out(
        runs.iter_mut().filter(|r| r.ok() && !r.unchanged).collect(),
        forks,
        |r: &mut HostRun| async move {
            check_host_units(r).await;
            if r.ok() {
                if let Err(e) = fingerprint::record(ctx, &plan.cluster_dir, r).await {
                    if let Ok(x) = r.exec() {
                        x.log().line(&format!(
                            "the host's manifest was not recorded ({e}): the next run does every step"
                        ));
                    }
                }
            }
        },
    )
    .await;
}

async fn check_host_units(r: &mut HostRun) {
    r.step = "checks".into();
    let mut bad = Vec::new();
    if let Ok(exec) = r.exec() {
        exec.log().line("--- checks");
        let units: Vec<&PlannedService> = r
            .plan
            .services
            .iter()
            .filter(|s| !(r.container && KERNEL_UNITS.contains(&s.unit.as_str())))
            .collect();
        match exec.check(&unit_state_script(&units)).await {
            Ok(out) => bad = unit_problems(&units, &out),
            Err(e) => bad.push(e.to_string()),
        }
    }
    if !bad.is_empty() {
        r.fail("checks", bad.join("; "));
    }
}

/// Prints "UNIT ACTIVE ENABLED" for each unit.
fn unit_state_script(units: &[&PlannedService]) -> String {
    units
        .iter()
        .map(|s| {
            let u = crate::exec::sh_quote(&s.unit);
            format!("echo {u} $(systemctl is-active {u}) $(systemctl is-enabled {u} 2>/dev/null || echo disabled)\n")
        })
        .collect()
}

/// What is wrong with `units`, read from [`unit_state_script`]'s output.
fn unit_problems(units: &[&PlannedService], out: &str) -> Vec<String> {
    let mut bad = Vec::new();
    for s in units {
        let line = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(s.unit.as_str()));
        let mut f = line.unwrap_or("").split_whitespace().skip(1);
        let (a, e) = (f.next().unwrap_or("unknown"), f.next().unwrap_or("unknown"));
        if a != "active" {
            bad.push(format!("{} is {a}", s.unit));
        }
        if s.enable && e != "enabled" {
            bad.push(format!("{} is {e} (not enabled)", s.unit));
        }
    }
    bad
}

async fn finish(runs: Vec<HostRun>, notes: Vec<String>, started: Instant) -> DeployReport {
    let mut reports = Vec::new();
    for r in runs {
        reports.push(r.report());
        if let Some(Executor::Ssh(s)) = r.exec {
            s.close().await;
        }
    }
    DeployReport {
        hosts: reports,
        notes,
        seconds: started.elapsed().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(host: &str, problem: &str, warning: bool) -> Finding {
        Finding {
            host: host.into(),
            problem: problem.into(),
            warning,
        }
    }

    /// A host with `roles` and one unit in every step from the control plane on.
    fn run(name: &str, roles: &[Role]) -> HostRun {
        let service = |unit: &str, step| PlannedService {
            unit: unit.into(),
            step,
            enable: true,
        };
        let plan = HostPlan {
            name: name.into(),
            inventory_host: name.into(),
            address: name.into(),
            ssh: crate::plan::SshTarget {
                host: name.into(),
                port: 22,
                user: "root".into(),
                identity_file: None,
                become_root: false,
            },
            arch: "amd64".into(),
            roles: roles.iter().copied().collect(),
            pool: None,
            files: Vec::new(),
            archives: Vec::new(),
            services: vec![
                service("kube-apiserver.service", Step::ControlPlane),
                service("kubelet.service", Step::Nodes),
                service("addons.service", Step::Addons),
            ],
            kernel_modules: Vec::new(),
            sysctls: Vec::new(),
        };
        HostRun {
            plan,
            exec: None,
            step: "etcd".into(),
            status: Status::Ok,
            error: None,
            log: PathBuf::from(format!("/logs/{name}.log")),
            changed: Vec::new(),
            restarted: Vec::new(),
            applied_objects: 0,
            step_changed: false,
            container: false,
            packages: None,
            unchanged: false,
        }
    }

    fn three_masters() -> Vec<HostRun> {
        vec![
            run("h1", &[Role::Etcd, Role::Master]),
            run("h2", &[Role::Etcd, Role::Master]),
            run("h3", &[Role::Etcd, Role::Master, Role::Node]),
        ]
    }

    fn states(runs: &[HostRun]) -> Vec<(&str, &str, Status, Option<&str>)> {
        runs.iter()
            .map(|r| {
                (
                    r.plan.name.as_str(),
                    r.step.as_str(),
                    r.status.clone(),
                    r.error.as_deref(),
                )
            })
            .collect()
    }

    /// Two of three etcd members failed: the one master left is skipped at
    /// the control plane, naming the quorum; then nodes and addons are
    /// skipped because no control plane host succeeded.
    #[test]
    fn without_etcd_quorum_the_control_plane_then_nodes_are_skipped() {
        let mut runs = three_masters();
        runs[0].fail("etcd", "h1: connection lost".into());
        runs[1].fail("etcd", "h2: connection lost".into());
        skip_blocked(Step::ControlPlane, &mut runs);
        let why = "skipped: etcd has no quorum (1 of 3 members deployed)";
        assert_eq!(
            states(&runs)[2],
            ("h3", "control_plane", Status::Skipped, Some(why))
        );
        assert_eq!(
            states(&runs)[0].2,
            Status::Failed,
            "a failure stays a failure"
        );
        assert_eq!(states(&runs)[0].1, "etcd");

        let mut runs = three_masters();
        runs[0].fail("control-plane", "h1: kube-apiserver failed".into());
        runs[1].fail("control-plane", "h2: kube-apiserver failed".into());
        runs[2].status = Status::Skipped;
        runs.push(run("h4", &[Role::Node]));
        for step in [Step::Nodes, Step::Addons] {
            runs[3].status = Status::Ok;
            skip_blocked(step, &mut runs);
            let why = "skipped: no control plane host succeeded";
            assert_eq!(
                states(&runs)[3],
                ("h4", step.as_str(), Status::Skipped, Some(why))
            );
        }
    }

    /// One etcd member lost of three: the other two masters run the control plane.
    #[test]
    fn with_an_etcd_quorum_the_other_masters_go_on() {
        let mut runs = three_masters();
        runs[2].fail("etcd", "h3: connection lost".into());
        for step in [Step::ControlPlane, Step::Nodes, Step::Addons] {
            skip_blocked(step, &mut runs);
            assert!(
                runs[0].ok() && runs[1].ok(),
                "{step:?}: {:?}",
                states(&runs)
            );
            assert_eq!(runs[2].status, Status::Failed);
        }
    }

    #[test]
    fn the_same_finding_on_several_hosts_is_one_line() {
        let findings = [
            finding("h1", "kernel module ip_vs is not loaded", true),
            finding("h2", "kernel module ip_vs is not loaded", true),
            finding("h2", "port 2379 is already in use by etcd", false),
            finding("h3", "kernel module ip_vs is not loaded", true),
            finding("h3", "kernel module ip_vs is not loaded", false),
        ];
        assert_eq!(
            format_findings(&findings),
            "  warning h1, h2, h3: kernel module ip_vs is not loaded\n  \
             problem h2: port 2379 is already in use by etcd\n  \
             problem h3: kernel module ip_vs is not loaded"
        );
    }
}
