//! etcd membership as the cluster dir records it (`etcd-members.json`): each
//! member's name, peer URL and how it was first started. A member's unit is
//! rendered from its record, so the units of running members never change
//! when members join; a member of the inventory not yet recorded is joining
//! a running cluster (`--initial-cluster-state=existing`, its initial
//! cluster the recorded members, the members joining before it and itself).
//! Without a record every inventory member is new: the cluster has not been
//! started yet (or was installed before the record existed).

use crate::plan::error::{PlanError, Result};
use crate::plan::model::Role;
use crate::plan::validate::Cluster;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The record's file name in the cluster dir.
pub const RECORD_FILE: &str = "etcd-members.json";

/// How a member was first started: with the other first members (`new`) or
/// by joining a running cluster (`existing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartState {
    New,
    Existing,
}

impl StartState {
    pub fn as_str(self) -> &'static str {
        match self {
            StartState::New => "new",
            StartState::Existing => "existing",
        }
    }
}

/// One member: its name, peer URL and first start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub peer_url: String,
    /// `--initial-cluster` it was started with (`name=url,...`).
    pub initial_cluster: String,
    pub state: StartState,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Record {
    members: Vec<Member>,
}

/// Every member the plan knows: the recorded ones (whether or not the
/// inventory still lists them) and those joining, in inventory order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EtcdMembers {
    /// Whether the cluster dir holds a record (the cluster has been started).
    pub recorded: bool,
    pub members: Vec<Member>,
    /// Names of the members that are not recorded yet, in the order they join.
    pub joining: Vec<String>,
}

impl EtcdMembers {
    pub fn get(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }

    pub fn is_joining(&self, name: &str) -> bool {
        self.joining.iter().any(|j| j == name)
    }
}

pub fn record_path(cluster_dir: &Path) -> PathBuf {
    cluster_dir.join(RECORD_FILE)
}

/// The inventory's etcd members as (name, peer URL), in inventory order.
fn inventory_members(cluster: &Cluster) -> Vec<(String, String)> {
    cluster
        .with_role(Role::Etcd)
        .map(|n| {
            let name = n.etcd_name.clone().unwrap_or_else(|| n.name.clone());
            let url = format!("https://{}:{}", n.ip, cluster.config.etcd_peer_port.value);
            (name, url)
        })
        .collect()
}

fn initial_cluster<'a>(members: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    members
        .map(|(n, u)| format!("{n}={u}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The members of `cluster` given what `cluster_dir` records.
pub fn plan(cluster: &Cluster, cluster_dir: &Path) -> Result<EtcdMembers> {
    let wanted = inventory_members(cluster);
    let Some(record) = load(cluster_dir)? else {
        let all = initial_cluster(wanted.iter().map(|(n, u)| (n.as_str(), u.as_str())));
        let members = wanted
            .into_iter()
            .map(|(name, peer_url)| Member {
                name,
                peer_url,
                initial_cluster: all.clone(),
                state: StartState::New,
            })
            .collect();
        return Ok(EtcdMembers {
            recorded: false,
            members,
            joining: Vec::new(),
        });
    };
    let path = record_path(cluster_dir);
    let mut members = record.members;
    let mut joining = Vec::new();
    for (name, url) in wanted {
        match members.iter().find(|m| m.name == name) {
            Some(m) if m.peer_url != url => {
                return Err(PlanError::Pki {
                    name: format!("etcd member {name}"),
                    reason: format!(
                        "{} records its peer URL as {}, the inventory gives {url}; a member cannot move: remove it (ferry node remove) and add it again under its new address",
                        path.display(),
                        m.peer_url
                    ),
                });
            }
            Some(_) => {}
            None => {
                let initial = initial_cluster(
                    members
                        .iter()
                        .map(|m| (m.name.as_str(), m.peer_url.as_str()))
                        .chain(std::iter::once((name.as_str(), url.as_str()))),
                );
                members.push(Member {
                    name: name.clone(),
                    peer_url: url,
                    initial_cluster: initial,
                    state: StartState::Existing,
                });
                joining.push(name);
            }
        }
    }
    Ok(EtcdMembers {
        recorded: true,
        members,
        joining,
    })
}

fn load(cluster_dir: &Path) -> Result<Option<Record>> {
    let path = record_path(cluster_dir);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(PlanError::io(&path, e)),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| PlanError::Pki {
            name: "etcd membership".into(),
            reason: format!(
                "{}: {e}; it records the etcd members ferry started: restore it from a backup of the cluster dir",
                path.display()
            ),
        })
}

/// Records `members` (replacing the record): done when the first members
/// start, and after each member joins.
pub fn save(cluster_dir: &Path, members: &[Member]) -> Result<()> {
    let record = Record {
        members: members.to_vec(),
    };
    let mut text = serde_json::to_vec_pretty(&record).expect("the record serializes");
    text.push(b'\n');
    crate::plan::pki::write_if_changed(&record_path(cluster_dir), &text, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, ip: &str, state: StartState, initial: &str) -> Member {
        Member {
            name: name.into(),
            peer_url: format!("https://{ip}:2380"),
            initial_cluster: initial.into(),
            state,
        }
    }

    #[test]
    fn a_record_round_trips_and_a_broken_one_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let m = vec![member(
            "etcd1",
            "10.0.0.1",
            StartState::New,
            "etcd1=https://10.0.0.1:2380",
        )];
        save(dir.path(), &m).unwrap();
        assert_eq!(load(dir.path()).unwrap().unwrap().members, m);
        std::fs::write(record_path(dir.path()), "{").unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("etcd-members.json"), "{err}");
    }
}
