//! Addon release artifacts in `ferry bundle build`: the Cilium chart (checked
//! against the Helm repository's index.yaml) and the cert-manager,
//! metrics-server and prometheus-operator release manifests (checked against
//! GitHub's release API digests), fetched from the fixture upstream only
//! through `--mirror`.

mod common;

use common::upstream::{Upstream, UpstreamOptions};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

/// (component, kind, bundle path, upstream URL, checksum source)
const ARTIFACTS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "cilium",
        "chart",
        "manifests/cilium/cilium-1.15.6.tgz",
        "https://helm.cilium.io/cilium-1.15.6.tgz",
        "https://helm.cilium.io/index.yaml",
    ),
    (
        "cert-manager",
        "manifest",
        "manifests/cert-manager/cert-manager.yaml",
        "https://github.com/cert-manager/cert-manager/releases/download/v1.14.5/cert-manager.yaml",
        "https://api.github.com/repos/cert-manager/cert-manager/releases/tags/v1.14.5",
    ),
    (
        "metrics-server",
        "manifest",
        "manifests/metrics-server/components.yaml",
        "https://github.com/kubernetes-sigs/metrics-server/releases/download/v0.7.1/components.yaml",
        "https://api.github.com/repos/kubernetes-sigs/metrics-server/releases/tags/v0.7.1",
    ),
    (
        "prometheus-operator-crds",
        "manifest",
        "manifests/prometheus-operator-crds/stripped-down-crds.yaml",
        "https://github.com/prometheus-operator/prometheus-operator/releases/download/v0.73.2/stripped-down-crds.yaml",
        "https://api.github.com/repos/prometheus-operator/prometheus-operator/releases/tags/v0.73.2",
    ),
];

fn build_cmd(up: &Upstream, work: &Path, out: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(FERRY);
    c.args([
        "bundle",
        "build",
        "--k8s",
        "1.29.6",
        "--plain",
        "--unsigned",
    ])
    .args(up.mirror_args())
    .arg("--cache-dir")
    .arg(work.join("cache"))
    .arg("-o")
    .arg(work.join(out))
    .args(extra)
    .env("SOURCE_DATE_EPOCH", "1700000000")
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

/// A failed build: exit 1, no bundle; returns stderr.
fn failed(out: &Output, bundle: &Path) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!bundle.exists(), "a failed build left {}", bundle.display());
    eprintln!("build failed as expected:\n{err}");
    err
}

fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// URL path at the fixture of an upstream URL.
fn fixture_path(url: &str) -> String {
    format!("/{}", url.trim_start_matches("https://"))
}

/// Replaces (never edits: the tree is hard-linked) a fixture file.
fn replace(path: &Path, data: &[u8]) {
    std::fs::remove_file(path).expect("rm");
    std::fs::write(path, data).expect("write");
}

