//! Arbitrary text as a registry request path and as a Range header: the
//! routing and range parsing the mirror does before touching the store.

#![no_main]

use ferry_installer::registry::api::{parse_range, route, RangeSpec, Route};
use ferry_installer::registry::reference::{valid_name, valid_tag};
use ferry_installer::store::digest_hex;
use libfuzzer_sys::fuzz_target;

/// Blob sizes around the edges the arithmetic cares about.
const SIZES: [u64; 6] = [0, 1, 99, 100, 4096, u64::MAX];

fuzz_target!(|data: &[u8]| {
    // Both come from http::Uri / HeaderValue::to_str, which are UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match route(text) {
        Route::Tags(name) => {
            let _ = valid_name(name);
        }
        Route::Manifest(name, reference) => {
            let _ = valid_name(name);
            let _ = valid_tag(reference) || digest_hex(reference).is_ok();
        }
        Route::Blob(name, digest) => {
            let _ = valid_name(name);
            let _ = digest_hex(digest);
        }
        Route::Base | Route::Catalog | Route::Upload | Route::Unknown => {}
    }
    for size in SIZES {
        if let RangeSpec::Satisfiable(start, end) = parse_range(text, size) {
            // The response computes `end - start + 1` and names `start..=end`.
            assert!(
                start <= end && end < size,
                "{text:?} on {size}: {start}-{end}"
            );
        }
    }
});
