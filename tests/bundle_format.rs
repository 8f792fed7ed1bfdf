//! The bundle format as users meet it: `ferry bundle keygen | inspect | verify`
//! on bundles written by the `bundles` library, stock zstd/tar/minisign on the
//! same files, and hand-crafted malicious bundles that verify must refuse
//! with exit code 3 and the entry named.

mod common;

use common::bundles::{
    framed, make_tree, manifest_for, noise, sha256_hex, signed_head, tar_file, ustar_header,
    write_dir,
};
use ferry_bundles::manifest::FileEntry;
use ferry_bundles::WriteOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .output()
        .expect("run ferry")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A temp dir with a signing key (made by `ferry bundle keygen`) and a tree.
struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Case {
        let dir = tempfile::tempdir().expect("tempdir");
        let case = Case { dir };
        let o = ferry(&["bundle", "keygen", "-o", s(&case.path("key"))]);
        assert!(o.status.success(), "{}", text(&o));
        make_tree(
            &case.path("tree"),
            &[
                ("bin/linux-amd64/kubelet", noise(1, 700_000), 0o755),
                ("bin/linux-amd64/etcd", noise(2, 200_000), 0o755),
                (
                    "images/oci-layout",
                    b"{\"imageLayoutVersion\":\"1.0.0\"}".to_vec(),
                    0o644,
                ),
                ("images/index.json", b"{\"manifests\":[]}".to_vec(), 0o644),
                ("images/blobs/sha256/0000", noise(3, 90_000), 0o644),
                (
                    "manifests/coredns.yaml",
                    b"kind: Deployment\n".repeat(500),
                    0o644,
                ),
            ],
        );
        case
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn key(&self) -> PathBuf {
        self.path("key.key")
    }

    fn public(&self) -> PathBuf {
        self.path("key.pub")
    }

    fn small_frames() -> WriteOptions {
        WriteOptions {
            frame_size: 128 * 1024,
            level: 3,
            split: None,
            mtime: 1_717_200_000,
        }
    }

    fn bundle(&self, name: &str, signed: bool, opts: &WriteOptions) -> PathBuf {
        let out = self.path(name);
        let key = self.key();
        write_dir(
            &self.path("tree"),
            &out,
            signed.then_some(key.as_path()),
            opts,
        );
        out
    }

    fn verify(&self, bundle: &Path) -> Output {
        ferry(&["bundle", "verify", s(bundle), "--trust", s(&self.public())])
    }

    /// verify must exit 3 and the message must contain every `needles`.
    fn rejects(&self, bundle: &Path, needles: &[&str]) {
        let o = self.verify(bundle);
        let t = text(&o);
        assert_eq!(
            o.status.code(),
            Some(3),
            "expected exit 3 for {}: {t}",
            bundle.display()
        );
        for n in needles {
            assert!(t.contains(n), "message does not name {n:?}: {t}");
        }
    }
}

