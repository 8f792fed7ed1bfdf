//! Deterministic writer: tar (ustar/pax, fixed mtime/uid/gid/names) compressed
//! as independent zstd frames with a seek table in a trailing skippable frame.
//! bundle.json and its signature go first, in a frame of their own, so a
//! reader can inspect the manifest without decompressing the rest.

use crate::compress::FrameCompressor;
use crate::manifest::{
    BundleManifest, FileEntry, MANIFEST_PATH, MAX_MANIFEST_BYTES, SIGNATURE_PATH,
};
use crate::split::{partial_path, SplitWriter};
use crate::{safepath, seektable, tarfmt, Error, Result};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Uncompressed bytes per zstd frame (32 MiB by default).
    pub frame_size: usize,
    pub level: i32,
    /// Split the compressed stream into parts of at most this many bytes.
    pub split: Option<u64>,
    /// tar mtime for every entry (SOURCE_DATE_EPOCH or 0).
    pub mtime: u64,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            frame_size: 32 << 20,
            level: 3,
            split: None,
            mtime: 0,
        }
    }
}

/// One content file: its manifest entry and where its bytes are on disk.
#[derive(Debug, Clone)]
pub struct ContentSource {
    pub entry: FileEntry,
    pub source: PathBuf,
}

#[derive(Debug, Clone)]
pub struct WriteReport {
    /// The bundle file, or the parts followed by the parts.json.
    pub outputs: Vec<PathBuf>,
    pub compressed_bytes: u64,
    pub uncompressed_bytes: u64,
}

/// Largest frame the writer makes (the seek table stores u32 sizes, and the
/// reader bounds its memory by the frame size).
pub const MAX_FRAME_SIZE: usize = 64 << 20;

/// Largest compressed frame the writer can make: zstd's worst case for a
/// `MAX_FRAME_SIZE` input (the compressor's output buffer is that big).
/// Readers refuse a seek table listing a larger frame.
pub fn max_compressed_frame_size() -> usize {
    zstd::zstd_safe::compress_bound(MAX_FRAME_SIZE)
}

/// Writes a bundle to `out` (or `out.000`... plus `<name>.parts.json` when split).
/// `contents` must match the manifest's files (sorted by path, no `in_base`).
pub fn write_bundle(
    out: &Path,
    manifest_bytes: &[u8],
    signature: Option<&str>,
    contents: &[ContentSource],
    opts: &WriteOptions,
) -> Result<WriteReport> {
    check_inputs(manifest_bytes, contents, opts)?;
    let mut output = Output::create(out, opts.split)?;
    match write_stream(&mut output, out, manifest_bytes, signature, contents, opts) {
        Ok((compressed, uncompressed, _pool)) => {
            let outputs = output.finish(out)?;
            Ok(WriteReport {
                outputs,
                compressed_bytes: compressed,
                uncompressed_bytes: uncompressed,
            })
        }
        Err(e) => {
            output.abandon(out);
            Err(e)
        }
    }
}

/// The manifest parses, and `contents` are exactly its non-`in_base` files,
/// in order, with safe paths.
fn check_inputs(
    manifest_bytes: &[u8],
    contents: &[ContentSource],
    opts: &WriteOptions,
) -> Result<()> {
    if manifest_bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(Error::Invalid(format!(
            "bundle.json to write is {} bytes, more than the {MAX_MANIFEST_BYTES} a reader accepts; carry fewer files",
            manifest_bytes.len()
        )));
    }
    if opts.frame_size == 0 || opts.frame_size > MAX_FRAME_SIZE {
        return Err(Error::Invalid(format!(
            "frame size must be 1..={MAX_FRAME_SIZE} bytes, not {}",
            opts.frame_size
        )));
    }
    let manifest = BundleManifest::from_bytes(manifest_bytes)
        .map_err(|e| Error::Invalid(format!("bundle.json to write does not parse: {e}")))?;
    let listed: Vec<&FileEntry> = manifest.files.iter().filter(|f| !f.in_base).collect();
    if listed.len() != contents.len() {
        return Err(Error::Invalid(format!(
            "bundle.json lists {} files to carry but {} were given",
            listed.len(),
            contents.len()
        )));
    }
    let mut prev: Option<&str> = None;
    for (c, m) in contents.iter().zip(listed) {
        let p = c.entry.path.as_str();
        if &c.entry != m {
            return Err(Error::Invalid(format!(
                "{p}: entry differs from bundle.json's entry for {}",
                m.path
            )));
        }
        safepath::check(p).map_err(|why| Error::Invalid(format!("{p}: {why}")))?;
        if p == MANIFEST_PATH || p == SIGNATURE_PATH {
            return Err(Error::Invalid(format!("{p}: reserved name")));
        }
        if prev.is_some_and(|q| q >= p) {
            return Err(Error::Invalid(format!(
                "{p}: files must be sorted by path without duplicates"
            )));
        }
        if c.entry.mode & !0o777 != 0 {
            return Err(Error::Invalid(format!(
                "{p}: mode {:o} has bits beyond rwx",
                c.entry.mode
            )));
        }
        prev = Some(p);
    }
    Ok(())
}

