//! Split parts: `<out>.000`, `<out>.001`, ... plus `<name>.parts.json` with
//! each part's size and sha256 and the whole stream's. Writing rotates parts
//! at a fixed size; reading streams the parts in place, in order, hashing
//! each and naming the part that is missing, short, long or damaged.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

pub const PARTS_SCHEMA: u32 = 1;
/// Largest parts.json ferry reads or writes: a part record is under 200
/// bytes, so this is room for some 80,000 parts, while a hostile file cannot
/// make a reader allocate more.
pub const MAX_PARTS_JSON_BYTES: u64 = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartsManifest {
    pub schema: u32,
    /// File name of the joined stream (`prod.tar.zst`).
    pub bundle: String,
    /// Size and sha256 of the whole (joined) stream.
    pub size: u64,
    pub sha256: String,
    pub parts: Vec<PartRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartRecord {
    /// File name, beside parts.json.
    pub file: String,
    pub size: u64,
    pub sha256: String,
}

impl PartsManifest {
    /// Reads and checks `path`: at most `MAX_PARTS_JSON_BYTES`, schema,
    /// plain part names, and part sizes that add up (without overflow) to
    /// the stream size.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = crate::bounded::read_file(path, MAX_PARTS_JSON_BYTES, "parts.json")?;
        let bad = |why: String| Error::verification(path.display().to_string(), why);
        let m: PartsManifest = serde_json::from_slice(&bytes)
            .map_err(|e| bad(format!("not a valid parts.json: {e}")))?;
        if m.schema != PARTS_SCHEMA {
            return Err(bad(format!(
                "parts.json schema {} is not supported (this ferry reads {PARTS_SCHEMA}); use a matching ferry",
                m.schema
            )));
        }
        for p in &m.parts {
            if p.file.is_empty() || p.file.contains('/') || p.file == ".." {
                return Err(bad(format!(
                    "part name {:?} is not a plain file name",
                    p.file
                )));
            }
        }
        // Checked: sizes near u64::MAX must not wrap around to a match.
        let sum = m
            .parts
            .iter()
            .try_fold(0u64, |sum, p| sum.checked_add(p.size))
            .ok_or_else(|| {
                bad("part sizes overflow a 64-bit total (damaged or crafted parts.json; copy it again from the bundle's source)".into())
            })?;
        if sum != m.size {
            return Err(bad(format!(
                "part sizes add up to {sum} bytes, but the stream size is {} (damaged parts.json; copy it again)",
                m.size
            )));
        }
        Ok(m)
    }
}

/// `dir/prod.tar.zst` -> `dir/prod.parts.json`.
pub fn parts_json_path(out: &Path) -> PathBuf {
    let file = out
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = file.strip_suffix(".tar.zst").unwrap_or(&file);
    out.with_file_name(format!("{name}.parts.json"))
}

/// `dir/prod.tar.zst` -> `dir/prod.tar.zst.003`.
pub fn part_path(out: &Path, index: usize) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(format!(".{index:03}"));
    PathBuf::from(s)
}

/// Name of the not-yet-complete file written before the final rename.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}

/// Writes the compressed stream into parts of at most `part_size` bytes.
pub struct SplitWriter {
    out: PathBuf,
    part_size: u64,
    current: Option<(BufWriter<File>, Sha256, u64)>,
    done: Vec<PartRecord>,
    whole: Sha256,
    total: u64,
}

impl SplitWriter {
    pub fn new(out: &Path, part_size: u64) -> Result<Self> {
        if part_size == 0 {
            return Err(Error::Invalid("split size must be at least 1 byte".into()));
        }
        Ok(SplitWriter {
            out: out.to_path_buf(),
            part_size,
            current: None,
            done: Vec::new(),
            whole: Sha256::new(),
            total: 0,
        })
    }

    fn open_next(&mut self) -> std::io::Result<()> {
        let path = partial_path(&part_path(&self.out, self.done.len()));
        let file = File::create(&path)?;
        self.current = Some((BufWriter::with_capacity(1 << 20, file), Sha256::new(), 0));
        Ok(())
    }

    fn close_current(&mut self) -> std::io::Result<()> {
        if let Some((mut w, hash, size)) = self.current.take() {
            w.flush()?;
            w.get_ref().sync_all()?;
            let file = part_path(&self.out, self.done.len());
            let file = file
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            self.done.push(PartRecord {
                file,
                size,
                sha256: hex::encode(hash.finalize()),
            });
        }
        Ok(())
    }

