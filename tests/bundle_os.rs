//! OS package sets in `ferry bundle build`: the fixture Debian mirror
//! (tests/fixtures/mkdebrepo.sh: real Debian .debs, InRelease signed by the
//! test key the tests' OS source trusts), reached only through `--mirror`.

mod common;

use common::upstream::{Upstream, UpstreamOptions};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

fn build(up: &Upstream, dir: &Path, extra: &[&str]) -> Output {
    Command::new(FERRY)
        .args([
            "bundle",
            "build",
            "--k8s",
            "1.29.6",
            "--plain",
            "--unsigned",
            "--platform",
            "linux/amd64",
        ])
        .args(up.mirror_args())
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .arg("-o")
        .arg(dir.join("b.tar.zst"))
        .args(extra)
        .env_remove("FERRY_CACHE_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("run ferry")
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Replaces a served file (the tree is hard-linked to a shared one: never
/// write through the link).
fn replace(path: &Path, bytes: &[u8]) {
    std::fs::remove_file(path).expect("rm");
    std::fs::write(path, bytes).expect("write");
}

/// `dir/b.tar.zst` unpacked with stock zstd and tar into `dir/x`, and its bundle.json.
fn unpack(dir: &Path) -> (std::path::PathBuf, Value) {
    let unpacked = dir.join("x");
    std::fs::create_dir(&unpacked).unwrap();
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zstd -dc {} | tar -x -C {}",
            dir.join("b.tar.zst").display(),
            unpacked.display()
        ))
        .status()
        .unwrap();
    assert!(st.success());
    let manifest =
        serde_json::from_slice(&std::fs::read(unpacked.join("bundle.json")).unwrap()).unwrap();
    (unpacked, manifest)
}

/// Lays out the fixture Rocky-style repositories of ferry's own test packages
/// (tests/fixtures/mkrpmrepo.sh) in the upstream's served tree, adds the
/// tests' rpm source and profile to its catalog; returns the `--mirror` for them.
fn serve_rpm_fixture(up: &Upstream) -> String {
    let fixtures = common::upstream::fixtures_dir();
    let st = Command::new("bash")
        .arg(fixtures.join("mkrpmrepo.sh"))
        .arg(&up.files)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "tests/fixtures/mkrpmrepo.sh failed");
    for sub in ["os", "profiles"] {
        let from = fixtures.join("ospkg/catalog-rpm").join(sub);
        for e in std::fs::read_dir(from).unwrap().flatten() {
            std::fs::copy(e.path(), up.catalog_dir().join(sub).join(e.file_name())).unwrap();
        }
    }
    format!(
        "--mirror=https://dl.rockylinux.org=http://{}/dl.rockylinux.org",
        up.file_addr
    )
}

/// Real dnf installs `packages` into `root` from the one repository `repo`,
/// checking package signatures with `key`.
fn dnf_install(root: &Path, repo: &Path, key: &Path, packages: &[&str]) -> Output {
    Command::new("dnf")
        .arg(format!("--installroot={}", root.display()))
        .args([
            "--setopt=reposdir=/dev/null",
            "--releasever=9",
            "-y",
            "-q",
            "--setopt=gpgcheck=1",
        ])
        .arg(format!("--repofrompath=only,file://{}", repo.display()))
        .arg(format!("--setopt=only.gpgkey=file://{}", key.display()))
        .arg("install")
        .args(packages)
        .output()
        .expect("dnf (make deps installs it)")
}

/// Paragraph fields of a Packages index: package name -> (version, sha256).
fn index(text: &str) -> BTreeMap<String, (String, String)> {
    text.split("\n\n")
        .filter_map(|p| {
            let f = |k: &str| p.lines().find_map(|l| l.strip_prefix(k)).map(str::to_owned);
            Some((f("Package: ")?, (f("Version: ")?, f("SHA256: ")?)))
        })
        .collect()
}

#[test]
fn the_set_is_the_signed_closure_minus_the_minimal_base() {
    let up = Upstream::start(UpstreamOptions::default());
    let dir = tempfile::tempdir().expect("tmp");
    let out = build(&up, dir.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let (unpacked, manifest) = unpack(dir.path());
    let sets = manifest["os_packages"].as_array().expect("os_packages");
    assert_eq!(sets.len(), 1, "{sets:?}");
    let set = &sets[0];
    assert_eq!(
        (
            set["name"].as_str(),
            set["platform"].as_str(),
            set["dir"].as_str()
        ),
        (
            Some("debian-12"),
            Some("linux/amd64"),
            Some("os/debian-12/amd64")
        )
    );

    let upstream = index(
        &std::fs::read_to_string(
            up.file("/deb.debian.org/debian/dists/bookworm/main/binary-amd64/Packages"),
        )
        .unwrap(),
    );
    let carried: BTreeMap<String, String> = set["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for want in [
        "haproxy",
        "keepalived",
        "chrony",
        "conntrack",
        "ipset",
        "ipvsadm",
        "socat",
        "iproute2",
        "python3",
        "python3-yaml",
        "liblua5.3-0",
    ] {
        assert!(
            carried.contains_key(want),
            "{want} missing from {carried:?}"
        );
    }
    // The minimal base (Essential, Priority required, apt, systemd, openssh-server and their closure) stays out.
    for base in [
        "libc6",
        "dpkg",
        "apt",
        "systemd",
        "openssh-server",
        "adduser",
        "libssl3",
    ] {
        assert!(
            !carried.contains_key(base),
            "{base} is the hosts' base, yet carried"
        );
    }
    // The bundle's own index is apt's: every carried .deb, byte for byte the archive's.
    let repo = unpacked.join("os/debian-12/amd64");
    let own = index(&std::fs::read_to_string(repo.join("Packages")).unwrap());
    assert_eq!(
        own.keys().collect::<Vec<_>>(),
        carried.keys().collect::<Vec<_>>()
    );
    for (name, (version, sha)) in &own {
        assert_eq!(
            upstream.get(name),
            Some(&(version.clone(), sha.clone())),
            "{name}"
        );
        let file = format!(
            "{name}_{}",
            version.split_once(':').map(|x| x.1).unwrap_or(version)
        );
        let deb = std::fs::read_dir(repo.join("pool"))
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with(&file))
            .unwrap_or_else(|| panic!("{file}* in pool/"));
        assert_eq!(
            &common::bundles::sha256_hex(&std::fs::read(deb.path()).unwrap()),
            sha,
            "{name}"
        );
    }
    let inspect = Command::new(FERRY)
        .args(["bundle", "inspect"])
        .arg(dir.path().join("b.tar.zst"))
        .output()
        .unwrap();
    let inspect = text(&inspect);
    assert!(
        inspect.contains("OS package sets (1):")
            && inspect.contains(&format!(
                "debian-12      linux/amd64  {:>3} packages",
                carried.len()
            )),
        "{inspect}"
    );
}

