//! The deploy host itself: commands run with `sh -c` here.

use super::{CmdOutput, ExecError, HostLog, Result, Source};
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

pub struct LocalExecutor {
    host: String,
    log: HostLog,
}

impl LocalExecutor {
    pub fn new(host: &str, log: HostLog) -> Self {
        LocalExecutor {
            host: host.to_string(),
            log,
        }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn log(&self) -> &HostLog {
        &self.log
    }

    pub async fn download(
        &self,
        remote: &str,
        local: &std::path::Path,
    ) -> Result<super::Downloaded> {
        let io = |path: &std::path::Path, e: std::io::Error| ExecError::Io {
            host: self.host.clone(),
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let from = tokio::fs::File::open(remote)
            .await
            .map_err(|e| io(std::path::Path::new(remote), e))?;
        super::download::copy_hashing(from, local)
            .await
            .map_err(|e| io(local, e))
    }

    pub async fn run_with(&self, script: &str, input: Option<&Source>) -> Result<CmdOutput> {
        let session = |reason: String| ExecError::Session {
            host: self.host.clone(),
            command: script.to_string(),
            reason,
        };
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| session(format!("cannot start sh: {e}")))?;
        if let (Some(src), Some(mut stdin)) = (input, child.stdin.take()) {
            // Feed stdin while output is collected, so neither side blocks.
            let host = self.host.clone();
            let src = src.clone();
            let writer = tokio::spawn(async move {
                let r = match &src {
                    Source::Bytes(b) => stdin.write_all(b).await,
                    Source::File(p) => match tokio::fs::File::open(p).await {
                        Ok(mut f) => tokio::io::copy(&mut f, &mut stdin).await.map(|_| ()),
                        Err(e) => return Err((p.clone(), e)),
                    },
                };
                drop(stdin);
                r.map_err(|e| {
                    (
                        std::path::PathBuf::from(format!("stdin of a command on {host}")),
                        e,
                    )
                })
            });
            let out = child
                .wait_with_output()
                .await
                .map_err(|e| session(e.to_string()))?;
            if let Ok(Err((path, source))) = writer.await {
                if source.kind() != std::io::ErrorKind::BrokenPipe {
                    return Err(ExecError::LocalFile {
                        host: self.host.clone(),
                        path,
                        source,
                    });
                }
            }
            return Ok(to_output(out));
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| session(e.to_string()))?;
        Ok(to_output(out))
    }
}

pub(crate) fn to_output(out: std::process::Output) -> CmdOutput {
    CmdOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
