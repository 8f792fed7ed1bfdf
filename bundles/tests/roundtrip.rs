//! Writer and reader against each other, plus the stock tools (zstd, tar,
//! minisign) on what the writer produces.

use ferry_bundles::manifest::{BundleManifest, FileEntry};
use ferry_bundles::split::PartsManifest;
use ferry_bundles::{
    generate_keypair, read_manifest, trusted_comment, verify_and_extract, write_bundle,
    BundleSource, ContentSource, EntrySink, Error, NullSink, SigningKey, Trust, TrustedKeys,
    WriteOptions,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Deterministic pseudo-random bytes (xorshift), so content does not compress away.
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

struct Fixture {
    dir: tempfile::TempDir,
    manifest: BundleManifest,
    contents: Vec<ContentSource>,
}

impl Fixture {
    fn new(files: &[(&str, Vec<u8>, u32)]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let mut entries: Vec<(FileEntry, PathBuf)> = Vec::new();
        for (path, data, mode) in files {
            let p = src.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, data).unwrap();
            let entry = FileEntry {
                path: path.to_string(),
                size: data.len() as u64,
                sha256: hex::encode(Sha256::digest(data)),
                mode: *mode,
                in_base: false,
            };
            entries.push((entry, p));
        }
        entries.sort_by(|a, b| a.0.path.cmp(&b.0.path));
        let manifest = BundleManifest {
            schema: 1,
            name: "test".into(),
            created: "2024-01-01T00:00:00Z".into(),
            builder: "ferry test".into(),
            kubernetes: "1.29.6".into(),
            platforms: vec!["linux/amd64".into()],
            components: vec![],
            images: vec![],
            files: entries.iter().map(|(e, _)| e.clone()).collect(),
            base: None,
            os_packages: Vec::new(),
        };
        let contents = entries
            .into_iter()
            .map(|(entry, source)| ContentSource { entry, source })
            .collect();
        Fixture {
            dir,
            manifest,
            contents,
        }
    }

    fn standard() -> Fixture {
        Fixture::new(&[
            ("bin/linux-amd64/kubelet", noise(1, 300_000), 0o755),
            ("images/index.json", b"{}".to_vec(), 0o644),
            (
                "images/oci-layout",
                b"{\"imageLayoutVersion\":\"1.0.0\"}".to_vec(),
                0o644,
            ),
            ("images/blobs/sha256/aa", noise(2, 70_000), 0o644),
            ("empty", Vec::new(), 0o644),
            ("manifests/exactly-512", noise(3, 512), 0o644),
            (
                &format!("manifests/{}/long-name.yaml", "d".repeat(150)),
                noise(4, 1000),
                0o644,
            ),
        ])
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn keys(&self) -> (SigningKey, PathBuf) {
        let base = self.path("key");
        let (public, secret) = generate_keypair(&base).unwrap();
        (SigningKey::load(&secret).unwrap(), public)
    }

    fn write(&self, out: &Path, key: Option<&SigningKey>, opts: &WriteOptions) -> Vec<PathBuf> {
        let bytes = self.manifest.to_bytes();
        let sig = key.map(|k| {
            k.sign(&bytes, &trusted_comment(&self.manifest, &bytes))
                .unwrap()
        });
        write_bundle(out, &bytes, sig.as_deref(), &self.contents, opts)
            .unwrap()
            .outputs
    }
}

fn small_frames() -> WriteOptions {
    WriteOptions {
        frame_size: 64 * 1024,
        level: 3,
        split: None,
        mtime: 1_700_000_000,
    }
}

#[derive(Default)]
struct Collect(BTreeMap<String, Vec<u8>>);

impl EntrySink for Collect {
    fn file(&mut self, entry: &FileEntry, content: &mut dyn Read) -> ferry_bundles::Result<()> {
        let mut v = Vec::new();
        content
            .read_to_end(&mut v)
            .map_err(|e| Error::io(&entry.path, e))?;
        assert_eq!(v.len() as u64, entry.size);
        self.0.insert(entry.path.clone(), v);
        Ok(())
    }
}

fn expected(f: &Fixture) -> BTreeMap<String, Vec<u8>> {
    f.contents
        .iter()
        .map(|c| (c.entry.path.clone(), std::fs::read(&c.source).unwrap()))
        .collect()
}

fn trust(public: &Path) -> Trust {
    Trust::Keys(TrustedKeys::load(&[public.to_path_buf()]).unwrap())
}

#[test]
fn signed_round_trip_delivers_every_file() {
    let f = Fixture::standard();
    let (key, public) = f.keys();
    let out = f.path("b.tar.zst");
    assert_eq!(
        f.write(&out, Some(&key), &small_frames()),
        vec![out.clone()]
    );
    let src = BundleSource::open(&out).unwrap();

    let head = read_manifest(&src).unwrap();
    assert_eq!(head.manifest, f.manifest);
    assert_eq!(head.bytes, f.manifest.to_bytes());
    assert!(head
        .signature
        .as_deref()
        .unwrap()
        .contains("trusted comment: ferry bundle name=test kubernetes=1.29.6 sha256="));

    let mut sink = Collect::default();
    let v = verify_and_extract(&src, &trust(&public), &mut sink).unwrap();
    assert_eq!(sink.0, expected(&f));
    assert_eq!(
        v.manifest_sha256,
        hex::encode(Sha256::digest(f.manifest.to_bytes()))
    );
}

#[test]
fn output_is_byte_identical_for_identical_inputs() {
    let f = Fixture::standard();
    let a = f.path("a.tar.zst");
    let b = f.path("b.tar.zst");
    f.write(&a, None, &small_frames());
    f.write(&b, None, &small_frames());
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    // And the default (large-frame) layout too.
    f.write(&a, None, &WriteOptions::default());
    f.write(&b, None, &WriteOptions::default());
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}

#[test]
fn stock_zstd_and_tar_extract_the_same_files() {
    let f = Fixture::standard();
    let (key, _) = f.keys();
    let out = f.path("b.tar.zst");
    f.write(&out, Some(&key), &small_frames());
    let x = f.path("x");
    std::fs::create_dir(&x).unwrap();
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zstd -q -dc '{}' | tar -x -C '{}'",
            out.display(),
            x.display()
        ))
        .status()
        .unwrap();
    assert!(st.success());
    for (path, data) in expected(&f) {
        assert_eq!(std::fs::read(x.join(&path)).unwrap(), data, "{path}");
    }
    assert_eq!(
        std::fs::read(x.join("bundle.json")).unwrap(),
        f.manifest.to_bytes()
    );
    // Stock minisign accepts the signature over the extracted bundle.json.
    let pubkey = f.path("key.pub");
    let out = Command::new("minisign")
        .args(["-V", "-m"])
        .arg(x.join("bundle.json"))
        .arg("-p")
        .arg(&pubkey)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("name=test kubernetes=1.29.6 sha256="),
        "{text}"
    );
    // The executable bit survives.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(x.join("bin/linux-amd64/kubelet"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
}

