//! Arbitrary bytes as bundle.json: the checked parse every reader uses, and
//! what inspect and signing derive from a manifest that parsed.

#![no_main]

use ferry_bundles::manifest::BundleManifest;
use ferry_bundles::reader::parse_manifest;
use ferry_bundles::trusted_comment;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = parse_manifest(data) else {
        return;
    };
    let _ = m.content_bytes();
    let _ = trusted_comment(&m, data);
    for f in &m.files {
        assert_eq!(m.file(&f.path), Some(f), "{} is not found by path", f.path);
    }
    // What the builder writes for it parses back to the same manifest.
    let again = BundleManifest::from_bytes(&m.to_bytes()).expect("canonical bytes parse");
    assert_eq!(again, m);
});
