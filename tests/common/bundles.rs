//! Bundles for tests: write one from a directory with the `bundles` library,
//! and craft malicious ones (raw tar headers, zstd frames, seek table) that
//! the writer would refuse to make.

use ferry_bundles::manifest::{BundleManifest, FileEntry};
use ferry_bundles::seektable::{self, FrameEntry};
use ferry_bundles::{trusted_comment, write_bundle, ContentSource, SigningKey, WriteOptions};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Writes `files` (path, bytes, mode) under `root`.
pub fn make_tree(root: &Path, files: &[(&str, Vec<u8>, u32)]) {
    use std::os::unix::fs::PermissionsExt;
    for (path, data, mode) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().expect("has parent")).expect("mkdir");
        std::fs::write(&p, data).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).expect("chmod");
    }
}

/// Deterministic bytes that do not compress away.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn manifest_for(files: Vec<FileEntry>) -> BundleManifest {
    BundleManifest {
        schema: 1,
        name: "test-bundle".into(),
        created: "2024-06-01T00:00:00Z".into(),
        builder: "ferry tests".into(),
        kubernetes: "1.29.6".into(),
        platforms: vec!["linux/amd64".into()],
        components: vec![],
        images: vec![],
        files,
        base: None,
        os_packages: Vec::new(),
    }
}

/// Every regular file under `root`, as sorted manifest entries with sources.
pub fn scan(root: &Path) -> Vec<ContentSource> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let data = std::fs::read(&p).expect("read");
            let mode = std::fs::metadata(&p).expect("stat").permissions().mode() & 0o777;
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            let entry = FileEntry {
                path: rel,
                size: data.len() as u64,
                sha256: sha256_hex(&data),
                mode,
                in_base: false,
            };
            out.push(ContentSource { entry, source: p });
        }
    }
    out.sort_by(|a, b| a.entry.path.cmp(&b.entry.path));
    out
}

/// Writes a bundle of every file under `root` to `out`; returns its outputs.
pub fn write_dir(root: &Path, out: &Path, key: Option<&Path>, opts: &WriteOptions) -> Vec<PathBuf> {
    let contents = scan(root);
    let manifest = manifest_for(contents.iter().map(|c| c.entry.clone()).collect());
    let bytes = manifest.to_bytes();
    let sig = key.map(|k| {
        let k = SigningKey::load(k).expect("load key");
        k.sign(&bytes, &trusted_comment(&manifest, &bytes))
            .expect("sign")
    });
    write_bundle(out, &bytes, sig.as_deref(), &contents, opts)
        .expect("write bundle")
        .outputs
}

/// One raw ustar header block. `typeflag` b'0' is a regular file.
pub fn ustar_header(path: &str, size: u64, typeflag: u8, link: &str, mode: u32) -> [u8; 512] {
    let mut h = [0u8; 512];
    let put =
        |h: &mut [u8; 512], at: usize, bytes: &[u8]| h[at..at + bytes.len()].copy_from_slice(bytes);
    put(&mut h, 0, path.as_bytes());
    put(&mut h, 100, format!("{mode:07o}\0").as_bytes());
    put(&mut h, 108, b"0000000\0");
    put(&mut h, 116, b"0000000\0");
    put(&mut h, 124, format!("{size:011o}\0").as_bytes());
    put(&mut h, 136, b"00000000000\0");
    h[156] = typeflag;
    put(&mut h, 157, link.as_bytes());
    put(&mut h, 257, b"ustar\x0000");
    put(&mut h, 265, b"root");
    put(&mut h, 297, b"root");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    put(&mut h, 148, format!("{sum:06o}\0 ").as_bytes());
    h
}

/// A regular-file entry: header, data, padding.
pub fn tar_file(path: &str, data: &[u8], mode: u32) -> Vec<u8> {
    let mut v = ustar_header(path, data.len() as u64, b'0', "", mode).to_vec();
    v.extend_from_slice(data);
    v.resize(v.len().div_ceil(512) * 512, 0);
    v
}

/// Signs `manifest` with `key` and returns the head of a bundle tar:
/// bundle.json and bundle.json.minisig entries.
pub fn signed_head(manifest: &BundleManifest, key: Option<&Path>) -> Vec<u8> {
    let bytes = manifest.to_bytes();
    let mut head = tar_file("bundle.json", &bytes, 0o644);
    if let Some(k) = key {
        let k = SigningKey::load(k).expect("load key");
        let sig = k
            .sign(&bytes, &trusted_comment(manifest, &bytes))
            .expect("sign");
        head.extend(tar_file("bundle.json.minisig", sig.as_bytes(), 0o644));
    }
    head
}

/// Compresses `head` and `body` (body gets the end-of-archive blocks) as two
/// zstd frames with a seek table, the way the writer lays a bundle out.
pub fn framed(head: &[u8], body: &[u8]) -> Vec<u8> {
    let mut body = body.to_vec();
    body.extend_from_slice(&[0u8; 1024]);
    let mut out = Vec::new();
    let mut frames = Vec::new();
    for part in [head, &body[..]] {
        let c = zstd::bulk::compress(part, 3).expect("zstd");
        frames.push(FrameEntry {
            compressed: c.len() as u32,
            decompressed: part.len() as u32,
        });
        out.extend(c);
    }
    out.extend(seektable::encode(&frames));
    out
}
