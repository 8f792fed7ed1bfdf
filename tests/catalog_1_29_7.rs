//! The built-in release catalog 1.29.7 (bundles/catalog/1.29.7.toml): it
//! loads beside 1.29.6, names Kubernetes 1.29.7 for every kube-* component and
//! the etcd, pause and CoreDNS that Kubernetes 1.29.7 ships with, differs from
//! 1.29.6 in nothing else, and `ferry bundle build --k8s 1.29.7` builds a
//! bundle of it from the fixture upstream.

mod common;

use common::upstream::{
    serve_kubernetes_release, Upstream, UpstreamOptions, KUBE_BINARIES as KUBE,
};
use ferry_builder::catalog::{Catalog, Kind};
use ferry_builder::profile::Profile;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

/// What Kubernetes 1.29.7 ships with: `kubeadm config images list` for
/// v1.29.7 names etcd 3.5.12-0, pause 3.9 and coredns v1.11.1.
const ETCD: &str = "3.5.12";
const PAUSE: &str = "registry.k8s.io/pause:3.9";
const COREDNS: &str = "registry.k8s.io/coredns/coredns:v1.11.1";

fn load(version: &str) -> Catalog {
    Catalog::load(version, None).unwrap_or_else(|e| panic!("catalog {version}: {e}"))
}

/// The artifacts `bundle build --profile prod` fetches: the pipeline's
/// platforms, component filter and addon list (the profile's addons and CNI).
fn prod_artifacts(cat: &Catalog) -> Vec<ferry_builder::catalog::Artifact> {
    let profile = Profile::load("prod", None).expect("built-in prod profile");
    let addons: Vec<String> = profile
        .addons
        .iter()
        .map(|a| a.name.clone())
        .chain(std::iter::once(profile.cni.clone()))
        .collect();
    cat.artifacts(&cat.platforms, profile.component_filter(), &addons)
        .expect("artifacts")
}

fn sha256_file(p: &Path) -> String {
    let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    hex::encode(Sha256::digest(&bytes))
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

#[test]
fn catalog_1_29_7_is_built_in_with_kubernetes_1_29_7_and_its_etcd_pause_coredns() {
    let cat = load("1.29.7");
    assert_eq!(cat.kubernetes, "1.29.7");
    assert_eq!(cat.origin, "bundles/catalog/1.29.7.toml (built in)");
    // A leading v is accepted, as for 1.29.6.
    assert_eq!(load("v1.29.7").kubernetes, "1.29.7");

    // Every kube-* component (and kubelet, kubectl) is Kubernetes 1.29.7,
    // fetched from that release with dl.k8s.io's own checksum file.
    let kube: Vec<&str> = cat
        .components
        .iter()
        .filter(|c| c.name.starts_with("kube-") || c.name == "kubelet" || c.name == "kubectl")
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        kube.iter().copied().collect::<BTreeSet<_>>(),
        KUBE.into_iter().collect::<BTreeSet<_>>()
    );
    let arts = cat.artifacts(&cat.platforms, None, &[]).expect("artifacts");
    for name in KUBE {
        let c = cat.components.iter().find(|c| c.name == name).expect(name);
        assert_eq!(c.version, "1.29.7", "{name}");
        assert_eq!(c.kind, Kind::Binary, "{name}");
        assert!(
            c.sha256.is_empty(),
            "{name}: no pin without a published digest"
        );
        for p in &cat.platforms {
            let a = arts
                .iter()
                .find(|a| a.component == name && &a.platform == p)
                .unwrap_or_else(|| panic!("{name} {p}"));
            let url = format!("https://dl.k8s.io/release/v1.29.7/bin/{p}/{name}");
            assert_eq!(a.url, url);
            assert_eq!(a.checksum_url, format!("{url}.sha256"));
            assert_eq!(a.outputs.len(), 1);
            assert_eq!(
                a.outputs[0].path,
                format!("bin/{}/{name}", p.replace('/', "-"))
            );
        }
    }

    let etcd = cat
        .components
        .iter()
        .find(|c| c.name == "etcd")
        .expect("etcd");
    assert_eq!(etcd.version, ETCD);
    let etcd_arm = arts
        .iter()
        .find(|a| a.component == "etcd" && a.platform == "linux/arm64")
        .expect("etcd arm64");
    assert_eq!(
        etcd_arm.url,
        format!("https://github.com/etcd-io/etcd/releases/download/v{ETCD}/etcd-v{ETCD}-linux-arm64.tar.gz")
    );
    assert_eq!(cat.image("pause"), Some(PAUSE));
    assert_eq!(cat.image("coredns"), Some(COREDNS));

    // Both releases are known; a missing one names them.
    let err = Catalog::load("1.99.0", None).unwrap_err().to_string();
    let known = err.split("known: ").nth(1).unwrap_or_default();
    let known: Vec<&str> = known.split(", ").collect();
    assert!(
        known.contains(&"1.29.6") && known.contains(&"1.29.7"),
        "{err}"
    );
}

