//! Fixture upstream for tests: Debian's docker-registry seeded with small real
//! multi-arch images (tests/fixtures/mkimages.py, pushed with skopeo), and a
//! loopback file server (tests/fixtures/fileserver.py) that serves binaries,
//! addon artifacts and checksum sources at their upstream paths
//! (tests/fixtures/mkupstream.sh, tests/fixtures/mkartifacts.py) and
//! counts requests per path. The builder reaches both only through the
//! `--mirror` arguments returned by [`Upstream::mirror_args`].
//!
//! Everything runs on 127.0.0.1: the registry on a port from
//! [`super::ports::start_on_free_port`], the file server on port 0 (it
//! writes the port it got to a file). [`Upstream`] stops the processes and
//! removes its directory on drop, also when a test fails.
//!
//! ```ignore
//! let up = Upstream::start(UpstreamOptions::default());
//! ferry(["bundle", "build", "--k8s", "1.29.6"]).args(up.mirror_args())...
//! let counts = up.requests();
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The catalog 1.29.6 images (the prod profile's closure).
pub const CATALOG_IMAGES: &[&str] = &[
    "registry.k8s.io/pause:3.9",
    "registry.k8s.io/coredns/coredns:v1.11.1",
    "registry.k8s.io/dns/k8s-dns-node-cache:1.22.28",
    "registry.k8s.io/metrics-server/metrics-server:v0.7.1",
    "quay.io/cilium/cilium:v1.15.6",
    "quay.io/cilium/operator-generic:v1.15.6",
    "quay.io/cilium/hubble-relay:v1.15.6",
    "quay.io/jetstack/cert-manager-controller:v1.14.5",
    "quay.io/jetstack/cert-manager-webhook:v1.14.5",
    "quay.io/jetstack/cert-manager-cainjector:v1.14.5",
    "quay.io/tigera/operator:v1.32.7",
    "docker.io/calico/node:v3.27.3",
    "docker.io/calico/cni:v3.27.3",
    "docker.io/calico/kube-controllers:v3.27.3",
    "docker.io/calico/typha:v3.27.3",
    "docker.io/calico/pod2daemon-flexvol:v3.27.3",
    "docker.io/calico/csi:v3.27.3",
    "docker.io/calico/node-driver-registrar:v3.27.3",
];

/// Registries accept the foreign (non-distributable) layer URLs of Windows
/// images only when told to; upstream registries do, so the fixture does too.
pub const FOREIGN_URLS: &str =
    "validation:\n  manifests:\n    urls:\n      allow:\n        - ^https://mcr\\.microsoft\\.com/\n";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures_dir() -> PathBuf {
    repo_root().join("tests/fixtures")
}

#[derive(Debug, Clone)]
pub struct UpstreamOptions {
    /// Images pushed with every platform of `platforms`.
    pub images: Vec<String>,
    pub platforms: String,
    /// Images pushed with only linux/amd64 (to test a missing platform).
    pub amd64_only_images: Vec<String>,
    /// File server: wait this long before each file response.
    pub delay_ms: u64,
    /// File server: bytes per second per response (0 = unlimited).
    pub rate: u64,
}

impl Default for UpstreamOptions {
    fn default() -> Self {
        UpstreamOptions {
            images: CATALOG_IMAGES.iter().map(|s| s.to_string()).collect(),
            platforms: "linux/amd64,linux/arm64".into(),
            amd64_only_images: Vec::new(),
            delay_ms: 0,
            rate: 0,
        }
    }
}

/// Request counts from the file server, by URL path (`/dl.k8s.io/release/...`).
#[derive(Debug, Clone, Default)]
pub struct Requests {
    pub started: BTreeMap<String, u64>,
    pub completed: BTreeMap<String, u64>,
}

impl Requests {
    pub fn total_started(&self) -> u64 {
        self.started.values().sum()
    }
}

pub struct Upstream {
    pub dir: tempfile::TempDir,
    /// Root served by the file server (a hard-linked copy of the shared fixture
    /// tree, so a test may replace files in it without touching other tests).
    pub files: PathBuf,
    /// OCI layout the registry was seeded from (mkimages.py output).
    pub images: PathBuf,
    pub registry_addr: String,
    pub file_addr: String,
    registry: Child,
    fileserver: Child,
}

impl Upstream {
    pub fn start(opts: UpstreamOptions) -> Upstream {
        let dir = tempfile::Builder::new()
            .prefix("ferry-upstream-")
            .tempdir()
            .expect("temp dir");
        let files = dir.path().join("files");
        let status = Command::new("cp")
            .arg("-al")
            .arg(shared_fixture_files())
            .arg(&files)
            .status()
            .expect("run cp");
        assert!(status.success(), "cp -al of the fixture files failed");

        // Registry: Debian's docker-registry, filesystem storage in our temp dir.
        let reglog = dir.path().join("registry.log");
        let (registry, rport) = super::ports::start_on_free_port(
            "docker-registry",
            &reglog,
            |rport| {
                let config = dir.path().join("registry.yml");
                std::fs::write(
                    &config,
                    format!(
                        "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{rport}\n{FOREIGN_URLS}",
                        dir.path().join("registry-data").display()
                    ),
                )
                .expect("write registry config");
                let log = std::fs::File::create(&reglog).expect("registry log");
                Command::new("/usr/bin/docker-registry")
                    .arg("serve")
                    .arg(&config)
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().expect("dup log"))
                    .stderr(log)
                    .spawn()
                    .expect("start /usr/bin/docker-registry (apt-get install docker-registry)")
            },
        );

        let port_file = dir.path().join("fileserver.port");
        let mut fs_cmd = Command::new("python3");
        fs_cmd
            .arg(fixtures_dir().join("fileserver.py"))
            .arg(&files)
            .arg("--port-file")
            .arg(&port_file)
            .arg("--delay-ms")
            .arg(opts.delay_ms.to_string())
            .arg("--rate")
            .arg(opts.rate.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let fileserver = fs_cmd.spawn().expect("start tests/fixtures/fileserver.py");

        write_test_catalog(&dir.path().join("catalog"));
        let mut up = Upstream {
            images: dir.path().join("images"),
            files,
            registry_addr: format!("127.0.0.1:{rport}"),
            file_addr: String::new(),
            dir,
            registry,
            fileserver,
        };
        up.file_addr = format!("127.0.0.1:{}", wait_port_file(&port_file));
        wait_registry(&up.registry_addr);

        if !opts.images.is_empty() {
            let layout = up.images.clone();
            mkimages(&layout, &opts.platforms, &opts.images);
            up.push_all(&layout);
        }
        if !opts.amd64_only_images.is_empty() {
            let layout = up.dir.path().join("images-amd64");
            mkimages(&layout, "linux/amd64", &opts.amd64_only_images);
            up.push_all(&layout);
        }
        up
    }

    /// Copy every image named in an OCI layout (signature tags included) into
    /// the fixture registry.
    pub fn push_all(&self, layout: &Path) {
        let refs: Vec<String> = layout_digests(layout).into_keys().collect();
        self.push_refs(layout, &refs);
    }

    /// Copy image `reference` from an OCI layout into the fixture registry
    /// (as `<registry>/<upstream host>/<repo>:<tag>`), byte for byte.
    pub fn push(&self, layout: &Path, reference: &str) {
        self.push_refs(layout, &[reference.to_owned()]);
    }

    fn push_refs(&self, layout: &Path, refs: &[String]) {
        let out = Command::new("python3")
            .arg(fixtures_dir().join("pushlayout.py"))
            .arg(layout)
            .arg(&self.registry_addr)
            .args(refs)
            .output()
            .expect("run tests/fixtures/pushlayout.py");
        assert!(
            out.status.success(),
            "pushlayout.py {refs:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `--mirror` arguments that route every catalog upstream to this
    /// fixture, and `--catalog-dir` with the fixture's OS source.
    pub fn mirror_args(&self) -> Vec<String> {
        let (r, f) = (&self.registry_addr, &self.file_addr);
        vec![
            format!("--catalog-dir={}", self.catalog_dir().display()),
            format!("--mirror=https://deb.debian.org=http://{f}/deb.debian.org"),
            format!("--mirror=registry.k8s.io=http://{r}/registry.k8s.io"),
            format!("--mirror=quay.io=http://{r}/quay.io"),
            format!("--mirror=docker.io=http://{r}/docker.io"),
            format!("--mirror=https://dl.k8s.io=http://{f}/dl.k8s.io"),
            format!("--mirror=https://github.com=http://{f}/github.com"),
            format!("--mirror=https://get.helm.sh=http://{f}/get.helm.sh"),
            format!("--mirror=https://helm.cilium.io=http://{f}/helm.cilium.io"),
            format!("--mirror=https://api.github.com=http://{f}/api.github.com"),
        ]
    }

    /// The catalog directory `mirror_args` names: the fixture mirror's Debian
    /// source (signed by the test key) and the `prod` profile with the
    /// python3 the kube-* test stand-ins run on. Tests may add catalogs to it.
    pub fn catalog_dir(&self) -> PathBuf {
        self.dir.path().join("catalog")
    }

    /// The file path served at `url_path` (`/dl.k8s.io/release/...`).
    pub fn file(&self, url_path: &str) -> PathBuf {
        self.files.join(url_path.trim_start_matches('/'))
    }

    /// Request counts at the file server so far.
    pub fn requests(&self) -> Requests {
        let out = Command::new("curl")
            .args(["-fsS", &format!("http://{}/__requests", self.file_addr)])
            .output()
            .expect("run curl");
        assert!(
            out.status.success(),
            "file server counts: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("counts JSON");
        let table = |k: &str| -> BTreeMap<String, u64> {
            v[k].as_object()
                .map(|m| {
                    m.iter()
                        .map(|(p, n)| (p.clone(), n.as_u64().unwrap_or(0)))
                        .collect()
                })
                .unwrap_or_default()
        };
        Requests {
            started: table("started"),
            completed: table("completed"),
        }
    }

    /// Blob GETs the registry answered so far, by digest (`sha256:<hex>`),
    /// parsed from its access log.
    pub fn registry_blob_gets(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        let Ok(f) = std::fs::File::open(self.dir.path().join("registry.log")) else {
            return out;
        };
        for line in BufReader::new(f).lines().map_while(Result::ok) {
            // access log: ... "GET /v2/<repo>/blobs/sha256:<hex> HTTP/1.1" 200 ...
            let Some(start) = line.find("\"GET /v2/") else {
                continue;
            };
            let rest = &line[start + 5..];
            let Some(uri) = rest.split_whitespace().next() else {
                continue;
            };
            if let Some(pos) = uri.find("/blobs/sha256:") {
                let digest = uri[pos + 7..].to_string();
                *out.entry(digest).or_insert(0) += 1;
            }
        }
        out
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        for child in [&mut self.registry, &mut self.fileserver] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The fixture binaries tree (mkupstream.sh), built once per target dir and
/// script version, then shared read-only (tests hard-link copy it).
pub fn shared_fixture_files() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = fixtures_dir().join("mkupstream.sh");
        let mut stamp = std::fs::read(&script).expect("read mkupstream.sh");
        stamp.extend(
            std::fs::read(fixtures_dir().join("standins/kube-standin.py")).expect("read stand-in"),
        );
        stamp.extend(
            std::fs::read(fixtures_dir().join("mkartifacts.py")).expect("read mkartifacts.py"),
        );
        stamp
            .extend(std::fs::read(fixtures_dir().join("mkdebrepo.sh")).expect("read mkdebrepo.sh"));
        let tag = short_hash(&stamp);
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let dir = base.join(format!("fixture-upstream-{tag}"));
        if dir.join(".done").exists() {
            return dir;
        }
        // Build next to it and rename, so concurrent test binaries never see a half tree.
        let tmp = tempfile::Builder::new()
            .prefix("fixture-upstream-build-")
            .tempdir_in(&base)
            .expect("temp dir");
        let out = tmp.path().join("files");
        let st = Command::new("bash")
            .arg(&script)
            .arg(&out)
            .stdout(Stdio::null())
            .status()
            .expect("run mkupstream.sh");
        assert!(st.success(), "tests/fixtures/mkupstream.sh failed");
        let st = Command::new("bash")
            .arg(fixtures_dir().join("mkdebrepo.sh"))
            .arg(&out)
            .stdout(Stdio::null())
            .status()
            .expect("run mkdebrepo.sh");
        assert!(st.success(), "tests/fixtures/mkdebrepo.sh failed");
        std::fs::write(out.join(".done"), b"").expect("stamp");
        if std::fs::rename(&out, &dir).is_err() && !dir.join(".done").exists() {
            panic!("could not place fixture tree at {}", dir.display());
        }
        dir
    })
    .clone()
}

/// The tests' catalog overrides: tests/fixtures/ospkg/catalog/os, and
/// bundles/profiles/prod.toml whose OS packages gain python3 and python3-yaml,
/// which the kube-* stand-ins (python scripts) run on.
fn write_test_catalog(dir: &Path) {
    let os = dir.join("os");
    std::fs::create_dir_all(&os).expect("catalog dir");
    std::fs::create_dir_all(dir.join("profiles")).expect("profiles dir");
    let src = fixtures_dir().join("ospkg/catalog/os");
    for e in std::fs::read_dir(&src)
        .expect("read fixture OS sources")
        .flatten()
    {
        std::fs::copy(e.path(), os.join(e.file_name())).expect("copy OS source");
    }
    let prod = std::fs::read_to_string(repo_root().join("bundles/profiles/prod.toml"))
        .expect("prod profile");
    let line = prod
        .lines()
        .find(|l| l.starts_with("os_packages = ["))
        .expect("prod profile has os_packages");
    let with_python = line.replacen('[', "[\"python3\", \"python3-yaml\", ", 1);
    std::fs::write(
        dir.join("profiles/prod.toml"),
        prod.replace(line, &with_python),
    )
    .expect("write profile");
}

fn mkimages(layout: &Path, platforms: &str, refs: &[String]) {
    let out = Command::new("python3")
        .arg(fixtures_dir().join("mkimages.py"))
        .arg("--out")
        .arg(layout)
        .arg("--platforms")
        .arg(platforms)
        .arg("--shared-bytes")
        .arg("262144")
        .args(refs)
        .output()
        .expect("run mkimages.py");
    assert!(
        out.status.success(),
        "mkimages.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Digest of each image index in an OCI layout, by ref name.
pub fn layout_digests(layout: &Path) -> BTreeMap<String, String> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index.json"))
            .expect("JSON");
    let mut out = BTreeMap::new();
    for m in index["manifests"].as_array().into_iter().flatten() {
        if let (Some(name), Some(d)) = (
            m["annotations"]["org.opencontainers.image.ref.name"].as_str(),
            m["digest"].as_str(),
        ) {
            out.insert(name.to_string(), d.to_string());
        }
    }
    out
}

fn wait_port_file(path: &Path) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(s) = std::fs::read_to_string(path) {
            if let Ok(p) = s.trim().parse() {
                return p;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("file server did not start (no {})", path.display());
}

fn wait_registry(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let ok = Command::new("curl")
            .args(["-fsS", "-o", "/dev/null", &format!("http://{addr}/v2/")])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("docker-registry on {addr} did not come up");
}

fn short_hash(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(data)[..6])
}

/// Kubernetes' kube-* binaries, as the fixture upstream serves them.
pub const KUBE_BINARIES: [&str; 6] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
];

/// Lays out Kubernetes `release`'s kube-* files on the fixture upstream, as
/// tests/fixtures/mkupstream.sh does for 1.29.6: the same python stand-ins,
/// reporting `release`, each with its bare-hex `<url>.sha256`. New files in
/// this upstream's own copy of the fixture tree, so no other test sees them.
pub fn serve_kubernetes_release(up: &Upstream, release: &str) {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::PermissionsExt;
    for arch in ["amd64", "arm64"] {
        for name in KUBE_BINARIES {
            let from = up.file(&format!(
                "/dl.k8s.io/release/v1.29.6/bin/linux/{arch}/{name}"
            ));
            let text = std::fs::read_to_string(&from).expect("1.29.6 stand-in");
            let line = "\nK8S_VERSION = \"v1.29.6\"\n";
            assert_eq!(text.matches(line).count(), 1, "{}", from.display());
            let text = text.replace(line, &format!("\nK8S_VERSION = \"v{release}\"\n"));
            let to = up.file(&format!(
                "/dl.k8s.io/release/v{release}/bin/linux/{arch}/{name}"
            ));
            std::fs::create_dir_all(to.parent().expect("dir")).expect("mkdir");
            std::fs::write(&to, &text).expect("write stand-in");
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            let digest = hex::encode(Sha256::digest(text.as_bytes()));
            std::fs::write(to.with_file_name(format!("{name}.sha256")), digest + "\n")
                .expect("write .sha256");
        }
    }
}

/// An amd64 bundle built by `ferry bundle build` from a fresh fixture upstream,/// An amd64 bundle built by `ferry bundle build` from a fresh fixture upstream,
/// signed with a key made by `ferry bundle keygen`: `dir/<name>.tar.zst`, with
/// the keys at `dir/key.key` and `dir/key.pub` and the cache at `dir/cache`.
/// The upstream is stopped once the bundle is built.
pub fn signed_amd64_bundle(dir: &Path, name: &str) -> PathBuf {
    signed_amd64_bundles(dir, &[(name, "1.29.6")]).remove(0)
}

/// Like [`signed_amd64_bundle`], one bundle per `(name, Kubernetes release)`,
/// from one fixture upstream and signed with one key.
pub fn signed_amd64_bundles(dir: &Path, releases: &[(&str, &str)]) -> Vec<PathBuf> {
    let up = Upstream::start(UpstreamOptions {
        platforms: "linux/amd64".into(),
        ..UpstreamOptions::default()
    });
    let ferry = || Command::new(env!("CARGO_BIN_EXE_ferry"));
    let keygen = ferry()
        .args(["bundle", "keygen", "-o"])
        .arg(dir.join("key"))
        .output()
        .expect("run ferry bundle keygen");
    assert!(
        keygen.status.success(),
        "keygen: {}",
        String::from_utf8_lossy(&keygen.stderr)
    );
    let mut bundles = Vec::new();
    for (name, release) in releases {
        if *release != "1.29.6" {
            serve_kubernetes_release(&up, release);
        }
        bundles.push(build_signed(&up, dir, name, release));
    }
    bundles
}

/// For a release ferry has no built-in catalog of, the 1.29.7 catalog with
/// its Kubernetes release swapped goes into the upstream's catalog dir (a
/// test's own data, e.g. a later minor version to be refused).
fn add_catalog_for(up: &Upstream, release: &str) {
    if ["1.29.6", "1.29.7"].contains(&release) {
        return;
    }
    let builtin = Path::new(env!("CARGO_MANIFEST_DIR")).join("bundles/catalog/1.29.7.toml");
    let text = std::fs::read_to_string(builtin).expect("the 1.29.7 catalog");
    std::fs::write(
        up.catalog_dir().join(format!("{release}.toml")),
        text.replace("\"1.29.7\"", &format!("\"{release}\"")),
    )
    .expect("write catalog");
}

fn build_signed(up: &Upstream, dir: &Path, name: &str, release: &str) -> PathBuf {
    let ferry = || Command::new(env!("CARGO_BIN_EXE_ferry"));
    let bundle = dir.join(format!("{name}.tar.zst"));
    add_catalog_for(up, release);
    let build = ferry()
        .args(["bundle", "build", "--k8s", release])
        .args(["--platform", "linux/amd64", "--plain", "--sign-key"])
        .arg(dir.join("key.key"))
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .arg("-o")
        .arg(&bundle)
        .args(up.mirror_args())
        .output()
        .expect("run ferry bundle build");
    assert!(
        build.status.success(),
        "bundle build:\n{}\n{}",
        String::from_utf8_lossy(&build.stdout),
        String::from_utf8_lossy(&build.stderr)
    );
    bundle
}
