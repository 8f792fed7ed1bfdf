//! `ferry registry push` into Debian's docker-registry: every image (index,
//! every platform, every blob) arrives with the same digests, skopeo reads
//! them back, and a second push uploads no blob.

mod common;

use common::mirror::{ferry, reachable_blobs, sha256_hex, DockerRegistry};
use common::testbundle::{keypair, make_bundle, unpack_into};
use std::collections::BTreeMap;
use std::process::Command;

#[test]
fn push_copies_every_image_with_the_same_digests_and_skips_what_is_there() {
    let dir = tempfile::Builder::new()
        .prefix("ferry-push-")
        .tempdir()
        .unwrap();
    let refs = [
        "registry.k8s.io/pause:3.9",
        "registry.k8s.io/coredns/coredns:v1.11.1",
        "quay.io/cilium/cilium:v1.15.6",
    ];
    let (public, secret) = keypair(dir.path(), "release");
    let bundle = make_bundle(dir.path(), "prod", &refs, 200_000, 1000, Some(&secret));
    let data = dir.path().join("data");
    unpack_into(&bundle.path, &public, &data);
    let layout = bundle.layout.clone();
    let digests: BTreeMap<String, String> = bundle
        .manifest
        .images
        .iter()
        .map(|i| (i.reference.clone(), i.digest.clone()))
        .collect();
    let registry = DockerRegistry::start();
    let target = format!("{}/mirror", registry.addr);

    let run = || {
        let out = ferry()
            .args([
                "registry",
                "push",
                "--plain-http",
                "--json",
                "--to",
                &target,
                "--data-dir",
            ])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "push failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("--json report")
    };

    let first = run();
    // Each repository gets its own copy of the config and layer blobs it references.
    let expected_blobs: usize = digests
        .values()
        .map(|d| layer_and_config_blobs(&layout, d).len())
        .sum();
    assert_eq!(first["images_pushed"], 3, "{first}");
    assert_eq!(first["blobs_pushed"], expected_blobs as u64, "{first}");
    assert!(
        first["bytes_pushed"].as_u64().unwrap() > 3 * 200_000 / 4,
        "{first}"
    );
    // Per image: the index and one manifest per platform.
    let manifests = first["manifests_pushed"].as_u64().unwrap();
    assert_eq!(manifests, 3 * 3, "{first}");

    for (reference, digest) in &digests {
        let dest = format!("docker://{}/mirror/{reference}", registry.addr);
        let out = Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false", &dest])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo inspect {dest}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            format!("sha256:{}", sha256_hex(&out.stdout)),
            *digest,
            "{reference}"
        );
        let copy = dir
            .path()
            .join(format!("copy-{}", sha256_hex(reference.as_bytes())));
        let out = Command::new("skopeo")
            .args(["copy", "--all", "--src-tls-verify=false", &dest])
            .arg(format!("dir:{}", copy.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo copy {dest}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for blob in reachable_blobs(&layout, digest).into_iter().skip(1) {
            let hex = blob.strip_prefix("sha256:").unwrap();
            let path = [copy.join(hex), copy.join(format!("{hex}.manifest.json"))]
                .into_iter()
                .find(|p| p.exists());
            let path = path.unwrap_or_else(|| panic!("{reference}: {blob} not read back"));
            assert_eq!(sha256_hex(&std::fs::read(path).unwrap()), hex);
        }
    }
    let uploads_before = registry.log_text().matches("\"PUT /v2/mirror/").count();
    let blob_puts_before = registry
        .log_text()
        .lines()
        .filter(|l| l.contains("\"PUT /v2/") && l.contains("/blobs/uploads/"))
        .count();
    assert!(blob_puts_before > 0);
    assert_eq!(
        blob_puts_before, expected_blobs,
        "blob uploads the registry saw"
    );

    // Second push: nothing to upload.
    let second = run();
    assert_eq!(second["images_pushed"], 0, "{second}");
    assert_eq!(second["images_skipped"], 3, "{second}");
    assert_eq!(second["blobs_pushed"], 0, "{second}");
    assert_eq!(second["bytes_pushed"], 0, "{second}");
    let log = registry.log_text();
    assert_eq!(
        log.matches("\"PUT /v2/mirror/").count(),
        uploads_before,
        "second push wrote to the registry"
    );

    // Remove one tag's manifest by deleting an image at the target: the next push re-pushes that image only, skipping its blobs.
    let pause = &digests["registry.k8s.io/pause:3.9"];
    let del = reqwest::blocking::Client::new()
        .delete(format!(
            "http://{}/v2/mirror/registry.k8s.io/pause/manifests/{pause}",
            registry.addr
        ))
        .send()
        .unwrap();
    assert_eq!(del.status(), reqwest::StatusCode::ACCEPTED);
    let third = run();
    assert_eq!(third["images_pushed"], 1, "{third}");
    assert_eq!(third["images_skipped"], 2, "{third}");
    assert_eq!(third["blobs_pushed"], 0, "{third}");
    assert!(third["blobs_skipped"].as_u64().unwrap() > 0, "{third}");
}

#[test]
fn push_names_the_target_when_it_is_unreachable() {
    let dir = tempfile::Builder::new()
        .prefix("ferry-push-")
        .tempdir()
        .unwrap();
    let (public, secret) = keypair(dir.path(), "release");
    let bundle = make_bundle(
        dir.path(),
        "prod",
        &["registry.k8s.io/pause:3.9"],
        0,
        1000,
        Some(&secret),
    );
    unpack_into(&bundle.path, &public, &dir.path().join("data"));
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = ferry()
        .args([
            "registry",
            "push",
            "--plain-http",
            "--to",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}

/// Config and layer digests of every platform of an image index.
fn layer_and_config_blobs(
    layout: &std::path::Path,
    index: &str,
) -> std::collections::BTreeSet<String> {
    let read = |d: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(&d[7..])).unwrap())
            .unwrap()
    };
    let mut out = std::collections::BTreeSet::new();
    for m in read(index)["manifests"].as_array().unwrap() {
        let manifest = read(m["digest"].as_str().unwrap());
        out.insert(manifest["config"]["digest"].as_str().unwrap().to_owned());
        for l in manifest["layers"].as_array().unwrap() {
            out.insert(l["digest"].as_str().unwrap().to_owned());
        }
    }
    out
}