#[test]
fn catalog_1_29_7_differs_from_1_29_6_only_in_the_kubernetes_release() {
    let old = load("1.29.6");
    let new = load("1.29.7");
    assert_eq!(old.platforms, new.platforms);
    assert_eq!(old.images, new.images);
    let names = |c: &Catalog| {
        c.components
            .iter()
            .map(|c| c.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&old), names(&new));
    for (o, n) in old.components.iter().zip(&new.components) {
        let kube = KUBE.contains(&n.name.as_str());
        if kube {
            assert_eq!(
                (o.version.as_str(), n.version.as_str()),
                ("1.29.6", "1.29.7")
            );
        } else {
            assert_eq!(o.version, n.version, "{}", n.name);
        }
        // Everything but the version: templates, checksum source, pins, addon.
        let shape = |c: &ferry_builder::catalog::Component| {
            format!(
                "{:?} {} {:?} {} {:?} {:?} {:?} {:?} {:?} {:?}",
                c.kind,
                c.url,
                c.urls,
                c.checksum_url,
                c.checksum_format,
                c.binary_name,
                c.extract,
                c.sha256,
                c.addon,
                c.skip_images
            )
        };
        assert_eq!(shape(o), shape(n), "{}", n.name);
    }
    // Expanded, each artifact of 1.29.7 is 1.29.6's with the release swapped in
    // the kube-* URLs, and the same file everywhere else.
    let (oa, na) = (prod_artifacts(&old), prod_artifacts(&new));
    assert_eq!(oa.len(), na.len());
    for (o, n) in oa.iter().zip(&na) {
        assert_eq!((&o.component, &o.platform), (&n.component, &n.platform));
        let swap = |s: &str| {
            if KUBE.contains(&n.component.as_str()) {
                s.replace("/v1.29.6/", "/v1.29.7/")
            } else {
                s.to_string()
            }
        };
        assert_eq!(swap(&o.url), n.url);
        assert_eq!(swap(&o.checksum_url), n.checksum_url);
        let paths = |a: &ferry_builder::catalog::Artifact| {
            a.outputs.iter().map(|o| o.path.clone()).collect::<Vec<_>>()
        };
        assert_eq!(paths(o), paths(n));
    }
}

#[test]
fn prod_profile_plan_resolves_every_component_and_image_of_1_29_7() {
    let cat = load("1.29.7");
    let arts = prod_artifacts(&cat);
    // prod carries every component ("all", with every addon the catalog names).
    let carried: BTreeSet<&str> = arts.iter().map(|a| a.component.as_str()).collect();
    let all: BTreeSet<&str> = cat.components.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(carried, all);
    for a in &arts {
        assert!(
            !a.outputs.is_empty(),
            "{} {}: nothing to carry",
            a.component,
            a.platform
        );
        assert!(!a.url.contains("1.29.6"), "{}: {}", a.component, a.url);
        if KUBE.contains(&a.component.as_str()) {
            assert!(a.url.contains("/v1.29.7/"), "{}", a.url);
        }
    }
    let profile = Profile::load("prod", None).expect("prod");
    let images = profile
        .needed_images(&cat)
        .expect("every image key resolves");
    let refs: Vec<&str> = images.iter().map(|i| i.reference.as_str()).collect();
    // The sandbox image comes first.
    assert_eq!(refs.first(), Some(&PAUSE));
    assert!(refs.contains(&COREDNS), "{refs:?}");
}