#[test]
fn manifest_is_read_from_the_first_frame_only() {
    let f = Fixture::standard();
    let out = f.path("b.tar.zst");
    f.write(&out, None, &small_frames());
    // Destroy everything after the first frame: read_manifest must not care.
    let bytes = std::fs::read(&out).unwrap();
    let first = zstd::zstd_safe::find_frame_compressed_size(&bytes).unwrap();
    let mut damaged = bytes[..first].to_vec();
    damaged.extend(vec![0xFFu8; bytes.len() - first]);
    std::fs::write(&out, &damaged).unwrap();
    let head = read_manifest(&BundleSource::open(&out).unwrap()).unwrap();
    assert_eq!(head.manifest, f.manifest);
    assert!(head.signature.is_none());
    // ...while the full check fails.
    let err = verify_and_extract(
        &BundleSource::open(&out).unwrap(),
        &Trust::InsecureUnsigned,
        &mut NullSink,
    )
    .unwrap_err();
    assert!(err.is_verification(), "{err}");
}

#[test]
fn stream_without_seek_table_still_verifies() {
    let f = Fixture::standard();
    let out = f.path("b.tar.zst");
    f.write(&out, None, &small_frames());
    // Re-compress as one plain zstd stream (what a third-party tool would make).
    let plain = f.path("plain.tar.zst");
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zstd -q -dc '{}' | zstd -q -c > '{}'",
            out.display(),
            plain.display()
        ))
        .status()
        .unwrap();
    assert!(st.success());
    let mut sink = Collect::default();
    verify_and_extract(
        &BundleSource::open(&plain).unwrap(),
        &Trust::InsecureUnsigned,
        &mut sink,
    )
    .unwrap();
    assert_eq!(sink.0, expected(&f));
}

