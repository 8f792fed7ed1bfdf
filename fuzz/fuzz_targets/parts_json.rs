//! Arbitrary bytes as `<name>.parts.json`: loaded, opened as a bundle
//! source (each listed part looked up beside it) and read through, the way
//! `ferry bundle verify/unpack x.parts.json` starts.

#![no_main]

use ferry_bundles::split::PartsManifest;
use ferry_bundles::BundleSource;
use ferry_fuzz::{scratch_file, scratch_parts};
use libfuzzer_sys::fuzz_target;
use std::io::Read;

fuzz_target!(|data: &[u8]| {
    scratch_parts();
    let path = scratch_file("prod.parts.json", data);
    let Ok(m) = PartsManifest::load(&path) else {
        assert!(
            BundleSource::open(&path).is_err(),
            "open accepted what load refused"
        );
        return;
    };
    for p in &m.parts {
        assert!(!p.file.is_empty() && !p.file.contains('/'), "{:?}", p.file);
    }
    let Ok(src) = BundleSource::open(&path) else {
        return;
    };
    let _ = src.len();
    let _ = src.check_parts();
    if let Ok(mut r) = src.reader() {
        let mut buf = [0u8; 4096];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
    }
});
