//! What ferry placed on each host, recorded on the deploy host in
//! `<cluster-dir>/placed/<host>.json` before each step changes anything: the
//! files, the archives unpacked (with where ferry keeps its copy on the
//! host, whose member list says what the unpacking wrote), the units and the
//! data directories. `ferry node remove` takes away exactly this, nothing
//! guessed. A record only grows: what an earlier version placed stays listed.

use crate::plan::{HostPlan, Step};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// An archive unpacked on the host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PlacedArchive {
    /// Ferry's copy on the host (`/var/lib/ferry/archives/<file>`).
    pub kept: PathBuf,
    /// Its marker beside it.
    pub marker: PathBuf,
    pub dest_dir: PathBuf,
    pub strip_components: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placed {
    pub host: String,
    pub address: String,
    pub files: BTreeSet<PathBuf>,
    pub archives: BTreeSet<PlacedArchive>,
    pub units: BTreeSet<String>,
}

pub fn record_path(cluster_dir: &Path, host: &str) -> PathBuf {
    cluster_dir.join("placed").join(format!("{host}.json"))
}

/// The record of `host` (empty when there is none).
pub fn load(cluster_dir: &Path, host: &str) -> Result<Placed, String> {
    let path = record_path(cluster_dir, host);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            format!(
                "{}: {e}; it lists what ferry placed on {host}: restore it from a backup of the cluster dir",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Placed {
            host: host.to_owned(),
            ..Placed::default()
        }),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Adds what `step` places on `host` to its record (written only when it grows).
pub fn note_step(cluster_dir: &Path, host: &HostPlan, step: Step) -> Result<(), String> {
    let mut placed = load(cluster_dir, &host.name)?;
    let before = placed.clone();
    placed.host.clone_from(&host.name);
    placed.address.clone_from(&host.address);
    placed
        .files
        .extend(host.files_for(step).map(|f| f.path.clone()));
    placed
        .archives
        .extend(host.archives.iter().filter(|a| a.step == step).map(|a| {
            let (kept, marker) = super::apply::archive_paths(a);
            PlacedArchive {
                kept,
                marker,
                dest_dir: a.dest_dir.clone(),
                strip_components: a.strip_components,
            }
        }));
    placed.units.extend(
        host.services
            .iter()
            .filter(|s| s.step == step)
            .map(|s| s.unit.clone()),
    );
    if placed == before {
        return Ok(());
    }
    let mut bytes = serde_json::to_vec_pretty(&placed).expect("the record serializes");
    bytes.push(b'\n');
    crate::plan::pki::write_if_changed(&record_path(cluster_dir, &host.name), &bytes, false)
        .map_err(|e| e.to_string())
}

/// Forgets `host` (after it was removed).
pub fn forget(cluster_dir: &Path, host: &str) -> Result<(), String> {
    let path = record_path(cluster_dir, host);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}