#[test]
fn keygen_writes_a_protected_pair_and_refuses_to_overwrite() {
    use std::os::unix::fs::PermissionsExt;
    let c = Case::new();
    assert_eq!(
        std::fs::metadata(c.key()).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let pubkey = std::fs::read_to_string(c.public()).unwrap();
    assert!(
        pubkey.starts_with("untrusted comment: minisign public key"),
        "{pubkey}"
    );
    let before = std::fs::read(c.key()).unwrap();
    let o = ferry(&["bundle", "keygen", "-o", s(&c.path("key"))]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("already exists"), "{}", text(&o));
    assert_eq!(std::fs::read(c.key()).unwrap(), before);
}

#[test]
fn signed_bundle_verifies_and_stock_tools_read_it() {
    let c = Case::new();
    let b = c.bundle("prod.tar.zst", true, &Case::small_frames());
    let o = c.verify(&b);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("6 files"), "{}", text(&o));

    // zstd -dc | tar -x yields the same files.
    let x = c.path("x");
    std::fs::create_dir(&x).unwrap();
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!("zstd -q -dc '{}' | tar -x -C '{}'", s(&b), s(&x)))
        .status()
        .unwrap();
    assert!(st.success());
    for rel in [
        "bin/linux-amd64/kubelet",
        "bin/linux-amd64/etcd",
        "images/index.json",
        "manifests/coredns.yaml",
    ] {
        assert_eq!(
            std::fs::read(x.join(rel)).unwrap(),
            std::fs::read(c.path("tree").join(rel)).unwrap(),
            "{rel}"
        );
    }
    // Stock minisign verifies bundle.json with the key from `ferry bundle keygen`.
    let m = Command::new("minisign")
        .arg("-Vm")
        .arg(x.join("bundle.json"))
        .arg("-p")
        .arg(c.public())
        .output()
        .unwrap();
    assert!(m.status.success(), "{}", text(&m));
    let listed = format!(
        "sha256={}",
        sha256_hex(&std::fs::read(x.join("bundle.json")).unwrap())
    );
    assert!(text(&m).contains(&listed), "{}", text(&m));

    // A trust directory holding the key works too.
    let trust = c.path("trusted");
    std::fs::create_dir(&trust).unwrap();
    std::fs::copy(c.public(), trust.join("site.pub")).unwrap();
    let o = ferry(&["bundle", "verify", s(&b), "--trust", s(&trust)]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn identical_inputs_give_identical_bundles() {
    let c = Case::new();
    let a = c.bundle("a.tar.zst", false, &Case::small_frames());
    let b = c.bundle("b.tar.zst", false, &Case::small_frames());
    assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
}

#[test]
fn inspect_reads_only_the_manifest() {
    let c = Case::new();
    let b = c.bundle("prod.tar.zst", true, &Case::small_frames());
    let o = ferry(&["bundle", "inspect", s(&b), "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["files"], 6);
    assert_eq!(v["signed"], true);
    assert_eq!(v["manifest"]["kubernetes"], "1.29.6");
    assert_eq!(
        v["content_bytes"],
        700_000 + 200_000 + 90_000 + 30 + 16 + 17 * 500
    );

    // Wreck everything after the first frame: inspect still works, verify does not.
    let mut bytes = std::fs::read(&b).unwrap();
    let first = zstd::zstd_safe::find_frame_compressed_size(&bytes).unwrap();
    for byte in &mut bytes[first + 10..] {
        *byte = 0x5A;
    }
    std::fs::write(&b, &bytes).unwrap();
    let o = ferry(&["bundle", "inspect", s(&b)]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("kubernetes:  1.29.6"), "{}", text(&o));
    c.rejects(&b, &["verification failed"]);
}

#[test]
fn split_parts_verify_in_place_and_a_damaged_part_is_named() {
    let c = Case::new();
    let opts = WriteOptions {
        split: Some(300_000),
        ..Case::small_frames()
    };
    let outputs = c.bundle("prod.tar.zst", true, &opts);
    assert!(
        !outputs.exists(),
        "no joined file is written when splitting"
    );
    let json = c.path("prod.parts.json");
    let parts: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let names: Vec<String> = parts["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["file"].as_str().unwrap().to_string())
        .collect();
    assert!(names.len() >= 3, "{names:?}");
    assert_eq!(names[0], "prod.tar.zst.000");

    // The parts.json, the first part, or the joined name all open the parts.
    for entry in [
        json.clone(),
        c.path("prod.tar.zst.000"),
        c.path("prod.tar.zst"),
    ] {
        let o = c.verify(&entry);
        assert!(o.status.success(), "{}", text(&o));
        let o = ferry(&["bundle", "inspect", s(&entry), "--json"]);
        assert!(o.status.success(), "{}", text(&o));
    }
    // The joined parts are what stock zstd reads.
    let joined: String = names
        .iter()
        .map(|n| format!("'{}' ", s(&c.path(n))))
        .collect();
    let x = c.path("x");
    std::fs::create_dir(&x).unwrap();
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cat {joined} | zstd -q -dc | tar -x -C '{}'",
            s(&x)
        ))
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        std::fs::read(x.join("bin/linux-amd64/kubelet")).unwrap(),
        noise(1, 700_000)
    );

    // A flipped byte in the second part: exit 3 naming that part.
    let victim = c.path(&names[1]);
    let mut data = std::fs::read(&victim).unwrap();
    data[1234] ^= 0x10;
    std::fs::write(&victim, &data).unwrap();
    c.rejects(&json, &[&names[1]]);
    data[1234] ^= 0x10;
    std::fs::write(&victim, &data).unwrap();

    // A missing last part is named too.
    std::fs::rename(c.path(names.last().unwrap()), c.path("moved")).unwrap();
    c.rejects(&json, &[names.last().unwrap(), "missing"]);
}

#[test]
fn flipped_bytes_and_truncation_are_refused() {
    let c = Case::new();
    let b = c.bundle("prod.tar.zst", true, &Case::small_frames());
    let good = std::fs::read(&b).unwrap();
    let first = zstd::zstd_safe::find_frame_compressed_size(&good).unwrap();
    // In the manifest frame, in content frames, in the seek table and its footer.
    for at in [
        20,
        first / 2,
        first + 100,
        good.len() / 2,
        good.len() * 9 / 10,
        good.len() - 30,
        good.len() - 1,
    ] {
        let mut bad = good.clone();
        bad[at] ^= 0x04;
        std::fs::write(&b, &bad).unwrap();
        c.rejects(&b, &["verification failed"]);
    }
    // Damage inside content is reported against the entry being read.
    let mut bad = good.clone();
    bad[good.len() / 2] ^= 0x04;
    std::fs::write(&b, &bad).unwrap();
    let o = c.verify(&b);
    assert_eq!(o.status.code(), Some(3));
    let files = [
        "bin/linux-amd64/kubelet",
        "bin/linux-amd64/etcd",
        "images/blobs/sha256/0000",
    ];
    assert!(
        files.iter().any(|f| text(&o).contains(f)),
        "no entry named: {}",
        text(&o)
    );
    for len in [first - 5, good.len() / 3, good.len() - 40, good.len() - 1] {
        std::fs::write(&b, &good[..len]).unwrap();
        c.rejects(&b, &["verification failed"]);
    }
    std::fs::write(&b, &good).unwrap();
    let o = c.verify(&b);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn unsigned_and_wrongly_signed_bundles_are_refused() {
    let c = Case::new();
    let unsigned = c.bundle("u.tar.zst", false, &Case::small_frames());
    c.rejects(&unsigned, &["bundle.json.minisig", "not signed"]);
    let o = ferry(&[
        "bundle",
        "verify",
        s(&unsigned),
        "--insecure-skip-signature",
    ]);
    assert!(o.status.success(), "{}", text(&o));

    let signed = c.bundle("s.tar.zst", true, &Case::small_frames());
    let o = ferry(&["bundle", "keygen", "-o", s(&c.path("other"))]);
    assert!(o.status.success());
    let o = ferry(&[
        "bundle",
        "verify",
        s(&signed),
        "--trust",
        s(&c.path("other.pub")),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("not trusted"), "{}", text(&o));
}

/// Crafted bundles: a signed manifest listing `a.txt` and `b.txt`, and a
/// body the test chooses. The signature is valid, so only the entry rules
/// can refuse them.
struct Crafted<'a> {
    case: &'a Case,
    manifest: ferry_bundles::BundleManifest,
}

impl<'a> Crafted<'a> {
    const A: &'static [u8] = b"content of a\n";
    const B: &'static [u8] = b"content of b\n";

    fn new(case: &'a Case) -> Self {
        let entry = |p: &str, d: &[u8]| FileEntry {
            path: p.into(),
            size: d.len() as u64,
            sha256: sha256_hex(d),
            mode: 0o644,
            in_base: false,
        };
        Crafted {
            case,
            manifest: manifest_for(vec![entry("a.txt", Self::A), entry("b.txt", Self::B)]),
        }
    }

    fn write(&self, name: &str, body: &[u8]) -> PathBuf {
        let key = self.case.key();
        let bytes = framed(&signed_head(&self.manifest, Some(&key)), body);
        let p = self.case.path(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn good_body() -> Vec<u8> {
        let mut b = tar_file("a.txt", Self::A, 0o644);
        b.extend(tar_file("b.txt", Self::B, 0o644));
        b
    }
}

#[test]
fn crafted_control_bundle_verifies() {
    // The crafting itself is sound: the honest body passes.
    let c = Case::new();
    let k = Crafted::new(&c);
    let o = c.verify(&k.write("good.tar.zst", &Crafted::good_body()));
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn entry_rules_are_enforced() {
    let c = Case::new();
    let k = Crafted::new(&c);
    let a = || tar_file("a.txt", Crafted::A, 0o644);
    let b = || tar_file("b.txt", Crafted::B, 0o644);
    let cat = |parts: Vec<Vec<u8>>| parts.concat();
    let link =
        |name: &str, kind: u8, target: &str| ustar_header(name, 0, kind, target, 0o777).to_vec();

    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "unlisted",
            cat(vec![a(), b(), tar_file("c.txt", b"extra", 0o644)]),
            vec!["c.txt", "not listed"],
        ),
        ("missing", a(), vec!["b.txt", "missing"]),
        (
            "dotdot",
            cat(vec![a(), tar_file("../escape.txt", b"x", 0o644), b()]),
            vec!["../escape.txt", ".."],
        ),
        (
            "nested-dotdot",
            cat(vec![a(), tar_file("sub/../../x", b"x", 0o644), b()]),
            vec!["sub/../../x", ".."],
        ),
        (
            "absolute",
            cat(vec![tar_file("/etc/cron.d/evil", b"x", 0o644), a(), b()]),
            vec!["/etc/cron.d/evil", "absolute"],
        ),
        (
            "symlink",
            cat(vec![a(), link("b.txt", b'2', "/etc/shadow"), b()]),
            vec!["b.txt", "symbolic link"],
        ),
        (
            "hardlink",
            cat(vec![a(), link("b.txt", b'1', "a.txt")]),
            vec!["b.txt", "hard link"],
        ),
        (
            "device",
            cat(vec![a(), link("b.txt", b'3', "")]),
            vec!["b.txt", "character device"],
        ),
        (
            "fifo",
            cat(vec![a(), link("b.txt", b'6', "")]),
            vec!["b.txt", "fifo"],
        ),
        (
            "directory",
            cat(vec![link("a.txt", b'5', ""), a(), b()]),
            vec!["a.txt", "directory"],
        ),
        (
            "duplicate",
            cat(vec![a(), a(), b()]),
            vec!["a.txt", "duplicate"],
        ),
        (
            "altered",
            cat(vec![a(), tar_file("b.txt", b"content of B\n", 0o644)]),
            vec!["b.txt", "sha256"],
        ),
        (
            "resized",
            cat(vec![a(), tar_file("b.txt", b"content of bb\n", 0o644)]),
            vec!["b.txt", "bytes"],
        ),
        (
            "setuid",
            cat(vec![tar_file("a.txt", Crafted::A, 0o4755), b()]),
            vec!["a.txt", "mode"],
        ),
    ];
    for (name, body, needles) in cases {
        let p = k.write(&format!("{name}.tar.zst"), &body);
        c.rejects(&p, &needles);
    }
}

#[test]
fn crafted_symlink_is_refused_without_a_seek_table_too() {
    // A single plain zstd frame (no seek table): the streaming path applies
    // the same rules.
    let c = Case::new();
    let k = Crafted::new(&c);
    let mut tar = signed_head(&k.manifest, Some(&c.key()));
    tar.extend(tar_file("a.txt", Crafted::A, 0o644));
    tar.extend(ustar_header("b.txt", 0, b'2', "/etc/passwd", 0o777));
    tar.extend([0u8; 1024]);
    let p = c.path("plain.tar.zst");
    std::fs::write(&p, zstd::bulk::compress(&tar, 3).unwrap()).unwrap();
    c.rejects(&p, &["b.txt", "symbolic link"]);
}

#[test]
fn a_tar_that_ends_inside_an_entry_is_truncated() {
    // Well-formed zstd around a tar cut short inside b.txt's content.
    let c = Case::new();
    let k = Crafted::new(&c);
    let mut tar = signed_head(&k.manifest, Some(&c.key()));
    tar.extend(tar_file("a.txt", Crafted::A, 0o644));
    tar.extend(ustar_header(
        "b.txt",
        Crafted::B.len() as u64,
        b'0',
        "",
        0o644,
    ));
    tar.extend_from_slice(&Crafted::B[..5]);
    let p = c.path("cut.tar.zst");
    std::fs::write(&p, zstd::bulk::compress(&tar, 3).unwrap()).unwrap();
    c.rejects(&p, &["b.txt", "truncated"]);
}

/// Keeps every file a sink is handed, reading in small pieces so an entry
/// spans many reads (the reader hashes on its own thread beside them).
#[derive(Default)]
struct Keep(Vec<(String, Vec<u8>)>);

impl ferry_bundles::EntrySink for Keep {
    fn file(
        &mut self,
        entry: &FileEntry,
        content: &mut dyn std::io::Read,
    ) -> ferry_bundles::Result<()> {
        let mut all = Vec::new();
        let mut buf = [0u8; 5];
        loop {
            let n = content
                .read(&mut buf)
                .map_err(|e| ferry_bundles::Error::io(&entry.path, e))?;
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
        }
        self.0.push((entry.path.clone(), all));
        Ok(())
    }
}

#[test]
fn a_sink_that_reads_content_still_gets_hash_checked_entries() {
    let c = Case::new();
    let k = Crafted::new(&c);
    let trust =
        || ferry_bundles::Trust::Keys(ferry_bundles::TrustedKeys::load(&[c.public()]).unwrap());
    let open = |p: &Path| ferry_bundles::BundleSource::open(p).unwrap();

    let good = k.write("good-sink.tar.zst", &Crafted::good_body());
    let mut sink = Keep::default();
    ferry_bundles::verify_and_extract(&open(&good), &trust(), &mut sink).unwrap();
    assert_eq!(
        sink.0,
        vec![
            ("a.txt".to_string(), Crafted::A.to_vec()),
            ("b.txt".to_string(), Crafted::B.to_vec())
        ]
    );

    // Same size, one byte changed: only the hash can tell.
    let body = [
        tar_file("a.txt", Crafted::A, 0o644),
        tar_file("b.txt", b"content of B\n", 0o644),
    ]
    .concat();
    let altered = k.write("altered-sink.tar.zst", &body);
    let mut sink = Keep::default();
    let e = ferry_bundles::verify_and_extract(&open(&altered), &trust(), &mut sink).unwrap_err();
    assert!(e.is_verification(), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("b.txt") && msg.contains("sha256"), "{msg}");
}
