//! SSH through the system OpenSSH client, one multiplexed master connection
//! per host (openssh crate, native mux). ~/.ssh/config (or `--ssh-config`)
//! applies, so jump hosts (`ProxyJump`), agents and per-host options work as
//! they do for `ssh` itself.

use super::local::to_output;
use super::{CmdOutput, ExecError, HostLog, Result, Source};
use openssh::{KnownHosts, Session, SessionBuilder, Stdio};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// `--ssh-known-hosts`: what to do with a host key not in known_hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KnownHostsPolicy {
    /// Refuse unknown and changed keys (StrictHostKeyChecking=yes).
    #[default]
    Strict,
    /// Record unknown keys, refuse changed ones (accept-new).
    AcceptNew,
    /// Accept any key (StrictHostKeyChecking=no): for throw-away labs only.
    Off,
}

impl std::str::FromStr for KnownHostsPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "strict" | "yes" => Ok(KnownHostsPolicy::Strict),
            "accept-new" => Ok(KnownHostsPolicy::AcceptNew),
            "off" | "no" => Ok(KnownHostsPolicy::Off),
            other => Err(format!(
                "unknown known_hosts policy {other:?}: use strict, accept-new or off"
            )),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SshOptions {
    /// `-F FILE` instead of ~/.ssh/config.
    pub config_file: Option<PathBuf>,
    pub known_hosts: KnownHostsPolicy,
    /// Where the control sockets live (default: the system temp dir).
    pub control_dir: Option<PathBuf>,
    pub connect_timeout: Option<Duration>,
}

/// Connection facts of one host (from the inventory).
#[derive(Debug, Clone)]
pub struct SshDestination {
    pub host: String,
    /// Only passed when set, so ssh config's `Port`/`User` apply otherwise.
    pub port: Option<u16>,
    pub user: Option<String>,
    pub identity_file: Option<PathBuf>,
}

pub struct SshExecutor {
    host: String,
    destination: String,
    session: Session,
    log: HostLog,
}

/// The error with its causes: openssh's own message ("failed to connect to
/// the remote host") says nothing, ssh's stderr is in its source.
fn ssh_reason(e: &openssh::Error) -> String {
    let mut reason = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        let text = c.to_string();
        if !text.trim().is_empty() {
            reason = format!("{reason}: {}", text.trim().replace('\n', "; "));
        }
        cur = c.source();
    }
    reason
}

impl SshExecutor {
    /// Opens the master connection to `dest` for the host named `host`.
    pub async fn connect(
        host: &str,
        dest: &SshDestination,
        opts: &SshOptions,
        log: HostLog,
    ) -> Result<Self> {
        let mut b = SessionBuilder::default();
        b.known_hosts_check(match opts.known_hosts {
            KnownHostsPolicy::Strict => KnownHosts::Strict,
            KnownHostsPolicy::AcceptNew => KnownHosts::Add,
            KnownHostsPolicy::Off => KnownHosts::Accept,
        });
        b.connect_timeout(opts.connect_timeout.unwrap_or(Duration::from_secs(10)));
        b.server_alive_interval(Duration::from_secs(5));
        let control_dir = opts.control_dir.clone().unwrap_or_else(std::env::temp_dir);
        b.control_directory(&control_dir);
        if let Some(f) = &opts.config_file {
            b.config_file(f);
        }
        if let Some(p) = dest.port {
            b.port(p);
        }
        if let Some(u) = &dest.user {
            b.user(u.clone());
        }
        if let Some(k) = &dest.identity_file {
            b.keyfile(k);
        }
        let shown = describe(dest);
        log.line(&format!("connect {shown}"));
        let session = b.connect_mux(&dest.host).await.map_err(|e| {
            let reason = ssh_reason(&e);
            log.line(&format!("connect {shown} failed: {reason}"));
            ExecError::Connect {
                host: host.to_string(),
                destination: shown.clone(),
                reason,
            }
        })?;
        Ok(SshExecutor {
            host: host.to_string(),
            destination: shown,
            session,
            log,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn destination(&self) -> &str {
        &self.destination
    }

    pub fn log(&self) -> &HostLog {
        &self.log
    }

    pub async fn close(self) {
        let _ = self.session.close().await;
    }

    pub async fn run_with(&self, script: &str, input: Option<&Source>) -> Result<CmdOutput> {
        let session = |reason: String| ExecError::Session {
            host: self.host.clone(),
            command: script.to_string(),
            reason,
        };
        let mut cmd = self.session.shell(script);
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().await.map_err(|e| session(e.to_string()))?;
        let stdin = child.stdin().take();
        let feed = async {
            let (Some(src), Some(mut stdin)) = (input, stdin) else {
                return Ok(());
            };
            let r = match src {
                Source::Bytes(b) => stdin.write_all(b).await,
                Source::File(p) => match tokio::fs::File::open(p).await {
                    Ok(mut f) => tokio::io::copy(&mut f, &mut stdin).await.map(|_| ()),
                    Err(e) => return Err((p.clone(), e)),
                },
            };
            let _ = stdin.shutdown().await;
            drop(stdin);
            r.map_err(|e| (PathBuf::from("stdin"), e))
        };
        let (fed, out) = futures::join!(feed, child.wait_with_output());
        let out = out.map_err(|e| session(e.to_string()))?;
        if let Err((path, source)) = fed {
            if source.kind() != std::io::ErrorKind::BrokenPipe || path != Path::new("stdin") {
                return Err(ExecError::LocalFile {
                    host: self.host.clone(),
                    path,
                    source,
                });
            }
        }
        Ok(to_output(out))
    }
}

fn describe(d: &SshDestination) -> String {
    let mut s = String::new();
    if let Some(u) = &d.user {
        s.push_str(u);
        s.push('@');
    }
    s.push_str(&d.host);
    if let Some(p) = d.port {
        s.push_str(&format!(":{p}"));
    }
    s
}
