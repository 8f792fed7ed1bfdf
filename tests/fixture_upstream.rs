//! The fixture upstream itself: the registry serves the catalog images with
//! the digests mkimages.py produced, and the file server serves binaries with
//! matching checksum files and counts requests.

mod common;

use common::upstream::{layout_digests, Upstream, UpstreamOptions};
use std::process::Command;

#[test]
fn fixture_upstream_serves_images_and_counted_files() {
    let up = Upstream::start(UpstreamOptions::default());

    let digests = layout_digests(&up.images);
    assert_eq!(digests.len(), common::upstream::CATALOG_IMAGES.len());
    for (reference, digest) in &digests {
        let out = Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{}/{reference}", up.registry_addr))
            .output()
            .expect("skopeo");
        assert!(
            out.status.success(),
            "{reference}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&out.stdout))
        );
        assert_eq!(
            &got, digest,
            "{reference} changed digest on the way into the registry"
        );
    }

    let path = "/dl.k8s.io/release/v1.29.6/bin/linux/amd64/kubelet";
    for p in [path.to_string(), format!("{path}.sha256")] {
        let st = Command::new("curl")
            .args([
                "-fsS",
                "-o",
                "/dev/null",
                &format!("http://{}{p}", up.file_addr),
            ])
            .status()
            .expect("curl");
        assert!(st.success(), "GET {p}");
    }
    let sum = std::fs::read_to_string(up.file(&format!("{path}.sha256"))).expect("sha256 file");
    let body = std::fs::read(up.file(path)).expect("kubelet");
    assert_eq!(
        sum.trim(),
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body))
    );

    let counts = up.requests();
    assert_eq!(counts.started.get(path), Some(&1));
    assert_eq!(counts.completed.get(path), Some(&1));
    assert_eq!(counts.total_started(), 2);
}
