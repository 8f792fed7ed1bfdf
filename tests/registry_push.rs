//! `ferry registry push` into Debian's docker-registry: every image (index,
//! every platform, every blob) arrives with the same digests, skopeo reads
//! them back, and a second push uploads no blob.

mod common;

use common::mirror::{ferry, manifest_blobs, reachable_blobs, sha256_hex, DockerRegistry, Mirror};
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
    // Three images and cilium's cosign signature tag.
    let signature = &bundle
        .manifest
        .images
        .iter()
        .find_map(|i| i.signature.clone())
        .unwrap();
    let sig_blobs = manifest_blobs(&layout, &signature.digest).len() - 1;
    assert_eq!(first["images_pushed"], 4, "{first}");
    assert_eq!(
        first["blobs_pushed"],
        (expected_blobs + sig_blobs) as u64,
        "{first}"
    );
    assert!(
        first["bytes_pushed"].as_u64().unwrap() > 3 * 200_000 / 4,
        "{first}"
    );
    // Per image: one manifest per carried platform and the index; the signature.
    let manifests = first["manifests_pushed"].as_u64().unwrap();
    assert_eq!(manifests, 3 * 3 + 1, "{first}");

    let pushed: BTreeMap<String, String> = first["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["source"].as_str().unwrap().to_owned(),
                i["pushed_digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        pushed[&signature.reference], signature.digest,
        "signatures keep their digest"
    );
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
        // docker-registry refuses an index whose entries it lacks, so the tag
        // holds an index of exactly the carried entries, as the report says.
        assert_eq!(
            format!("sha256:{}", sha256_hex(&out.stdout)),
            pushed[reference],
            "{reference}"
        );
        assert_ne!(pushed[reference], *digest, "{reference}");
        let reduced: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let listed: Vec<&str> = reduced["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["digest"].as_str().unwrap())
            .collect();
        let carried = reachable_blobs(&layout, digest);
        assert_eq!(listed.len(), 2, "{reference}: {reduced}");
        assert!(
            listed.iter().all(|d| carried.iter().any(|c| c == d)),
            "{reference}: {reduced}"
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
        for blob in carried.into_iter().skip(1) {
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
        blob_puts_before,
        expected_blobs + sig_blobs,
        "blob uploads the registry saw"
    );

    // Second push: nothing to upload.
    let second = run();
    assert_eq!(second["images_pushed"], 0, "{second}");
    assert_eq!(second["images_skipped"], 4, "{second}");
    assert_eq!(second["blobs_pushed"], 0, "{second}");
    assert_eq!(second["bytes_pushed"], 0, "{second}");
    let log = registry.log_text();
    assert_eq!(
        log.matches("\"PUT /v2/mirror/").count(),
        uploads_before,
        "second push wrote to the registry"
    );

    // Remove one tag's manifest by deleting an image at the target: the next push re-pushes that image only, skipping its blobs.
    let pause = &pushed["registry.k8s.io/pause:3.9"];
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
    assert_eq!(third["images_skipped"], 3, "{third}");
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
    // A port nothing listens on, held for the test so nothing else takes it.
    let closed = common::ports::Unlistened::bind();
    let port = closed.addr.port();
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

/// The fixtures' port helper: a daemon that finds its port taken (here by a
/// listener this test holds) is started again on another port, and serves there.
#[test]
fn a_registry_whose_port_is_taken_starts_on_another() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("registry.log");
    let (mut tried, mut held) = (Vec::new(), Vec::new());
    let (mut child, port) = common::ports::start_on_free_port("docker-registry", &log, |port| {
        if tried.is_empty() {
            // Taken: by us, or (if binding fails) already by someone else.
            held.push(common::ports::hold(port));
        }
        tried.push(port);
        let config = dir.path().join(format!("config-{port}.yml"));
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let out = std::fs::File::create(&log).unwrap();
        Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start /usr/bin/docker-registry")
    });
    let answer = reqwest::blocking::get(format!("http://127.0.0.1:{port}/v2/"));
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        tried.len() >= 2,
        "the taken port was not retried: {tried:?}"
    );
    assert_ne!(tried[0], port);
    assert_eq!(*tried.last().unwrap(), port);
    assert_eq!(answer.unwrap().status(), reqwest::StatusCode::OK);
    drop(held);
}

/// Config and layer digests of every carried platform of an image index.
fn layer_and_config_blobs(
    layout: &std::path::Path,
    index: &str,
) -> std::collections::BTreeSet<String> {
    let doc: serde_json::Value = serde_json::from_slice(
        &std::fs::read(layout.join("blobs/sha256").join(&index[7..])).unwrap(),
    )
    .unwrap();
    let manifests: Vec<&str> = doc["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap())
        .collect();
    reachable_blobs(layout, index)
        .into_iter()
        .skip(1)
        .filter(|d| !manifests.contains(&d.as_str()))
        .collect()
}

/// A bundle whose image lost a layer from the store: the mirror refuses to
/// serve that image and says so, and push copies the others, then fails naming it.
#[test]
fn an_image_that_cannot_be_served_or_pushed_is_named_and_fails_the_push() {
    let dir = tempfile::Builder::new()
        .prefix("ferry-push-")
        .tempdir()
        .unwrap();
    let (public, secret) = keypair(dir.path(), "release");
    let refs = ["registry.k8s.io/pause:3.9", "quay.io/cilium/cilium:v1.15.6"];
    let bundle = make_bundle(dir.path(), "prod", &refs, 0, 1000, Some(&secret));
    let data = dir.path().join("data");
    unpack_into(&bundle.path, &public, &data);
    let pause = &bundle.digests["registry.k8s.io/pause:3.9"];
    let layer = layer_and_config_blobs(&bundle.layout, pause)
        .into_iter()
        .find(|d| !reachable_blobs(&bundle.layout, &bundle.digests[refs[1]]).contains(d))
        .expect("a layer of pause alone");
    std::fs::remove_file(data.join("blobs/sha256").join(&layer[7..])).unwrap();

    let mut mirror = Mirror::start(&data, dir.path(), None);
    mirror.stop();
    let log = mirror.log_text();
    assert!(
        log.contains("not serving registry.k8s.io/pause:3.9 from bundle prod")
            && log.contains(&layer[7..]),
        "{log}"
    );

    let registry = DockerRegistry::start();
    let out = ferry()
        .args([
            "registry",
            "push",
            "--plain-http",
            "--to",
            &registry.addr,
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pushed 2 images"), "{err}");
    assert!(err.contains("1 could not be pushed"), "{err}");
    assert!(
        err.contains("registry.k8s.io/pause:3.9 (bundle prod)"),
        "{err}"
    );
    // The other image did arrive.
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!(
            "docker://{}/quay.io/cilium/cilium:v1.15.6",
            registry.addr
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
