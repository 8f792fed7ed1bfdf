//! A host's manifest: what ferry placed there (path, sha256, mode), the
//! state of its units, and a fingerprint of the host as ferry left it, taken
//! in one round trip. It is recorded on the deploy host in
//! `<cluster-dir>/manifests/<host>.json` once a deploy passed its checks on
//! that host. A re-run with the same plan takes the fingerprint again and,
//! when it is the same, leaves the host alone: no preflight, no hashing, no
//! step. `ferry install --verify-hosts` hashes every file instead.
//!
//! The fingerprint covers, for every placed file and archive, its size,
//! mode, owner, inode and change time (ctime: any write or chmod moves it,
//! and it cannot be set back by hand), a step left pending by a killed run,
//! each unit's active and enabled state, the sysctls ferry sets, and on a
//! registry host the mirror's blobs (name, size, inode, ctime).

use super::apply::PENDING_DIR;
use super::{DeployContext, HostRun, REMOTE_DATA_DIR};
use crate::exec::sh_quote;
use crate::plan::{FileContent, HostPlan, Role};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// One placed file, as the plan wants it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub path: PathBuf,
    pub sha256: String,
    pub mode: String,
}

/// One unit and the state it was left in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestUnit {
    pub unit: String,
    pub state: String,
}

/// `<cluster-dir>/manifests/<host>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostManifest {
    pub host: String,
    pub address: String,
    /// When the host passed its checks (RFC 3339, UTC).
    pub recorded: String,
    /// sha256 of the host's plan (every file's content and mode, archives,
    /// units, sysctls), the bundle and ferry's version.
    pub plan_digest: String,
    /// sha256 of the plan digest and of what the probe printed.
    pub fingerprint: String,
    pub files: Vec<ManifestFile>,
    pub units: Vec<ManifestUnit>,
    /// What the probe printed, to name what changed on a later run.
    pub probe: String,
}

pub fn record_path(cluster_dir: &Path, host: &str) -> PathBuf {
    cluster_dir.join("manifests").join(format!("{host}.json"))
}

/// Forgets `host`'s manifest (after it was removed or destroyed).
pub fn forget(cluster_dir: &Path, host: &str) -> Result<(), String> {
    match std::fs::remove_file(record_path(cluster_dir, host)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("{}: {e}", record_path(cluster_dir, host).display()))
        }
        _ => Ok(()),
    }
}

