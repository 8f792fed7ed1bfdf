//! Atomic, hash-checked file placement: a file is sent only when the host's
//! copy differs (sha256), streamed (never whole in memory), written to a
//! temporary name next to the target, checked, chmod-ed, fsync'ed and
//! renamed, and the directory fsync'ed: after a crash a target holds its old
//! or its new content, never part of it.

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

/// Hashes of local files already computed in this process, keyed by path,
/// size and mtime: a big file sent to many hosts is read once.
type HashMemo = std::sync::Mutex<HashMap<(PathBuf, u64, i64), String>>;
static HASHES: std::sync::LazyLock<HashMemo> = std::sync::LazyLock::new(Default::default);

/// sha256 of a local file, memoized, computed off the async threads.
async fn hash_file_cached(path: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    let key = (
        path.to_path_buf(),
        meta.len(),
        meta.mtime_nsec() + meta.mtime() * 1_000_000_000,
    );
    if let Some(h) = HASHES.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(h);
    }
    let p = path.to_path_buf();
    let h = tokio::task::spawn_blocking(move || hash_file(&p))
        .await
        .map_err(std::io::Error::other)??;
    if let Ok(mut m) = HASHES.lock() {
        m.insert(key, h.clone());
    }
    Ok(h)
}

impl Upload {
    async fn local_sha256(&self, host: &str) -> Result<String> {
        if let Some(h) = &self.sha256 {
            return Ok(h.clone());
        }
        match &self.source {
            Source::Bytes(b) => Ok(hex::encode(Sha256::digest(b))),
            Source::File(p) => hash_file_cached(p)
                .await
                .map_err(|source| ExecError::LocalFile {
                    host: host.to_string(),
                    path: p.clone(),
                    source,
                }),
        }
    }
}

/// The start of every batch script. A file is written to a temporary name
/// beside its target (`$t`), fsync'ed, renamed, then its directory fsync'ed;
/// whatever stops the script (an error, a signal) removes the temporary file
/// in flight, so a target is either its old or its new content, whole.
const BATCH_HEAD: &str = "set -e\numask 077\nt=\n\
     trap '[ -z \"$t\" ] || rm -f -- \"$t\"' EXIT\n\
     trap 'exit 1' HUP INT TERM PIPE\n\
     fail() { echo \"writing $1 failed (the file is unchanged)\" >&2; exit 1; }\n";

/// Files from disk up to this size are read into the batch script instead of streamed.
const SMALL_FILE: u64 = 256 * 1024;
/// Size at which a batch script is sent.
const BATCH_LIMIT: usize = 4 << 20;

/// (mode, sha256) of a file on a host.
pub type RemoteState = (u32, String);

