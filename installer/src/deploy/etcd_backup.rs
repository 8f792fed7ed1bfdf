//! `ferry etcd backup`: a snapshot taken over TLS on a healthy member (not
//! the leader when there is a choice), checked with `snapshot status`,
//! copied to the deploy host (streamed, its sha256 compared with the
//! member's) as `<cluster>-rev<revision>-<UTC time>.db` with a `.sha256`
//! beside it, then removed from the member; the newest `keep` are kept.

use super::before_upgrade::{close, pick_member, snapshot, survey};
use super::DeployOptions;
use crate::exec::sh_quote;
use crate::plan::ClusterPlan;
use serde::Serialize;
use std::path::{Path, PathBuf};

pub struct BackupOptions {
    /// Where backups go on the deploy host.
    pub to: PathBuf,
    /// How many backups of this cluster to keep (the newest); at least 1.
    pub keep: usize,
}

/// A backup on the deploy host.
#[derive(Debug, Clone, Serialize)]
pub struct Backup {
    pub path: PathBuf,
    pub member: String,
    pub revision: u64,
    pub keys: u64,
    pub bytes: u64,
    pub sha256: String,
    /// Older backups removed to keep `keep`.
    pub pruned: Vec<PathBuf>,
}

pub async fn backup(
    plan: &ClusterPlan,
    opts: &DeployOptions,
    backup: &BackupOptions,
) -> Result<Backup, String> {
    std::fs::create_dir_all(&backup.to)
        .map_err(|e| format!("{}: cannot create it: {e}", backup.to.display()))?;
    let members = survey(plan, opts).await?;
    let result = take_and_copy(plan, &members, backup).await;
    close(members).await;
    let mut taken = result?;
    taken.pruned = prune(&backup.to, &plan.cluster_name, backup.keep)?;
    Ok(taken)
}

async fn take_and_copy(
    plan: &ClusterPlan,
    members: &[super::before_upgrade::Surveyed],
    backup: &BackupOptions,
) -> Result<Backup, String> {
    let Some(member) = pick_member(members) else {
        let problems: Vec<String> = members
            .iter()
            .filter_map(|m| m.state.as_ref().err().cloned())
            .collect();
        return Err(format!(
            "no etcd member is healthy to take a snapshot from: {}",
            problems.join("; ")
        ));
    };
    let exec = member.exec.as_ref().ok_or("the member is not reachable")?;
    let stamp = utc_stamp()?;
    let (taken, status) = snapshot(plan, member, &format!("backup-{stamp}")).await?;
    let remote = taken.path.to_string_lossy().into_owned();
    let name = format!("{}-rev{}-{stamp}.db", plan.cluster_name, status.revision);
    let path = backup.to.join(&name);
    let partial = backup.to.join(format!(".{name}.partial"));
    let copied = async {
        let hashed = exec
            .check(&format!(
                "sha256sum -- {} | cut -d' ' -f1",
                sh_quote(&remote)
            ))
            .await
            .map_err(|e| e.to_string())?;
        let got = exec
            .download(&remote, &partial)
            .await
            .map_err(|e| e.to_string())?;
        if got.sha256 != hashed.trim() {
            return Err(format!(
                "the copy of {remote} from {} has sha256 {}, the member's file {}; try again",
                member.host.name,
                got.sha256,
                hashed.trim()
            ));
        }
        std::fs::rename(&partial, &path)
            .and_then(|()| {
                std::fs::write(
                    backup.to.join(format!("{name}.sha256")),
                    format!("{}  {name}\n", got.sha256),
                )
            })
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(got)
    }
    .await;
    let _ = std::fs::remove_file(&partial);
    // The member keeps no copy: its disk is etcd's.
    let _ = exec.run(&format!("rm -f -- {}", sh_quote(&remote))).await;
    let got = copied?;
    Ok(Backup {
        path,
        member: member.host.name.clone(),
        revision: status.revision,
        keys: status.total_key,
        bytes: got.bytes,
        sha256: got.sha256,
        pruned: Vec::new(),
    })
}

/// What an etcd member's scheduled snapshot (`ferry etcd snapshot-local`,
/// run by its timer on the member's host) needs.
pub struct LocalSnapshot {
    pub etcdctl: PathBuf,
    pub endpoint: String,
    pub cacert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub dir: PathBuf,
    /// The cluster's name: the files are `<prefix>-rev<N>-<time>.db`.
    pub prefix: String,
    pub keep: usize,
}