fn push_entry(buf: &mut Vec<u8>, path: &str, data: &[u8], mtime: u64) {
    buf.extend_from_slice(&tarfmt::file_header(path, data.len() as u64, 0o644, mtime));
    buf.extend_from_slice(data);
    buf.resize(buf.len() + tarfmt::padding(data.len() as u64), 0);
}

/// Frame buffers the compressor allocated: (inputs, outputs, in_flight).
type PoolUse = (usize, usize, usize);

/// Returns (compressed, uncompressed) byte counts and the buffer pool's use.
fn write_stream(
    output: &mut Output,
    out: &Path,
    manifest_bytes: &[u8],
    signature: Option<&str>,
    contents: &[ContentSource],
    opts: &WriteOptions,
) -> Result<(u64, u64, PoolUse)> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let what = out.display().to_string();
    let mut comp = FrameCompressor::new(&mut *output, opts.level, cores, opts.frame_size, &what)?;

    // Frame 0: bundle.json and its signature, alone.
    let mut head = Vec::new();
    push_entry(&mut head, MANIFEST_PATH, manifest_bytes, opts.mtime);
    if let Some(sig) = signature {
        push_entry(&mut head, SIGNATURE_PATH, sig.as_bytes(), opts.mtime);
    }
    let mut total = head.len() as u64;
    comp.submit(head)?;

    let mut chunk = Chunker {
        frame_size: opts.frame_size,
        buf: comp.buffer(opts.frame_size),
        total: 0,
    };
    for c in contents {
        let e = &c.entry;
        chunk.push(
            &mut comp,
            &tarfmt::file_header(&e.path, e.size, e.mode, opts.mtime),
        )?;
        copy_file(&mut comp, &mut chunk, c)?;
        chunk.push(&mut comp, &[0u8; tarfmt::BLOCK][..tarfmt::padding(e.size)])?;
    }
    chunk.push(&mut comp, &tarfmt::END_OF_ARCHIVE)?;
    if !chunk.buf.is_empty() {
        let last = std::mem::take(&mut chunk.buf);
        comp.submit(last)?;
    }
    total += chunk.total;
    let (ins, outs) = comp.allocated_buffers();
    let pool = (ins, outs, comp.in_flight());
    let (_, frames) = comp.finish()?;
    if frames.len() as u64 > seektable::MAX_FRAMES {
        // Readers would refuse the seek table.
        return Err(Error::Invalid(format!(
            "{what}: {} frames are more than the {} a reader accepts; use a larger frame size",
            frames.len(),
            seektable::MAX_FRAMES
        )));
    }
    let table = seektable::encode(&frames);
    output
        .write_all(&table)
        .map_err(|e| Error::from_io(out, e))?;
    let compressed =
        frames.iter().map(|f| u64::from(f.compressed)).sum::<u64>() + table.len() as u64;
    Ok((compressed, total, pool))
}

/// Cuts the content byte stream into frames of exactly `frame_size` bytes.
struct Chunker {
    frame_size: usize,
    buf: Vec<u8>,
    total: u64,
}

impl Chunker {
    fn push<W: Write>(&mut self, comp: &mut FrameCompressor<W>, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let n = data.len().min(self.frame_size - self.buf.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            self.total += n as u64;
            self.flush_full(comp)?;
        }
        Ok(())
    }

    fn flush_full<W: Write>(&mut self, comp: &mut FrameCompressor<W>) -> Result<()> {
        if self.buf.len() == self.frame_size {
            // Submit first: the pool then has the written frame's buffer back.
            let full = std::mem::take(&mut self.buf);
            comp.submit(full)?;
            self.buf = comp.buffer(self.frame_size);
        }
        Ok(())
    }
}

/// Streams one source file into the chunker, checking its size and sha256
/// against the manifest entry.
fn copy_file<W: Write>(
    comp: &mut FrameCompressor<W>,
    chunk: &mut Chunker,
    c: &ContentSource,
) -> Result<()> {
    let e = &c.entry;
    let mut file = File::open(&c.source).map_err(|err| Error::io(&c.source, err))?;
    let mut hash = Sha256::new();
    let mut left = e.size;
    while left > 0 {
        let start = chunk.buf.len();
        let n = (chunk.frame_size - start).min(usize::try_from(left).unwrap_or(usize::MAX));
        chunk.buf.resize(start + n, 0);
        let got = read_full(&mut file, &mut chunk.buf[start..])
            .map_err(|err| Error::io(&c.source, err))?;
        chunk.buf.truncate(start + got);
        if got < n {
            return Err(changed(
                c,
                format!("is shorter than the {} bytes bundle.json lists", e.size),
            ));
        }
        hash.update(&chunk.buf[start..]);
        left -= got as u64;
        chunk.total += got as u64;
        chunk.flush_full(comp)?;
    }
    let mut probe = [0u8; 1];
    if read_full(&mut file, &mut probe).map_err(|err| Error::io(&c.source, err))? != 0 {
        return Err(changed(
            c,
            format!("is longer than the {} bytes bundle.json lists", e.size),
        ));
    }
    let actual = hex::encode(hash.finalize());
    if actual != e.sha256 {
        return Err(changed(
            c,
            format!("has sha256 {actual}, bundle.json lists {}", e.sha256),
        ));
    }
    Ok(())
}

