//! `ferry bundle build` against the fixture upstream (Debian's docker-registry
//! plus a counting file server), reached only through `--mirror`.

mod common;

use common::upstream::{layout_digests, Upstream, UpstreamOptions, CATALOG_IMAGES};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");
const EPOCH: &str = "1700000000";

fn sha256_file(p: &Path) -> String {
    let mut f = std::fs::File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).expect("hash");
    hex::encode(h.finalize())
}

fn keygen(dir: &Path) -> (PathBuf, PathBuf) {
    let base = dir.join("key");
    let out = Command::new(FERRY)
        .args(["bundle", "keygen", "-o"])
        .arg(&base)
        .output()
        .expect("run ferry");
    assert!(
        out.status.success(),
        "keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir.join("key.key"), dir.join("key.pub"))
}

/// `ferry bundle build` through the upstream's mirrors; extra args appended.
fn build_cmd(up: &Upstream, cache: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(FERRY);
    c.args(["bundle", "build", "--k8s", "1.29.6", "--plain"])
        .args(up.mirror_args())
        .arg("--cache-dir")
        .arg(cache)
        .arg("-o")
        .arg(out)
        .args(extra)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env_remove("FERRY_CACHE_DIR")
        .stdin(Stdio::null());
    c
}

fn run(mut c: Command) -> Output {
    c.output().expect("run ferry")
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn sh(script: &str) -> Output {
    Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .output()
        .expect("bash")
}

#[test]
fn signed_build_through_mirrors_reads_with_stock_tools() {
    let up = Upstream::start(UpstreamOptions::default());
    let work = tempfile::tempdir().expect("tmp");
    let (key, pubkey) = keygen(work.path());
    let out = work.path().join("prod.tar.zst");
    let res = run(build_cmd(
        &up,
        &work.path().join("cache"),
        &out,
        &["--sign-key", key.to_str().expect("utf8"), "--json"],
    ));
    ok(&res, "bundle build");
    let report: serde_json::Value = serde_json::from_slice(&res.stdout).expect("--json report");
    assert_eq!(report["images"], 18);
    // 12 catalog components give 14 binaries and archives per platform
    // (etcd's archive gives etcd, etcdctl and etcdutl), plus the 5
    // platform-independent addon artifacts.
    assert_eq!(report["components"], 14 * 2 + 5);
    assert_eq!(report["signed"], true);

    // The installer-side check and the stock tools all accept it.
    let v = Command::new(FERRY)
        .args(["bundle", "verify"])
        .arg(&out)
        .arg("--trust")
        .arg(&pubkey)
        .output()
        .expect("verify");
    ok(&v, "bundle verify");
    // inspect says what each upstream index lists beyond the bundle, and why.
    let inspect = run({
        let mut c = Command::new(FERRY);
        c.args(["bundle", "inspect"]).arg(&out);
        c
    });
    ok(&inspect, "bundle inspect");
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(
        text.contains(
            "left out: 6 of the upstream index's entries (3 platform not requested: linux/arm/v7, \
             linux/ppc64le, linux/s390x; 3 foreign layers: windows/amd64 10.0.17763.5458, \
             windows/amd64 10.0.20348.2322, windows/amd64 10.0.25398.709)"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "left out: 6 of the upstream index's entries (2 platform not requested: \
             linux/arm/v7, linux/ppc64le; 4 attestation)"
        ),
        "{text}"
    );
    // Every image the fixture upstream signs (quay.io's cilium and jetstack
    // images; Calico's images are published unsigned) carries its signature.
    assert_eq!(text.matches("    signature: quay.io/").count(), 6, "{text}");
    let x = work.path().join("x");
    std::fs::create_dir(&x).expect("mkdir");
    ok(
        &sh(&format!(
            "zstd -dc '{}' | tar -x -C '{}'",
            out.display(),
            x.display()
        )),
        "zstd -dc | tar -x",
    );
    let m = Command::new("minisign")
        .args(["-Vm"])
        .arg(x.join("bundle.json"))
        .arg("-x")
        .arg(x.join("bundle.json.minisig"))
        .arg("-p")
        .arg(&pubkey)
        .output()
        .expect("minisign");
    ok(&m, "minisign -Vm");

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(x.join("bundle.json")).expect("bundle.json"))
            .expect("JSON");
    // Upstream URLs are recorded, never the mirror addresses.
    let text = serde_json::to_string(&manifest).expect("json");
    assert!(
        !text.contains("127.0.0.1"),
        "bundle.json leaks a mirror address"
    );
    for name in [
        "kube-apiserver",
        "kubelet",
        "kubectl",
        "etcd",
        "etcdctl",
        "etcdutl",
        "runc",
        "crictl",
        "helm",
    ] {
        for arch in ["amd64", "arm64"] {
            let p = x.join(format!("bin/linux-{arch}/{name}"));
            assert!(p.is_file(), "missing {}", p.display());
        }
    }
    // etcd is Debian's real binary taken out of the tarball.
    assert_eq!(
        sha256_file(&x.join("bin/linux-amd64/etcd")),
        sha256_file(Path::new("/usr/bin/etcd"))
    );
    assert!(x
        .join("archives/linux-arm64/containerd-1.7.18-linux-arm64.tar.gz")
        .is_file());
    let kubelet = manifest["components"]
        .as_array()
        .expect("components")
        .iter()
        .find(|c| c["path"] == "bin/linux-amd64/kubelet")
        .expect("kubelet component");
    assert_eq!(
        kubelet["source"],
        "https://dl.k8s.io/release/v1.29.6/bin/linux/amd64/kubelet"
    );
    assert_eq!(
        kubelet["checksum_source"],
        "https://dl.k8s.io/release/v1.29.6/bin/linux/amd64/kubelet.sha256"
    );

    // Every image, both platforms, with the upstream index digest; the rest of
    // each upstream index is left out and said so; signatures travel along.
    let upstream = layout_digests(&up.images);
    let layout = x.join("images");
    let carried = layout_digests(&layout);
    for reference in CATALOG_IMAGES {
        let digest = &carried[*reference];
        assert_eq!(
            Some(digest),
            upstream.get(*reference),
            "{reference}: digest changed"
        );
        let raw =
            std::fs::read(layout.join("blobs/sha256").join(&digest[7..])).expect("index blob");
        assert_eq!(
            format!("sha256:{}", hex::encode(Sha256::digest(&raw))),
            *digest
        );
        let rec = manifest["images"]
            .as_array()
            .expect("images")
            .iter()
            .find(|i| i["reference"] == *reference)
            .expect("image record");
        assert_eq!(rec["digest"], digest.as_str());
        check_carried_platforms(&layout, reference, &raw);
        check_left_out(reference, rec, &raw);
        let sig = format!(
            "{}:sha256-{}.sig",
            reference.rsplit_once(':').unwrap().0,
            &digest[7..]
        );
        if upstream.contains_key(&sig) {
            assert_eq!(rec["signature"]["reference"], sig.as_str(), "{reference}");
            assert_eq!(
                rec["signature"]["digest"],
                upstream[&sig].as_str(),
                "{reference}"
            );
            assert_eq!(
                carried.get(&sig),
                upstream.get(&sig),
                "{sig} in images/index.json"
            );
        } else {
            assert!(rec.get("signature").is_none(), "{reference}: {rec}");
        }
    }

    // A layer shared by every image is stored once in the tar and in bundle.json.
    let shared = shared_layers(&up.images);
    assert!(!shared.is_empty(), "fixture images share no layer");
    let listing = sh(&format!("zstd -dc '{}' | tar -t", out.display()));
    ok(&listing, "tar -t");
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    for d in &shared {
        let path = format!("images/blobs/sha256/{}", d.trim_start_matches("sha256:"));
        assert_eq!(
            listing.lines().filter(|l| *l == path).count(),
            1,
            "{path} in tar"
        );
        let n = manifest["files"]
            .as_array()
            .expect("files")
            .iter()
            .filter(|f| f["path"] == path.as_str())
            .count();
        assert_eq!(n, 1, "{path} in bundle.json");
    }
}

/// The index's linux/amd64 and linux/arm64 manifests are in the bundle with
/// every blob, each config naming its architecture.
fn check_carried_platforms(layout: &Path, reference: &str, index: &[u8]) {
    let read = |d: &str| -> Vec<u8> {
        let bytes = std::fs::read(layout.join("blobs/sha256").join(&d[7..]))
            .unwrap_or_else(|e| panic!("{reference}: blob {d}: {e}"));
        assert_eq!(format!("sha256:{}", hex::encode(Sha256::digest(&bytes))), d);
        bytes
    };
    let index: serde_json::Value = serde_json::from_slice(index).expect("index JSON");
    for arch in ["amd64", "arm64"] {
        let entry = index["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .find(|m| m["platform"]["os"] == "linux" && m["platform"]["architecture"] == arch)
            .unwrap_or_else(|| panic!("{reference}: no linux/{arch} entry"));
        let m: serde_json::Value =
            serde_json::from_slice(&read(entry["digest"].as_str().unwrap())).expect("JSON");
        let config: serde_json::Value =
            serde_json::from_slice(&read(m["config"]["digest"].as_str().unwrap())).expect("JSON");
        assert_eq!(config["architecture"], arch, "{reference}");
        for l in m["layers"].as_array().expect("layers") {
            read(l["digest"].as_str().unwrap());
        }
    }
}

/// bundle.json lists every other entry of the upstream index with its reason.
fn check_left_out(reference: &str, rec: &serde_json::Value, index: &[u8]) {
    let index: serde_json::Value = serde_json::from_slice(index).expect("index JSON");
    let entries = index["manifests"].as_array().expect("manifests");
    let left_out = rec["left_out"].as_array().expect("left_out");
    assert_eq!(left_out.len(), entries.len() - 2, "{reference}: {rec}");
    let reasons: BTreeMap<String, usize> = left_out.iter().fold(BTreeMap::new(), |mut m, e| {
        *m.entry(e["reason"].as_str().unwrap().to_owned())
            .or_default() += 1;
        m
    });
    // As the fixture upstream publishes them: registry.k8s.io's lists carry
    // windows entries; Calico's lists (docker.io/calico, quay.io/tigera) add
    // ppc64le and s390x only; the others are buildkit indexes with attestations.
    let calico =
        reference.starts_with("docker.io/calico/") || reference.starts_with("quay.io/tigera/");
    let expected: BTreeMap<String, usize> = if reference.starts_with("registry.k8s.io/") {
        [("foreign-layers", 3), ("platform-not-requested", 3)].to_vec()
    } else if calico {
        [("platform-not-requested", 2)].to_vec()
    } else {
        [("attestation", 4), ("platform-not-requested", 2)].to_vec()
    }
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(reasons, expected, "{reference}");
}

/// Layer digests referenced by more than one image of an OCI layout, among the
/// platforms a bundle carries (signature tags aside).
fn shared_layers(layout: &Path) -> BTreeSet<String> {
    let read = |d: &str| -> serde_json::Value {
        let p = layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"));
        serde_json::from_slice(&std::fs::read(p).expect("blob")).expect("JSON")
    };
    let mut users: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (reference, digest) in layout_digests(layout) {
        if reference.ends_with(".sig") {
            continue;
        }
        for m in read(&digest)["manifests"]
            .as_array()
            .expect("index")
            .clone()
            .into_iter()
            .filter(common::mirror::carried_entry)
        {
            for l in read(m["digest"].as_str().expect("digest"))["layers"]
                .as_array()
                .expect("layers")
            {
                users
                    .entry(l["digest"].as_str().expect("d").to_string())
                    .or_default()
                    .insert(reference.clone());
            }
        }
    }
    users
        .into_iter()
        .filter(|(_, u)| u.len() > 1)
        .map(|(d, _)| d)
        .collect()
}

#[test]
fn same_inputs_and_epoch_give_byte_identical_bundles() {
    let up = Upstream::start(UpstreamOptions::default());
    let work = tempfile::tempdir().expect("tmp");
    let (key, _) = keygen(work.path());
    let key = key.to_str().expect("utf8");
    let bundle = |dir: &str, extra: &[&str]| -> PathBuf {
        let out = work.path().join(dir).join("prod.tar.zst");
        std::fs::create_dir_all(out.parent().expect("parent")).expect("mkdir");
        // A fresh cache each time: nothing carries over between the builds.
        ok(
            &run(build_cmd(
                &up,
                &work.path().join(dir).join("cache"),
                &out,
                extra,
            )),
            "bundle build",
        );
        out
    };
    let (a, b) = (bundle("a", &["--unsigned"]), bundle("b", &["--unsigned"]));
    assert!(std::fs::metadata(&a).expect("a").len() > 1 << 20);
    assert_eq!(
        sha256_file(&a),
        sha256_file(&b),
        "two unsigned builds from the same inputs differ"
    );

    // Signed: minisign signatures carry random noise (the stock format allows
    // it), so compare every entry but bundle.json.minisig.
    let (c, d) = (
        bundle("c", &["--sign-key", key]),
        bundle("d", &["--sign-key", key]),
    );
    let entries = |p: &Path| -> Vec<(String, String)> {
        let x = p.with_extension("x");
        std::fs::create_dir_all(&x).expect("mkdir");
        ok(
            &sh(&format!(
                "zstd -dc '{}' | tar -x -C '{}'",
                p.display(),
                x.display()
            )),
            "extract",
        );
        let mut v: Vec<(String, String)> = walk(&x)
            .into_iter()
            .filter(|f| !f.ends_with("bundle.json.minisig"))
            .map(|f| {
                (
                    f.strip_prefix(&x).expect("prefix").display().to_string(),
                    sha256_file(&f),
                )
            })
            .collect();
        v.sort();
        v
    };
    let (ec, ed) = (entries(&c), entries(&d));
    // 104 content files, 18 of the six signed images' cosign signatures, 5
    // addon artifacts (Cilium and tigera-operator charts, cert-manager,
    // metrics-server, prometheus-operator CRDs), and 7 files for each of
    // the 8 Calico images (list, 2 manifests, 2 configs, 2 own layers);
    // besides those, the debian-12 package sets of both platforms.
    let os_files = ec
        .iter()
        .filter(|(p, _)| p.starts_with("os/debian-12/"))
        .count();
    assert!(os_files > 2 * 2, "both platforms' package sets: {os_files}");
    assert_eq!(
        ec.len() - os_files,
        184,
        "bundle.json + 183 content files expected"
    );
    assert_eq!(ec, ed, "signed builds differ beyond the signature");
}

#[test]
fn tampered_upstream_binary_fails_naming_file_url_and_digests() {
    let up = Upstream::start(UpstreamOptions::default());
    let work = tempfile::tempdir().expect("tmp");
    let path = "/dl.k8s.io/release/v1.29.6/bin/linux/amd64/kubelet";
    let file = up.file(path);
    let expected = std::fs::read_to_string(up.file(&format!("{path}.sha256")))
        .expect("sha256")
        .trim()
        .to_string();
    // Replace (not edit: the tree is hard-linked) with different bytes.
    let mut bytes = std::fs::read(&file).expect("kubelet");
    bytes.extend_from_slice(b"# tampered\n");
    std::fs::remove_file(&file).expect("rm");
    std::fs::write(&file, &bytes).expect("write");
    let actual = hex::encode(Sha256::digest(&bytes));

    let out = work.path().join("x.tar.zst");
    let res = run(build_cmd(
        &up,
        &work.path().join("cache"),
        &out,
        &["--unsigned", "--platform", "linux/amd64"],
    ));
    assert_eq!(res.status.code(), Some(1), "{}", stderr(&res));
    let err = stderr(&res);
    assert!(err.contains("kubelet"), "{err}");
    assert!(
        err.contains("https://dl.k8s.io/release/v1.29.6/bin/linux/amd64/kubelet"),
        "{err}"
    );
    assert!(
        err.contains(&expected) && err.contains(&actual),
        "both digests expected in: {err}"
    );
    assert!(!out.exists(), "a failed build left {}", out.display());
    // Nothing unverified entered the cache.
    assert!(!work
        .path()
        .join("cache/blobs/sha256")
        .join(&actual)
        .exists());
}

#[test]
fn pinned_digest_that_disagrees_fails() {
    let up = Upstream::start(UpstreamOptions::default());
    let work = tempfile::tempdir().expect("tmp");
    let cat_dir = up.catalog_dir();
    let builtin =
        std::fs::read_to_string(common::upstream::repo_root().join("bundles/catalog/1.29.6.toml"))
            .expect("catalog");
    let bogus = "0".repeat(64);
    // Pin kubelet linux/amd64 to a digest the checksum file does not list.
    let pinned = builtin.replacen(
        "url = \"https://dl.k8s.io/release/v{version}/bin/{os}/{arch}/kubelet\"",
        &format!("url = \"https://dl.k8s.io/release/v{{version}}/bin/{{os}}/{{arch}}/kubelet\"\nsha256 = {{ \"linux/amd64\" = \"{bogus}\" }}"),
        1,
    );
    assert_ne!(pinned, builtin);
    std::fs::write(cat_dir.join("1.29.6.toml"), pinned).expect("write");
    let out = work.path().join("x.tar.zst");
    let cmd = build_cmd(
        &up,
        &work.path().join("cache"),
        &out,
        &["--unsigned", "--platform", "linux/amd64"],
    );
    let res = run(cmd);
    assert_eq!(res.status.code(), Some(1));
    let err = stderr(&res);
    assert!(
        err.contains("kubelet") && err.contains(&bogus) && err.contains("pinned"),
        "{err}"
    );
}

#[test]
fn image_without_arm64_fails_naming_image_and_platform() {
    let missing = "registry.k8s.io/metrics-server/metrics-server:v0.7.1";
    let up = Upstream::start(UpstreamOptions {
        images: CATALOG_IMAGES
            .iter()
            .filter(|r| **r != missing)
            .map(|s| s.to_string())
            .collect(),
        amd64_only_images: vec![missing.to_string()],
        ..Default::default()
    });
    let work = tempfile::tempdir().expect("tmp");
    let out = work.path().join("x.tar.zst");
    let res = run(build_cmd(
        &up,
        &work.path().join("cache"),
        &out,
        &["--unsigned"],
    ));
    assert_eq!(res.status.code(), Some(1));
    let err = stderr(&res);
    assert!(
        err.contains(missing) && err.contains("linux/arm64"),
        "{err}"
    );
    assert!(!out.exists());
    // amd64 alone is fine.
    let res = run(build_cmd(
        &up,
        &work.path().join("cache"),
        &out,
        &["--unsigned", "--platform", "linux/amd64"],
    ));
    ok(&res, "amd64-only build");
}

#[test]
fn unsigned_needs_an_explicit_flag() {
    let up = Upstream::start(UpstreamOptions {
        images: vec![],
        ..Default::default()
    });
    let work = tempfile::tempdir().expect("tmp");
    let res = run(build_cmd(
        &up,
        &work.path().join("cache"),
        &work.path().join("x.tar.zst"),
        &[],
    ));
    assert_eq!(res.status.code(), Some(1));
    assert!(stderr(&res).contains("--unsigned"), "{}", stderr(&res));
    assert_eq!(
        up.requests().total_started(),
        0,
        "refused build still downloaded"
    );
}

#[test]
fn split_build_parts_verify() {
    let up = Upstream::start(UpstreamOptions::default());
    let work = tempfile::tempdir().expect("tmp");
    let (key, pubkey) = keygen(work.path());
    let out = work.path().join("prod.tar.zst");
    let res = run(build_cmd(
        &up,
        &work.path().join("cache"),
        &out,
        &[
            "--sign-key",
            key.to_str().expect("utf8"),
            "--split",
            "16M",
            "--platform",
            "linux/amd64",
        ],
    ));
    ok(&res, "split build");
    let parts: Vec<PathBuf> = (0..100)
        .map(|i| work.path().join(format!("prod.tar.zst.{i:03}")))
        .take_while(|p| p.exists())
        .collect();
    assert!(parts.len() >= 2, "expected several parts, got {parts:?}");
    for p in &parts {
        assert!(std::fs::metadata(p).expect("part").len() <= 16 << 20);
    }
    let parts_json = work.path().join("prod.parts.json");
    assert!(parts_json.is_file());
    let v = Command::new(FERRY)
        .args(["bundle", "verify"])
        .arg(&parts_json)
        .arg("--trust")
        .arg(&pubkey)
        .output()
        .expect("verify");
    ok(&v, "bundle verify of parts");
    // The concatenated parts are a normal bundle for stock tools.
    let list = sh(&format!(
        "cat '{}'.[0-9][0-9][0-9] | zstd -dc | tar -t | grep -c '^images/blobs/sha256/'",
        out.display()
    ));
    ok(&list, "cat parts | zstd -dc | tar -t");
}

#[test]
fn killed_build_resumes_and_fetches_only_what_is_missing() {
    // Slow file server (per-response delay and rate) so the kill lands mid-build.
    let up = Upstream::start(UpstreamOptions {
        delay_ms: 150,
        rate: 24 << 20,
        ..Default::default()
    });
    let work = tempfile::tempdir().expect("tmp");
    let cache = work.path().join("cache");
    let out = work.path().join("x.tar.zst");

    let mut child = build_cmd(&up, &cache, &out, &["--unsigned", "--concurrency", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ferry");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done: u64 = up
            .requests()
            .completed
            .iter()
            .filter(|(p, _)| is_payload(p))
            .map(|(_, n)| n)
            .sum();
        if done >= 4 {
            break;
        }
        assert!(
            child.try_wait().expect("wait").is_none(),
            "build finished before it could be killed"
        );
        assert!(Instant::now() < deadline, "build made no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("kill");
    child.wait().expect("reap");
    assert!(!out.exists());

    // What the first run left in the cache, by upstream path.
    let first = up.requests();
    let payloads: Vec<String> = payload_paths(&up);
    let digest_of: BTreeMap<String, String> = payloads
        .iter()
        .map(|p| (p.clone(), sha256_file(&up.file(p))))
        .collect();
    let cached = |d: &str| cache.join("blobs/sha256").join(d).is_file();
    let have: BTreeSet<&String> = digest_of.values().filter(|d| cached(d)).collect();
    let all: BTreeSet<&String> = digest_of.values().collect();
    assert!(
        !have.is_empty() && have.len() < all.len(),
        "kill did not land mid-build: {} of {} cached",
        have.len(),
        all.len()
    );
    let reg_first = up.registry_blob_gets();

    ok(
        &run(build_cmd(&up, &cache, &out, &["--unsigned"])),
        "resumed build",
    );
    let second = up.requests();
    let mut fetched_digests = BTreeSet::new();
    for p in &payloads {
        let n = second.started.get(p).copied().unwrap_or(0)
            - first.started.get(p).copied().unwrap_or(0);
        let d = &digest_of[p];
        if have.contains(d) {
            assert_eq!(n, 0, "{p} was cached after the first run but fetched again");
        } else if n > 0 {
            assert_eq!(n, 1, "{p} fetched {n} times");
            assert!(
                fetched_digests.insert(d.clone()),
                "{p}: same content fetched twice"
            );
        }
    }
    // The Debian mirror holds more than a set carries (its minimal base):
    // only what either run asked for is this build's content.
    let used = |p: &String| !p.starts_with("/deb.debian.org/") || second.started.contains_key(p);
    let needed: BTreeSet<&String> = payloads
        .iter()
        .filter(|p| used(p))
        .map(|p| &digest_of[p])
        .collect();
    for d in needed.difference(&have) {
        assert!(
            fetched_digests.contains(*d),
            "content {d} was missing but not fetched"
        );
    }
    // Registry blobs fetched in the first run are not fetched again.
    let reg_second = up.registry_blob_gets();
    assert!(
        reg_second.len() >= 40,
        "registry access log shows {} blobs",
        reg_second.len()
    );
    for (d, n) in &reg_first {
        if cache
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
            .is_file()
            && *n > 0
        {
            assert_eq!(
                reg_second.get(d),
                Some(n),
                "blob {d} fetched again after it was cached"
            );
        }
    }

    // A third build with a warm cache downloads no payload at all, only the
    // Debian suite's signed InRelease (it names today's packages), once.
    let before = up.requests();
    std::fs::remove_file(&out).expect("rm");
    ok(
        &run(build_cmd(&up, &cache, &out, &["--unsigned"])),
        "warm build",
    );
    let after = up.requests();
    let again: Vec<&String> = after
        .started
        .iter()
        .filter(|(p, n)| **n > before.started.get(*p).copied().unwrap_or(0))
        .map(|(p, _)| p)
        .collect();
    assert_eq!(
        after.total_started(),
        before.total_started() + 1,
        "warm build made file requests: {again:?}"
    );
    assert_eq!(again, ["/deb.debian.org/debian/dists/bookworm/InRelease"]);
    assert_eq!(
        up.registry_blob_gets(),
        reg_second,
        "warm build fetched registry blobs"
    );
}

/// Checksum sources (checksum files, the Helm index, GitHub's release API)
/// are not payload.
fn is_payload(path: &str) -> bool {
    !(path.ends_with(".sha256")
        || path.ends_with(".sha256sum")
        || path.ends_with("SHA256SUMS")
        || path.ends_with("/index.yaml")
        || path.starts_with("/api.github.com/")
        // A release asset the fixture lists beside the ones the catalog takes.
        || path.ends_with("/metadata.yaml")
        || path.starts_with("/__"))
}

/// URL paths of every binary and archive the catalog fetches from the fixture.
fn payload_paths(up: &Upstream) -> Vec<String> {
    let mut out = Vec::new();
    for e in walk(&up.files) {
        let rel = format!("/{}", e.strip_prefix(&up.files).expect("prefix").display());
        if is_payload(&rel) && !rel.ends_with("/.done") {
            out.push(rel);
        }
    }
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn ferry_binary_is_carried_only_for_its_own_architecture() {
    let up = Upstream::start(UpstreamOptions::default());
    let work = tempfile::tempdir().expect("tmp");
    let out = work.path().join("x.tar.zst");
    let cache = work.path().join("cache");
    // Any real amd64 ELF stands in for a ferry build (keeps the test small).
    let elf = Path::new("/bin/true");
    let res = run(build_cmd(
        &up,
        &cache,
        &out,
        &["--unsigned", "--ferry-binary", "linux/arm64=/bin/true"],
    ));
    assert_eq!(res.status.code(), Some(1));
    let err = stderr(&res);
    assert!(
        err.contains("/bin/true") && err.contains("linux/arm64") && err.contains("ELF machine"),
        "{err}"
    );
    assert_eq!(
        up.requests().total_started(),
        0,
        "refused build still downloaded"
    );

    let res = run(build_cmd(
        &up,
        &cache,
        &out,
        &[
            "--unsigned",
            "--platform",
            "linux/amd64",
            "--ferry-binary",
            "linux/amd64=/bin/true",
        ],
    ));
    ok(&res, "build with --ferry-binary");
    let x = work.path().join("x");
    std::fs::create_dir(&x).expect("mkdir");
    ok(
        &sh(&format!(
            "zstd -dc '{}' | tar -x -C '{}'",
            out.display(),
            x.display()
        )),
        "extract",
    );
    assert_eq!(
        sha256_file(&x.join("bin/linux-amd64/ferry")),
        sha256_file(elf)
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(x.join("bundle.json")).expect("bundle.json"))
            .expect("JSON");
    let f = manifest["files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|f| f["path"] == "bin/linux-amd64/ferry")
        .cloned();
    assert_eq!(f.expect("ferry listed")["mode"], 0o755);
}

#[test]
fn executable_of_another_architecture_is_refused() {
    let up = Upstream::start(UpstreamOptions::default());
    let dir = "/github.com/opencontainers/runc/releases/download/v1.1.12";
    // Serve the amd64 runc as runc.arm64, with a checksum file that agrees.
    let arm = up.file(&format!("{dir}/runc.arm64"));
    std::fs::remove_file(&arm).expect("rm");
    std::fs::copy(up.file(&format!("{dir}/runc.amd64")), &arm).expect("copy");
    let sums = up.file(&format!("{dir}/runc.sha256sum"));
    let text = format!(
        "{}  runc.amd64\n{}  runc.arm64\n",
        sha256_file(&up.file(&format!("{dir}/runc.amd64"))),
        sha256_file(&arm)
    );
    std::fs::remove_file(&sums).expect("rm");
    std::fs::write(&sums, text).expect("write");

    let work = tempfile::tempdir().expect("tmp");
    let out = work.path().join("x.tar.zst");
    let res = run(build_cmd(
        &up,
        &work.path().join("cache"),
        &out,
        &["--unsigned"],
    ));
    assert_eq!(res.status.code(), Some(1));
    let err = stderr(&res);
    assert!(
        err.contains("bin/linux-arm64/runc") && err.contains("not linux/arm64"),
        "{err}"
    );
    assert!(!out.exists());
}
