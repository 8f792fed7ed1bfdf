//! `ferry registry serve` against real clients: the OCI API answers (status
//! codes, headers, error bodies, Range) checked with reqwest, skopeo inspecting
//! and copying, and Debian's containerd pulling every image by its upstream
//! name through certs.d hosts.toml, over plain HTTP and over TLS with a CA
//! generated in the test.

mod common;

use common::mirror::{
    ferry, hosts_dir, left_out_entries, reachable_blobs, sha256_hex, Containerd, Mirror, TestCa,
};
use common::testbundle::{keypair, make_bundle};
use reqwest::blocking::Client;
use reqwest::StatusCode;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const REFS: &[&str] = &[
    "registry.k8s.io/pause:3.9",
    "registry.k8s.io/coredns/coredns:v1.11.1",
    "quay.io/cilium/cilium:v1.15.6",
    "docker.io/library/busybox:1.36",
];

/// A signed bundle of `refs`, unpacked with `ferry bundle unpack` into `data/`.
struct Fixture {
    dir: tempfile::TempDir,
    public: std::path::PathBuf,
    secret: std::path::PathBuf,
    /// ref -> digest, from bundle.json.
    digests: BTreeMap<String, String>,
    layout: std::path::PathBuf,
}

impl Fixture {
    fn new(refs: &[&str]) -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("ferry-serve-")
            .tempdir()
            .unwrap();
        let (public, secret) = keypair(dir.path(), "release");
        let mut fx = Fixture {
            dir,
            public,
            secret,
            digests: BTreeMap::new(),
            layout: Default::default(),
        };
        let (digests, layout) = fx.add_bundle("test", refs);
        fx.digests = digests;
        fx.layout = layout;
        fx
    }

    /// Builds and unpacks another bundle into the same data dir.
    fn add_bundle(
        &self,
        name: &str,
        refs: &[&str],
    ) -> (BTreeMap<String, String>, std::path::PathBuf) {
        let b = make_bundle(self.dir.path(), name, refs, 0, 1000, Some(&self.secret));
        let out = ferry()
            .args(["bundle", "unpack", "--trust"])
            .arg(&self.public)
            .arg("--data-dir")
            .arg(self.data())
            .arg(&b.path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "unpack {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let digests = b
            .manifest
            .images
            .iter()
            .map(|i| (i.reference.clone(), i.digest.clone()))
            .collect();
        (digests, b.layout)
    }

    fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    fn layout(&self) -> std::path::PathBuf {
        self.layout.clone()
    }
}

fn error_code(resp: reqwest::blocking::Response) -> String {
    let v: serde_json::Value = resp.json().expect("OCI error body is JSON");
    v["errors"][0]["code"]
        .as_str()
        .expect("errors[0].code")
        .to_owned()
}

fn expect_error(
    client: &Client,
    method: reqwest::Method,
    url: &str,
    status: StatusCode,
    code: &str,
) {
    let resp = client.request(method.clone(), url).send().unwrap();
    assert_eq!(resp.status(), status, "{method} {url}");
    assert_eq!(
        resp.headers()["content-type"],
        "application/json",
        "{method} {url}"
    );
    if method == reqwest::Method::HEAD {
        assert!(resp.bytes().unwrap().is_empty(), "HEAD {url} has a body");
    } else {
        assert_eq!(error_code(resp), code, "{method} {url}");
    }
}

