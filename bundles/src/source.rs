//! Where the bundle's bytes come from: one `.tar.zst` file, or split parts
//! described by `<name>.parts.json`, read in place in order.

use crate::split::{self, PartsManifest, PartsReader};
use crate::{Error, Result};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub enum BundleSource {
    Single(PathBuf),
    /// `parts_json` lists the parts with size and sha256, plus the whole stream's sha256.
    Parts {
        parts_json: PathBuf,
        parts: Vec<PathBuf>,
    },
}

/// `x.tar.zst.000` -> `x.tar.zst` when the name ends in `.` and digits.
fn strip_part_suffix(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_str()?;
    let (stem, digits) = name.rsplit_once('.')?;
    if digits.len() >= 3 && digits.bytes().all(|b| b.is_ascii_digit()) && stem.ends_with(".tar.zst")
    {
        Some(path.with_file_name(stem))
    } else {
        None
    }
}

impl BundleSource {
    /// Accepts `x.tar.zst`, `x.parts.json`, or the first part `x.tar.zst.000`.
    pub fn open(path: &Path) -> Result<Self> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parts_json = if name.ends_with(".parts.json") {
            path.to_path_buf()
        } else if let Some(joined) = strip_part_suffix(path) {
            let pj = split::parts_json_path(&joined);
            if !pj.exists() {
                return Err(Error::Invalid(format!(
                    "{} looks like a bundle part but {} is not beside it; copy the parts.json too",
                    path.display(),
                    pj.display()
                )));
            }
            pj
        } else if !path.exists() && split::parts_json_path(path).is_file() {
            // `prod.tar.zst` was written split: read its parts.
            split::parts_json_path(path)
        } else {
            let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
            if !meta.is_file() {
                return Err(Error::Invalid(format!(
                    "{}: not a bundle file",
                    path.display()
                )));
            }
            return Ok(BundleSource::Single(path.to_path_buf()));
        };
        let manifest = PartsManifest::load(&parts_json)?;
        let dir = parts_json
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut parts = Vec::new();
        for rec in &manifest.parts {
            let p = dir.join(&rec.file);
            match std::fs::metadata(&p) {
                Ok(m) if m.len() == rec.size => {}
                Ok(m) => {
                    return Err(Error::verification(
                        format!("part {}", p.display()),
                        format!(
                            "has {} bytes, parts.json says {} (incomplete copy?)",
                            m.len(),
                            rec.size
                        ),
                    ))
                }
                Err(e) => {
                    return Err(Error::verification(
                        format!("part {}", p.display()),
                        format!("missing: {e}"),
                    ))
                }
            }
            parts.push(p);
        }
        Ok(BundleSource::Parts { parts_json, parts })
    }

    /// The compressed stream. For parts, each part is hashed as it is read and
    /// a mismatch is a verification error naming the part.
    pub fn reader(&self) -> Result<Box<dyn Read + Send>> {
        match self {
            BundleSource::Single(p) => Ok(Box::new(File::open(p).map_err(|e| Error::io(p, e))?)),
            BundleSource::Parts { parts_json, .. } => {
                let manifest = PartsManifest::load(parts_json)?;
                Ok(Box::new(PartsReader::new(parts_json, manifest)))
            }
        }
    }

    /// Path shown to users.
    pub fn display(&self) -> String {
        match self {
            BundleSource::Single(p) => p.display().to_string(),
            BundleSource::Parts { parts_json, .. } => parts_json.display().to_string(),
        }
    }

    fn sizes(&self) -> Result<Vec<(PathBuf, u64)>> {
        let files: Vec<PathBuf> = match self {
            BundleSource::Single(p) => vec![p.clone()],
            BundleSource::Parts { parts, .. } => parts.clone(),
        };
        files
            .into_iter()
            .map(|p| {
                let len = std::fs::metadata(&p).map_err(|e| Error::io(&p, e))?.len();
                Ok((p, len))
            })
            .collect()
    }

    /// Length of the (joined) compressed stream.
    pub fn len(&self) -> Result<u64> {
        Ok(self.sizes()?.iter().map(|(_, l)| l).sum())
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// `len` bytes at `offset` of the joined stream (not hash-checked: callers
    /// use this for the seek table, whose bytes the full read checks later).
    pub fn read_range(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(len);
        let mut start = 0u64;
        for (path, size) in self.sizes()? {
            let end = start + size;
            let want_from = offset + out.len() as u64;
            if out.len() < len && want_from < end && want_from >= start {
                let mut f = File::open(&path).map_err(|e| Error::io(&path, e))?;
                f.seek(SeekFrom::Start(want_from - start))
                    .map_err(|e| Error::io(&path, e))?;
                let take = ((end - want_from) as usize).min(len - out.len());
                let mut buf = vec![0u8; take];
                f.read_exact(&mut buf).map_err(|e| Error::io(&path, e))?;
                out.extend_from_slice(&buf);
            }
            start = end;
        }
        if out.len() != len {
            return Err(Error::verification(
                self.display(),
                "bundle is shorter than its own seek table says",
            ));
        }
        Ok(out)
    }

    /// For parts: reads every part and checks its size and sha256 (used to
    /// name the damaged part after a failure). Ok for a single file.
    pub fn check_parts(&self) -> Result<()> {
        if let BundleSource::Parts { .. } = self {
            let mut r = self.reader()?;
            std::io::copy(&mut r, &mut std::io::sink())
                .map_err(|e| Error::from_io(self.display(), e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_suffix() {
        assert_eq!(
            strip_part_suffix(Path::new("/a/x.tar.zst.000")),
            Some(PathBuf::from("/a/x.tar.zst"))
        );
        assert_eq!(
            strip_part_suffix(Path::new("x.tar.zst.1234")),
            Some(PathBuf::from("x.tar.zst"))
        );
        assert_eq!(strip_part_suffix(Path::new("x.tar.zst")), None);
        assert_eq!(strip_part_suffix(Path::new("x.zip.000")), None);
    }
}
