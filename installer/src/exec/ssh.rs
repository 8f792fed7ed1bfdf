//! SSH through the system OpenSSH client, one multiplexed master connection
//! per host (openssh crate, native mux). ~/.ssh/config (or `--ssh-config`)
//! applies, so jump hosts (`ProxyJump`), agents and per-host options work as
//! they do for `ssh` itself.

use super::local::to_output;
use super::master::Master;
use super::{sudo, CmdOutput, ExecError, HostLog, Result, Source};
use openssh::{Session, Stdio};
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
    /// `ansible_become`: every command runs as root through `sudo -n` (the
    /// user root needs none).
    pub become_root: bool,
}

pub struct SshExecutor {
    host: String,
    destination: String,
    session: Session,
    /// Declared after `session`: the master exits once the session is gone.
    _master: Master,
    /// The SSH user whose commands go through sudo (`ansible_become`).
    sudo_user: Option<String>,
    log: HostLog,
}

impl SshExecutor {
    /// Opens the master connection to `dest` for the host named `host`; with
    /// `become_root`, checks that sudo runs commands without a password.
    pub async fn connect(
        host: &str,
        dest: &SshDestination,
        opts: &SshOptions,
        log: HostLog,
    ) -> Result<Self> {
        let shown = describe(dest);
        log.line(&format!("connect {shown}"));
        let master = Master::start(dest, opts).await.map_err(|reason| {
            log.line(&format!("connect {shown} failed: {reason}"));
            ExecError::Connect {
                host: host.to_string(),
                destination: shown.clone(),
                reason,
            }
        })?;
        let session = Session::resume_mux(master.control_socket().into_boxed_path(), None);
        // root needs no sudo (and a host may have none).
        let as_root = dest.user.as_deref() == Some("root");
        let sudo_user = (dest.become_root && !as_root).then(|| {
            dest.user
                .clone()
                .unwrap_or_else(|| "the SSH user".to_string())
        });
        let exec = SshExecutor {
            host: host.to_string(),
            destination: shown,
            session,
            _master: master,
            sudo_user,
            log,
        };
        if exec.sudo_user.is_some() {
            exec.check_sudo().await?;
        }
        Ok(exec)
    }

    /// One `sudo -n` round trip: a sudo that wants a password, or none at
    /// all, fails the connection naming the host and the user.
    async fn check_sudo(&self) -> Result<()> {
        let limit = super::command_timeout();
        let out = tokio::time::timeout(limit, self.run_with("id -u", None))
            .await
            .map_err(|_| ExecError::Session {
                host: self.host.clone(),
                command: "sudo -n -- sh -c 'id -u'".into(),
                reason: format!("no answer within {}s", limit.as_secs()),
            })??;
        if out.success() && out.stdout.trim() == "0" {
            self.log.line("sudo: commands run as root (ansible_become)");
            return Ok(());
        }
        let user = self.sudo_user.as_deref().unwrap_or_default();
        let err = sudo::refused(&self.host, user, out.code, &out.stderr);
        self.log.line(&err.to_string());
        Err(err)
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

    /// Ends the master connection (`ssh -O exit`, as dropping does).
    pub async fn close(self) {
        let Self { _master, .. } = self;
        let _ = tokio::task::spawn_blocking(move || drop(_master)).await;
    }

    pub async fn run_with(&self, script: &str, input: Option<&Source>) -> Result<CmdOutput> {
        let session = |reason: String| ExecError::Session {
            host: self.host.clone(),
            command: script.to_string(),
            reason,
        };
        let wrapped;
        let remote = match &self.sudo_user {
            Some(_) => {
                wrapped = sudo::as_root(script);
                wrapped.as_str()
            }
            None => script,
        };
        let mut cmd = self.session.shell(remote);
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
        let out = to_output(out);
        if let Some(user) = &self.sudo_user {
            if out.code == 1 && sudo::wants_password(&out.stderr) {
                return Err(sudo::refused(&self.host, user, out.code, &out.stderr));
            }
        }
        Ok(out)
    }
}

impl SshExecutor {
    /// Streams `remote` through `cat` into `local` (see [`super::Executor::download`]).
    pub async fn download(&self, remote: &str, local: &Path) -> Result<super::Downloaded> {
        let script = format!("cat -- {}", super::sh_quote(remote));
        let session = |reason: String| ExecError::Session {
            host: self.host.clone(),
            command: script.clone(),
            reason,
        };
        let wrapped = match &self.sudo_user {
            Some(_) => sudo::as_root(&script),
            None => script.clone(),
        };
        let mut cmd = self.session.shell(&wrapped);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().await.map_err(|e| session(e.to_string()))?;
        let stdout = child
            .stdout()
            .take()
            .ok_or_else(|| session("no stdout".into()))?;
        let copied = super::download::copy_hashing(stdout, local).await;
        let out = to_output(
            child
                .wait_with_output()
                .await
                .map_err(|e| session(e.to_string()))?,
        );
        if !out.success() {
            let _ = tokio::fs::remove_file(local).await;
            return Err(ExecError::Failed {
                host: self.host.clone(),
                command: script,
                code: out.code,
                stderr: out.stderr,
            });
        }
        copied.map_err(|e| ExecError::Io {
            host: self.host.clone(),
            path: local.to_path_buf(),
            reason: e.to_string(),
        })
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
