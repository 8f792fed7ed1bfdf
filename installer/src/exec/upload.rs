//! Atomic, hash-checked file placement: a file is sent only when the host's
//! copy differs (sha256), streamed (never whole in memory), written to a
//! temporary name next to the target, checked, chmod-ed and renamed.

use super::{ExecError, Executor, Result};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where an upload's bytes come from.
#[derive(Debug, Clone)]
pub enum Source {
    Bytes(Arc<[u8]>),
    /// A file on the deploy host, streamed.
    File(PathBuf),
}

/// One file to place on a host.
#[derive(Debug, Clone)]
pub struct Upload {
    pub path: PathBuf,
    pub mode: u32,
    pub source: Source,
    /// sha256 (hex) when already known (bundle.json, rendered content).
    pub sha256: Option<String>,
}

/// Quotes `s` for a POSIX shell.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-:=+,@".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn path_str(p: &Path) -> String {
    sh_quote(&p.to_string_lossy())
}

/// sha256 of a local file, streamed.
pub(crate) fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

impl Upload {
    fn local_sha256(&self, host: &str) -> Result<String> {
        if let Some(h) = &self.sha256 {
            return Ok(h.clone());
        }
        match &self.source {
            Source::Bytes(b) => Ok(hex::encode(Sha256::digest(b))),
            Source::File(p) => hash_file(p).map_err(|source| ExecError::LocalFile {
                host: host.to_string(),
                path: p.clone(),
                source,
            }),
        }
    }
}

/// (mode, sha256) of a file on a host.
pub type RemoteState = (u32, String);

impl Executor {
    /// Mode and sha256 of each existing regular file among `paths`, in one round trip.
    pub async fn file_states(&self, paths: &[&Path]) -> Result<HashMap<PathBuf, RemoteState>> {
        let mut states = HashMap::new();
        for chunk in paths.chunks(200) {
            let args: Vec<String> = chunk.iter().map(|p| path_str(p)).collect();
            let script = format!(
                "for f in {}; do if [ -f \"$f\" ]; then printf '%s ' \"$(stat -c %a \"$f\")\"; sha256sum \"$f\"; fi; done",
                args.join(" ")
            );
            let out = self.check(&script).await?;
            for line in out.lines() {
                let mut parts = line.splitn(3, ' ');
                let (Some(mode), Some(hash), Some(path)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                let Ok(mode) = u32::from_str_radix(mode, 8) else {
                    continue;
                };
                // sha256sum prints "<hash>  <path>"; the second space is in `path`.
                states.insert(PathBuf::from(path.trim_start()), (mode, hash.to_string()));
            }
        }
        Ok(states)
    }

    /// Places every upload whose content or mode differs on the host. Returns
    /// the paths that changed.
    pub async fn put_files(&self, uploads: &[Upload]) -> Result<Vec<PathBuf>> {
        let paths: Vec<&Path> = uploads.iter().map(|u| u.path.as_path()).collect();
        let remote = self.file_states(&paths).await?;
        let mut changed = Vec::new();
        for up in uploads {
            let want = up.local_sha256(self.host())?;
            match remote.get(&up.path) {
                Some((mode, hash)) if *hash == want && *mode == up.mode => {}
                Some((_, hash)) if *hash == want => {
                    self.check(&format!("chmod {:o} {}", up.mode, path_str(&up.path)))
                        .await?;
                    self.log()
                        .line(&format!("mode {:o} {}", up.mode, up.path.display()));
                    changed.push(up.path.clone());
                }
                _ => {
                    self.send(up, &want).await?;
                    changed.push(up.path.clone());
                }
            }
        }
        Ok(changed)
    }

    /// Streams one file to a temporary name, checks its hash there, then renames it into place.
    async fn send(&self, up: &Upload, sha256: &str) -> Result<()> {
        let dest = path_str(&up.path);
        let script = format!(
            "set -e; d=$(dirname {dest}); mkdir -p \"$d\"; t=\"$d/.ferry-tmp.$$\"; trap 'rm -f \"$t\"' EXIT; \
             umask 077; cat > \"$t\"; echo '{sha256}  '\"$t\" | sha256sum -c --status || {{ echo \"sha256 mismatch after transfer\" >&2; exit 1; }}; \
             chmod {mode:o} \"$t\"; mv -f \"$t\" {dest}; trap - EXIT",
            mode = up.mode
        );
        let out = self.run_with(&script, Some(&up.source)).await?;
        if !out.success() {
            return Err(ExecError::Io {
                host: self.host().to_string(),
                path: up.path.clone(),
                reason: format!("upload failed: {}", out.stderr.trim()),
            });
        }
        self.log().line(&format!(
            "wrote {} (mode {:o}, sha256 {sha256})",
            up.path.display(),
            up.mode
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_the_shell() {
        for s in ["plain/path", "with space", "it's", "$(rm -rf /)", ""] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", sh_quote(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), s);
        }
    }
}