impl Executor {
    /// Mode and sha256 of each existing regular file among `paths`, in one round trip.
    pub async fn file_states(&self, paths: &[&Path]) -> Result<HashMap<PathBuf, RemoteState>> {
        let mut states = HashMap::new();
        for chunk in paths.chunks(200) {
            let args: Vec<String> = chunk.iter().map(|p| path_str(p)).collect();
            let script = format!(
                "for f in {}; do if [ -f \"$f\" ] && [ ! -L \"$f\" ]; then printf '%s ' \"$(stat -c %a \"$f\")\"; sha256sum \"$f\"; fi; done",
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
    /// the paths that changed. In-memory files (configs, certificates) and mode
    /// fixes go in one script fed on stdin (one round trip, content never on a
    /// command line); files from disk are streamed one by one.
    pub async fn put_files(&self, uploads: &[Upload]) -> Result<Vec<PathBuf>> {
        let paths: Vec<&Path> = uploads.iter().map(|u| u.path.as_path()).collect();
        let remote = self.file_states(&paths).await?;
        let mut changed = Vec::new();
        let mut batch = String::from(BATCH_HEAD);
        let mut batched = Vec::new();
        for up in uploads {
            let want = up.local_sha256(self.host()).await?;
            match (remote.get(&up.path), &up.source) {
                (Some((mode, hash)), _) if *hash == want && *mode == up.mode => {}
                (Some((_, hash)), _) if *hash == want => {
                    batch.push_str(&format!("chmod {:o} {}\n", up.mode, path_str(&up.path)));
                    batched.push((up, format!("mode {:o} {}", up.mode, up.path.display())));
                }
                (_, Source::Bytes(bytes)) => {
                    push_inline(&mut batch, &mut batched, up, &want, bytes);
                }
                (_, Source::File(p))
                    if std::fs::metadata(p).is_ok_and(|m| m.len() <= SMALL_FILE) =>
                {
                    let bytes = std::fs::read(p).map_err(|source| ExecError::LocalFile {
                        host: self.host().to_string(),
                        path: p.clone(),
                        source,
                    })?;
                    push_inline(&mut batch, &mut batched, up, &want, &bytes);
                }
                (_, Source::File(_)) => {
                    self.send(up, &want).await?;
                    changed.push(up.path.clone());
                }
            }
            // Keep memory bounded: a batch is sent once it holds a few MiB.
            if batch.len() > BATCH_LIMIT {
                self.run_batch(&mut batch, &mut batched, &mut changed)
                    .await?;
            }
        }
        self.run_batch(&mut batch, &mut batched, &mut changed)
            .await?;
        Ok(changed)
    }

    /// Runs the pending batch script (if any) and records what it wrote.
    async fn run_batch(
        &self,
        batch: &mut String,
        batched: &mut Vec<(&Upload, String)>,
        changed: &mut Vec<PathBuf>,
    ) -> Result<()> {
        if batched.is_empty() {
            return Ok(());
        }
        let script = std::mem::replace(batch, String::from(BATCH_HEAD));
        let out = self
            .run_with(
                "sh -s",
                Some(&Source::Bytes(Arc::from(script.into_bytes()))),
            )
            .await?;
        if !out.success() {
            // The script names the file it stopped at; the ones before it are in place.
            let path = batched
                .iter()
                .map(|(up, _)| &up.path)
                .find(|p| {
                    let named = format!("writing {} ", p.display());
                    out.stderr.lines().any(|l| l.starts_with(&named))
                })
                .unwrap_or(&batched[0].0.path)
                .clone();
            return Err(ExecError::Io {
                host: self.host().to_string(),
                path,
                reason: format!(
                    "writing a batch of {} files stopped: {}",
                    batched.len(),
                    out.stderr.trim()
                ),
            });
        }
        for (up, line) in batched.drain(..) {
            self.log().line(&line);
            changed.push(up.path.clone());
        }
        Ok(())
    }

    /// Streams one file to a temporary name, checks its hash there, then renames it into place.
    async fn send(&self, up: &Upload, sha256: &str) -> Result<()> {
        let dest = path_str(&up.path);
        let script = format!(
            "set -e; d=$(dirname {dest}); mkdir -p \"$d\"; t=\"$d/.ferry-tmp.$$\"; \
             trap 'rm -f -- \"$t\"' EXIT; trap 'exit 1' HUP INT TERM PIPE; \
             umask 077; cat > \"$t\"; echo '{sha256}  '\"$t\" | sha256sum -c --status || {{ echo \"sha256 mismatch after transfer\" >&2; exit 1; }}; \
             chmod {mode:o} \"$t\"; sync \"$t\"; mv -f -T \"$t\" {dest}; trap - EXIT; sync \"$d\"",
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

/// Adds one in-memory file to the stdin script and records its log line.
fn push_inline<'a>(
    batch: &mut String,
    batched: &mut Vec<(&'a Upload, String)>,
    up: &'a Upload,
    want: &str,
    bytes: &[u8],
) {
    batch.push_str(&inline_script(
        &up.path,
        up.mode,
        want,
        bytes,
        batched.len(),
    ));
    batched.push((
        up,
        format!(
            "wrote {} (mode {:o}, sha256 {want})",
            up.path.display(),
            up.mode
        ),
    ));
}

/// Shell lines writing `bytes` to `path` atomically and durably (temp name,
/// hash check, chmod, fsync, rename, fsync of the directory).
fn inline_script(path: &Path, mode: u32, sha256: &str, bytes: &[u8], n: usize) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut wrapped = String::with_capacity(b64.len() + b64.len() / 76 + 1);
    for chunk in b64.as_bytes().chunks(76) {
        wrapped.push_str(&String::from_utf8_lossy(chunk));
        wrapped.push('\n');
    }
    let dest = path_str(path);
    format!(
        "f={dest}; d=$(dirname \"$f\"); t=\"$d/.ferry-tmp.$$\"\n\
         mkdir -p \"$d\" || fail \"$f\"\n\
         base64 -d > \"$t\" <<'FERRY_EOF_{n}' || fail \"$f\"\n{wrapped}FERRY_EOF_{n}\n\
         echo '{sha256}  '\"$t\" | sha256sum -c --status || {{ echo \"sha256 mismatch writing $f\" >&2; exit 1; }}\n\
         chmod {mode:o} \"$t\" && sync \"$t\" && mv -f -T \"$t\" \"$f\" || fail \"$f\"\n\
         t=; sync \"$d\"\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(path: &Path, mode: u32, content: &[u8]) -> Upload {
        Upload {
            path: path.to_path_buf(),
            mode,
            source: Source::Bytes(Arc::from(content)),
            sha256: None,
        }
    }

    /// Names under `dir`, recursively, that are ferry's temporary files.
    fn temporaries(dir: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                found.extend(temporaries(&p));
            } else if p
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".ferry-tmp")
            {
                found.push(p);
            }
        }
        found
    }

    /// A batch that stops at a file (its directory is a file; its target is a
    /// directory, found only at the rename) keeps the files before it, leaves
    /// the ones after as they were, and leaves no temporary file.
    #[tokio::test]
    async fn a_batch_stopped_midway_leaves_whole_files_and_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("blocker"), "a file, not a directory").unwrap();
        std::fs::create_dir_all(root.join("taken/inside")).unwrap();
        std::fs::write(root.join("old.conf"), "old\n").unwrap();
        let exec = Executor::Local(super::super::LocalExecutor::new(
            "deploy",
            super::super::HostLog::discard(),
        ));
        for stopper in [root.join("blocker/b.conf"), root.join("taken")] {
            let ups = [
                bytes(&root.join("a.conf"), 0o640, b"first\n"),
                bytes(&stopper, 0o600, b"second\n"),
                bytes(&root.join("old.conf"), 0o600, b"third\n"),
            ];
            let err = exec.put_files(&ups).await.expect_err("wrote it anyway");
            let text = err.to_string();
            assert!(
                text.contains(&format!("{}: writing a batch", stopper.display())),
                "{text}"
            );
            assert_eq!(std::fs::read(root.join("a.conf")).unwrap(), b"first\n");
            assert_eq!(std::fs::read(root.join("old.conf")).unwrap(), b"old\n");
            assert!(root.join("taken/inside").is_dir());
            let left = temporaries(root);
            assert!(left.is_empty(), "temporary files left: {left:?}");
        }
    }

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