/// The record of `host`, if one was written and can be read.
fn load(cluster_dir: &Path, host: &str) -> Option<HostManifest> {
    let bytes = std::fs::read(record_path(cluster_dir, host)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// sha256 (hex) of the ferry executable, which registry hosts may carry;
/// hashed once per process (it is over 100 MB).
fn ferry_sha256() -> Result<String, String> {
    static SHA256: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    SHA256
        .get_or_init(|| {
            let exe = std::env::current_exe().map_err(|e| format!("locating ferry: {e}"))?;
            crate::exec::hash_file(&exe).map_err(|e| format!("{}: {e}", exe.display()))
        })
        .clone()
}

fn files_of(plan: &HostPlan) -> Result<Vec<ManifestFile>, String> {
    let mut files = Vec::new();
    for f in &plan.files {
        let sha256 = match (&f.content, f.content.sha256()) {
            (_, Some(h)) => h,
            (FileContent::FerryExecutable, None) => ferry_sha256()?,
            (_, None) => unreachable!("only ferry's own executable has no known hash"),
        };
        files.push(ManifestFile {
            path: f.path.clone(),
            sha256,
            mode: format!("{:o}", f.placed_mode()),
        });
    }
    Ok(files)
}

/// The digest of what the plan wants on the host (its JSON form names every
/// file's path, mode and sha256, the archives, units and sysctls), the ferry
/// executable when the host carries it (the plan names it without a hash),
/// the bundle it comes from (a registry host serves the bundle's images) and
/// ferry's version (the probe is ferry's).
pub fn plan_digest(ctx: &DeployContext, plan: &HostPlan) -> Result<String, String> {
    let mut h = Sha256::new();
    h.update(env!("CARGO_PKG_VERSION"));
    h.update([0]);
    h.update(&ctx.bundle);
    h.update([0]);
    let json = serde_json::to_vec(plan).map_err(|e| format!("{}: plan: {e}", plan.name))?;
    h.update(&json);
    if plan
        .files
        .iter()
        .any(|f| matches!(f.content, FileContent::FerryExecutable))
    {
        h.update(ferry_sha256()?);
    }
    Ok(hex::encode(h.finalize()))
}

/// The script that prints the host's state: one section per kind, sorted
/// where the host could list in any order.
pub fn probe_script(plan: &HostPlan) -> String {
    let mut paths: Vec<String> = plan
        .files
        .iter()
        .map(|f| sh_quote(&f.path.to_string_lossy()))
        .collect();
    for a in &plan.archives {
        let (kept, marker) = super::apply::archive_paths(a);
        paths.push(sh_quote(&kept.to_string_lossy()));
        paths.push(sh_quote(&marker.to_string_lossy()));
    }
    let mut s = String::from("set -u\nexport LC_ALL=C\necho '# files'\n");
    if !paths.is_empty() {
        s.push_str(&format!(
            "stat -c '%n %s %a %u:%g %i %.9Z' -- {} 2>&1\n",
            paths.join(" ")
        ));
    }
    s.push_str(&format!(
        "echo '# pending'\nls -A {} 2>/dev/null\necho '# units'\n",
        sh_quote(PENDING_DIR)
    ));
    if !plan.services.is_empty() {
        // One systemctl for every unit: a call costs about 20 ms.
        let units: Vec<String> = plan.services.iter().map(|u| sh_quote(&u.unit)).collect();
        s.push_str(&format!(
            "systemctl show -p Id,ActiveState,UnitFileState -- {} 2>&1\n",
            units.join(" ")
        ));
    }
    s.push_str("echo '# sysctl'\n");
    for (k, _) in &plan.sysctls {
        let p = sh_quote(&super::baseline::sysctl_path(k));
        s.push_str(&format!(
            "echo {k} \"$(tr -s '[:space:]' ' ' < {p} 2>&1)\"\n",
            k = sh_quote(k)
        ));
    }
    if plan.has(Role::Registry) {
        let blobs = sh_quote(&format!("{REMOTE_DATA_DIR}/blobs/sha256"));
        s.push_str(&format!(
            "echo '# mirror'\nfind {blobs} -maxdepth 1 -type f -printf '%f %s %i %C@\\n' 2>&1 | sort | sha256sum\n"
        ));
    }
    s
}

/// The units section of a probe (`systemctl show` blocks, one per unit,
/// separated by an empty line) as `unit: active enabled`.
fn units_of(probe: &str) -> Vec<ManifestUnit> {
    let section = probe.split("# units\n").nth(1).unwrap_or("");
    let section: Vec<&str> = section
        .lines()
        .take_while(|l| !l.starts_with("# "))
        .collect();
    section
        .split(|l| l.is_empty())
        .filter_map(|block| {
            let get = |key: &str| {
                block
                    .iter()
                    .find_map(|l| l.strip_prefix(key).and_then(|l| l.strip_prefix('=')))
                    .unwrap_or("")
            };
            let unit = get("Id");
            (!unit.is_empty()).then(|| ManifestUnit {
                unit: unit.to_owned(),
                state: format!("{} {}", get("ActiveState"), get("UnitFileState"))
                    .trim()
                    .to_owned(),
            })
        })
        .collect()
}

fn fingerprint_of(plan_digest: &str, probe: &str) -> String {
    hex::encode(Sha256::digest(format!("{plan_digest}\n{probe}")))
}

/// Runs the probe on the host: what it printed.
async fn probe(run: &HostRun) -> Result<String, String> {
    run.run_named(
        &probe_script(&run.plan),
        None,
        "taking the host's fingerprint",
    )
    .await
}

/// Records the host's manifest after it passed its checks.
pub async fn record(ctx: &DeployContext, cluster_dir: &Path, run: &HostRun) -> Result<(), String> {
    let plan_digest = plan_digest(ctx, &run.plan)?;
    let probe = probe(run).await?;
    let units = units_of(&probe);
    let manifest = HostManifest {
        host: run.plan.name.clone(),
        address: run.plan.address.clone(),
        recorded: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        fingerprint: fingerprint_of(&plan_digest, &probe),
        plan_digest,
        files: files_of(&run.plan)?,
        units,
        probe,
    };
    let mut bytes = serde_json::to_vec_pretty(&manifest).expect("the manifest serializes");
    bytes.push(b'\n');
    crate::plan::pki::write_if_changed(&record_path(cluster_dir, &run.plan.name), &bytes, false)
        .map_err(|e| e.to_string())
}

/// Whether the host is as the last deploy of this same plan left it; when
/// not, the log says why (no record, another plan, or the first lines that
/// differ).
pub async fn unchanged(ctx: &DeployContext, cluster_dir: &Path, run: &HostRun) -> bool {
    let log = |why: &str| {
        if let Ok(e) = run.exec() {
            e.log()
                .line(&format!("fingerprint: {why}; every step runs"));
        }
    };
    let Some(recorded) = load(cluster_dir, &run.plan.name) else {
        log("no manifest recorded for this host");
        return false;
    };
    match plan_digest(ctx, &run.plan) {
        Ok(d) if d == recorded.plan_digest => {}
        Ok(_) => {
            log("the plan for this host changed since its manifest was recorded");
            return false;
        }
        Err(e) => {
            log(&e);
            return false;
        }
    }
    let probe = match probe(run).await {
        Ok(p) => p,
        Err(e) => {
            log(&e);
            return false;
        }
    };
    if fingerprint_of(&recorded.plan_digest, &probe) == recorded.fingerprint {
        if let Ok(e) = run.exec() {
            e.log().line(&format!(
                "fingerprint: unchanged since {} (every placed file's size, mode, owner, inode and ctime; units; sysctls): nothing to do",
                recorded.recorded
            ));
        }
        return true;
    }
    let differs: Vec<String> = diff_lines(&recorded.probe, &probe);
    log(&format!("the host changed: {}", differs.join("; ")));
    false
}

/// The first few lines that differ between two probes, as `was -> now`.
fn diff_lines(was: &str, now: &str) -> Vec<String> {
    let old: std::collections::BTreeSet<&str> = was.lines().collect();
    let new: std::collections::BTreeSet<&str> = now.lines().collect();
    let mut out: Vec<String> = new
        .difference(&old)
        .take(5)
        .map(|l| format!("now {l}"))
        .collect();
    out.extend(old.difference(&new).take(5).map(|l| format!("was {l}")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_line_is_named_both_ways() {
        let d = diff_lines("# units\na active enabled\n", "# units\na failed enabled\n");
        assert_eq!(d, vec!["now a failed enabled", "was a active enabled"]);
    }

    #[test]
    fn units_are_read_from_systemctl_show_in_any_property_order() {
        let probe =
            "# pending\n# units\nId=a.service\nActiveState=active\nUnitFileState=enabled\n\n\
                     UnitFileState=\nActiveState=failed\nId=b.timer\n# sysctl\nx 1\n";
        let got: Vec<(String, String)> = units_of(probe)
            .into_iter()
            .map(|u| (u.unit, u.state))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a.service".to_owned(), "active enabled".to_owned()),
                ("b.timer".to_owned(), "failed".to_owned())
            ]
        );
    }

    #[test]
    fn the_fingerprint_covers_the_probe_and_the_plan() {
        let a = fingerprint_of("p1", "x\n");
        assert_ne!(a, fingerprint_of("p1", "y\n"));
        assert_ne!(a, fingerprint_of("p2", "x\n"));
        assert_eq!(a, fingerprint_of("p1", "x\n"));
    }
}
