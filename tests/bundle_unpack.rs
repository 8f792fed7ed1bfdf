//! `ferry bundle unpack`: a signed bundle lands in the data dir (shared blob
//! store + bundle dir), a second run says "already unpacked" and changes
//! nothing, split parts unpack in place, and every kind of damage exits 3
//! with the data dir byte-for-byte as it was.

mod common;

use common::mirror::{ferry, tree_digest};
use common::testbundle::{craft, keypair, make_bundle, TestBundle};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

const REFS_A: &[&str] = &[
    "registry.k8s.io/pause:3.9",
    "registry.k8s.io/coredns/coredns:v1.11.1",
];
const REFS_B: &[&str] = &["registry.k8s.io/pause:3.9", "quay.io/cilium/cilium:v1.15.6"];

fn unpack(bundle: &Path, trust: &Path, data: &Path, extra: &[&str]) -> Output {
    ferry()
        .args(["bundle", "unpack", "--json", "--trust"])
        .arg(trust)
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .arg(bundle)
        .output()
        .unwrap()
}

fn report(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "unpack failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("--json report")
}

fn check_unpacked(data: &Path, b: &TestBundle) {
    let bundle_dir = data.join("bundles").join(&b.manifest.name);
    for f in &b.manifest.files {
        let path = match f.path.strip_prefix("images/blobs/sha256/") {
            Some(hex) => data.join("blobs/sha256").join(hex),
            None => bundle_dir.join(&f.path),
        };
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(common::mirror::sha256_hex(&bytes), f.sha256, "{}", f.path);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, f.mode, "{} mode", f.path);
    }
    assert!(
        !bundle_dir.join("images/blobs").exists(),
        "image blobs belong in the shared store"
    );
    assert_eq!(
        std::fs::read(bundle_dir.join("bundle.json")).unwrap(),
        b.manifest.to_bytes()
    );
    assert!(!data.join(".staging").exists(), "staging dir left behind");
}

#[test]
fn unpacks_verified_and_a_second_run_changes_nothing() {
    let dir = tempfile::Builder::new()
        .prefix("ferry-unpack-")
        .tempdir()
        .unwrap();
    let (public, secret) = keypair(dir.path(), "release");
    let a = make_bundle(
        dir.path(),
        "prod-a",
        REFS_A,
        100_000,
        300_000,
        Some(&secret),
    );
    let data = dir.path().join("data");

    let first = report(&unpack(&a.path, &public, &data, &[]));
    assert_eq!(first["already_unpacked"], false);
    assert_eq!(first["name"], "prod-a");
    assert_eq!(first["files"], a.manifest.files.len() as u64);
    check_unpacked(&data, &a);
    // The stock tool accepts the unpacked bundle.json and signature.
    let bundle_dir = data.join("bundles/prod-a");
    let st = std::process::Command::new("minisign")
        .args(["-V", "-q", "-p"])
        .arg(&public)
        .arg("-m")
        .arg(bundle_dir.join("bundle.json"))
        .status()
        .unwrap();
    assert!(st.success(), "minisign -V rejects the unpacked bundle.json");

    let before = tree_digest(&data);
    let mtime = std::fs::metadata(&bundle_dir).unwrap().modified().unwrap();
    let again = unpack(&a.path, &public, &data, &[]);
    let again_report = report(&again);
    assert_eq!(again_report["already_unpacked"], true, "{again_report}");
    assert_eq!(tree_digest(&data), before);
    assert_eq!(
        std::fs::metadata(&bundle_dir).unwrap().modified().unwrap(),
        mtime
    );
    // Human output says so.
    let human = ferry()
        .args(["bundle", "unpack", "--trust"])
        .arg(&public)
        .arg("--data-dir")
        .arg(&data)
        .arg(&a.path)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&human.stdout).contains("already unpacked"));

    // A second bundle shares the pause image: its blobs are reused, not rewritten.
    let b = make_bundle(
        dir.path(),
        "prod-b",
        REFS_B,
        100_000,
        300_000,
        Some(&secret),
    );
    let rb = report(&unpack(&b.path, &public, &data, &[]));
    assert!(rb["blobs_reused"].as_u64().unwrap() > 0, "{rb}");
    assert!(rb["blobs_new"].as_u64().unwrap() > 0, "{rb}");
    check_unpacked(&data, &a);
    check_unpacked(&data, &b);

    // If the unpacked copy lost a file, a re-run repairs it instead of claiming it is done.
    let kubectl = data.join("bundles/prod-b/bin/linux-arm64/kubectl");
    std::fs::remove_file(&kubectl).unwrap();
    let repaired = report(&unpack(&b.path, &public, &data, &[]));
    assert_eq!(repaired["already_unpacked"], false);
    check_unpacked(&data, &b);
}

