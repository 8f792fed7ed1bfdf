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
fn archive_paths(a: &PlannedArchive) -> (PathBuf, PathBuf) {
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
        let mode = if f.secret { f.mode & 0o700 } else { f.mode };
        uploads.push(upload_for(ctx, &run.plan, &f.path, mode, &f.content)?);
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
/// enables, restart units of a changed step and start units that are not active.
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
    if run.step_changed {
        exec.check("systemctl daemon-reload").await.map_err(err)?;
    }
    let mut restarted = Vec::new();
    for s in &units {
        let u = sh_quote(&s.unit);
        if s.enable {
            let state = exec
                .run(&format!("systemctl is-enabled {u}"))
                .await
                .map_err(err)?;
            if state.stdout.trim() != "enabled" {
                exec.check(&format!("systemctl enable {u}"))
                    .await
                    .map_err(err)?;
            }
        }
        let active = exec
            .run(&format!("systemctl is-active {u}"))
            .await
            .map_err(err)?;
        if run.step_changed || active.stdout.trim() != "active" {
            // --no-block: members of a cluster (etcd) start together and wait for each other.
            exec.check(&format!(
                "systemctl reset-failed {u} 2>/dev/null; systemctl restart --no-block {u}"
            ))
            .await
            .map_err(err)?;
            restarted.push(s.unit.clone());
        }
    }
    for unit in &restarted {
        wait_active(exec, unit).await?;
    }
    run.restarted.extend(restarted);
    Ok(())
}

pub async fn wait_active(exec: &Executor, unit: &str) -> StepResult {
    let u = sh_quote(unit);
    let deadline = tokio::time::Instant::now() + ACTIVE_TIMEOUT;
    loop {
        let st = exec
            .run(&format!("systemctl is-active {u}"))
            .await
            .map_err(err)?;
        let state = st.stdout.trim().to_string();
        if state == "active" {
            return Ok(());
        }
        if state == "failed" || tokio::time::Instant::now() > deadline {
            let journal = exec
                .run(&format!(
                    "journalctl -u {u} -n 15 --no-pager -o cat 2>&1 | tail -n 15"
                ))
                .await
                .map(|o| o.stdout)
                .unwrap_or_default();
            return Err(format!(
                "{unit} did not become active (state {state}); last log lines:\n{journal}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs `step` on one host.
pub async fn run_step(ctx: &DeployContext, run: &mut HostRun, step: Step) -> StepResult {
    run.step_changed = false;
    place_files(ctx, run, step).await?;
    place_archives(ctx, run, step).await?;
    match step {
        Step::Baseline => super::baseline::apply(run).await?,
        Step::Registry if run.plan.has(crate::plan::Role::Registry) => {
            super::registry_sync::sync(ctx, run).await?
        }
        _ => {}
    }
    services(run, step).await
}

/// Whether `host` has anything to do in `step`.
pub fn has_work(host: &HostPlan, step: Step) -> bool {
    host.files.iter().any(|f| f.step == step)
        || host.archives.iter().any(|a| a.step == step)
        || host.services.iter().any(|s| s.step == step)
        || (step == Step::Registry && host.has(crate::plan::Role::Registry))
        || step == Step::Baseline
}
