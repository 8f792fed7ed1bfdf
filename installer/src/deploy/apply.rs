//! One deploy step on one host: place the step's files and archives (only what
//! differs), run the step's own actions, then enable units and restart those
//! whose step changed (or that are not running).

use super::{DeployContext, HostRun};
use crate::exec::{sh_quote, ExecError, Executor, Source, Upload};
use crate::plan::{FileContent, HostPlan, PlannedArchive, Step};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long a restarted unit may take to become active (etcd waits for quorum).
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);

pub type StepResult = Result<(), String>;

pub fn upload_for(
    ctx: &DeployContext,
    host: &HostPlan,
    path: &Path,
    mode: u32,
    content: &FileContent,
) -> Result<Upload, String> {
    let (source, sha256) = match content {
        FileContent::Inline(b) => (Source::Bytes(Arc::from(b.as_slice())), content.sha256()),
        FileContent::BundleFile {
            bundle_path,
            sha256,
            ..
        } => {
            let p = ctx
                .store
                .file_path(&ctx.bundle, bundle_path)
                .map_err(|e| format!("{}: bundle file {bundle_path}: {e}", host.name))?;
            (Source::File(p), Some(sha256.clone()))
        }
        FileContent::FerryExecutable => {
            let exe = std::env::current_exe()
                .map_err(|e| format!("cannot locate the ferry executable: {e}"))?;
            (Source::File(exe), None)
        }
    };
    Ok(Upload {
        path: path.to_path_buf(),
        mode,
        source,
        sha256,
    })
}

fn err(e: ExecError) -> String {
    e.to_string()
}

/// Where an archive is kept on the host, and the marker saying it was unpacked.
pub(super) fn archive_paths(a: &PlannedArchive) -> (PathBuf, PathBuf) {
    let base = Path::new(&a.bundle_path)
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    let dir = Path::new(super::REMOTE_DATA_DIR).join("archives");
    let keep = dir.join(&base);
    let mut marker = base;
    marker.push(".unpacked");
    (keep, dir.join(marker))
}

async fn place_archives(ctx: &DeployContext, run: &mut HostRun, step: Step) -> StepResult {
    let archives: Vec<PlannedArchive> = run
        .plan
        .archives
        .iter()
        .filter(|a| a.step == step)
        .cloned()
        .collect();
    for a in archives {
        let (keep, marker) = archive_paths(&a);
        let src = ctx
            .store
            .file_path(&ctx.bundle, &a.bundle_path)
            .map_err(|e| format!("bundle file {}: {e}", a.bundle_path))?;
        let up = Upload {
            path: keep.clone(),
            mode: 0o644,
            source: Source::File(src),
            sha256: Some(a.sha256.clone()),
        };
        let exec = run.exec()?;
        let mut changed = exec.put_files(&[up]).await.map_err(err)?;
        let stamp = format!(
            "{} {} {}",
            a.sha256,
            a.dest_dir.display(),
            a.strip_components
        );
        let current = exec
            .run(&format!(
                "cat {} 2>/dev/null",
                sh_quote(&marker.to_string_lossy())
            ))
            .await
            .map_err(err)?;
        if current.stdout.trim() != stamp {
            exec.check(&format!(
                "set -e; mkdir -p {dest}; tar -xf {keep} -C {dest} --strip-components={n} --no-same-owner; echo {stamp} > {marker}",
                dest = sh_quote(&a.dest_dir.to_string_lossy()),
                keep = sh_quote(&keep.to_string_lossy()),
                n = a.strip_components,
                stamp = sh_quote(&stamp),
                marker = sh_quote(&marker.to_string_lossy()),
            ))
            .await
            .map_err(err)?;
            if changed.is_empty() {
                changed.push(a.dest_dir.clone());
            }
        }
        run.changed.extend(changed.iter().cloned());
        run.step_changed |= !changed.is_empty();
    }
    Ok(())
}

async fn place_files(ctx: &DeployContext, run: &mut HostRun, step: Step) -> StepResult {
    let mut uploads = Vec::new();
    for f in run.plan.files_for(step) {
        uploads.push(upload_for(
            ctx,
            &run.plan,
            &f.path,
            f.placed_mode(),
            &f.content,
        )?);
    }
    if uploads.is_empty() {
        return Ok(());
    }
    let changed = run.exec()?.put_files(&uploads).await.map_err(err)?;
    run.step_changed |= !changed.is_empty();
    run.changed.extend(changed);
    Ok(())
}