/// `ferry bundle build --k8s 1.29.7` with the prod profile, through the
/// fixture upstream serving 1.29.7's kube-* stand-ins beside 1.29.6's: the
/// bundle is Kubernetes 1.29.7 and carries the 1.29.7 files.
#[test]
fn bundle_build_1_29_7_from_fixture_upstream_carries_the_1_29_7_binaries() {
    let up = Upstream::start(UpstreamOptions::default());
    serve_kubernetes_release(&up, "1.29.7");
    let work = tempfile::tempdir().expect("tmp");
    let out = work.path().join("prod-1.29.7.tar.zst");
    let res = Command::new(FERRY)
        .args([
            "bundle",
            "build",
            "--k8s",
            "1.29.7",
            "--plain",
            "--json",
            "--unsigned",
        ])
        .args(up.mirror_args())
        .arg("--cache-dir")
        .arg(work.path().join("cache"))
        .arg("-o")
        .arg(&out)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env_remove("FERRY_CACHE_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("run ferry bundle build");
    ok(&res, "bundle build --k8s 1.29.7");
    let report: serde_json::Value = serde_json::from_slice(&res.stdout).expect("--json report");
    assert_eq!(report["kubernetes"], "1.29.7");

    let x = work.path().join("x");
    std::fs::create_dir(&x).expect("mkdir");
    let unpack = Command::new("bash")
        .args(["-euo", "pipefail", "-c"])
        .arg(format!(
            "zstd -dc '{}' | tar -x -C '{}'",
            out.display(),
            x.display()
        ))
        .output()
        .expect("bash");
    ok(&unpack, "zstd -dc | tar -x");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(x.join("bundle.json")).expect("bundle.json"))
            .expect("JSON");
    assert_eq!(manifest["kubernetes"], "1.29.7");
    let components = manifest["components"].as_array().expect("components");

    // Every file the plan names is in the bundle, from its upstream URL.
    let cat = load("1.29.7");
    for a in prod_artifacts(&cat) {
        for o in &a.outputs {
            let rec = components
                .iter()
                .find(|c| c["path"] == o.path.as_str())
                .unwrap_or_else(|| panic!("{} not in bundle.json", o.path));
            assert_eq!(rec["source"], a.url.as_str(), "{}", o.path);
            assert_eq!(rec["version"], a.version.as_str(), "{}", o.path);
            assert!(x.join(&o.path).is_file(), "{} not in the bundle", o.path);
        }
    }

    // The kube-* files are the 1.29.7 stand-ins, not 1.29.6's.
    let requests = up.requests();
    for arch in ["amd64", "arm64"] {
        for name in KUBE {
            let path = format!("bin/linux-{arch}/{name}");
            let served = format!("/dl.k8s.io/release/v1.29.7/bin/linux/{arch}/{name}");
            let new = sha256_file(&up.file(&served));
            let old = sha256_file(&up.file(&served.replace("v1.29.7", "v1.29.6")));
            assert_ne!(new, old, "{served}: the fixture serves 1.29.6's file");
            assert_eq!(sha256_file(&x.join(&path)), new, "{path}");
            let rec = components
                .iter()
                .find(|c| c["path"] == path.as_str())
                .expect("component");
            assert_eq!(rec["sha256"], new.as_str(), "{path}");
            assert_eq!(
                rec["checksum_source"],
                format!("https://dl.k8s.io/release/v1.29.7/bin/linux/{arch}/{name}.sha256"),
                "{path}"
            );
            assert!(
                requests.completed.get(&served).copied().unwrap_or(0) >= 1,
                "{served} never fetched"
            );
        }
    }
    assert!(
        !requests.started.keys().any(|p| p.contains("/v1.29.6/")),
        "a 1.29.6 file was fetched: {:?}",
        requests
            .started
            .keys()
            .filter(|p| p.contains("/v1.29.6/"))
            .collect::<Vec<_>>()
    );
    // The carried kubelet reports the release it belongs to.
    let v = Command::new("python3")
        .arg(x.join("bin/linux-amd64/kubelet"))
        .arg("--version")
        .output()
        .expect("run kubelet stand-in");
    ok(&v, "kubelet --version");
    assert!(
        String::from_utf8_lossy(&v.stdout).starts_with("Kubernetes v1.29.7 "),
        "{}",
        String::from_utf8_lossy(&v.stdout)
    );

    // etcd is the catalog's 3.5.12 and the images include 1.29.7's pause and CoreDNS.
    let etcd = components
        .iter()
        .find(|c| c["path"] == "bin/linux-amd64/etcd")
        .expect("etcd");
    assert_eq!(etcd["version"], ETCD);
    let images: Vec<&str> = manifest["images"]
        .as_array()
        .expect("images")
        .iter()
        .filter_map(|i| i["reference"].as_str())
        .collect();
    for want in [PAUSE, COREDNS] {
        assert!(images.contains(&want), "{want} not in {images:?}");
    }
}