#[test]
fn unpacks_split_parts_in_place() {
    let dir = tempfile::Builder::new()
        .prefix("ferry-unpack-parts-")
        .tempdir()
        .unwrap();
    let (public, secret) = keypair(dir.path(), "release");
    let a = make_bundle(dir.path(), "prod", REFS_A, 200_000, 600_000, Some(&secret));
    // Re-write the same content split into parts with the stock tools' view unchanged.
    let parts_dir = dir.path().join("parts");
    std::fs::create_dir_all(&parts_dir).unwrap();
    let whole = std::fs::read(&a.path).unwrap();
    let split = split_with_library(&a, &parts_dir, &secret);
    assert!(split.len() > 2, "expected several parts, got {split:?}");
    let parts_json = split
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".parts.json"))
        .unwrap();
    let first_part = split
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".000"))
        .unwrap();
    let _ = whole;

    for (i, input) in [parts_json, first_part].into_iter().enumerate() {
        let data = dir.path().join(format!("data{i}"));
        let r = report(&unpack(input, &public, &data, &[]));
        assert_eq!(r["already_unpacked"], false);
        check_unpacked(&data, &a);
    }

    // A damaged part is named, exits 3 and leaves nothing behind.
    let data = dir.path().join("data-bad");
    let part = split
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".001"))
        .unwrap();
    let mut bytes = std::fs::read(part).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(part, bytes).unwrap();
    let out = unpack(parts_json, &public, &data, &[]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(".001"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !data.exists(),
        "a failed unpack into a new data dir must not leave it behind"
    );
}

/// The same bundle content written again as parts (the writer's --split).
fn split_with_library(b: &TestBundle, out_dir: &Path, secret: &Path) -> Vec<std::path::PathBuf> {
    // Rebuild the content tree from the bundle with the stock tools, then write parts.
    let tree = out_dir.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zstd -q -dc '{}' | tar -x -C '{}'",
            b.path.display(),
            tree.display()
        ))
        .status()
        .unwrap();
    assert!(st.success());
    let contents: Vec<ferry_bundles::ContentSource> = b
        .manifest
        .files
        .iter()
        .map(|f| ferry_bundles::ContentSource {
            entry: f.clone(),
            source: tree.join(&f.path),
        })
        .collect();
    let bytes = b.manifest.to_bytes();
    let sig = ferry_bundles::SigningKey::load(secret)
        .unwrap()
        .sign(&bytes, &ferry_bundles::trusted_comment(&b.manifest, &bytes))
        .unwrap();
    let opts = ferry_bundles::WriteOptions {
        frame_size: 256 << 10,
        split: Some(400 << 10),
        ..Default::default()
    };
    let report = ferry_bundles::write_bundle(
        &out_dir.join("prod.tar.zst"),
        &bytes,
        Some(&sig),
        &contents,
        &opts,
    )
    .unwrap();
    report.outputs
}