#[test]
fn signature_rules() {
    let f = Fixture::standard();
    let (key, public) = f.keys();
    let signed = f.path("s.tar.zst");
    let unsigned = f.path("u.tar.zst");
    f.write(&signed, Some(&key), &small_frames());
    f.write(&unsigned, None, &small_frames());
    let open = |p: &Path| BundleSource::open(p).unwrap();

    let err = verify_and_extract(&open(&unsigned), &trust(&public), &mut NullSink).unwrap_err();
    assert!(
        err.is_verification() && err.to_string().contains("not signed"),
        "{err}"
    );
    verify_and_extract(&open(&unsigned), &Trust::InsecureUnsigned, &mut NullSink).unwrap();

    let other = f.path("other");
    let (other_pub, _) = generate_keypair(&other).unwrap();
    let err = verify_and_extract(&open(&signed), &trust(&other_pub), &mut NullSink).unwrap_err();
    assert!(
        err.is_verification() && err.to_string().contains("not trusted"),
        "{err}"
    );

    // A directory of keys that contains the right one is fine.
    let dir = f.path("trusted");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(&other_pub, dir.join("a.pub")).unwrap();
    std::fs::copy(&public, dir.join("b.pub")).unwrap();
    let keys = Trust::Keys(TrustedKeys::load(&[dir]).unwrap());
    verify_and_extract(&open(&signed), &keys, &mut NullSink).unwrap();
}

#[test]
fn keygen_refuses_overwrite_and_protects_the_secret() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("k");
    let (_, secret) = generate_keypair(&base).unwrap();
    assert_eq!(
        std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let err = generate_keypair(&base).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
}

#[test]
fn stock_minisign_keys_sign_and_our_keys_sign_for_minisign() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("bundle.json");
    std::fs::write(&data, b"{\"x\":1}\n").unwrap();
    // A key made by stock minisign without a password loads here...
    let st = Command::new("minisign")
        .args(["-G", "-W", "-p"])
        .arg(dir.path().join("m.pub"))
        .arg("-s")
        .arg(dir.path().join("m.key"))
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let key = SigningKey::load(&dir.path().join("m.key")).unwrap();
    let sig = key.sign(b"{\"x\":1}\n", "ferry test").unwrap();
    std::fs::write(dir.path().join("bundle.json.minisig"), &sig).unwrap();
    let v = Command::new("minisign")
        .args(["-Vm"])
        .arg(&data)
        .arg("-p")
        .arg(dir.path().join("m.pub"))
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    // ...and stock minisign signs with a key made here, without a password.
    let (public, secret) = generate_keypair(&dir.path().join("f")).unwrap();
    let s = Command::new("minisign")
        .args(["-S", "-s"])
        .arg(&secret)
        .arg("-m")
        .arg(&data)
        .arg("-x")
        .arg(dir.path().join("stock.minisig"))
        .output()
        .unwrap();
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    let stock_sig = std::fs::read_to_string(dir.path().join("stock.minisig")).unwrap();
    TrustedKeys::load(&[public])
        .unwrap()
        .verify(b"{\"x\":1}\n", &stock_sig)
        .unwrap();
}

