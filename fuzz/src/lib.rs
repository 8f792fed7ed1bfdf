//! What the fuzz targets share: a scratch directory for inputs that the
//! code under test only takes as files.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A directory for this process's scratch files, under `TMPDIR` (run.sh
/// points that at a directory it removes afterwards).
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // Kept for the life of the process: libFuzzer exits without unwinding.
        tempfile::Builder::new()
            .prefix("ferry-fuzz-")
            .tempdir()
            .expect("scratch directory under TMPDIR")
            .keep()
    })
}

/// Writes `data` to `name` in the scratch directory and returns its path.
pub fn scratch_file(name: &str, data: &[u8]) -> PathBuf {
    let path = scratch().join(name);
    std::fs::write(&path, data).expect("write scratch file");
    path
}

/// Parts the parts.json target keeps beside the file it fuzzes, so a
/// parts.json naming them (as the `beside` seed does) is read through.
pub const PARTS: [(&str, &[u8]); 2] = [
    ("prod.tar.zst.000", b"part zero of a split bundle\n"),
    ("prod.tar.zst.001", b"part one\n"),
];

/// Writes [`PARTS`] into the scratch directory (once per process).
pub fn scratch_parts() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        for (name, data) in PARTS {
            scratch_file(name, data);
        }
    });
}