#[test]
fn addon_artifacts_are_carried_with_their_sources_and_not_fetched_again() {
    let up = Upstream::start(UpstreamOptions::default());
    let work = tempfile::tempdir().expect("tmp");
    ok(&run(build_cmd(&up, work.path(), "a.tar.zst", &[])), "build");
    let bundle = work.path().join("a.tar.zst");
    let x = work.path().join("x");
    std::fs::create_dir(&x).expect("mkdir");
    let st = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "zstd -dc '{}' | tar -x -C '{}'",
            bundle.display(),
            x.display()
        ))
        .status()
        .expect("bash");
    assert!(st.success(), "zstd -dc | tar -x");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(x.join("bundle.json")).expect("bundle.json"))
            .expect("JSON");
    let first = up.requests();
    for (name, kind, path, url, source) in ARTIFACTS {
        let upstream = std::fs::read(up.file(&fixture_path(url))).expect("fixture file");
        let carried = std::fs::read(x.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(carried, upstream, "{path} differs from upstream");
        let c = manifest["components"]
            .as_array()
            .expect("components")
            .iter()
            .find(|c| c["path"] == *path)
            .unwrap_or_else(|| panic!("no component for {path}"));
        assert_eq!(c["name"], *name);
        assert_eq!(c["kind"], *kind);
        assert_eq!(c["source"], *url);
        assert_eq!(c["checksum_source"], *source);
        assert_eq!(c["sha256"], sha256(&upstream).as_str());
        assert!(c.get("platform").is_none(), "{c}");
        assert_eq!(first.started.get(&fixture_path(url)), Some(&1), "{url}");
        assert_eq!(
            first.started.get(&fixture_path(source)),
            Some(&1),
            "{source}"
        );
    }

    // inspect lists them with kind and path.
    let inspect = run({
        let mut c = Command::new(FERRY);
        c.args(["bundle", "inspect"]).arg(&bundle);
        c
    });
    ok(&inspect, "inspect");
    let text = String::from_utf8_lossy(&inspect.stdout);
    for (name, kind, path, _, _) in ARTIFACTS {
        let line = text
            .lines()
            .find(|l| l.trim_end().ends_with(path))
            .unwrap_or_else(|| panic!("inspect does not list {path}:\n{text}"));
        assert!(
            line.contains(name) && line.contains(&format!(" {kind} ")) && line.contains(" any "),
            "{line}"
        );
    }

    // A warm build fetches no artifact and no checksum source again: only
    // the Debian suite's signed InRelease, once, which names today's packages.
    ok(
        &run(build_cmd(&up, work.path(), "b.tar.zst", &[])),
        "warm build",
    );
    let second = up.requests();
    let again: BTreeMap<&String, u64> = second
        .started
        .iter()
        .map(|(p, n)| (p, n - first.started.get(p).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    let inrelease = "/deb.debian.org/debian/dists/bookworm/InRelease".to_string();
    assert_eq!(
        again,
        BTreeMap::from([(&inrelease, 1)]),
        "warm build made file requests"
    );
}

#[test]
fn tampered_chart_fails_naming_it_url_and_both_digests() {
    let up = Upstream::start(UpstreamOptions::default());
    let work = tempfile::tempdir().expect("tmp");
    let file = up.file("/helm.cilium.io/cilium-1.15.6.tgz");
    let mut bytes = std::fs::read(&file).expect("chart");
    let expected = sha256(&bytes);
    bytes.extend_from_slice(b"tampered");
    replace(&file, &bytes);
    let actual = sha256(&bytes);

    let out = run(build_cmd(
        &up,
        work.path(),
        "x.tar.zst",
        &["--platform", "linux/amd64"],
    ));
    let err = failed(&out, &work.path().join("x.tar.zst"));
    assert!(
        err.contains("cilium-1.15.6.tgz")
            && err.contains("https://helm.cilium.io/cilium-1.15.6.tgz")
            && err.contains("https://helm.cilium.io/index.yaml"),
        "{err}"
    );
    assert!(
        err.contains(&expected) && err.contains(&actual),
        "both digests: {err}"
    );
    assert!(!work
        .path()
        .join("cache/blobs/sha256")
        .join(&actual)
        .exists());
}

#[test]
fn pin_that_disagrees_with_the_release_api_fails() {
    let up = Upstream::start(UpstreamOptions::default());
    let work = tempfile::tempdir().expect("tmp");
    let cat_dir = up.catalog_dir();
    let builtin =
        std::fs::read_to_string(common::upstream::repo_root().join("bundles/catalog/1.29.6.toml"))
            .expect("catalog");
    let url_line = "url = \"https://github.com/cert-manager/cert-manager/releases/download/v{version}/cert-manager.yaml\"";
    let bogus = "0".repeat(64);
    let pinned = builtin.replacen(
        url_line,
        &format!("{url_line}\nsha256 = {{ any = \"{bogus}\" }}"),
        1,
    );
    assert_ne!(pinned, builtin);
    std::fs::write(cat_dir.join("1.29.6.toml"), pinned).expect("write");
    let url = ARTIFACTS[1].3;
    let listed = sha256(&std::fs::read(up.file(&fixture_path(url))).expect("manifest"));

    let cmd = build_cmd(
        &up,
        work.path(),
        "x.tar.zst",
        &["--platform", "linux/amd64"],
    );
    let err = failed(&run(cmd), &work.path().join("x.tar.zst"));
    assert!(
        err.contains("cert-manager.yaml")
            && err.contains(url)
            && err.contains("pinned")
            && err.contains(&bogus)
            && err.contains(&listed),
        "{err}"
    );
}

#[test]
fn artifact_naming_an_image_the_bundle_lacks_fails_the_closure_lint() {
    let up = Upstream::start(UpstreamOptions::default());
    let work = tempfile::tempdir().expect("tmp");
    // metrics-server's manifest now asks for a tag the profile does not carry;
    // the release API lists the new file's digest, so only the lint objects.
    let (_, _, path, url, api) = ARTIFACTS[2];
    let file = up.file(&fixture_path(url));
    let text = std::fs::read_to_string(&file).expect("components.yaml");
    let missing = "registry.k8s.io/metrics-server/metrics-server:v0.7.2";
    let changed = text.replace(
        "metrics-server/metrics-server:v0.7.1",
        "metrics-server/metrics-server:v0.7.2",
    );
    assert_ne!(changed, text);
    replace(&file, changed.as_bytes());
    let api_file = up.file(&fixture_path(api));
    let mut release: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&api_file).expect("release")).expect("JSON");
    release["assets"][0]["digest"] = format!("sha256:{}", sha256(changed.as_bytes())).into();
    replace(&api_file, release.to_string().as_bytes());

    let out = run(build_cmd(
        &up,
        work.path(),
        "x.tar.zst",
        &["--platform", "linux/amd64"],
    ));
    let err = failed(&out, &work.path().join("x.tar.zst"));
    assert!(
        err.contains("closure lint") && err.contains(path) && err.contains(missing),
        "{err}"
    );
    // The carried images themselves pass: only the one the artifact names fails.
    assert_eq!(err.matches("is not in the bundle").count(), 1, "{err}");
}

