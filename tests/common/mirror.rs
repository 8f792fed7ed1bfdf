//! Helpers for the unpack and registry mirror tests: mkimages.py, the tree
//! digest of a data dir, `ferry registry serve` as a guard, a private
//! containerd, Debian's docker-registry, and a throwaway CA made with rcgen.
//! Every process is killed and every directory removed on drop.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn ferry() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data))
}

/// Runs tests/fixtures/mkimages.py into `out`; returns ref -> index digest.
pub fn mkimages(out: &Path, extra_bytes: u64, refs: &[&str]) -> BTreeMap<String, String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mkimages.py");
    let res = Command::new("python3")
        .arg(script)
        .arg("--out")
        .arg(out)
        .arg("--extra-bytes")
        .arg(extra_bytes.to_string())
        .arg("--shared-bytes")
        .arg("65536")
        .args(refs)
        .output()
        .expect("run mkimages.py");
    assert!(
        res.status.success(),
        "mkimages.py: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    String::from_utf8_lossy(&res.stdout)
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(r, d)| (r.to_owned(), d.to_owned())))
        .collect()
}

/// The platforms test bundles carry (mkimages.py's runnable ones).
pub const BUNDLE_PLATFORMS: &[&str] = &["linux/amd64", "linux/arm64"];

fn read_blob_json(layout: &Path, digest: &str) -> serde_json::Value {
    let hex = digest.strip_prefix("sha256:").unwrap();
    serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap()).unwrap()
}

/// The `os/arch[/variant]` of an index entry, or None for an attestation.
pub fn entry_platform(entry: &serde_json::Value) -> Option<String> {
    let p = &entry["platform"];
    let attestation = entry["annotations"]["vnd.docker.reference.type"] == "attestation-manifest";
    let (os, arch) = (p["os"].as_str()?, p["architecture"].as_str()?);
    if attestation || os == "unknown" {
        return None;
    }
    Some(match p["variant"].as_str() {
        Some(v) => format!("{os}/{arch}/{v}"),
        None => format!("{os}/{arch}"),
    })
}

/// Whether a bundle of BUNDLE_PLATFORMS carries this index entry.
pub fn carried_entry(entry: &serde_json::Value) -> bool {
    entry_platform(entry)
        .is_some_and(|p| BUNDLE_PLATFORMS.contains(&p.as_str()) || p == "linux/arm64/v8")
}

/// A manifest's digest, then its config and layer digests.
pub fn manifest_blobs(layout: &Path, digest: &str) -> Vec<String> {
    let manifest = read_blob_json(layout, digest);
    let mut out = vec![
        digest.to_owned(),
        manifest["config"]["digest"].as_str().unwrap().to_owned(),
    ];
    for l in manifest["layers"].as_array().unwrap() {
        out.push(l["digest"].as_str().unwrap().to_owned());
    }
    out
}

/// Every manifest and blob digest a bundle of BUNDLE_PLATFORMS carries of an
/// image index in the layout, the index first: the requested platforms' images
/// only, as the builder picks them (no attestations, no other platforms).
pub fn reachable_blobs(layout: &Path, digest: &str) -> Vec<String> {
    let mut out = vec![digest.to_owned()];
    let index = read_blob_json(layout, digest);
    for m in index["manifests"].as_array().unwrap() {
        if carried_entry(m) {
            out.extend(manifest_blobs(layout, m["digest"].as_str().unwrap()));
        }
    }
    out
}

/// The index entries of an image a bundle of BUNDLE_PLATFORMS leaves out.
pub fn left_out_entries(layout: &Path, digest: &str) -> Vec<serde_json::Value> {
    let index = read_blob_json(layout, digest);
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| !carried_entry(m))
        .cloned()
        .collect()
}

/// Starts a prepared `ferry registry serve` command with its log in `log` and
/// waits for its `listening on URL` line: the child and the URL.
pub fn spawn_serve(mut cmd: Command, log: &Path) -> (Child, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start ferry registry serve");
    let mut line = String::new();
    let stdout = child.stdout.take().unwrap();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    match line.trim().strip_prefix("listening on ") {
        Some(url) => (child, url.to_owned()),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "registry serve did not start: {line:?}\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        }
    }
}

/// `ferry registry serve` on a free loopback port; SIGTERM then kill on drop.
pub struct Mirror {
    child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// `http://127.0.0.1:PORT` or `https://...`
    pub url: String,
    pub log: PathBuf,
}

