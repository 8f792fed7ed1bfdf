//! What the cluster runs, as the cluster dir records it
//! (`installed.json`): the bundle and its Kubernetes and etcd versions,
//! written after an install or upgrade that finished on every host, and
//! the upgrade in progress (`upgrade.json`): from, to, the etcd snapshot
//! taken before it, and whether it finished.

use ferry_bundles::BundleManifest;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    pub bundle: String,
    pub kubernetes: String,
    #[serde(default)]
    pub etcd: Option<String>,
}

impl Installed {
    pub fn of(manifest: &BundleManifest) -> Installed {
        Installed {
            bundle: manifest.name.clone(),
            kubernetes: manifest.kubernetes.clone(),
            etcd: manifest
                .components
                .iter()
                .find(|c| c.name == "etcd")
                .map(|c| c.version.clone()),
        }
    }

    pub fn versions(&self) -> Result<super::skew::Versions, String> {
        Ok(super::skew::Versions {
            kubernetes: super::skew::Version::parse(&self.kubernetes)?,
            etcd: self
                .etcd
                .as_deref()
                .map(super::skew::Version::parse)
                .transpose()?,
        })
    }
}

/// An etcd snapshot taken on a member before the upgrade changed anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub host: String,
    pub path: PathBuf,
    pub revision: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeState {
    pub from: Installed,
    pub to: Installed,
    pub snapshot: Option<Snapshot>,
    pub finished: bool,
}

pub fn installed_path(cluster_dir: &Path) -> PathBuf {
    cluster_dir.join("installed.json")
}

pub fn state_path(cluster_dir: &Path) -> PathBuf {
    cluster_dir.join("upgrade.json")
}

fn read<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, String> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn write<T: Serialize>(path: &Path, value: &T) -> Result<(), String> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("serializes");
    bytes.push(b'\n');
    crate::plan::pki::write_if_changed(path, &bytes, false).map_err(|e| e.to_string())
}

pub fn load_installed(cluster_dir: &Path) -> Result<Option<Installed>, String> {
    read(&installed_path(cluster_dir))
}

pub fn save_installed(cluster_dir: &Path, installed: &Installed) -> Result<(), String> {
    write(&installed_path(cluster_dir), installed)
}

pub fn load_state(cluster_dir: &Path) -> Result<Option<UpgradeState>, String> {
    read(&state_path(cluster_dir))
}

pub fn save_state(cluster_dir: &Path, state: &UpgradeState) -> Result<(), String> {
    write(&state_path(cluster_dir), state)
}
