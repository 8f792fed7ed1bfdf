//! Arbitrary bytes as a bundle file, through the entry points `ferry bundle
//! inspect`, `verify` and `unpack` use: read_manifest, then
//! verify_and_extract with a trusted key (the seed corpus key), and without
//! one (insecure mode, which reads the whole stream: seek table, zstd frames,
//! tar). Every outcome must be a clean error or a verified bundle.

#![no_main]

use ferry_bundles::{
    read_manifest, verify_and_extract, BundleSource, EntrySink, FileEntry, NullSink, Trust,
    TrustedKeys,
};
use ferry_fuzz::{scratch, scratch_file};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::sync::OnceLock;

/// Reads every entry the way unpack does (content pulled through the
/// reader in large reads) and checks it against the manifest.
struct ReadAll;

impl EntrySink for ReadAll {
    fn file(&mut self, entry: &FileEntry, content: &mut dyn Read) -> ferry_bundles::Result<()> {
        let mut buf = vec![0u8; 256 << 10];
        let mut hash = Sha256::new();
        let mut total = 0u64;
        loop {
            match content.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    hash.update(&buf[..n]);
                    total += n as u64;
                }
                Err(e) => return Err(ferry_bundles::Error::io(&entry.path, e)),
            }
        }
        assert_eq!(
            total, entry.size,
            "{}: sink got a different size",
            entry.path
        );
        let _ = hex::encode(hash.finalize());
        Ok(())
    }
}

/// The seed corpus key: the seed bundles, signed with its secret half (not
/// kept), pass the signature check, so mutations start from trusted bundles.
const SEED_PUBLIC_KEY: &str = include_str!("../seeds/seed.pub");

fn trusted() -> &'static Trust {
    static TRUST: OnceLock<Trust> = OnceLock::new();
    TRUST.get_or_init(|| {
        let path = scratch().join("seed.pub");
        std::fs::write(&path, SEED_PUBLIC_KEY).expect("write seed key");
        Trust::Keys(TrustedKeys::load(&[path]).expect("seed key loads"))
    })
}

fuzz_target!(|data: &[u8]| {
    let path = scratch_file("fuzz.tar.zst", data);
    let src = BundleSource::open(&path).expect("a plain file opens as a single bundle");
    let _ = read_manifest(&src);
    if let Ok(v) = verify_and_extract(&src, trusted(), &mut NullSink) {
        assert!(
            v.signature.is_some(),
            "verified with a key but no signature"
        );
    }
    let unsigned = Trust::InsecureUnsigned;
    let a = verify_and_extract(&src, &unsigned, &mut NullSink).map(|v| v.manifest_sha256);
    let b = verify_and_extract(&src, &unsigned, &mut ReadAll).map(|v| v.manifest_sha256);
    // Hashing in place and reading content out must agree on the verdict.
    assert_eq!(a.is_ok(), b.is_ok(), "{a:?} vs {b:?}");
});
