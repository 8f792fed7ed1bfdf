//! Verifies a bundle with the library and optionally writes its files, for
//! timing the reader against `zstd -dc | tar -x` (see the bundles crate docs).
//!
//! Usage: unpackbench BUNDLE [--trust KEY.pub] [--out DIR]

use ferry_bundles::manifest::FileEntry;
use ferry_bundles::{
    verify_and_extract, BundleSource, EntrySink, Error, NullSink, Trust, TrustedKeys,
};
use std::io::{Read, Write};
use std::path::PathBuf;

/// Writes each file under a directory with a large buffer.
struct DirSink {
    root: PathBuf,
    buf: Vec<u8>,
}

impl EntrySink for DirSink {
    fn file(&mut self, entry: &FileEntry, content: &mut dyn Read) -> ferry_bundles::Result<()> {
        let path = self.root.join(&entry.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let mut f = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
        loop {
            let n = content
                .read(&mut self.buf)
                .map_err(|e| Error::io(&path, e))?;
            if n == 0 {
                return Ok(());
            }
            f.write_all(&self.buf[..n])
                .map_err(|e| Error::io(&path, e))?;
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(bundle) = args.first() else {
        return Err("usage: unpackbench BUNDLE [--trust K] [--out DIR]".into());
    };
    let mut trust = Trust::InsecureUnsigned;
    let mut out = None;
    for pair in args[1..].chunks(2) {
        match pair {
            [f, v] if f == "--trust" => {
                trust = Trust::Keys(TrustedKeys::load(&[PathBuf::from(v)])?)
            }
            [f, v] if f == "--out" => out = Some(PathBuf::from(v)),
            _ => return Err(format!("unexpected arguments {pair:?}").into()),
        }
    }
    let src = BundleSource::open(&PathBuf::from(bundle))?;
    let started = std::time::Instant::now();
    let v = match out {
        Some(root) => verify_and_extract(
            &src,
            &trust,
            &mut DirSink {
                root,
                buf: vec![0; 1 << 20],
            },
        )?,
        None => verify_and_extract(&src, &trust, &mut NullSink)?,
    };
    eprintln!(
        "verified {} files in {:.2}s",
        v.manifest.files.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
