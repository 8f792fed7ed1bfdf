//! Writes a bundle of every regular file under a directory (for benchmarks
//! and manual checks; the real bundles come from `ferry bundle build`).
//!
//! Usage: mkbundle DIR OUT.tar.zst [--key SECRET.key] [--split BYTES] [--frame BYTES]

use ferry_bundles::manifest::{BundleManifest, FileEntry};
use ferry_bundles::{trusted_comment, write_bundle, ContentSource, SigningKey, WriteOptions};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, out, rest @ ..] = args.as_slice() else {
        return Err("usage: mkbundle DIR OUT.tar.zst [--key K] [--split N] [--frame N]".into());
    };
    let mut opts = WriteOptions::default();
    let mut key = None;
    for pair in rest.chunks(2) {
        match pair {
            [flag, v] if flag == "--key" => key = Some(SigningKey::load(&PathBuf::from(v))?),
            [flag, v] if flag == "--split" => opts.split = Some(v.parse()?),
            [flag, v] if flag == "--frame" => opts.frame_size = v.parse()?,
            _ => return Err(format!("unexpected arguments {pair:?}").into()),
        }
    }
    let root = PathBuf::from(dir);
    let mut contents = Vec::new();
    for e in walkdir::WalkDir::new(&root).sort_by_file_name() {
        let e = e?;
        if !e.file_type().is_file() {
            continue;
        }
        let rel = e.path().strip_prefix(&root)?.to_string_lossy().into_owned();
        let mut f = std::fs::File::open(e.path())?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            size += n as u64;
        }
        let mode = if e.metadata()?.permissions().mode() & 0o111 != 0 {
            0o755
        } else {
            0o644
        };
        let entry = FileEntry {
            path: rel,
            size,
            sha256: hex::encode(h.finalize()),
            mode,
            in_base: false,
        };
        contents.push(ContentSource {
            entry,
            source: e.path().to_path_buf(),
        });
    }
    contents.sort_by(|a, b| a.entry.path.cmp(&b.entry.path));
    let manifest = BundleManifest {
        schema: 1,
        name: "bench".into(),
        created: "1970-01-01T00:00:00Z".into(),
        builder: "mkbundle example".into(),
        kubernetes: "1.29.6".into(),
        platforms: vec!["linux/amd64".into()],
        components: vec![],
        images: vec![],
        files: contents.iter().map(|c| c.entry.clone()).collect(),
        base: None,
        os_packages: Vec::new(),
    };
    let bytes = manifest.to_bytes();
    let sig = match &key {
        Some(k) => Some(k.sign(&bytes, &trusted_comment(&manifest, &bytes))?),
        None => None,
    };
    let started = std::time::Instant::now();
    let report = write_bundle(
        &PathBuf::from(out),
        &bytes,
        sig.as_deref(),
        &contents,
        &opts,
    )?;
    eprintln!(
        "wrote {:?}: {} files, {} -> {} bytes in {:.2}s",
        report.outputs,
        contents.len(),
        report.uncompressed_bytes,
        report.compressed_bytes,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