impl Mirror {
    pub fn start(data: &Path, log_dir: &Path, tls: Option<(&Path, &Path)>) -> Mirror {
        let log = log_dir.join(format!("mirror-{}.log", std::process::id()));
        let mut cmd = ferry();
        cmd.args(["registry", "serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data);
        if let Some((cert, key)) = tls {
            cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        let (child, url) = spawn_serve(cmd, &log);
        let addr = url.split_once("://").unwrap().1.to_owned();
        Mirror {
            url,
            addr,
            child,
            log,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        unsafe_kill(self.child.id(), "TERM");
        wait_timeout(&mut self.child, Duration::from_secs(15))
    }

    pub fn signal(&self, sig: &str) {
        unsafe_kill(self.child.id(), sig);
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unsafe_kill(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Debian's containerd with its own root, state, socket and config.
pub struct Containerd {
    child: Child,
    pub dir: tempfile::TempDir,
    pub sock: PathBuf,
}

impl Containerd {
    pub fn start() -> Containerd {
        let dir = tempfile::Builder::new()
            .prefix("ferry-containerd-")
            .tempdir()
            .unwrap();
        let sock = dir.path().join("containerd.sock");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n\
                 [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n\
                 [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{opt}\"\n",
                opt = dir.path().join("opt").display(),
                root = dir.path().join("root").display(),
                state = dir.path().join("state").display(),
                sock = sock.display(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("containerd.log")).unwrap();
        let child = Command::new("/usr/bin/containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start /usr/bin/containerd");
        let c = Containerd { child, dir, sock };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if c.ctr(&["version"]).status.success() {
                return c;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "containerd did not come up: {}",
            std::fs::read_to_string(c.dir.path().join("containerd.log")).unwrap_or_default()
        );
    }

    pub fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("-a")
            .arg(&self.sock)
            .args(args)
            .output()
            .expect("run ctr")
    }

    /// `ctr images pull --hosts-dir DIR --platform P REF`, asserting success.
    pub fn pull(&self, hosts_dir: &Path, platform: &str, reference: &str) {
        let hosts = hosts_dir.to_str().unwrap();
        let out = self.ctr(&[
            "images",
            "pull",
            "--hosts-dir",
            hosts,
            "--platform",
            platform,
            reference,
        ]);
        assert!(
            out.status.success(),
            "ctr pull {reference} ({platform}) failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// ref -> digest of the images containerd has.
    pub fn images(&self) -> BTreeMap<String, String> {
        let out = self.ctr(&["images", "ls"]);
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .filter_map(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                (cols.len() >= 3).then(|| (cols[0].to_owned(), cols[2].to_owned()))
            })
            .collect()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Unmount anything the snapshotter left (none expected without running containers).
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.dir.path().join("root"))
            .stderr(Stdio::null())
            .status();
    }
}

/// `certs.d`-style hosts dir: one `hosts.toml` per upstream host pointing at
/// `mirror_url`, which is also `server`: containerd never falls back to the
/// upstream itself, so no test depends on whether the internet is reachable.
pub fn hosts_dir(dir: &Path, upstreams: &[&str], mirror_url: &str, ca: Option<&Path>) -> PathBuf {
    let root = dir.join("certs.d");
    for host in upstreams {
        let d = root.join(host);
        std::fs::create_dir_all(&d).unwrap();
        let ca_line = ca
            .map(|c| format!("  ca = \"{}\"\n", c.display()))
            .unwrap_or_default();
        std::fs::write(
            d.join("hosts.toml"),
            format!("server = \"{mirror_url}\"\n{}\n[host.\"{mirror_url}\"]\n  capabilities = [\"pull\", \"resolve\"]\n{ca_line}", ca_line.trim_start()),
        )
        .unwrap();
    }
    root
}

/// A CA and a server certificate for 127.0.0.1 and localhost, as PEM files in `dir`.
pub struct TestCa {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    pub fn new(dir: &Path) -> TestCa {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "ferry test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "ferry mirror");
        let cert = params.signed_by(&key, &issuer).unwrap();
        let paths = TestCa {
            ca: dir.join("ca.crt"),
            cert: dir.join("mirror.crt"),
            key: dir.join("mirror.key"),
        };
        std::fs::write(&paths.ca, ca_cert.pem()).unwrap();
        std::fs::write(&paths.cert, cert.pem()).unwrap();
        std::fs::write(&paths.key, key.serialize_pem()).unwrap();
        paths
    }
}

/// Debian's docker-registry with filesystem storage in a temp dir, on a free loopback port.
pub struct DockerRegistry {
    child: Child,
    pub dir: tempfile::TempDir,
    pub addr: String,
}

impl DockerRegistry {
    pub fn start() -> DockerRegistry {
        DockerRegistry::start_with("")
    }

    /// Like `start`, with `extra` YAML appended to the config right after
    /// `http:\n  addr: ADDR\n`: indented lines extend the `http` section
    /// (`  tls:` ...), unindented ones add top-level sections (`auth:` ...).
    pub fn start_with(extra: &str) -> DockerRegistry {
        let dir = tempfile::Builder::new()
            .prefix("ferry-docker-registry-")
            .tempdir()
            .unwrap();
        let log = dir.path().join("registry.log");
        let (child, port) = super::ports::start_on_free_port("docker-registry", &log, |port| {
            let config = dir.path().join("config.yml");
            std::fs::write(
                    &config,
                    format!(
                        "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{extra}",
                        dir.path().join("data").display()
                    ),
                )
                .unwrap();
            let out = std::fs::File::create(&log).unwrap();
            Command::new("/usr/bin/docker-registry")
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .expect("start /usr/bin/docker-registry")
        });
        let addr = format!("127.0.0.1:{port}");
        DockerRegistry { child, dir, addr }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for DockerRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// sha256 of every regular file under `root`, by relative path, plus directories and modes.
pub fn tree_digest(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in walk(root) {
        let rel = entry
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let meta = std::fs::symlink_metadata(&entry).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        let value = if meta.is_file() {
            let mut data = Vec::new();
            std::fs::File::open(&entry)
                .unwrap()
                .read_to_end(&mut data)
                .unwrap();
            format!("file {mode:o} {}", sha256_hex(&data))
        } else if meta.is_dir() {
            format!("dir {mode:o}")
        } else {
            format!("other {mode:o}")
        };
        out.insert(rel, value);
    }
    out
}

fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}
