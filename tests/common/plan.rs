//! Inputs for `ferry plan` tests: the production guide's example (tests/fixtures/guide)
//! and a real `.tar.zst` bundle made from its bundle.json with stand-in content.

use ferry_bundles::{write_bundle, BundleManifest, ContentSource, WriteOptions};
use std::path::{Path, PathBuf};

pub fn guide_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/guide")
}

/// Writes `<dir>/guide.tar.zst` (unsigned): the fixture's bundle.json with its
/// files: the fixture upstream's addon release artifacts (mkartifacts.py), the
/// test stand-in as helm (it renders the fixture charts), and for every other
/// file a small stand-in; sizes and sha256 are recorded as they are.
pub fn guide_bundle(dir: &Path) -> PathBuf {
    let bytes = std::fs::read(guide_dir().join("bundle.json")).expect("fixture");
    let mut manifest = BundleManifest::from_bytes(&bytes).expect("fixture parses");
    let content = dir.join("content");
    let upstream = dir.join("upstream");
    let made = std::process::Command::new("python3")
        .arg(guide_dir().join("../mkartifacts.py"))
        .arg(&upstream)
        .status()
        .expect("run mkartifacts.py");
    assert!(made.success(), "mkartifacts.py failed");
    let components = manifest.components.clone();
    let mut sources = Vec::new();
    for f in manifest.files.iter_mut() {
        let component = components.iter().find(|c| c.path == f.path);
        let data = match component {
            Some(c) if c.path.starts_with("manifests/") => {
                std::fs::read(upstream.join(c.source.trim_start_matches("https://")))
                    .expect("fixture artifact")
            }
            Some(c) if c.name == "helm" => {
                std::fs::read(guide_dir().join("../standins/kube-standin.py")).expect("stand-in")
            }
            _ => format!("stand-in for {}\n", f.path).into_bytes(),
        };
        if f.path.starts_with("bin/") {
            f.mode = 0o755;
        }
        let path = content.join(&f.path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, &data).expect("write");
        f.size = data.len() as u64;
        f.sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data));
        sources.push(ContentSource {
            entry: f.clone(),
            source: path,
        });
    }
    let out = dir.join("guide.tar.zst");
    write_bundle(
        &out,
        &manifest.to_bytes(),
        None,
        &sources,
        &WriteOptions::default(),
    )
    .expect("write bundle");
    out
}