#[test]
fn a_forged_or_altered_index_fails_naming_the_file() {
    let up = Upstream::start(UpstreamOptions::default());
    let dir = tempfile::tempdir().expect("tmp");
    let inrelease = up.file("/deb.debian.org/debian/dists/bookworm/InRelease");
    let original = std::fs::read_to_string(&inrelease).unwrap();
    replace(
        &inrelease,
        original
            .replacen("Codename: bookworm", "Codename: bookwurm", 1)
            .as_bytes(),
    );
    let out = build(&up, dir.path(), &[]);
    let err = text(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("https://deb.debian.org/debian/dists/bookworm/InRelease")
            && err.contains("verifies with the archive keys"),
        "{err}"
    );
    assert!(!dir.path().join("b.tar.zst").exists());

    replace(&inrelease, original.as_bytes());
    let xz = up.file("/deb.debian.org/debian/dists/bookworm/main/binary-amd64/Packages.xz");
    replace(&xz, b"not the signed index");
    let out = build(&up, dir.path(), &[]);
    let err = text(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("main/binary-amd64/Packages.xz")
            && err.contains("sha256 mismatch")
            && err.contains("InRelease"),
        "{err}"
    );
}

#[test]
fn a_package_no_repository_has_is_named() {
    let up = Upstream::start(UpstreamOptions::default());
    let dir = tempfile::tempdir().expect("tmp");
    let profile = up.catalog_dir().join("profiles/prod.toml");
    let text_before = std::fs::read_to_string(&profile).unwrap();
    std::fs::write(
        &profile,
        text_before.replacen("os_packages = [", "os_packages = [\"no-such-tool\", ", 1),
    )
    .unwrap();
    let out = build(&up, dir.path(), &[]);
    let err = text(&out);
    assert!(!out.status.success());
    assert!(err.contains("OS package set debian-12 (amd64): no-such-tool (requested) is in no repository of the source"), "{err}");
    let out = build(&up, dir.path(), &["--os", "none"]);
    assert!(
        out.status.success(),
        "--os none carries no set: {}",
        text(&out)
    );
}

/// The rpm side against the fixture Rocky-style repositories of ferry's own
/// test packages (tests/fixtures/mkrpmrepo.sh): the closure resolved over
/// both repositories, and real dnf installs it into an empty root from the
/// bundle's index alone, checking the packages' signatures with the keys
/// the set carries.
#[test]
fn an_rpm_set_installs_with_dnf_from_the_bundle_alone() {
    let up = Upstream::start(UpstreamOptions::default());
    let dir = tempfile::tempdir().expect("tmp");
    let mirror = serve_rpm_fixture(&up);
    let out = build(&up, dir.path(), &["--profile", "rpm-test", &mirror]);
    assert!(out.status.success(), "{}", text(&out));

    let (unpacked, manifest) = unpack(dir.path());
    let set = &manifest["os_packages"][0];
    assert_eq!(
        (set["name"].as_str(), set["arch"].as_str()),
        (Some("rocky-9"), Some("x86_64"))
    );
    let carried: Vec<String> = set["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}-{}",
                p["name"].as_str().unwrap(),
                p["version"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        carried,
        [
            "ferry-test-haproxy-2.4-1",
            "ferry-test-keepalived-2.2-1",
            "ferry-test-libfoo-1.2-1",
            "ferry-test-mta-a-1.0-1",
            "ferry-test-tool-1.0-1"
        ],
        "the base, libfoo 1.0 and the unrelated package stay out"
    );

    // The root first gets the minimal base the source declares, from the
    // distribution's repository (a host has it); then the set, from the bundle alone.
    let root = dir.path().join("root");
    let base_repo = up.file("/dl.rockylinux.org/pub/rocky/9/BaseOS/x86_64/os");
    let key = common::upstream::fixtures_dir().join("ospkg/test-archive-key.asc");
    let base = dnf_install(&root, &base_repo, &key, &["ferry-test-base"]);
    assert!(base.status.success(), "dnf, the base: {}", text(&base));
    let repo = unpacked.join("os/rocky-9/x86_64");
    let dnf = dnf_install(
        &root,
        &repo,
        &repo.join("keys/archive.asc"),
        &["ferry-test-haproxy", "ferry-test-keepalived"],
    );
    assert!(
        dnf.status.success(),
        "dnf from the bundle's set: {}",
        text(&dnf)
    );
    for name in ["ferry-test-haproxy", "ferry-test-libfoo", "ferry-test-tool"] {
        assert!(
            root.join(format!("usr/share/ferry-test/{name}")).exists(),
            "{name} not installed"
        );
    }
}