#[test]
fn split_parts_are_read_in_place_and_a_damaged_part_is_named() {
    let f = Fixture::standard();
    let (key, public) = f.keys();
    let whole = f.path("w.tar.zst");
    f.write(&whole, Some(&key), &small_frames());
    let out = f.path("s.tar.zst");
    let opts = WriteOptions {
        split: Some(100_000),
        ..small_frames()
    };
    let outputs = f.write(&out, Some(&key), &opts);
    let json = f.path("s.parts.json");
    assert_eq!(outputs.last(), Some(&json));
    let parts = PartsManifest::load(&json).unwrap();
    assert!(parts.parts.len() >= 3, "{parts:?}");
    // Parts joined are a normal bundle (same frames; signatures differ by nonce).
    let mut joined = Vec::new();
    for p in &parts.parts {
        let data = std::fs::read(f.path(&p.file)).unwrap();
        assert_eq!(data.len() as u64, p.size);
        assert!(data.len() <= 100_000);
        joined.extend(data);
    }
    assert_eq!(hex::encode(Sha256::digest(&joined)), parts.sha256);
    // Same layout as the unsplit bundle (the signature's nonce may change a byte or two).
    let whole_len = std::fs::metadata(&whole).unwrap().len() as i64;
    assert!((joined.len() as i64 - whole_len).abs() < 16);

    for entry in [json.clone(), f.path("s.tar.zst.000")] {
        let src = BundleSource::open(&entry).unwrap();
        assert_eq!(read_manifest(&src).unwrap().manifest, f.manifest);
        let mut sink = Collect::default();
        verify_and_extract(&src, &trust(&public), &mut sink).unwrap();
        assert_eq!(sink.0, expected(&f));
    }

    // Flip one byte in the middle part: the error names that part.
    let victim = f.path(&parts.parts[1].file);
    let mut data = std::fs::read(&victim).unwrap();
    data[500] ^= 0x40;
    std::fs::write(&victim, &data).unwrap();
    let err = verify_and_extract(
        &BundleSource::open(&json).unwrap(),
        &trust(&public),
        &mut NullSink,
    )
    .unwrap_err();
    assert!(err.is_verification(), "{err}");
    assert!(err.to_string().contains(&parts.parts[1].file), "{err}");

    // A missing part is named at open.
    let last = f.path(&parts.parts.last().unwrap().file);
    std::fs::remove_file(&last).unwrap();
    let err = BundleSource::open(&json).unwrap_err();
    assert!(
        err.is_verification() && err.to_string().contains(&parts.parts.last().unwrap().file),
        "{err}"
    );
}

#[test]
fn a_source_file_changed_under_the_writer_is_an_error() {
    let f = Fixture::standard();
    std::fs::write(&f.contents[0].source, b"changed").unwrap();
    let bytes = f.manifest.to_bytes();
    let out = f.path("b.tar.zst");
    let err = write_bundle(&out, &bytes, None, &f.contents, &small_frames()).unwrap_err();
    assert!(err.to_string().contains(&f.contents[0].entry.path), "{err}");
    assert!(!out.exists());
    assert!(std::fs::read_dir(f.dir.path()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("partial")));
}

#[test]
fn every_flipped_byte_is_caught() {
    let f = Fixture::standard();
    let (key, public) = f.keys();
    let out = f.path("b.tar.zst");
    f.write(&out, Some(&key), &small_frames());
    let good = std::fs::read(&out).unwrap();
    let t = trust(&public);
    // Every 97th byte and the last 40 bytes (seek table and its footer).
    let offsets: Vec<usize> = (0..good.len())
        .step_by(331)
        .chain(good.len() - 40..good.len())
        .collect();
    for at in offsets {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        std::fs::write(&out, &bad).unwrap();
        let r = verify_and_extract(&BundleSource::open(&out).unwrap(), &t, &mut NullSink);
        match r {
            Err(e) => assert!(e.is_verification(), "offset {at}: {e}"),
            Ok(_) => panic!(
                "flipped byte at offset {at} of {} went unnoticed",
                good.len()
            ),
        }
    }
    // Truncation at any point is caught too.
    for len in (0..good.len()).step_by(3001) {
        std::fs::write(&out, &good[..len]).unwrap();
        let src = match BundleSource::open(&out) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let e = verify_and_extract(&src, &t, &mut NullSink).unwrap_err();
        assert!(e.is_verification(), "length {len}: {e}");
    }
}