/// bundle.json of a built bundle, read by `ferry bundle inspect --json`.
fn bundle_json(bundle: &Path) -> serde_json::Value {
    let out = Command::new(FERRY)
        .args(["bundle", "inspect", "--json"])
        .arg(bundle)
        .output()
        .expect("inspect");
    ok(&out, "inspect --json");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    v["manifest"].clone()
}

fn component<'a>(manifest: &'a serde_json::Value, path: &str) -> &'a serde_json::Value {
    manifest["components"]
        .as_array()
        .expect("components")
        .iter()
        .find(|c| c["path"] == path)
        .unwrap_or_else(|| panic!("no component for {path}"))
}

#[test]
fn asset_without_an_upstream_digest_needs_a_pin() {
    let up = Upstream::start(UpstreamOptions::default());
    let work = tempfile::tempdir().expect("tmp");
    // GitHub lists no digest for some older release assets.
    let (_, _, path, url, api) = ARTIFACTS[3];
    let api_file = up.file(&fixture_path(api));
    let mut release: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&api_file).expect("release")).expect("JSON");
    release["assets"][0]["digest"] = serde_json::Value::Null;
    replace(&api_file, release.to_string().as_bytes());
    let args = ["--platform", "linux/amd64"];
    let err = failed(
        &run(build_cmd(&up, work.path(), "x.tar.zst", &args)),
        &work.path().join("x.tar.zst"),
    );
    assert!(
        err.contains("stripped-down-crds.yaml") && err.contains(api) && err.contains("pin"),
        "{err}"
    );

    // With the digest pinned in the catalog the pin vouches for the file.
    let digest = sha256(&std::fs::read(up.file(&fixture_path(url))).expect("crds"));
    let cat_dir = up.catalog_dir();
    let builtin =
        std::fs::read_to_string(common::upstream::repo_root().join("bundles/catalog/1.29.6.toml"))
            .expect("catalog");
    let url_line = "url = \"https://github.com/prometheus-operator/prometheus-operator/releases/download/v{version}/stripped-down-crds.yaml\"";
    let pinned = builtin.replacen(
        url_line,
        &format!("{url_line}\nsha256 = {{ any = \"{digest}\" }}"),
        1,
    );
    assert_ne!(pinned, builtin);
    std::fs::write(cat_dir.join("1.29.6.toml"), pinned).expect("write");
    let cmd = build_cmd(&up, work.path(), "x.tar.zst", &args);
    ok(&run(cmd), "pinned build");
    let manifest = bundle_json(&work.path().join("x.tar.zst"));
    let c = component(&manifest, path);
    assert_eq!(c["sha256"], digest.as_str());
    let source = c["checksum_source"].as_str().expect("checksum_source");
    assert!(
        source.contains("1.29.6.toml") && source.contains("pinned") && source.contains(api),
        "{source}"
    );
}

#[test]
fn cached_helm_index_without_the_version_is_fetched_again() {
    let up = Upstream::start(UpstreamOptions::default());
    let work = tempfile::tempdir().expect("tmp");
    let index = up.file("/helm.cilium.io/index.yaml");
    let current = std::fs::read_to_string(&index).expect("index.yaml");
    // An index from before 1.15.6 was published.
    let old: String = current.replace("cilium-1.15.6.tgz", "cilium-1.15.4.tgz");
    assert_ne!(old, current);
    replace(&index, old.as_bytes());
    let args = ["--platform", "linux/amd64"];
    let err = failed(
        &run(build_cmd(&up, work.path(), "x.tar.zst", &args)),
        &work.path().join("x.tar.zst"),
    );
    assert!(
        err.contains("https://helm.cilium.io/index.yaml") && err.contains("cilium-1.15.6.tgz"),
        "{err}"
    );
    // Upstream publishes 1.15.6: the same cache picks up the new index.
    replace(&index, current.as_bytes());
    let before = up.requests();
    ok(
        &run(build_cmd(&up, work.path(), "x.tar.zst", &args)),
        "build after the index changed",
    );
    let after = up.requests();
    let n = |r: &common::upstream::Requests| {
        r.started
            .get("/helm.cilium.io/index.yaml")
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(n(&after) - n(&before), 1, "index.yaml fetched again once");
    let manifest = bundle_json(&work.path().join("x.tar.zst"));
    assert_eq!(
        component(&manifest, ARTIFACTS[0].2)["checksum_source"],
        "https://helm.cilium.io/index.yaml"
    );
}
