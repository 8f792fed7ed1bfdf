//! Inputs the fuzz targets (fuzz/fuzz_targets/) crashed on, each with the
//! behaviour it must have now.

use ferry_bundles::reader::parse_manifest;

/// bundle.json as the writer lays it out, with the two files' sizes set to
/// u64::MAX: it parses (sizes are checked against the tar only when the
/// bundle is verified), and `bundle inspect` sums its sizes.
const HUGE_SIZES: &str = r#"{
  "schema": 1,
  "name": "seed-1.29.6",
  "created": "2026-11-01T00:00:00Z",
  "builder": "ferry 0.1.0",
  "kubernetes": "1.29.6",
  "platforms": ["linux/amd64"],
  "components": [],
  "images": [],
  "files": [
    {
      "path": "bin/linux-amd64/kubectl",
      "size": 18446744073709551615,
      "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
      "mode": 493
    },
    {
      "path": "manifests/coredns/coredns.yaml",
      "size": 18446744073709551615,
      "sha256": "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752",
      "mode": 420
    }
  ]
}
"#;

#[test]
fn content_bytes_of_sizes_past_u64_saturates_instead_of_overflowing() {
    let m = parse_manifest(HUGE_SIZES.as_bytes()).expect("the manifest parses");
    assert_eq!(m.files.len(), 2);
    assert_eq!(m.content_bytes(), u64::MAX);
}
