//! Signed test bundles made with the bundles library from mkimages.py output
//! plus a few stand-in binaries and manifests, and hand-crafted malformed
//! bundles (tests/fixtures/craftbundle.py) for the tamper tests.

use super::bundles::{noise, sha256_hex};
use ferry_bundles::manifest::{
    BundleManifest, Component, ComponentKind, FileEntry, ImageRecord, LeftOut, LeftOutReason,
    SignatureRecord,
};
use ferry_bundles::{
    generate_keypair, trusted_comment, write_bundle, ContentSource, SigningKey, WriteOptions,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct TestBundle {
    pub path: PathBuf,
    pub manifest: BundleManifest,
    /// ref -> index digest
    pub digests: BTreeMap<String, String>,
    /// The OCI layout the images came from.
    pub layout: PathBuf,
}

/// A key pair under `dir`: returns (public key, secret key).
pub fn keypair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    generate_keypair(&dir.join(name)).expect("generate key pair")
}

fn sha256_file(path: &Path) -> String {
    sha256_hex(&std::fs::read(path).unwrap())
}

/// Builds `<dir>/<name>.tar.zst` carrying `refs` (both platforms), a stand-in
/// binary of `bin_bytes` per platform and a manifest file, signed with `key`
/// (None: unsigned). Small frames so the reader decodes many frames in parallel.
pub fn make_bundle(
    dir: &Path,
    name: &str,
    refs: &[&str],
    extra_bytes: u64,
    bin_bytes: usize,
    key: Option<&Path>,
) -> TestBundle {
    let work = dir.join(format!("{name}-content"));
    let layout = work.join("images");
    let digests = super::mirror::mkimages(&layout, extra_bytes, refs);
    let mut files: Vec<(String, PathBuf, u32)> = Vec::new();
    for (i, arch) in ["amd64", "arm64"].iter().enumerate() {
        let rel = format!("bin/linux-{arch}/kubectl");
        let p = work.join(&rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, noise(i as u64 + name.len() as u64, bin_bytes)).unwrap();
        files.push((rel, p, 0o755));
    }
    let rel = "manifests/coredns.yaml".to_owned();
    let p = work.join(&rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(
        &p,
        format!("# stand-in addon manifest of {name}\nkind: ConfigMap\n"),
    )
    .unwrap();
    files.push((rel, p, 0o644));
    for f in ["oci-layout", "index.json"] {
        files.push((format!("images/{f}"), layout.join(f), 0o644));
    }
    let (images, carried) = carried_images(&layout, &digests);
    for digest in carried {
        let hex = digest.strip_prefix("sha256:").unwrap();
        files.push((
            format!("images/blobs/sha256/{hex}"),
            layout.join("blobs/sha256").join(hex),
            0o644,
        ));
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let contents: Vec<ContentSource> = files
        .iter()
        .map(|(rel, p, mode)| ContentSource {
            entry: FileEntry {
                path: rel.clone(),
                size: std::fs::metadata(p).unwrap().len(),
                sha256: sha256_file(p),
                mode: *mode,
                in_base: false,
            },
            source: p.clone(),
        })
        .collect();
    let components = ["amd64", "arm64"]
        .iter()
        .map(|arch| {
            let path = format!("bin/linux-{arch}/kubectl");
            Component {
                name: "kubectl".into(),
                version: "1.29.6".into(),
                kind: ComponentKind::Binary,
                platform: Some(format!("linux/{arch}")),
                sha256: contents
                    .iter()
                    .find(|c| c.entry.path == path)
                    .unwrap()
                    .entry
                    .sha256
                    .clone(),
                path,
                source: format!("https://dl.k8s.io/release/v1.29.6/bin/linux/{arch}/kubectl"),
                checksum_source: "catalog".into(),
            }
        })
        .collect();
    let manifest = BundleManifest {
        schema: 1,
        name: name.to_owned(),
        created: "1970-01-01T00:00:00Z".into(),
        builder: "ferry-test".into(),
        kubernetes: "1.29.6".into(),
        platforms: vec!["linux/amd64".into(), "linux/arm64".into()],
        components,
        images,
        files: contents.iter().map(|c| c.entry.clone()).collect(),
        base: None,
        os_packages: Vec::new(),
    };
    let bytes = manifest.to_bytes();
    let signature = key.map(|k| {
        SigningKey::load(k)
            .unwrap()
            .sign(&bytes, &trusted_comment(&manifest, &bytes))
            .unwrap()
    });
    let path = dir.join(format!("{name}.tar.zst"));
    let opts = WriteOptions {
        frame_size: 256 << 10,
        ..WriteOptions::default()
    };
    write_bundle(&path, &bytes, signature.as_deref(), &contents, &opts).expect("write test bundle");
    std::fs::remove_dir_all(&work).ok();
    let layout_keep = dir.join(format!("{name}-layout"));
    // Keep the layout for digest checks (mkimages is deterministic: rebuild it).
    super::mirror::mkimages(&layout_keep, extra_bytes, refs);
    TestBundle {
        path,
        manifest,
        digests,
        layout: layout_keep,
    }
}

/// What the builder would carry of each image in the layout for
/// BUNDLE_PLATFORMS: the records for bundle.json (left-out entries and
/// signatures included) and every carried manifest and blob digest.
fn carried_images(
    layout: &Path,
    digests: &BTreeMap<String, String>,
) -> (Vec<ImageRecord>, BTreeSet<String>) {
    use super::mirror::{entry_platform, left_out_entries, manifest_blobs, reachable_blobs};
    let named = super::upstream::layout_digests(layout);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let media_type = |digest: &str| {
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["digest"] == digest)
            .unwrap()["mediaType"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let mut carried = BTreeSet::new();
    let mut images = Vec::new();
    for (reference, digest) in digests {
        carried.extend(reachable_blobs(layout, digest));
        let repo = reference.rsplit_once(':').unwrap().0;
        let sig_ref = format!("{repo}:sha256-{}.sig", &digest[7..]);
        let signature = named.get(&sig_ref).map(|d| {
            carried.extend(manifest_blobs(layout, d));
            SignatureRecord {
                reference: sig_ref.clone(),
                digest: d.clone(),
            }
        });
        let left_out = left_out_entries(layout, digest)
            .iter()
            .map(|e| left_out(layout, e, entry_platform(e)))
            .collect();
        images.push(ImageRecord {
            reference: reference.clone(),
            digest: digest.clone(),
            media_type: media_type(digest),
            platforms: super::mirror::BUNDLE_PLATFORMS
                .iter()
                .map(|p| p.to_string())
                .collect(),
            left_out,
            signature,
        });
    }
    (images, carried)
}

fn left_out(layout: &Path, entry: &serde_json::Value, platform: Option<String>) -> LeftOut {
    let digest = entry["digest"].as_str().unwrap().to_owned();
    let Some(platform) = platform else {
        return LeftOut {
            digest,
            platform: "unknown/unknown".into(),
            reason: LeftOutReason::Attestation,
        };
    };
    let hex = digest.strip_prefix("sha256:").unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap())
            .unwrap();
    let foreign = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["urls"].is_array());
    let platform = match entry["platform"]["os.version"].as_str() {
        Some(v) => format!("{platform} {v}"),
        None => platform,
    };
    let reason = if foreign {
        LeftOutReason::ForeignLayers
    } else {
        LeftOutReason::PlatformNotRequested
    };
    LeftOut {
        digest,
        platform,
        reason,
    }
}

/// Rewrites `good` into `out` with one mutation (see craftbundle.py): two zstd
/// frames (bundle.json + signature, then the rest), no seek table.
pub fn craft(good: &Path, out: &Path, mutation: &[&str]) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/craftbundle.py");
    let res = Command::new("python3")
        .arg(script)
        .arg(good)
        .arg(out)
        .args(mutation)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "craftbundle.py {mutation:?}: {}",
        String::from_utf8_lossy(&res.stderr)
    );
}

/// `ferry bundle unpack --trust PUBLIC --data-dir DATA BUNDLE`, asserting success.
pub fn unpack_into(bundle: &Path, public: &Path, data: &Path) {
    let out = super::mirror::ferry()
        .args(["bundle", "unpack", "--trust"])
        .arg(public)
        .arg("--data-dir")
        .arg(data)
        .arg(bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "unpack {}: {}",
        bundle.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}
