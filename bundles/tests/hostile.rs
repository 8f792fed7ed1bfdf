//! Hostile input: sizes read from a bundle (seek table, tar headers) or from
//! the files beside it (parts.json, bundle.json) are capped before anything
//! is allocated from them, and the signature is checked before the rest of
//! the bundle is looked at. Crafted files are sparse, so a claim of many
//! gigabytes costs no disk.

use ferry_bundles::manifest::{BundleManifest, FileEntry, MAX_MANIFEST_BYTES};
use ferry_bundles::seektable::{self, FrameEntry};
use ferry_bundles::split::MAX_PARTS_JSON_BYTES;
use ferry_bundles::writer::{max_compressed_frame_size, MAX_FRAME_SIZE};
use ferry_bundles::{
    generate_keypair, read_manifest, trusted_comment, verify_and_extract, write_bundle,
    BundleSource, ContentSource, Error, NullSink, SigningKey, Trust, TrustedKeys, WriteOptions,
};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Refusals read a few bytes and allocate nothing big: well under this.
const QUICK: Duration = Duration::from_secs(10);

fn manifest(files: Vec<FileEntry>) -> BundleManifest {
    BundleManifest {
        schema: 1,
        name: "hostile".into(),
        created: "2024-01-01T00:00:00Z".into(),
        builder: "ferry test".into(),
        kubernetes: "1.29.6".into(),
        platforms: vec!["linux/amd64".into()],
        components: vec![],
        images: vec![],
        files,
        base: None,
        os_packages: Vec::new(),
    }
}

/// A real bundle with one small file, signed by `key` when given.
fn small_bundle(dir: &Path, name: &str, key: Option<&SigningKey>) -> PathBuf {
    let data = b"hello, bundle\n".to_vec();
    let src = dir.join(format!("{name}.content"));
    std::fs::write(&src, &data).unwrap();
    let entry = FileEntry {
        path: "etc/hello".into(),
        size: data.len() as u64,
        sha256: hex::encode(Sha256::digest(&data)),
        mode: 0o644,
        in_base: false,
    };
    let m = manifest(vec![entry.clone()]);
    let bytes = m.to_bytes();
    let sig = key.map(|k| k.sign(&bytes, &trusted_comment(&m, &bytes)).unwrap());
    let out = dir.join(format!("{name}.tar.zst"));
    let contents = [ContentSource { entry, source: src }];
    let opts = WriteOptions::default();
    write_bundle(&out, &bytes, sig.as_deref(), &contents, &opts).unwrap();
    out
}

/// The first zstd frame (bundle.json alone) of a real unsigned bundle.
fn real_frame0(dir: &Path) -> Vec<u8> {
    let bytes = std::fs::read(small_bundle(dir, "frame0", None)).unwrap();
    let n = zstd::zstd_safe::find_frame_compressed_size(&bytes).unwrap();
    bytes[..n].to_vec()
}

/// `head` at offset 0 and `tail` ending at `len`, holes in between.
fn sparse_file(path: &Path, head: &[u8], len: u64, tail: &[u8]) {
    let mut f = File::create(path).unwrap();
    f.write_all(head).unwrap();
    f.seek(SeekFrom::Start(len - tail.len() as u64)).unwrap();
    f.write_all(tail).unwrap();
    assert_eq!(f.metadata().unwrap().len(), len);
}

/// verify_and_extract (no signature asked) on `path`: its error, and that it came quickly.
fn refused(path: &Path) -> Error {
    let started = Instant::now();
    let src = BundleSource::open(path).unwrap();
    let err = verify_and_extract(&src, &Trust::InsecureUnsigned, &mut NullSink).unwrap_err();
    assert!(started.elapsed() < QUICK, "took {:?}", started.elapsed());
    assert!(err.is_verification(), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    err
}

#[test]
fn seek_table_claiming_u32_max_frames_is_refused_before_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let frame0 = real_frame0(dir.path());
    // The footer claims 2^32 - 1 frames with checksums: a 48 GiB table, in
    // a (sparse) 64 GiB file, so only the cap stops a 48 GiB read.
    let mut footer = u32::MAX.to_le_bytes().to_vec();
    footer.push(0x80);
    footer.extend(seektable::SEEKABLE_MAGIC.to_le_bytes());
    let claimed = seektable::table_len(&footer).unwrap();
    assert!(claimed > 48 << 30);
    let path = dir.path().join("huge-table.tar.zst");
    sparse_file(&path, &frame0, 1 << 36, &footer);
    let err = refused(&path).to_string();
    assert!(
        err.contains(&format!("seek table claims {claimed} bytes")),
        "{err}"
    );
    assert!(err.contains("copy it again"), "{err}");
}

