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
    let images = digests.keys().filter(|r| !r.ends_with(".sig")).count();
    assert_eq!(images, common::upstream::CATALOG_IMAGES.len());
    // quay.io images are cosign-signed upstream, as cilium's and cert-manager's are.
    assert_eq!(digests.len() - images, 6, "{digests:?}");
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
        check_upstream_shape(reference, &out.stdout);
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

/// Indexes look like the real ones: registry.k8s.io publishes Docker manifest
/// lists with windows entries (each with its os.version) and other linux
/// platforms; Calico's images (docker.io/calico, quay.io/tigera) are Docker
/// manifest lists of linux/amd64, arm64, ppc64le and s390x; buildkit images
/// are OCI indexes with attestation entries.
fn check_upstream_shape(reference: &str, raw: &[u8]) {
    let doc: serde_json::Value = serde_json::from_slice(raw).expect("JSON");
    if reference.ends_with(".sig") {
        assert_eq!(
            doc["layers"][0]["mediaType"],
            "application/vnd.dev.cosign.simplesigning.v1+json"
        );
        return;
    }
    let entries = doc["manifests"].as_array().expect("an index");
    let platform = |e: &serde_json::Value| {
        format!(
            "{}/{}",
            e["platform"]["os"].as_str().unwrap(),
            e["platform"]["architecture"].as_str().unwrap()
        )
    };
    let count = |p: &str| entries.iter().filter(|e| platform(e) == p).count();
    if reference.starts_with("docker.io/calico/") || reference.starts_with("quay.io/tigera/") {
        assert_eq!(
            doc["mediaType"],
            "application/vnd.docker.distribution.manifest.list.v2+json"
        );
        for p in ["linux/amd64", "linux/arm64", "linux/ppc64le", "linux/s390x"] {
            assert_eq!(count(p), 1, "{reference}: {p}");
        }
        assert_eq!(entries.len(), 4, "{reference}");
        return;
    }
    if reference.starts_with("registry.k8s.io/") {
        assert_eq!(
            doc["mediaType"],
            "application/vnd.docker.distribution.manifest.list.v2+json"
        );
        assert_eq!(count("windows/amd64"), 3, "{reference}");
        assert!(entries
            .iter()
            .all(|e| e["platform"]["os"] != "windows" || e["platform"]["os.version"].is_string()));
        assert_eq!(count("linux/s390x"), 1, "{reference}");
    } else {
        assert_eq!(doc["mediaType"], "application/vnd.oci.image.index.v1+json");
        let attestations = entries
            .iter()
            .filter(|e| e["annotations"]["vnd.docker.reference.type"] == "attestation-manifest")
            .count();
        assert_eq!(attestations, count("unknown/unknown"), "{reference}");
        assert_eq!(attestations, 4, "{reference}");
    }
    for p in ["linux/amd64", "linux/arm64", "linux/arm"] {
        assert_eq!(count(p), 1, "{reference}: {p}");
    }
}