/// `systemctl daemon-reload` when unit files changed, enable what the plan
/// enables, restart units of a changed step and start units that are not
/// active, then wait until they are active: one round trip each.
async fn services(run: &mut HostRun, step: Step) -> StepResult {
    let units: Vec<_> = run
        .plan
        .services
        .iter()
        .filter(|s| s.step == step)
        .cloned()
        .collect();
    if units.is_empty() {
        return Ok(());
    }
    let exec = run.exec()?;
    let mut script = String::from("set -u\n");
    if run.step_changed {
        script.push_str("systemctl daemon-reload || exit 1\n");
    }
    for s in &units {
        let u = sh_quote(&s.unit);
        if run.container && super::KERNEL_UNITS.contains(&s.unit.as_str()) {
            exec.log().line(&format!(
                "{}: not started in a container (it would act on the machine's kernel)",
                s.unit
            ));
            if s.enable {
                script.push_str(&format!(
                    "if systemctl cat {u} >/dev/null 2>&1; then [ \"$(systemctl is-enabled {u} 2>/dev/null)\" = enabled ] || systemctl enable {u} >/dev/null 2>&1 || {{ echo \"cannot enable {u}\" >&2; exit 1; }}; fi\n"
                ));
            }
            continue;
        }
        if s.enable {
            script.push_str(&format!(
                "[ \"$(systemctl is-enabled {u} 2>/dev/null)\" = enabled ] || systemctl enable {u} >/dev/null 2>&1 || {{ echo \"cannot enable {u}: is its package installed on this host?\" >&2; exit 1; }}\n"
            ));
        }
        // --no-block: members of a cluster (etcd) start together and wait for each other.
        script.push_str(&format!(
            "if [ {changed} = 1 ] || [ \"$(systemctl is-active {u})\" != active ]; then systemctl reset-failed {u} 2>/dev/null; systemctl restart --no-block {u} || exit 1; echo restarted {u}; fi\n",
            changed = u8::from(run.step_changed)
        ));
    }
    let out = exec.check(&script).await.map_err(err)?;
    let restarted: Vec<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("restarted "))
        .map(|u| u.trim_matches('\'').to_string())
        .collect();
    wait_active(exec, &restarted).await?;
    run.restarted.extend(restarted);
    Ok(())
}

/// Waits until every unit of `units` is active (one remote loop).
pub async fn wait_active(exec: &Executor, units: &[String]) -> StepResult {
    if units.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = units.iter().map(|u| sh_quote(u)).collect();
    let polls = ACTIVE_TIMEOUT.as_secs() * 2;
    let script = format!(
        "for i in $(seq 1 {polls}); do pending=''; for u in {list}; do s=$(systemctl is-active \"$u\"); \
         case \"$s\" in active) ;; failed) echo \"$u failed\"; journalctl -u \"$u\" -n 15 --no-pager -o cat 2>&1 | tail -n 15; exit 1;; \
         *) pending=\"$pending $u($s)\";; esac; done; [ -z \"$pending\" ] && exit 0; sleep 0.5; done; \
         echo \"not active after {secs}s:$pending\"; for u in {list}; do journalctl -u \"$u\" -n 5 --no-pager -o cat 2>&1 | tail -n 5; done; exit 1",
        list = list.join(" "),
        secs = ACTIVE_TIMEOUT.as_secs()
    );
    let out = exec.run(&script).await.map_err(err)?;
    if out.success() {
        Ok(())
    } else {
        Err(format!(
            "units did not become active: {}",
            out.stdout.trim()
        ))
    }
}

/// Where a host remembers a step whose units may not have been restarted
/// since its files were placed (a run killed in between).
pub(super) const PENDING_DIR: &str = "/var/lib/ferry/pending";

/// Runs `step` on one host.
pub async fn run_step(ctx: &DeployContext, run: &mut HostRun, step: Step) -> StepResult {
    run.step_changed = false;
    let has_services = run.plan.services.iter().any(|s| s.step == step);
    if has_services {
        run.step_changed = mark_pending(run, step).await?;
    }
    place_files(ctx, run, step).await?;
    place_archives(ctx, run, step).await?;
    match step {
        Step::Baseline => super::baseline::apply(run).await?,
        Step::Registry if run.plan.has(crate::plan::Role::Registry) => {
            super::registry_sync::sync(ctx, run).await?
        }
        _ => {}
    }
    services(run, step).await?;
    if has_services {
        let marker = sh_quote(&format!("{PENDING_DIR}/{}", step.as_str()));
        run.exec()?
            .check(&format!("rm -f {marker}"))
            .await
            .map_err(err)?;
    }
    Ok(())
}

/// Marks `step` pending on the host before any of its files change, and
/// whether an earlier run left it pending: then its units are restarted
/// even when no file differs now.
async fn mark_pending(run: &mut HostRun, step: Step) -> Result<bool, String> {
    let dir = sh_quote(PENDING_DIR);
    let marker = sh_quote(&format!("{PENDING_DIR}/{}", step.as_str()));
    let script =
        format!("if [ -e {marker} ]; then echo pending; fi; mkdir -p {dir} && : > {marker}");
    let out = run.exec()?.check(&script).await.map_err(err)?;
    let pending = out.lines().any(|l| l == "pending");
    if pending {
        run.exec()?.log().line(&format!(
            "step {}: an earlier run stopped before restarting its units; restarting them",
            step.as_str()
        ));
    }
    Ok(pending)
}

/// Whether `host` has anything to do in `step`.
pub fn has_work(host: &HostPlan, step: Step) -> bool {
    host.files.iter().any(|f| f.step == step)
        || host.archives.iter().any(|a| a.step == step)
        || host.services.iter().any(|s| s.step == step)
        || (step == Step::Registry && host.has(crate::plan::Role::Registry))
        || step == Step::Baseline
}