/// Takes a snapshot of the member at `o.endpoint` into `o.dir`, checks it
/// with `snapshot status`, writes its `.sha256`, and keeps the newest
/// `o.keep`; returns the snapshot and what was removed.
pub fn snapshot_local(o: &LocalSnapshot) -> Result<(PathBuf, Vec<PathBuf>), String> {
    std::fs::create_dir_all(&o.dir).map_err(|e| format!("{}: {e}", o.dir.display()))?;
    let stamp = utc_stamp()?;
    let partial = o.dir.join(format!(".{}-{stamp}.partial", o.prefix));
    let etcdctl = |args: &[&std::ffi::OsStr]| {
        std::process::Command::new(&o.etcdctl)
            .env("ETCDCTL_API", "3")
            .args(args)
            .output()
            .map_err(|e| format!("{}: {e}", o.etcdctl.display()))
    };
    let tls = [
        format!("--endpoints={}", o.endpoint),
        format!("--cacert={}", o.cacert.display()),
        format!("--cert={}", o.cert.display()),
        format!("--key={}", o.key.display()),
    ];
    let mut save: Vec<&std::ffi::OsStr> = tls.iter().map(|a| a.as_ref()).collect();
    save.extend(["snapshot".as_ref(), "save".as_ref(), partial.as_os_str()]);
    let result = (|| {
        let saved = etcdctl(&save)?;
        if !saved.status.success() {
            return Err(format!(
                "etcdctl snapshot save at {}: {}",
                o.endpoint,
                String::from_utf8_lossy(&saved.stderr).trim()
            ));
        }
        // etcdutl beside etcdctl when the bundle carries it (etcd 3.5+).
        let etcdutl = o.etcdctl.with_file_name("etcdutl");
        let status = std::process::Command::new(if etcdutl.exists() {
            &etcdutl
        } else {
            &o.etcdctl
        })
        .env("ETCDCTL_API", "3")
        .args(["snapshot".as_ref(), "status".as_ref(), partial.as_os_str()])
        .args(["-w", "json"])
        .output()
        .map_err(|e| format!("snapshot status of {}: {e}", partial.display()))?;
        let parsed: super::before_upgrade::SnapshotStatus = serde_json::from_slice(&status.stdout)
            .map_err(|e| {
                format!(
                    "{}: snapshot status does not read it ({e}): {}",
                    partial.display(),
                    String::from_utf8_lossy(&status.stderr).trim()
                )
            })?;
        let name = format!("{}-rev{}-{stamp}.db", o.prefix, parsed.revision);
        let path = o.dir.join(&name);
        if path.exists() {
            return Err(format!("{}: exists already", path.display()));
        }
        let sha =
            crate::exec::hash_file(&partial).map_err(|e| format!("{}: {e}", partial.display()))?;
        std::fs::write(
            o.dir.join(format!("{name}.sha256")),
            format!("{sha}  {name}\n"),
        )
        .and_then(|()| std::fs::rename(&partial, &path))
        .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    })();
    let _ = std::fs::remove_file(&partial);
    let path = result?;
    let pruned = prune(&o.dir, &o.prefix, o.keep)?;
    Ok((path, pruned))
}

/// `20261203T074501Z`: sortable, and safe in a file name.
pub(crate) fn utc_stamp() -> Result<String, String> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::OffsetDateTime::now_utc()
        .format(&format)
        .map_err(|e| e.to_string())
}

/// Removes all but the newest `keep` backups of `cluster` in `dir` (and
/// their `.sha256`); returns what it removed.
pub fn prune(dir: &Path, cluster: &str, keep: usize) -> Result<Vec<PathBuf>, String> {
    let mut backups: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let stamp = backup_stamp(&name, cluster)?.to_owned();
            Some((stamp, e.path()))
        })
        .collect();
    backups.sort();
    let excess = backups.len().saturating_sub(keep.max(1));
    let mut removed = Vec::new();
    for (_, path) in backups.into_iter().take(excess) {
        let sum = PathBuf::from(format!("{}.sha256", path.display()));
        std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let _ = std::fs::remove_file(sum);
        removed.push(path);
    }
    Ok(removed)
}

/// The newest backup of `cluster` in `dir`, if any.
pub fn latest(dir: &Path, cluster: &str) -> Result<Option<PathBuf>, String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(None);
    };
    Ok(entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let stamp = backup_stamp(&name, cluster)?.to_owned();
            Some((stamp, e.path()))
        })
        .max()
        .map(|(_, p)| p))
}

/// The time stamp of a backup file of `cluster` (`<cluster>-rev<N>-<stamp>.db`).
fn backup_stamp<'a>(name: &'a str, cluster: &str) -> Option<&'a str> {
    let rest = name.strip_prefix(cluster)?.strip_prefix("-rev")?;
    let (revision, stamp) = rest.strip_suffix(".db")?.split_once('-')?;
    (revision.bytes().all(|b| b.is_ascii_digit()) && !revision.is_empty()).then_some(stamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_the_newest_of_this_cluster_only() {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            "prod-rev9-20261201T000000Z.db",
            "prod-rev3-20261202T000000Z.db",
            "prod-rev12-20261203T000000Z.db",
            "prod-x-rev1-20261130T000000Z.db",
            "prod-rev5-20261129T000000Z.db.sha256",
            "notes.txt",
        ];
        for n in names {
            std::fs::write(dir.path().join(n), "x").unwrap();
        }
        std::fs::write(dir.path().join("prod-rev9-20261201T000000Z.db.sha256"), "x").unwrap();
        let removed = prune(dir.path(), "prod", 2).unwrap();
        assert_eq!(removed, [dir.path().join("prod-rev9-20261201T000000Z.db")]);
        assert!(!dir
            .path()
            .join("prod-rev9-20261201T000000Z.db.sha256")
            .exists());
        for kept in &names[1..] {
            assert!(dir.path().join(kept).exists(), "{kept}");
        }
    }
}
