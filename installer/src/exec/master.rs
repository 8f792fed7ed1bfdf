//! The SSH master connection of one host, started here rather than by the
//! openssh crate so that its argv is ours: every option first, then `--`,
//! then the destination. A destination can never be read as an option, even
//! if one beginning with `-` got past validation.

use super::ssh::{KnownHostsPolicy, SshDestination, SshOptions};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// A running master: its control socket lives in `dir`; dropping it asks the
/// master to exit.
pub(super) struct Master {
    dir: tempfile::TempDir,
}

impl Master {
    pub(super) fn control_socket(&self) -> PathBuf {
        self.dir.path().join("master")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    /// Starts `ssh -M -f -N ... -- destination` and waits until it is
    /// authenticated (ssh forks to the background then). The error is ssh's
    /// own words from its log.
    pub(super) async fn start(dest: &SshDestination, opts: &SshOptions) -> Result<Master, String> {
        let parent = opts.control_dir.clone().unwrap_or_else(std::env::temp_dir);
        let dir = tempfile::Builder::new()
            .prefix(".ferry-ssh")
            .tempdir_in(&parent)
            .map_err(|e| {
                format!(
                    "cannot create a control directory in {}: {e}",
                    parent.display()
                )
            })?;
        let master = Master { dir };
        // Not a pipe: the master keeps its stderr open in the background.
        let stderr_path = master.dir.path().join("stderr");
        let stderr = std::fs::File::create(&stderr_path)
            .map_err(|e| format!("cannot create {}: {e}", stderr_path.display()))?;
        let status = tokio::process::Command::new("ssh")
            .args(master_args(dest, opts, master.dir.path()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .status()
            .await
            .map_err(|e| format!("cannot run ssh: {e}"))?;
        if status.success() {
            return Ok(master);
        }
        // Before the log opens (bad arguments) ssh writes to stderr.
        let said = [master.log(), stderr_path]
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        Err(ssh_words(&said).unwrap_or_else(|| format!("ssh exited with {status}")))
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        let ctl = self.control_socket();
        if !ctl.exists() {
            return;
        }
        // The destination of a control command only names it; `--` all the same.
        let _ = std::process::Command::new("ssh")
            .args(["-F", "/dev/null", "-S"])
            .arg(&ctl)
            .args(["-O", "exit", "--", "ferry-master"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The master's argv (without `ssh` itself): options, `--`, destination.
pub(super) fn master_args(dest: &SshDestination, opts: &SshOptions, dir: &Path) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |s: &dyn AsRef<std::ffi::OsStr>| a.push(s.as_ref().to_os_string());
    push(&"-E");
    push(&dir.join("log"));
    push(&"-S");
    push(&dir.join("master"));
    for s in [
        "-M",
        "-f",
        "-N",
        "-o",
        "ControlPersist=yes",
        "-o",
        "BatchMode=yes",
        "-o",
    ] {
        push(&s);
    }
    push(&match opts.known_hosts {
        KnownHostsPolicy::Strict => "StrictHostKeyChecking=yes",
        KnownHostsPolicy::AcceptNew => "StrictHostKeyChecking=accept-new",
        KnownHostsPolicy::Off => "StrictHostKeyChecking=no",
    });
    let timeout = opts.connect_timeout.unwrap_or(Duration::from_secs(10));
    push(&"-o");
    push(&format!("ConnectTimeout={}", timeout.as_secs().max(1)));
    push(&"-o");
    push(&"ServerAliveInterval=5");
    if let Some(p) = dest.port {
        push(&"-p");
        push(&p.to_string());
    }
    if let Some(u) = &dest.user {
        push(&"-l");
        push(u);
    }
    if let Some(k) = &dest.identity_file {
        push(&"-o");
        push(&"IdentitiesOnly=yes");
        push(&"-i");
        push(k);
    }
    if let Some(f) = &opts.config_file {
        push(&"-F");
        push(f);
    }
    push(&"--");
    push(&dest.host);
    a
}

/// What ssh said, on one line, without its notices of keys it recorded.
fn ssh_words(log: &str) -> Option<String> {
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Warning: Permanently added"))
        .collect();
    (!lines.is_empty()).then(|| lines.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(host: &str) -> SshDestination {
        SshDestination {
            host: host.into(),
            port: Some(2222),
            user: Some("admin".into()),
            identity_file: Some("/root/.ssh/id".into()),
            become_root: false,
        }
    }

    /// The destination is the last argument, right after `--`, and nothing
    /// else comes after `--`.
    #[test]
    fn the_destination_follows_a_double_dash() {
        let opts = SshOptions {
            config_file: Some("/etc/ferry/ssh_config".into()),
            ..Default::default()
        };
        for host in [
            "10.0.0.1",
            "-oProxyCommand=touch /tmp/pwned",
            "node-1.example",
        ] {
            let args = master_args(&dest(host), &opts, Path::new("/run/x"));
            let dd = args.iter().position(|a| a == "--").expect("no --");
            assert_eq!(&args[dd + 1..], [OsString::from(host)], "{args:?}");
            assert!(!args[..dd].iter().any(|a| a == host), "{args:?}");
            for flag in ["-p", "-l", "-i", "-F", "-S", "-E"] {
                let at = args.iter().position(|a| a == flag).expect(flag);
                assert!(at < dd, "{flag} after --: {args:?}");
            }
        }
    }

    /// ssh itself reads a destination after `--` as a host name: the option
    /// it would spell is never obeyed.
    #[tokio::test]
    async fn ssh_never_obeys_a_destination_spelled_as_an_option() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("obeyed");
        let host = format!("-oProxyCommand=touch {}", marker.display());
        let d = SshDestination {
            host,
            port: None,
            user: None,
            identity_file: None,
            become_root: false,
        };
        let opts = SshOptions {
            config_file: Some("/dev/null".into()),
            control_dir: Some(dir.path().to_path_buf()),
            connect_timeout: Some(Duration::from_secs(2)),
            ..Default::default()
        };
        let err = match Master::start(&d, &opts).await {
            Ok(_) => panic!("connected to a host named like an option"),
            Err(e) => e,
        };
        assert!(!marker.exists(), "ssh ran the ProxyCommand: {err}");
        // Read as a host name (refused as one), not as an option.
        assert!(err.contains("hostname"), "{err}");
    }
}