/// frame 0, then a hole for `frame1.compressed` bytes, then the seek table.
fn bundle_with_frame1(dir: &Path, name: &str, frame1: FrameEntry) -> PathBuf {
    let frame0 = real_frame0(dir);
    let decoded = zstd::decode_all(&frame0[..]).unwrap();
    let table = seektable::encode(&[
        FrameEntry {
            compressed: frame0.len() as u32,
            decompressed: decoded.len() as u32,
        },
        frame1,
    ]);
    let len = (frame0.len() + table.len()) as u64 + u64::from(frame1.compressed);
    let path = dir.join(name);
    sparse_file(&path, &frame0, len, &table);
    path
}

#[test]
fn a_frame_over_zstds_compress_bound_is_refused_before_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    // 4 GiB compressed (the sizes add up: only the cap catches it).
    let path = bundle_with_frame1(
        dir.path(),
        "huge-frame.tar.zst",
        FrameEntry {
            compressed: u32::MAX,
            decompressed: 1 << 20,
        },
    );
    let err = refused(&path).to_string();
    let bound = max_compressed_frame_size();
    assert!(bound > MAX_FRAME_SIZE && bound < MAX_FRAME_SIZE + (1 << 20));
    assert!(
        err.contains(&format!("frame 1 is {} bytes compressed", u32::MAX))
            && err.contains(&format!("bound of {bound} bytes")),
        "{err}"
    );
}

#[test]
fn a_frame_decoding_past_the_frame_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for decompressed in [MAX_FRAME_SIZE as u32 + 1, u32::MAX] {
        let path = bundle_with_frame1(
            dir.path(),
            "wide-frame.tar.zst",
            FrameEntry {
                compressed: 100,
                decompressed,
            },
        );
        let err = refused(&path).to_string();
        assert!(
            err.contains(&format!("frame 1 decodes to {decompressed} bytes")),
            "{err}"
        );
    }
    // At the caps exactly, the table is accepted (and the frame found damaged).
    let path = bundle_with_frame1(
        dir.path(),
        "at-cap.tar.zst",
        FrameEntry {
            compressed: max_compressed_frame_size() as u32,
            decompressed: MAX_FRAME_SIZE as u32,
        },
    );
    let err = refused(&path).to_string();
    assert!(err.contains("frame 1 is damaged"), "{err}");
}

/// Rewrites the bundle's seek table so frame 1 claims more than a frame may hold.
fn damage_seek_table(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let len = bytes.len();
    let table_len = seektable::table_len(&bytes[len - seektable::FOOTER_LEN..]).unwrap() as usize;
    let mut frames = seektable::decode(&bytes[len - table_len..]).unwrap();
    frames[1].decompressed = MAX_FRAME_SIZE as u32 + 1;
    let table = seektable::encode(&frames);
    assert_eq!(table.len(), table_len);
    bytes[len - table_len..].copy_from_slice(&table);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn the_signature_is_checked_before_the_seek_table_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let (signer_pub, signer_sec) = generate_keypair(&dir.path().join("signer")).unwrap();
    let (other_pub, _) = generate_keypair(&dir.path().join("other")).unwrap();
    let key = SigningKey::load(&signer_sec).unwrap();
    let path = small_bundle(dir.path(), "signed", Some(&key));
    let trust = |p: &Path| Trust::Keys(TrustedKeys::load(&[p.to_path_buf()]).unwrap());
    let src = BundleSource::open(&path).unwrap();
    verify_and_extract(&src, &trust(&signer_pub), &mut NullSink).unwrap();

    damage_seek_table(&path);
    // Untrusted: refused for the signature, the damaged table never read
    // (before frame 0 came first, the table error was reported instead).
    let err = verify_and_extract(&src, &trust(&other_pub), &mut NullSink).unwrap_err();
    assert!(
        err.is_verification() && err.to_string().contains("not trusted"),
        "{err}"
    );
    // Trusted: the damage is found.
    let err = verify_and_extract(&src, &trust(&signer_pub), &mut NullSink).unwrap_err();
    assert!(err.to_string().contains("frame 1 decodes to"), "{err}");
}

