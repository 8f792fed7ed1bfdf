//! The end-of-run summary: one row per host (step reached, status, log path),
//! plus how many files changed and units restarted.

use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Failed,
    /// Not attempted: an earlier step (of this host or one it depends on) failed.
    Skipped,
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "FAILED",
            Status::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub host: String,
    /// The last step run (`checks` when everything passed), or the one that failed.
    pub step: String,
    pub status: Status,
    pub error: Option<String>,
    pub log: PathBuf,
    pub changed_files: Vec<PathBuf>,
    pub restarted_units: Vec<String>,
    /// Addon objects this host applied to the cluster (server-side).
    pub applied_objects: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeployReport {
    pub hosts: Vec<HostReport>,
    /// Cluster-wide notes (how many addon objects were applied, preflight warnings...).
    pub notes: Vec<String>,
    pub seconds: f64,
}

impl DeployReport {
    pub fn ok(&self) -> bool {
        self.hosts.iter().all(|h| h.status == Status::Ok)
    }

    pub fn changed_files(&self) -> usize {
        self.hosts.iter().map(|h| h.changed_files.len()).sum()
    }

    pub fn restarted_units(&self) -> usize {
        self.hosts.iter().map(|h| h.restarted_units.len()).sum()
    }

    pub fn applied_objects(&self) -> usize {
        self.hosts.iter().map(|h| h.applied_objects).sum()
    }

    /// The table printed at the end of `ferry install`.
    pub fn table(&self) -> String {
        let w_host = self
            .hosts
            .iter()
            .map(|h| h.host.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let w_step = self
            .hosts
            .iter()
            .map(|h| h.step.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:w_host$}  {:w_step$}  {:7}  {:>7}  {:>9}  LOG",
            "HOST", "STEP", "STATUS", "CHANGED", "RESTARTED"
        );
        for h in &self.hosts {
            let _ = writeln!(
                s,
                "{:w_host$}  {:w_step$}  {:7}  {:>7}  {:>9}  {}",
                h.host,
                h.step,
                h.status.as_str(),
                h.changed_files.len(),
                h.restarted_units.len(),
                h.log.display()
            );
        }
        for h in self.hosts.iter().filter(|h| h.error.is_some()) {
            let _ = writeln!(s, "{}: {}", h.host, h.error.as_deref().unwrap_or_default());
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        let untouched =
            self.changed_files() == 0 && self.restarted_units() == 0 && self.applied_objects() == 0;
        if self.ok() && untouched {
            let _ = writeln!(
                s,
                "no changes ({} hosts up to date, {:.1}s)",
                self.hosts.len(),
                self.seconds
            );
        } else {
            let _ = writeln!(
                s,
                "{} files changed, {} units restarted, {} addon objects applied on {} hosts in {:.1}s",
                self.changed_files(),
                self.restarted_units(),
                self.applied_objects(),
                self.hosts.len(),
                self.seconds
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(files: usize, applied: usize) -> HostReport {
        HostReport {
            host: "h1".into(),
            step: "checks".into(),
            status: Status::Ok,
            error: None,
            log: PathBuf::from("/var/log/h1.log"),
            changed_files: (0..files)
                .map(|i| PathBuf::from(format!("/f{i}")))
                .collect(),
            restarted_units: Vec::new(),
            applied_objects: applied,
        }
    }

    /// A run that only applied addon objects (say, one deleted in the
    /// cluster) changed the cluster: it is not "no changes".
    #[test]
    fn applied_objects_are_changes() {
        let report = |hosts| DeployReport {
            hosts,
            notes: Vec::new(),
            seconds: 1.0,
        };
        let quiet = report(vec![host(0, 0), host(0, 0)]).table();
        assert!(quiet.contains("no changes (2 hosts up to date"), "{quiet}");
        let applied = report(vec![host(0, 1), host(0, 0)]).table();
        assert!(!applied.contains("no changes"), "{applied}");
        assert!(
            applied
                .contains("0 files changed, 0 units restarted, 1 addon objects applied on 2 hosts"),
            "{applied}"
        );
    }
}