#[test]
fn every_kind_of_damage_exits_3_and_leaves_the_data_dir_unchanged() {
    let dir = tempfile::Builder::new()
        .prefix("ferry-tamper-")
        .tempdir()
        .unwrap();
    let (public, secret) = keypair(dir.path(), "release");
    let (_, foreign_secret) = keypair(dir.path(), "foreign");
    let data = dir.path().join("data");
    // A previously unpacked bundle is present; the damaged ones share blobs with it.
    let a = make_bundle(dir.path(), "prod-a", REFS_A, 50_000, 200_000, Some(&secret));
    report(&unpack(&a.path, &public, &data, &[]));
    let b = make_bundle(dir.path(), "prod-b", REFS_B, 50_000, 200_000, Some(&secret));
    let before = tree_digest(&data);
    let good = std::fs::read(&b.path).unwrap();
    let bad = dir.path().join("bad.tar.zst");

    let expect_rejected = |label: &str, bundle: &Path, extra: &[&str]| {
        let out = unpack(bundle, &public, &data, extra);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(3),
            "{label}: exit {:?}: {stderr}",
            out.status.code()
        );
        assert!(stderr.contains("verification failed"), "{label}: {stderr}");
        assert_eq!(tree_digest(&data), before, "{label}: data dir changed");
        stderr
    };

    // Byte flips spread over the whole file (manifest frame, content frames, seek table).
    let mut seed: u64 = 0x5eed_f00d;
    let mut offsets: Vec<usize> = (0..40)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % good.len() as u64) as usize
        })
        .collect();
    offsets.extend([0, 5, good.len() / 2, good.len() - 1, good.len() - 12]);
    for off in offsets {
        let mut bytes = good.clone();
        bytes[off] ^= 0x01 << (off % 8);
        std::fs::write(&bad, &bytes).unwrap();
        expect_rejected(&format!("flip at {off}"), &bad, &[]);
    }
    // Truncations.
    for cut in [
        good.len() - 1,
        good.len() - 9,
        good.len() * 3 / 4,
        good.len() / 3,
        100,
    ] {
        std::fs::write(&bad, &good[..cut]).unwrap();
        expect_rejected(&format!("truncated to {cut}"), &bad, &[]);
    }

    // Structural defects, crafted with Python's tarfile (two frames, no seek table).
    let control = dir.path().join("control.tar.zst");
    craft(&b.path, &control, &["same"]);
    let blob = b
        .manifest
        .files
        .iter()
        .find(|f| f.path.starts_with("images/blobs/"))
        .unwrap()
        .path
        .clone();
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            "unlisted extra entry",
            vec!["extra", "zz-extra.txt"],
            "zz-extra.txt",
        ),
        (
            "missing entry",
            vec!["drop", "manifests/coredns.yaml"],
            "manifests/coredns.yaml",
        ),
        ("missing blob", vec!["drop", &blob], &blob),
        ("../ path", vec!["path", "../escape.txt"], "escape"),
        (
            "nested ../ path",
            vec!["path", "bin/../../escape.txt"],
            "escape",
        ),
        (
            "absolute path",
            vec!["path", "/tmp/ferry-absolute.txt"],
            "ferry-absolute",
        ),
        (
            "symlink entry",
            vec!["symlink", "zz-link", "/etc/passwd"],
            "zz-link",
        ),
        ("missing signature", vec!["unsigned"], "minisig"),
    ];
    for (label, mutation, named) in cases {
        craft(&b.path, &bad, &mutation);
        let stderr = expect_rejected(label, &bad, &[]);
        assert!(
            stderr.contains(named),
            "{label}: error does not name {named}: {stderr}"
        );
    }
    assert!(!Path::new("/tmp/ferry-absolute.txt").exists());
    assert!(!dir.path().join("escape.txt").exists());

    // Signed by a key that is not trusted; and not signed at all.
    let foreign = make_bundle(dir.path(), "prod-f", REFS_B, 0, 1000, Some(&foreign_secret));
    expect_rejected("foreign signature", &foreign.path, &[]);
    let unsigned = make_bundle(dir.path(), "prod-u", REFS_B, 0, 1000, None);
    expect_rejected("unsigned bundle", &unsigned.path, &[]);
    // Even with --insecure-skip-signature the hashes are checked.
    let mut bytes = std::fs::read(&unsigned.path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&bad, &bytes).unwrap();
    expect_rejected("insecure but damaged", &bad, &["--insecure-skip-signature"]);

    // Control: the crafted encoding itself is accepted, so the cases above failed for their defect.
    report(&unpack(&control, &public, &data, &[]));
    check_unpacked(&data, &b);
}