#[test]
fn an_unsigned_bundle_is_refused_before_its_seek_table_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let (public, _) = generate_keypair(&dir.path().join("k")).unwrap();
    let path = small_bundle(dir.path(), "unsigned", None);
    damage_seek_table(&path);
    let src = BundleSource::open(&path).unwrap();
    let trust = Trust::Keys(TrustedKeys::load(&[public]).unwrap());
    let err = verify_and_extract(&src, &trust, &mut NullSink).unwrap_err();
    assert!(err.to_string().contains("not signed"), "{err}");
}

/// One zstd frame holding just a tar header for bundle.json of `size` bytes.
fn claimed_manifest_frame(size: u64) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    h.set_path("bundle.json").unwrap();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    zstd::encode_all(&h.as_bytes()[..], 3).unwrap()
}

#[test]
fn a_bundle_json_entry_of_1_tib_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big-manifest.tar.zst");
    std::fs::write(&path, claimed_manifest_frame(1 << 40)).unwrap();
    let started = Instant::now();
    let src = BundleSource::open(&path).unwrap();
    for err in [
        read_manifest(&src).unwrap_err(),
        verify_and_extract(&src, &Trust::InsecureUnsigned, &mut NullSink).unwrap_err(),
    ] {
        let text = err.to_string();
        assert!(err.is_verification(), "{text}");
        assert!(
            text.contains("bundle.json") && text.contains(&format!("{}", 1u64 << 40)),
            "{text}"
        );
        assert!(
            text.contains(&format!("{MAX_MANIFEST_BYTES} bytes")),
            "{text}"
        );
    }
    assert!(started.elapsed() < QUICK);
}

#[test]
fn a_bundle_json_file_over_the_cap_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle.json");
    sparse_file(&path, b"{", 100 << 20, b"}");
    let started = Instant::now();
    let err = BundleManifest::load(&path).unwrap_err().to_string();
    assert!(started.elapsed() < QUICK);
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(
        err.contains(&format!("{} bytes is too large", 100u64 << 20)),
        "{err}"
    );
    // Within the cap it parses as usual.
    std::fs::write(&path, manifest(vec![]).to_bytes()).unwrap();
    assert_eq!(BundleManifest::load(&path).unwrap(), manifest(vec![]));
}

#[test]
fn the_writer_refuses_a_manifest_readers_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = vec![b' '; MAX_MANIFEST_BYTES as usize + 1];
    let out = dir.path().join("b.tar.zst");
    let err = write_bundle(&out, &bytes, None, &[], &WriteOptions::default()).unwrap_err();
    assert!(err.to_string().contains("bundle.json to write"), "{err}");
    assert!(!out.exists());
}

#[test]
fn a_parts_json_of_100_mib_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.parts.json");
    sparse_file(&path, b"{", 100 << 20, b"}");
    let started = Instant::now();
    let err = BundleSource::open(&path).unwrap_err();
    assert!(started.elapsed() < QUICK);
    let text = err.to_string();
    assert!(err.is_verification(), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(
        text.contains(&format!("at most {MAX_PARTS_JSON_BYTES} bytes")),
        "{text}"
    );
}

#[test]
fn part_sizes_that_overflow_u64_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.parts.json");
    let part = |file: &str, size: u64| {
        format!(
            r#"{{"file":"{file}","size":{size},"sha256":"{}"}}"#,
            "0".repeat(64)
        )
    };
    // u64::MAX + 2 wraps to 1, which is the stated size.
    let json = format!(
        r#"{{"schema":1,"bundle":"b.tar.zst","size":1,"sha256":"{}","parts":[{},{}]}}"#,
        "0".repeat(64),
        part("b.tar.zst.000", u64::MAX),
        part("b.tar.zst.001", 2),
    );
    std::fs::write(&path, json).unwrap();
    let err = BundleSource::open(&path).unwrap_err();
    let text = err.to_string();
    assert!(err.is_verification(), "{text}");
    assert!(
        text.contains(&path.display().to_string()) && text.contains("overflow"),
        "{text}"
    );
}
