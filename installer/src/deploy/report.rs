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
        if self.ok() && self.changed_files() == 0 && self.restarted_units() == 0 {
            let _ = writeln!(
                s,
                "no changes ({} hosts up to date, {:.1}s)",
                self.hosts.len(),
                self.seconds
            );
        } else {
            let _ = writeln!(
                s,
                "{} files changed, {} units restarted on {} hosts in {:.1}s",
                self.changed_files(),
                self.restarted_units(),
                self.hosts.len(),
                self.seconds
            );
        }
        s
    }
}
