//! Host executors: run commands and place files on a host, over SSH (system
//! OpenSSH client, multiplexed) or locally for the deploy host.
//!
//! Every operation is logged to the host's log file (see [`HostLog`]); file
//! contents never are (they may be private keys).

mod download;
mod fanout;
mod local;
mod log;
mod master;
mod ssh;
mod sudo;
mod upload;

pub use download::Downloaded;
pub use fanout::fan_out;
pub use local::LocalExecutor;
pub use log::HostLog;
pub use ssh::{KnownHostsPolicy, SshDestination, SshExecutor, SshOptions};
pub(crate) use upload::hash_file;
pub use upload::{sh_quote, Source, Upload};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// `reason` carries ssh's own words ("Host key verification failed.",
    /// "Permission denied (publickey)").
    #[error("{host}: cannot connect over SSH to {destination}: {reason}. Check that sshd runs there, the address/port/user/key in the inventory, and the known_hosts policy (--ssh-known-hosts)")]
    Connect {
        host: String,
        destination: String,
        reason: String,
    },
    #[error("{host}: SSH session failed while running `{command}`: {reason}")]
    Session {
        host: String,
        command: String,
        reason: String,
    },
    #[error("{host}: `{}` exited with {code}: {stderr}", first_line(.command))]
    Failed {
        host: String,
        command: String,
        code: i32,
        stderr: String,
    },
    /// `ansible_become` and the host's sudo do not agree (a password asked, no sudo).
    #[error("{host}: {problem}")]
    Sudo { host: String, problem: String },
    #[error("{host}: cannot read {path} on the deploy host: {source}")]
    LocalFile {
        host: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{host}: {path}: {reason}")]
    Io {
        host: String,
        path: PathBuf,
        reason: String,
    },
}

pub type Result<T, E = ExecError> = std::result::Result<T, E>;

/// The limit for one remote command: FERRY_COMMAND_TIMEOUT seconds, default
/// 900 (unpacking an image store or installing packages stays well below).
fn command_timeout() -> std::time::Duration {
    static LIMIT: std::sync::OnceLock<std::time::Duration> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        let secs = std::env::var("FERRY_COMMAND_TIMEOUT")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|s| *s > 0)
            .unwrap_or(900);
        std::time::Duration::from_secs(secs)
    })
}

/// What a command printed and how it ended.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// Exit code; -1 when killed by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

/// A host to work on: SSH or the local machine.
pub enum Executor {
    Ssh(SshExecutor),
    Local(LocalExecutor),
}

impl Executor {
    pub fn host(&self) -> &str {
        match self {
            Executor::Ssh(e) => e.host(),
            Executor::Local(e) => e.host(),
        }
    }

    pub fn log(&self) -> &HostLog {
        match self {
            Executor::Ssh(e) => e.log(),
            Executor::Local(e) => e.log(),
        }
    }

    /// Runs `script` with `sh -c`, feeding `input` to its stdin; never fails on
    /// a non-zero exit (see [`Executor::check`] for that).
    pub async fn run_with(&self, script: &str, input: Option<&Source>) -> Result<CmdOutput> {
        self.run_within(script, input, command_timeout()).await
    }

    /// Like [`Executor::run_with`], bounded by `limit`: a hung host fails
    /// the command (and so its step) instead of stalling the run.
    pub async fn run_within(
        &self,
        script: &str,
        input: Option<&Source>,
        limit: std::time::Duration,
    ) -> Result<CmdOutput> {
        let run = async {
            match self {
                Executor::Ssh(e) => e.run_with(script, input).await,
                Executor::Local(e) => e.run_with(script, input).await,
            }
        };
        let out = tokio::time::timeout(limit, run).await.unwrap_or_else(|_| {
            Err(ExecError::Session {
                host: self.host().to_string(),
                command: first_line(script),
                reason: format!(
                    "no answer within {}s (the host may hang or be unreachable; FERRY_COMMAND_TIMEOUT=SECONDS changes the limit)",
                    limit.as_secs()
                ),
            })
        });
        match &out {
            Ok(o) => self.log().command(script, o),
            Err(err) => self.log().line(&format!("$ {script}\n  error: {err}")),
        }
        out
    }

    pub async fn run(&self, script: &str) -> Result<CmdOutput> {
        self.run_with(script, None).await
    }

    /// Copies `remote` (a file on the host) to `local` on the deploy host,
    /// which must not exist yet; streamed and hashed on the way.
    pub async fn download(&self, remote: &str, local: &std::path::Path) -> Result<Downloaded> {
        let out = match self {
            Executor::Ssh(e) => e.download(remote, local).await,
            Executor::Local(e) => e.download(remote, local).await,
        };
        let line = match &out {
            Ok(d) => format!(
                "copied {remote} to {} on the deploy host: {} bytes, sha256 {}",
                local.display(),
                d.bytes,
                d.sha256
            ),
            Err(e) => format!("copying {remote} to the deploy host: {e}"),
        };
        self.log().line(&line);
        out
    }

    /// Runs `script`; a non-zero exit is an error carrying its stderr.
    pub async fn check(&self, script: &str) -> Result<String> {
        let out = self.run(script).await?;
        if out.success() {
            Ok(out.stdout)
        } else {
            Err(ExecError::Failed {
                host: self.host().to_string(),
                command: script.to_string(),
                code: out.code,
                stderr: last_lines(&out.stderr, 8),
            })
        }
    }
}

/// A command for an error message: its first line, marked when cut.
fn first_line(cmd: &str) -> String {
    match cmd.split_once('\n') {
        Some((first, _)) => format!("{first} ..."),
        None => cmd.to_string(),
    }
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command that does not answer fails with the host and command
    /// named, instead of holding the run.
    #[tokio::test]
    async fn a_command_past_its_limit_fails_naming_host_and_command() {
        let exec = Executor::Local(LocalExecutor::new("h9", HostLog::discard()));
        let err = exec
            .run_within("sleep 30", None, std::time::Duration::from_secs(1))
            .await
            .expect_err("a hung command succeeded")
            .to_string();
        assert!(
            err.contains("h9") && err.contains("sleep 30") && err.contains("within 1s"),
            "{err}"
        );
        let ok = exec
            .run_within("echo fine", None, std::time::Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(ok.stdout.trim(), "fine");
    }
}
