//! Writes the seed corpora under `fuzz/corpus/<target>/` (and the seed key's
//! public half to `fuzz/seeds/seed.pub`): small bundles made by the
//! project's own writer, the bundle.json and parts.json it writes, kubeasz's
//! example files and the production guide's, and registry requests as
//! containerd and skopeo send them. Run from `fuzz/`:
//! `cargo run --bin mkseeds` (see run.sh; the output is committed).

use ferry_bundles::manifest::{BundleManifest, Component, ComponentKind, FileEntry, ImageRecord};
use ferry_bundles::seektable;
use ferry_bundles::split::{PartRecord, PartsManifest, PARTS_SCHEMA};
use ferry_bundles::{
    generate_keypair, trusted_comment, write_bundle, ContentSource, SigningKey, WriteOptions,
};
use ferry_fuzz::PARTS;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Deterministic bytes that do not compress away (xorshift).
fn noise(seed: u64, len: usize) -> Vec<u8> {
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

/// The files of the seed bundle: a binary, an OCI layout's small files, an
/// addon manifest, an empty file and one path long enough for a pax header.
fn content() -> Vec<(String, Vec<u8>, u32)> {
    let mut files = vec![
        ("bin/linux-amd64/kubectl".to_string(), noise(1, 3000), 0o755),
        ("empty".to_string(), Vec::new(), 0o644),
        (
            "images/index.json".to_string(),
            br#"{"schemaVersion":2,"manifests":[]}"#.to_vec(),
            0o644,
        ),
        (
            "images/oci-layout".to_string(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
            0o644,
        ),
        (
            "manifests/coredns/coredns.yaml".to_string(),
            b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: coredns\n".to_vec(),
            0o644,
        ),
        (
            format!("manifests/{}/values.yaml", "d".repeat(120)),
            b"replicas: 2\n".to_vec(),
            0o644,
        ),
    ];
    files.sort();
    files
}

fn manifest(files: &[FileEntry]) -> BundleManifest {
    BundleManifest {
        schema: 1,
        name: "seed-1.29.6".into(),
        created: "2026-11-01T00:00:00Z".into(),
        builder: "ferry 0.1.0".into(),
        kubernetes: "1.29.6".into(),
        platforms: vec!["linux/amd64".into()],
        components: vec![Component {
            name: "kubectl".into(),
            version: "1.29.6".into(),
            kind: ComponentKind::Binary,
            platform: Some("linux/amd64".into()),
            path: "bin/linux-amd64/kubectl".into(),
            source: "https://dl.k8s.io/release/v1.29.6/bin/linux/amd64/kubectl".into(),
            sha256: files[0].sha256.clone(),
            checksum_source: "https://dl.k8s.io/release/v1.29.6/bin/linux/amd64/kubectl.sha256"
                .into(),
        }],
        images: vec![ImageRecord {
            reference: "registry.k8s.io/pause:3.9".into(),
            digest: format!(
                "sha256:{}",
                "7031c1b283388d2c2e09b57badb803c05ebed362dc88d84b480cc47f72a21097"
            ),
            media_type: "application/vnd.oci.image.index.v1+json".into(),
            platforms: vec!["linux/amd64".into()],
            left_out: Vec::new(),
            signature: None,
        }],
        files: files.to_vec(),
        base: None,
        os_packages: Vec::new(),
    }
}

fn write(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// The seed bundles: signed and unsigned, one without a seek table, and
/// the bundle.json and parts.json the writer made for them.
fn bundles(corpus: &Path, public_out: &Path) {
    let work = tempfile::tempdir().unwrap();
    let mut contents = Vec::new();
    for (path, data, mode) in content() {
        let source = work.path().join("src").join(&path);
        write(&source, &data);
        let entry = FileEntry {
            path,
            size: data.len() as u64,
            sha256: sha256_hex(&data),
            mode,
            in_base: false,
        };
        contents.push(ContentSource { entry, source });
    }
    let entries: Vec<FileEntry> = contents.iter().map(|c| c.entry.clone()).collect();
    let m = manifest(&entries);
    let bytes = m.to_bytes();
    let (public, secret) = generate_keypair(&work.path().join("seed")).unwrap();
    std::fs::copy(&public, public_out).unwrap();
    let key = SigningKey::load(&secret).unwrap();
    let sig = key.sign(&bytes, &trusted_comment(&m, &bytes)).unwrap();
    // Small frames: the seeds hold several frames and a real seek table.
    let opts = WriteOptions {
        frame_size: 1024,
        level: 3,
        split: None,
        mtime: 1_700_000_000,
    };
    let reader = corpus.join("bundle_reader");
    std::fs::create_dir_all(&reader).unwrap();
    write_bundle(
        &reader.join("signed.tar.zst"),
        &bytes,
        Some(&sig),
        &contents,
        &opts,
    )
    .unwrap();
    write_bundle(
        &reader.join("unsigned.tar.zst"),
        &bytes,
        None,
        &contents,
        &opts,
    )
    .unwrap();
    // Without its seek table the reader decodes the stream in one pass.
    let signed = std::fs::read(reader.join("signed.tar.zst")).unwrap();
    let footer = &signed[signed.len() - seektable::FOOTER_LEN..];
    let table = seektable::table_len(footer).expect("the writer adds a seek table") as usize;
    write(
        &reader.join("no-seek-table.tar.zst"),
        &signed[..signed.len() - table],
    );
    write(&corpus.join("bundle_json/seed.json"), &bytes);
    let split = WriteOptions {
        split: Some(2048),
        ..opts
    };
    let out = work.path().join("prod.tar.zst");
    let outputs = write_bundle(&out, &bytes, Some(&sig), &contents, &split)
        .unwrap()
        .outputs;
    let parts_json = outputs.last().unwrap();
    write(
        &corpus.join("parts_json/written.parts.json"),
        &std::fs::read(parts_json).unwrap(),
    );
}

/// A parts.json naming the parts the target keeps beside it.
fn parts_beside(corpus: &Path) {
    let whole: Vec<u8> = PARTS.iter().flat_map(|(_, d)| d.to_vec()).collect();
    let m = PartsManifest {
        schema: PARTS_SCHEMA,
        bundle: "prod.tar.zst".into(),
        size: whole.len() as u64,
        sha256: sha256_hex(&whole),
        parts: PARTS
            .iter()
            .map(|(file, data)| PartRecord {
                file: file.to_string(),
                size: data.len() as u64,
                sha256: sha256_hex(data),
            })
            .collect(),
    };
    let mut bytes = serde_json::to_vec_pretty(&m).unwrap();
    bytes.push(b'\n');
    write(&corpus.join("parts_json/beside.parts.json"), &bytes);
}

/// kubeasz's example cluster files and the production guide's.
fn kubeasz(corpus: &Path, fixtures: &Path) {
    for (from, to) in [
        ("kubeasz/3.6.3/hosts.multi-node", "kubeasz-hosts.multi-node"),
        ("kubeasz/3.6.3/config.yml", "kubeasz-config.yml"),
        ("guide/hosts", "guide-hosts"),
        ("guide/config.yml", "guide-config.yml"),
    ] {
        let data = std::fs::read(fixtures.join(from)).unwrap();
        write(&corpus.join("kubeasz_files").join(to), &data);
    }
    let bundle_json = std::fs::read(fixtures.join("guide/bundle.json")).unwrap();
    write(&corpus.join("bundle_json/guide.json"), &bundle_json);
}

/// Request paths and Range headers as clients send them.
fn registry(corpus: &Path) {
    let digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let seeds = [
        "/v2/".to_string(),
        "/v2/_catalog".into(),
        "/v2/_catalog?n=100&last=library%2Fpause".into(),
        "/v2/library/pause/tags/list".into(),
        "/v2/library/pause/manifests/3.9".into(),
        format!("/v2/library/pause/manifests/{digest}"),
        format!("/v2/coredns/coredns/blobs/{digest}"),
        format!("/v2/a/b/blobs/{digest}"),
        "/v2/library/pause/blobs/uploads/".into(),
        "/v2/calico/node/manifests/v3.26.4?ns=docker.io".into(),
        "bytes=0-99".into(),
        "bytes=-5".into(),
        "bytes=100-".into(),
        "bytes=0-0".into(),
        "bytes=0-99,200-299".into(),
        "bytes=18446744073709551615-".into(),
    ];
    for (i, s) in seeds.iter().enumerate() {
        write(&corpus.join(format!("registry_route/{i:02}")), s.as_bytes());
    }
}

fn main() {
    let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let corpus = fuzz.join("corpus");
    let fixtures = fuzz.join("../tests/fixtures");
    bundles(&corpus, &fuzz.join("seeds/seed.pub"));
    parts_beside(&corpus);
    kubeasz(&corpus, &fixtures);
    registry(&corpus);
    println!("seeds written under {}", corpus.display());
}
