//! `ferry drill etcd-restore`: the newest backup (or a named snapshot) is
//! restored into a throwaway single-member etcd on a healthy member's host.
//! It listens on unix sockets in its own directory only, so it never meets
//! the live cluster or its ports. Its revision must equal the snapshot's, it
//! must serve its keys, and its `hashkv` at that revision must equal a live
//! member's (read only) while the cluster still has that revision; then it
//! is stopped and its directory removed. A dated report goes to the cluster
//! dir (`drills/etcd-restore-<time>.json`).

use super::before_upgrade::{close, pick_member, survey, SnapshotStatus};
use super::DeployOptions;
use crate::exec::{sh_quote, Source};
use crate::plan::ClusterPlan;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub drill: &'static str,
    pub started: String,
    pub snapshot: PathBuf,
    pub sha256: String,
    pub host: String,
    /// `snapshot status` of the snapshot: its revision and totalKey (every
    /// bucket's keys: revisions of keys, members, meta).
    pub snapshot_revision: u64,
    pub snapshot_keys: u64,
    /// The throwaway member restored from it: its revision, and the keys a
    /// range over everything returns.
    pub restored_revision: u64,
    pub live_keys: u64,
    /// `endpoint hashkv` at the snapshot's revision: the throwaway's, and a
    /// live member's when it still has that revision (not compacted since).
    pub restored_hash: u64,
    pub cluster_hash: Option<u64>,
    /// "equal", "differ", or why the cluster's hash could not be had.
    pub hash_compared: String,
    pub seconds: f64,
    pub passed: bool,
    /// Where this report was written.
    pub report: PathBuf,
}

/// Where the drill works on the host; removed afterwards.
const DRILL_DIR: &str = "/var/lib/ferry/drills";

pub async fn etcd_restore(
    plan: &ClusterPlan,
    opts: &DeployOptions,
    snapshot: Option<PathBuf>,
) -> Result<DrillReport, String> {
    let backups = plan.cluster_dir.join("backups");
    let snapshot = match snapshot {
        Some(s) => s,
        None => super::etcd_backup::latest(&backups, &plan.cluster_name)?.ok_or_else(|| {
            format!(
                "no backup of {} in {}: take one with ferry etcd backup, or name a snapshot with --snapshot",
                plan.cluster_name,
                backups.display()
            )
        })?,
    };
    let sha256 = super::etcd_restore::check_local(&snapshot)?;
    let members = survey(plan, opts).await?;
    let result = async {
        let m = pick_member(&members).ok_or("no etcd member is healthy to run the drill on")?;
        let exec = m.exec.as_ref().ok_or("not connected")?;
        let started = super::etcd_backup::utc_stamp()?;
        let clock = Instant::now();
        let dir = format!("{DRILL_DIR}/etcd-restore-{started}");
        let script = drill_script(plan, &dir);
        let out = exec
            .run_with(&script, Some(&Source::File(snapshot.clone())))
            .await
            .map_err(|e| e.to_string())?;
        let seen = parse(&out.stdout).ok_or_else(|| {
            format!(
                "{}: the throwaway etcd did not answer: {}{}",
                m.host.name,
                out.stdout.trim(),
                out.stderr.trim()
            )
        })?;
        let (cluster_hash, hash_compared) =
            cluster_hashkv(plan, m, seen.before.revision, seen.restored_hash).await;
        let passed = out.success()
            && seen.restored_revision == seen.before.revision
            && seen.live_keys > 0
            && hash_compared != "differ";
        let report = plan
            .cluster_dir
            .join("drills")
            .join(format!("etcd-restore-{started}.json"));
        Ok::<_, String>(DrillReport {
            drill: "etcd-restore",
            started,
            snapshot: snapshot.clone(),
            sha256: sha256.clone(),
            host: m.host.name.clone(),
            snapshot_revision: seen.before.revision,
            snapshot_keys: seen.before.total_key,
            restored_revision: seen.restored_revision,
            live_keys: seen.live_keys,
            restored_hash: seen.restored_hash,
            cluster_hash,
            hash_compared,
            seconds: clock.elapsed().as_secs_f64(),
            passed,
            report,
        })
    }
    .await;
    close(members).await;
    let report = result?;
    write_report(&report.report, &report)?;
    Ok(report)
}