fn changed(c: &ContentSource, what: String) -> Error {
    Error::Invalid(format!(
        "{} (for {}) {what}; the file changed while the bundle was written",
        c.source.display(),
        c.entry.path
    ))
}

fn read_full(r: &mut impl Read, mut buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while !buf.is_empty() {
        match r.read(buf) {
            Ok(0) => break,
            Ok(k) => {
                n += k;
                buf = &mut buf[k..];
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The compressed stream's destination: one file or split parts, written
/// under `.partial` names and renamed into place only on success.
enum Output {
    Single(BufWriter<File>),
    Split(Box<SplitWriter>),
}

impl Output {
    fn create(out: &Path, split: Option<u64>) -> Result<Self> {
        match split {
            None => {
                let tmp = partial_path(out);
                let f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
                Ok(Output::Single(BufWriter::with_capacity(1 << 20, f)))
            }
            Some(size) => Ok(Output::Split(Box::new(SplitWriter::new(out, size)?))),
        }
    }

    fn finish(self, out: &Path) -> Result<Vec<PathBuf>> {
        match self {
            Output::Single(mut w) => {
                let tmp = partial_path(out);
                w.flush()
                    .and_then(|()| w.get_ref().sync_all())
                    .map_err(|e| Error::io(&tmp, e))?;
                std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
                Ok(vec![out.to_path_buf()])
            }
            Output::Split(s) => s.finish(),
        }
    }

    fn abandon(self, out: &Path) {
        match self {
            Output::Single(w) => {
                drop(w);
                let _ = std::fs::remove_file(partial_path(out));
            }
            Output::Split(s) => s.abandon(),
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Output::Single(w) => w.write(buf),
            Output::Split(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Output::Single(w) => w.flush(),
            Output::Split(s) => s.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bundle of many frames (files larger and smaller than a frame) keeps
    /// the compressor's buffer pool at its bound: in_flight + 1 inputs (the
    /// head frame's buffer counts as one) and in_flight outputs.
    #[test]
    fn writing_many_frames_reuses_a_bounded_buffer_pool() {
        let dir = tempfile::tempdir().unwrap();
        let mut contents = Vec::new();
        for (i, size) in [3 << 20, 1000, 5 << 20, 70_000, 2 << 20]
            .into_iter()
            .enumerate()
        {
            let data: Vec<u8> = (0..size as u32)
                .map(|x| (x.wrapping_mul(2654435761) >> (i + 7)) as u8)
                .collect();
            let source = dir.path().join(format!("f{i}"));
            std::fs::write(&source, &data).unwrap();
            contents.push(ContentSource {
                entry: FileEntry {
                    path: format!("files/f{i}"),
                    size: size as u64,
                    sha256: hex::encode(Sha256::digest(&data)),
                    mode: 0o644,
                    in_base: false,
                },
                source,
            });
        }
        let manifest = BundleManifest {
            schema: 1,
            name: "pool".into(),
            created: "1970-01-01T00:00:00Z".into(),
            builder: "test".into(),
            kubernetes: "1.29.6".into(),
            platforms: vec!["linux/amd64".into()],
            components: vec![],
            images: vec![],
            files: contents.iter().map(|c| c.entry.clone()).collect(),
            base: None,
            os_packages: Vec::new(),
        };
        let bytes = manifest.to_bytes();
        let opts = WriteOptions {
            frame_size: 64 << 10,
            ..WriteOptions::default()
        };
        let out = dir.path().join("b.tar.zst");
        let mut output = Output::create(&out, None).unwrap();
        let (_, total, (ins, outs, in_flight)) =
            write_stream(&mut output, &out, &bytes, None, &contents, &opts).unwrap();
        output.finish(&out).unwrap();
        let frames = total / (64 << 10);
        assert!(frames > 150, "only {frames} frames");
        assert!(
            ins <= in_flight + 1,
            "{ins} input buffers, in_flight {in_flight}"
        );
        assert!(
            outs <= in_flight,
            "{outs} output buffers, in_flight {in_flight}"
        );
    }
}