#[test]
fn api_answers_with_the_right_status_headers_and_bodies() {
    // docker.io/library/pause makes the bare name `pause` ambiguous.
    let fx = Fixture::new(&[
        "registry.k8s.io/pause:3.9",
        "docker.io/library/pause:1.0",
        "quay.io/cilium/cilium:v1.15.6",
    ]);
    let mirror = Mirror::start(&fx.data(), fx.dir.path(), None);
    let client = Client::new();
    let base = &mirror.url;
    let pause = &fx.digests["registry.k8s.io/pause:3.9"];

    let resp = client.get(format!("{base}/v2/")).send().unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );

    // Manifest by tag: ns parameter, host prefix, same bytes and digest.
    for url in [
        format!("{base}/v2/pause/manifests/3.9?ns=registry.k8s.io"),
        format!("{base}/v2/registry.k8s.io/pause/manifests/3.9"),
        format!("{base}/v2/registry.k8s.io/pause/manifests/{pause}"),
    ] {
        let resp = client.get(&url).send().unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{url}");
        let h = resp.headers().clone();
        assert_eq!(
            h["content-type"], "application/vnd.docker.distribution.manifest.list.v2+json",
            "{url}"
        );
        assert_eq!(h["docker-content-digest"], pause.as_str(), "{url}");
        let body = resp.bytes().unwrap();
        assert_eq!(h["content-length"], body.len().to_string().as_str());
        assert_eq!(format!("sha256:{}", sha256_hex(&body)), *pause, "{url}");
    }

    // HEAD: headers, no body.
    let resp = client
        .head(format!("{base}/v2/registry.k8s.io/pause/manifests/3.9"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["docker-content-digest"], pause.as_str());
    assert!(
        resp.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert!(resp.bytes().unwrap().is_empty());

    // Nested per-platform manifests resolve by digest, with their own media type.
    let blobs = reachable_blobs(&fx.layout(), pause);
    let platform_manifest = &blobs[1];
    let resp = client
        .get(format!(
            "{base}/v2/pause/manifests/{platform_manifest}?ns=registry.k8s.io"
        ))
        .send()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        format!("sha256:{}", sha256_hex(&resp.bytes().unwrap())),
        *platform_manifest
    );
    partial_indexes_name_what_is_not_carried(&fx, &client, base);

    // Ambiguous bare name, disambiguated by ns or by the docker.io library/ path.
    expect_error(
        &client,
        reqwest::Method::GET,
        &format!("{base}/v2/pause/manifests/3.9"),
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
    );
    let hub = &fx.digests["docker.io/library/pause:1.0"];
    for url in [
        format!("{base}/v2/pause/manifests/1.0?ns=docker.io"),
        format!("{base}/v2/library/pause/manifests/1.0"),
    ] {
        let resp = client.get(&url).send().unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{url}");
        assert_eq!(resp.headers()["docker-content-digest"], hub.as_str());
    }
    // Unique bare path without ns.
    let resp = client
        .get(format!("{base}/v2/cilium/cilium/manifests/v1.15.6"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // Accept header that excludes indexes.
    let resp = client
        .get(format!("{base}/v2/registry.k8s.io/pause/manifests/3.9"))
        .header(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(resp), "MANIFEST_UNKNOWN");

    // Unknown things and malformed paths.
    let zero = format!("sha256:{}", "0".repeat(64));
    let get = reqwest::Method::GET;
    expect_error(
        &client,
        get.clone(),
        &format!("{base}/v2/nope/manifests/1"),
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
    );
    expect_error(
        &client,
        get.clone(),
        &format!("{base}/v2/pause/manifests/3.9?ns=quay.io"),
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
    );
    expect_error(
        &client,
        get.clone(),
        &format!("{base}/v2/registry.k8s.io/pause/manifests/9.9"),
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    );
    expect_error(
        &client,
        get.clone(),
        &format!("{base}/v2/registry.k8s.io/pause/manifests/{zero}"),
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    );
    expect_error(
        &client,
        get.clone(),
        &format!("{base}/v2/registry.k8s.io/pause/blobs/{zero}"),
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    );
    expect_error(
        &client,
        reqwest::Method::HEAD,
        &format!("{base}/v2/registry.k8s.io/pause/blobs/{zero}"),
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    );
    expect_error(
        &client,
        get.clone(),
        &format!("{base}/v2/registry.k8s.io/pause/blobs/sha256:xyz"),
        StatusCode::BAD_REQUEST,
        "DIGEST_INVALID",
    );
    expect_error(
        &client,
        get.clone(),
        &format!("{base}/v2/registry.k8s.io/pause/manifests/sha256:12"),
        StatusCode::BAD_REQUEST,
        "DIGEST_INVALID",
    );
    expect_error(
        &client,
        get.clone(),
        &format!("{base}/v2/UPPER/manifests/1"),
        StatusCode::BAD_REQUEST,
        "NAME_INVALID",
    );
    expect_error(
        &client,
        get.clone(),
        &format!("{base}/v2/a/..%2F../manifests/1"),
        StatusCode::BAD_REQUEST,
        "NAME_INVALID",
    );
    expect_error(
        &client,
        get.clone(),
        &format!("{base}/v2/registry.k8s.io/pause"),
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
    );
    // A blob of another repository is not served under this one.
    let cilium_layer = reachable_blobs(&fx.layout(), &fx.digests["quay.io/cilium/cilium:v1.15.6"])
        .pop()
        .unwrap();
    expect_error(
        &client,
        get.clone(),
        &format!("{base}/v2/registry.k8s.io/pause/blobs/{cilium_layer}"),
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    );

    // Writes are refused.
    for (method, path) in [
        (reqwest::Method::PUT, "registry.k8s.io/pause/manifests/3.9"),
        (
            reqwest::Method::DELETE,
            "registry.k8s.io/pause/manifests/3.9",
        ),
        (
            reqwest::Method::POST,
            "registry.k8s.io/pause/blobs/uploads/",
        ),
        (
            reqwest::Method::PATCH,
            "registry.k8s.io/pause/blobs/uploads/x",
        ),
    ] {
        expect_error(
            &client,
            method,
            &format!("{base}/v2/{path}"),
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
        );
    }

    // Blobs: whole, HEAD, ranges, unsatisfiable range.
    let layer = blobs.last().unwrap();
    let url = format!("{base}/v2/registry.k8s.io/pause/blobs/{layer}");
    let resp = client.get(&url).send().unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["docker-content-digest"], layer.as_str());
    assert_eq!(resp.headers()["accept-ranges"], "bytes");
    let whole = resp.bytes().unwrap();
    assert_eq!(format!("sha256:{}", sha256_hex(&whole)), *layer);
    let size = whole.len();
    let resp = client.head(&url).send().unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-length"], size.to_string().as_str());
    assert!(resp.bytes().unwrap().is_empty());
    for (range, start, end) in [
        ("bytes=0-9", 0, 9),
        ("bytes=5-", 5, size - 1),
        ("bytes=-7", size - 7, size - 1),
    ] {
        let resp = client.get(&url).header("Range", range).send().unwrap();
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            resp.headers()["content-range"],
            format!("bytes {start}-{end}/{size}").as_str(),
            "{range}"
        );
        assert_eq!(&resp.bytes().unwrap()[..], &whole[start..=end], "{range}");
    }
    let resp = client
        .get(&url)
        .header("Range", format!("bytes={size}-"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes */{size}").as_str()
    );

    // Listings.
    let cat: serde_json::Value = client
        .get(format!("{base}/v2/_catalog"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        cat["repositories"],
        serde_json::json!([
            "docker.io/library/pause",
            "quay.io/cilium/cilium",
            "registry.k8s.io/pause"
        ])
    );
    let page: serde_json::Value = client
        .get(format!(
            "{base}/v2/_catalog?n=1&last=docker.io/library/pause"
        ))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        page["repositories"],
        serde_json::json!(["quay.io/cilium/cilium"])
    );
    let tags: serde_json::Value = client
        .get(format!("{base}/v2/pause/tags/list?ns=registry.k8s.io"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["3.9"]));

    // An access log line per request.
    assert!(
        mirror
            .log_text()
            .contains("\"GET /v2/registry.k8s.io/pause/manifests/3.9 HTTP/1.1\" 200"),
        "{}",
        mirror.log_text()
    );
}

#[test]
fn reloads_new_bundles_and_shuts_down_on_sigterm() {
    let fx = Fixture::new(&["registry.k8s.io/pause:3.9"]);
    let mut mirror = Mirror::start(&fx.data(), fx.dir.path(), None);
    let client = Client::new();
    let url = format!("{}/v2/registry.k8s.io/etcd/manifests/3.5.12-0", mirror.url);
    assert_eq!(
        client.get(&url).send().unwrap().status(),
        StatusCode::NOT_FOUND
    );

    // A second bundle is unpacked while serving: served without a restart.
    let (d2, _) = fx.add_bundle("second", &["registry.k8s.io/etcd:3.5.12-0"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let resp = client.get(&url).send().unwrap();
        if resp.status() == StatusCode::OK {
            assert_eq!(
                resp.headers()["docker-content-digest"],
                d2["registry.k8s.io/etcd:3.5.12-0"].as_str()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new bundle not served within 15 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The first bundle is still served (union of bundles).
    let first = client
        .get(format!(
            "{}/v2/registry.k8s.io/pause/manifests/3.9",
            mirror.url
        ))
        .send()
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);

    let status = mirror.stop();
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    assert!(mirror.log_text().contains("SIGTERM"));
}

/// Upstream indexes list windows, other linux platforms and attestations: the
/// index is served as published, and each entry the bundle left out answers
/// 404 MANIFEST_UNKNOWN naming its platform and what the bundle carries.
fn partial_indexes_name_what_is_not_carried(fx: &Fixture, client: &Client, base: &str) {
    for (reference, platform) in [
        ("registry.k8s.io/pause:3.9", "windows/amd64 10.0.17763.5458"),
        ("registry.k8s.io/pause:3.9", "linux/s390x"),
        ("quay.io/cilium/cilium:v1.15.6", "unknown/unknown"),
        ("quay.io/cilium/cilium:v1.15.6", "linux/arm/v7"),
    ] {
        let entry = left_out_entries(&fx.layout(), &fx.digests[reference])
            .into_iter()
            .find(|e| {
                let name = platform_of(e);
                name == platform
            })
            .unwrap_or_else(|| panic!("{reference} lists {platform} upstream"));
        let digest = entry["digest"].as_str().unwrap();
        let (repo, _) = reference.rsplit_once(':').unwrap();
        let url = format!("{base}/v2/{repo}/manifests/{digest}");
        let resp = client.get(&url).send().unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{url}");
        let body: serde_json::Value = resp.json().unwrap();
        assert_eq!(body["errors"][0]["code"], "MANIFEST_UNKNOWN", "{url}");
        assert_eq!(
            body["errors"][0]["message"],
            format!(
                "{repo}@{digest} ({platform}) is not in bundle test; it carries linux/amd64, linux/arm64"
            )
        );
    }
    // A cosign signature is carried beside the signed image under its upstream tag.
    let cilium = &fx.digests["quay.io/cilium/cilium:v1.15.6"];
    let url = format!(
        "{base}/v2/quay.io/cilium/cilium/manifests/sha256-{}.sig",
        &cilium[7..]
    );
    let resp = client.get(&url).send().unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{url}");
    let sig: serde_json::Value = resp.json().unwrap();
    assert_eq!(
        sig["layers"][0]["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
}

fn platform_of(entry: &serde_json::Value) -> String {
    let name = common::mirror::entry_platform(entry).unwrap_or_else(|| "unknown/unknown".into());
    match entry["platform"]["os.version"].as_str() {
        Some(v) => format!("{name} {v}"),
        None => name,
    }
}

#[test]
fn skopeo_inspects_and_copies_from_the_mirror() {
    let fx = Fixture::new(REFS);
    let mirror = Mirror::start(&fx.data(), fx.dir.path(), None);
    for (reference, digest) in &fx.digests {
        let out = Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{}/{reference}", mirror.addr))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo inspect {reference}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            format!("sha256:{}", sha256_hex(&out.stdout)),
            *digest,
            "{reference}"
        );

        // The index lists platforms the bundle does not carry: a copy of all
        // of them fails, naming the first one left out.
        let out = skopeo_copy(&mirror, reference, &["--all"], &fx.dir.path().join("all"));
        assert!(
            !out.status.success(),
            "skopeo copy --all {reference} must fail"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("is not in bundle test; it carries linux/amd64, linux/arm64"),
            "{reference}: {stderr}"
        );
        // Every carried platform copies whole, each blob hashing to its name.
        let mut seen = std::collections::BTreeSet::new();
        for arch in ["amd64", "arm64"] {
            let dest = fx
                .dir
                .path()
                .join(format!("copy-{arch}-{}", sha256_hex(reference.as_bytes())));
            let out = skopeo_copy(&mirror, reference, &["--override-arch", arch], &dest);
            assert!(
                out.status.success(),
                "skopeo copy {reference} {arch}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            seen.extend(hashed_files(&dest, reference));
            let manifest = std::fs::read(dest.join("manifest.json")).unwrap();
            seen.insert(format!("sha256:{}", sha256_hex(&manifest)));
        }
        let expected: std::collections::BTreeSet<_> = reachable_blobs(&fx.layout(), digest)
            .into_iter()
            .skip(1)
            .collect();
        assert_eq!(seen, expected, "{reference}: manifests and blobs copied");
    }
}

fn skopeo_copy(
    mirror: &Mirror,
    reference: &str,
    flags: &[&str],
    dest: &Path,
) -> std::process::Output {
    Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .args(flags)
        .arg(format!("docker://{}/{reference}", mirror.addr))
        .arg(format!("dir:{}", dest.display()))
        .output()
        .unwrap()
}

/// Digests of the files of a skopeo `dir:` copy (named by hex digest), each
/// checked against its content.
fn hashed_files(dest: &Path, reference: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dest).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.len() == 64 {
            assert_eq!(
                sha256_hex(&std::fs::read(&path).unwrap()),
                name,
                "{reference}: {name}"
            );
            out.push(format!("sha256:{name}"));
        }
    }
    out
}

fn pull_everything(containerd: &Containerd, hosts: &Path, digests: &BTreeMap<String, String>) {
    for platform in ["linux/amd64", "linux/arm64"] {
        for reference in digests.keys() {
            containerd.pull(hosts, platform, reference);
        }
    }
    let images = containerd.images();
    for (reference, digest) in digests {
        assert_eq!(
            images.get(reference),
            Some(digest),
            "containerd's digest of {reference}"
        );
    }
}

#[test]
fn containerd_pulls_every_image_through_the_mirror() {
    let fx = Fixture::new(REFS);
    let mirror = Mirror::start(&fx.data(), fx.dir.path(), None);
    let hosts = hosts_dir(
        fx.dir.path(),
        &["registry.k8s.io", "quay.io", "docker.io"],
        &mirror.url,
        None,
    );
    let containerd = Containerd::start();
    pull_everything(&containerd, &hosts, &fx.digests);
    // containerd used the ns parameter, as a mirror of several upstreams must honour.
    assert!(mirror.log_text().contains("?ns=registry.k8s.io"));
}

#[test]
fn containerd_pulls_every_image_through_the_mirror_over_tls() {
    let fx = Fixture::new(REFS);
    let ca = TestCa::new(fx.dir.path());
    let mirror = Mirror::start(&fx.data(), fx.dir.path(), Some((&ca.cert, &ca.key)));
    assert!(mirror.url.starts_with("https://"));
    let hosts = hosts_dir(
        fx.dir.path(),
        &["registry.k8s.io", "quay.io", "docker.io"],
        &mirror.url,
        Some(&ca.ca),
    );
    let containerd = Containerd::start();
    pull_everything(&containerd, &hosts, &fx.digests);

    // Without the CA the same pull fails on the certificate: TLS is really
    // checked. The mirror is also `server`, so containerd has no upstream to
    // fall back to and the result does not depend on the internet (containerd
    // 1.6 rejects a hosts.toml without a [host] table and then falls back to
    // the upstream, so the mirror is listed as a host too).
    let bad = fx.dir.path().join("noca/certs.d");
    std::fs::create_dir_all(bad.join("registry.k8s.io")).unwrap();
    std::fs::write(
        bad.join("registry.k8s.io/hosts.toml"),
        format!(
            "server = \"{0}\"\n\n[host.\"{0}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            mirror.url
        ),
    )
    .unwrap();
    let other = Containerd::start();
    let out = other.ctr(&[
        "images",
        "pull",
        "--hosts-dir",
        bad.to_str().unwrap(),
        "registry.k8s.io/pause:3.9",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "pull without the CA must fail");
    assert!(
        err.contains("x509: certificate signed by unknown authority")
            && err.contains(&format!(
                "{}/v2/pause/manifests/3.9?ns=registry.k8s.io",
                mirror.url
            )),
        "the pull must fail on the mirror's certificate: {err}"
    );
    assert!(
        mirror.log_text().contains("TLS handshake failed"),
        "the mirror saw the client reject its certificate:\n{}",
        mirror.log_text()
    );
}