/// Reads the snapshot from stdin into a fresh directory, restores it, runs
/// an etcd on unix sockets there, prints what it says, and removes it all.
fn drill_script(plan: &ClusterPlan, dir: &str) -> String {
    let bin = |b: &str| sh_quote(&plan.bin_dir.join(b).to_string_lossy());
    let ctl = format!("ETCDCTL_API=3 {}", bin("etcdctl"));
    let at = format!("{ctl} --endpoints=unix://client:1");
    format!(
        "{tool}set -e; d={dir}; pid=; trap 'if [ -n \"$pid\" ]; then kill $pid 2>/dev/null; wait $pid 2>/dev/null || true; fi; cd /; rm -rf \"$d\"' EXIT; \
         umask 077; mkdir -p \"$d\"; cd \"$d\"; cat > snapshot.db; \
         echo \"before $(snapshot_tool snapshot status snapshot.db -w json)\"; \
         snapshot_tool snapshot restore snapshot.db --data-dir=\"$d/data\" >restore.log 2>&1 || {{ tail -n 5 restore.log; exit 1; }}; \
         {etcd} --data-dir=\"$d/data\" --listen-client-urls=unix://client:1 --advertise-client-urls=unix://client:1 --listen-peer-urls=unix://peer:1 >etcd.log 2>&1 & pid=$!; \
         for i in $(seq 1 150); do {at} endpoint health >/dev/null 2>&1 && break; sleep 0.2; done; \
         echo \"status $({at} endpoint status -w json)\"; \
         echo \"count $({at} get '' --prefix --keys-only --limit=1 -w json)\"; \
         rev=$(snapshot_tool snapshot status snapshot.db -w json | sed 's/.*\"revision\":\\([0-9]*\\).*/\\1/'); \
         echo \"hashkv $({at} endpoint hashkv --rev=$rev -w json)\"",
        dir = sh_quote(dir),
        etcd = bin("etcd"),
        tool = super::etcdctl::snapshot_tool(plan),
    )
}

struct Seen {
    before: SnapshotStatus,
    restored_revision: u64,
    live_keys: u64,
    restored_hash: u64,
}

/// The `endpoint hashkv` of `m`'s live member at `revision`, and how it
/// compares with `restored`.
async fn cluster_hashkv(
    plan: &ClusterPlan,
    m: &super::before_upgrade::Surveyed,
    revision: u64,
    restored: u64,
) -> (Option<u64>, String) {
    let endpoint = super::etcdctl::client_endpoint(plan, &m.host);
    let Ok(ctl) = super::etcdctl::Etcdctl::on(plan, &m.host, &[endpoint]) else {
        return (None, "no etcdctl for the member".into());
    };
    let Some(exec) = m.exec.as_ref() else {
        return (None, "the member is not connected".into());
    };
    let rev = format!("--rev={revision}");
    let out = exec
        .run(&format!(
            "{} 2>&1",
            ctl.command(&["endpoint", "hashkv", &rev, "-w", "json"])
        ))
        .await;
    let text = out.map(|o| o.stdout).unwrap_or_else(|e| e.to_string());
    let hash = serde_json::from_str::<serde_json::Value>(text.trim())
        .ok()
        .and_then(|v| v[0]["HashKV"]["hash"].as_u64());
    match hash {
        Some(h) if h == restored => (Some(h), "equal".into()),
        Some(h) => (Some(h), "differ".into()),
        None => (
            None,
            format!(
                "not comparable: the cluster no longer has revision {revision} ({})",
                text.trim().lines().last().unwrap_or_default()
            ),
        ),
    }
}

fn parse(stdout: &str) -> Option<Seen> {
    let line = |tag: &str| -> Option<serde_json::Value> {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{tag} ")))
            .and_then(|j| serde_json::from_str(j).ok())
    };
    let status = |tag: &str| -> Option<SnapshotStatus> { serde_json::from_value(line(tag)?).ok() };
    Some(Seen {
        before: status("before")?,
        restored_revision: line("status")?[0]["Status"]["header"]["revision"].as_u64()?,
        live_keys: line("count")?["count"].as_u64().unwrap_or(0),
        restored_hash: line("hashkv")?[0]["HashKV"]["hash"].as_u64()?,
    })
}

/// Writes a drill's report as JSON to `path`.
pub(super) fn write_report(path: &Path, report: &impl Serialize) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let text = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
    std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_throwaway_etcd_said_is_read_back() {
        let out = "before {\"hash\":1,\"revision\":2048,\"totalKey\":3100,\"totalSize\":20480}\n\
                   status [{\"Endpoint\":\"unix://client:1\",\"Status\":{\"header\":{\"revision\":2048}}}]\n\
                   count {\"header\":{\"revision\":2048},\"count\":1012}\n\
                   hashkv [{\"Endpoint\":\"unix://client:1\",\"HashKV\":{\"hash\":3628877040,\"compact_revision\":-1}}]\n";
        let seen = parse(out).unwrap();
        assert_eq!(
            (
                seen.before.revision,
                seen.restored_revision,
                seen.live_keys,
                seen.restored_hash
            ),
            (2048, 2048, 1012, 3628877040)
        );
        assert!(parse("before {}\n").is_none());
    }
}