    /// Closes the last part, renames every part into place and writes
    /// parts.json. Returns the parts followed by parts.json.
    pub fn finish(mut self) -> Result<Vec<PathBuf>> {
        if self.current.is_none() && self.done.is_empty() {
            self.open_next().map_err(|e| Error::io(&self.out, e))?;
        }
        self.close_current().map_err(|e| Error::io(&self.out, e))?;
        let manifest = PartsManifest {
            schema: PARTS_SCHEMA,
            bundle: self
                .out
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            size: self.total,
            sha256: hex::encode(self.whole.clone().finalize()),
            parts: self.done.clone(),
        };
        let json_path = parts_json_path(&self.out);
        let mut bytes =
            serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Invalid(e.to_string()))?;
        bytes.push(b'\n');
        if bytes.len() as u64 > MAX_PARTS_JSON_BYTES {
            // A reader would refuse it: say so before any part is in place.
            self.abandon();
            return Err(Error::Invalid(format!(
                "{}: {} parts make a parts.json over {MAX_PARTS_JSON_BYTES} bytes; use a larger split size",
                json_path.display(),
                manifest.parts.len()
            )));
        }
        let mut outputs = Vec::new();
        for i in 0..self.done.len() {
            let path = part_path(&self.out, i);
            std::fs::rename(partial_path(&path), &path).map_err(|e| Error::io(&path, e))?;
            outputs.push(path);
        }
        std::fs::write(&json_path, bytes).map_err(|e| Error::io(&json_path, e))?;
        outputs.push(json_path);
        Ok(outputs)
    }

    /// Removes whatever was written (after a failure).
    pub fn abandon(mut self) {
        self.current = None;
        for i in 0..=self.done.len() {
            let _ = std::fs::remove_file(partial_path(&part_path(&self.out, i)));
        }
    }
}

impl Write for SplitWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self
            .current
            .as_ref()
            .is_some_and(|(_, _, size)| *size >= self.part_size)
        {
            self.close_current()?;
        }
        if self.current.is_none() {
            self.open_next()?;
        }
        let Some((w, hash, size)) = self.current.as_mut() else {
            unreachable!("opened above")
        };
        let n = buf.len().min((self.part_size - *size) as usize);
        w.write_all(&buf[..n])?;
        hash.update(&buf[..n]);
        self.whole.update(&buf[..n]);
        *size += n as u64;
        self.total += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.current.as_mut() {
            Some((w, _, _)) => w.flush(),
            None => Ok(()),
        }
    }
}

/// Reads the parts in order as one stream, checking each part's size and
/// sha256 when it ends and the whole stream's at the very end.
pub struct PartsReader {
    dir: PathBuf,
    manifest: PartsManifest,
    index: usize,
    current: Option<(File, Sha256, u64)>,
    whole: Sha256,
    finished: bool,
}

impl PartsReader {
    pub fn new(parts_json: &Path, manifest: PartsManifest) -> Self {
        let dir = parts_json
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        PartsReader {
            dir,
            manifest,
            index: 0,
            current: None,
            whole: Sha256::new(),
            finished: false,
        }
    }

    fn part_error(&self, index: usize, reason: String) -> std::io::Error {
        let path = self.dir.join(&self.manifest.parts[index].file);
        Error::verification(format!("part {}", path.display()), reason).into_io()
    }

    fn end_part(&mut self) -> std::io::Result<()> {
        let Some((_, hash, size)) = self.current.take() else {
            return Ok(());
        };
        let rec = &self.manifest.parts[self.index];
        if size != rec.size {
            return Err(self.part_error(
                self.index,
                format!("has {size} bytes, parts.json says {}", rec.size),
            ));
        }
        let actual = hex::encode(hash.finalize());
        if actual != rec.sha256 {
            return Err(self.part_error(
                self.index,
                format!(
                    "sha256 is {actual}, parts.json says {} (the part is damaged; copy it again)",
                    rec.sha256
                ),
            ));
        }
        self.index += 1;
        Ok(())
    }
}

impl Read for PartsReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.finished || buf.is_empty() {
                return Ok(0);
            }
            if self.current.is_none() {
                if self.index == self.manifest.parts.len() {
                    self.finished = true;
                    let actual = hex::encode(self.whole.clone().finalize());
                    if actual != self.manifest.sha256 {
                        return Err(Error::verification(
                            format!("parts of {}", self.manifest.bundle),
                            format!(
                                "joined stream sha256 is {actual}, parts.json says {}",
                                self.manifest.sha256
                            ),
                        )
                        .into_io());
                    }
                    return Ok(0);
                }
                let path = self.dir.join(&self.manifest.parts[self.index].file);
                let file = File::open(&path)
                    .map_err(|e| self.part_error(self.index, format!("cannot open: {e}")))?;
                self.current = Some((file, Sha256::new(), 0));
            }
            let Some((file, hash, size)) = self.current.as_mut() else {
                unreachable!("opened above")
            };
            let n = file.read(buf)?;
            if n == 0 {
                self.end_part()?;
                continue;
            }
            hash.update(&buf[..n]);
            self.whole.update(&buf[..n]);
            *size += n as u64;
            return Ok(n);
        }
    }
}