/// The store records how a bundle's signature was trusted at unpack:
/// `--insecure-skip-signature` is remembered (and `ferry status` warns of
/// it) until the bundle is unpacked again with a trusted key.
#[test]
fn an_unpack_that_skipped_the_signature_is_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let (public, secret) = keypair(dir.path(), "k");
    let a = make_bundle(
        dir.path(),
        "prod-a",
        REFS_A,
        100_000,
        300_000,
        Some(&secret),
    );
    let data = dir.path().join("data");
    let record = data
        .join("bundles/prod-a")
        .join(ferry_installer::store::TRUST_RECORD);
    let skipped = ferry()
        .args([
            "bundle",
            "unpack",
            "--insecure-skip-signature",
            "--data-dir",
        ])
        .arg(&data)
        .arg(&a.path)
        .output()
        .unwrap();
    assert!(
        skipped.status.success(),
        "{}",
        String::from_utf8_lossy(&skipped.stderr)
    );
    let store = ferry_installer::store::Store::open(&data);
    assert_eq!(store.signature_checked("prod-a"), Some(false));
    assert!(std::fs::read_to_string(&record)
        .unwrap()
        .contains("NOT checked"));
    let status = ferry()
        .args(["status", "--inventory"])
        .arg(dir.path().join("no-such-hosts"))
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&status.stderr);
    assert!(
        err.contains("prod-a") && err.contains("--insecure-skip-signature"),
        "{err}"
    );
    let inspect = |json: bool| {
        let mut c = ferry();
        c.args(["bundle", "inspect", "--data-dir"])
            .arg(&data)
            .arg(&a.path);
        if json {
            c.arg("--json");
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(
        inspect(false).contains("WITHOUT a signature check (--insecure-skip-signature)"),
        "{}",
        inspect(false)
    );

    report(&unpack(&a.path, &public, &data, &[]));
    assert_eq!(store.signature_checked("prod-a"), Some(true));
    assert!(inspect(false).contains("(signature checked at unpack)"));
    let json: serde_json::Value = serde_json::from_str(&inspect(true)).unwrap();
    assert_eq!(json["unpacked"]["signature_checked"], true, "{json}");
}

/// One unpack at a time per data dir, and what a killed unpack left in
/// `.staging` is swept by the next one.
#[test]
fn unpack_holds_a_lock_and_sweeps_what_a_killed_unpack_left() {
    let dir = tempfile::tempdir().unwrap();
    let (public, secret) = keypair(dir.path(), "k");
    let a = make_bundle(
        dir.path(),
        "prod-a",
        REFS_A,
        100_000,
        300_000,
        Some(&secret),
    );
    let data = dir.path().join("data");
    let stale = data.join(".staging/unpack-killed/blobs");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("half-written"), b"partial").unwrap();

    // Another unpack holds the lock (util-linux flock on .staging itself).
    use std::os::unix::process::CommandExt;
    let mut holder = std::process::Command::new("flock")
        .arg("-n")
        .arg(data.join(".staging"))
        .args(["sleep", "30"])
        .process_group(0)
        .spawn()
        .expect("flock (util-linux)");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let busy = unpack(&a.path, &public, &data, &[]);
    // flock's child holds the lock too: end the whole group.
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", holder.id())])
        .status();
    let _ = holder.wait();
    let err = String::from_utf8_lossy(&busy.stderr);
    assert!(
        !busy.status.success() && err.contains("another ferry unpack"),
        "{err}"
    );
    assert!(stale.exists(), "a refused unpack touched .staging");

    report(&unpack(&a.path, &public, &data, &[]));
    assert!(
        !data.join(".staging/unpack-killed").exists(),
        "stale staging left"
    );
    check_unpacked(&data, &a);
}

/// Ctrl-C in the middle of an unpack removes its staging directory (and the
/// data dir it created) and moves nothing into place.
#[test]
fn an_interrupted_unpack_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (public, secret) = keypair(dir.path(), "k");
    let a = make_bundle(
        dir.path(),
        "prod-a",
        REFS_A,
        8_000_000,
        2_000_000,
        Some(&secret),
    );
    let data = dir.path().join("data");
    let mut child = ferry()
        .args(["bundle", "unpack", "--trust"])
        .arg(&public)
        .arg("--data-dir")
        .arg(&data)
        .arg(&a.path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let staging = data.join(".staging");
    let started = std::time::Instant::now();
    let in_progress = || {
        std::fs::read_dir(&staging)
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("unpack-"))
            })
            .unwrap_or(false)
    };
    while !in_progress() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the unpack ended before its staging directory was seen"
        );
        assert!(
            started.elapsed().as_secs() < 120,
            "no staging directory appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // Stopped first, so the interrupt lands mid-unpack whatever the load.
    for signal in ["-STOP", "-INT", "-CONT"] {
        let killed = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        assert!(killed.success());
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert!(!staging.exists(), "staging left: {:?}", walk(&staging));
    assert!(
        !data.join("bundles/prod-a").exists(),
        "a bundle was moved into place"
    );
    assert!(!data.exists(), "the data dir this unpack created is left");

    report(&unpack(&a.path, &public, &data, &[]));
    check_unpacked(&data, &a);
}

/// Every path under `dir`, relative to it.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        out.push(p.strip_prefix(dir).unwrap().display().to_string());
        if p.is_dir() {
            let name = e.file_name().to_string_lossy().into_owned();
            out.extend(walk(&p).into_iter().map(|c| format!("{name}/{c}")));
        }
    }
    out
}
