//! kubelet's pull path, for real: containerd's CRI plugin (Debian's containerd
//! 1.6 with CRI enabled) runs on `/etc/containerd/config.toml` and
//! `certs.d/*/hosts.toml` exactly as `ferry plan --out` rendered them for a
//! one-host cluster on 127.0.0.1, and pulls every image of a bundle made by
//! `ferry bundle build` through the CRI ImageService over gRPC, as kubelet
//! does (PullImage, ImageStatus, ListImages), from `ferry registry serve`
//! with the TLS certificate plan rendered for the registry host and the
//! cluster CA. The gRPC client is a test client, tests/fixtures/cri/cri_client.py
//! (grpcio, trimmed CRI runtime.v1 API).
//!
//! containerd runs in a private mount and PID namespace
//! (tests/fixtures/cri/containerd-ns.sh): the rendered absolute paths resolve
//! to the rendered tree and to temp dirs, never to the machine's own /etc,
//! /var/lib/containerd or /run/containerd. Inside that namespace the upstream
//! registry names resolve to 127.0.0.9 (nothing listens there), so no request
//! can leave the machine, whatever a config falls back to; containerd's debug
//! log still names the host it tried, which is what the fallback checks read.

mod common;

use common::upstream::signed_amd64_bundle;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const HOST: &str = "node-1";
/// Where the upstream registry names point inside containerd's namespace.
const PINNED: &str = "127.0.0.9";

fn ferry() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
}

fn cri_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cri")
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A bundle built from the fixture upstream, unpacked; the port of the mirror
/// (0 until [`Serve::start`] picked it).
struct Site {
    dir: tempfile::TempDir,
    bundle: PathBuf,
    /// bundle.json as unpacked.
    manifest: Value,
    port: u16,
}

impl Site {
    fn build() -> Site {
        let dir = tempfile::Builder::new()
            .prefix("ferry-cri-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let bundle = signed_amd64_bundle(d, "cri");
        let mut unpack = ferry();
        unpack
            .args(["bundle", "unpack", "--trust"])
            .arg(d.join("key.pub"))
            .arg("--data-dir")
            .arg(d.join("data"))
            .arg(&bundle);
        ok(unpack.output().unwrap(), "bundle unpack");
        let manifest = unpacked_manifest(&d.join("data"));
        Site {
            dir,
            bundle,
            manifest,
            port: 0,
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// (reference, upstream index digest) of every image in bundle.json.
    fn images(&self) -> Vec<(String, String)> {
        self.manifest["images"]
            .as_array()
            .expect("images in bundle.json")
            .iter()
            .map(|i| {
                let r = i["reference"].as_str().expect("reference");
                (
                    r.to_owned(),
                    i["digest"].as_str().expect("digest").to_owned(),
                )
            })
            .collect()
    }

    /// `ferry plan --out DIR/NAME` for one host on 127.0.0.1 that is master,
    /// etcd member, node and registry host; returns the host's rendered tree.
    fn plan(&self, name: &str, extra_config: &str) -> PathBuf {
        let d = self.dir.path();
        let hosts = format!(
            "[all]\n127.0.0.1 ansible_host=127.0.0.1 ip=127.0.0.1 etcd_name=etcd-1 node_name={HOST}\n\
             [kube_master]\n127.0.0.1\n[etcd]\n127.0.0.1\n[kube_node]\n127.0.0.1\n\
             [all:vars]\nansible_user=root\n"
        );
        let config = format!(
            "CLUSTER_NAME: \"cri\"\nK8S_VER: \"1.29.6\"\nFERRY_REGISTRY_PORT: {}\n{extra_config}",
            self.port
        );
        std::fs::write(d.join(format!("{name}.hosts")), hosts).unwrap();
        std::fs::write(d.join(format!("{name}.yml")), config).unwrap();
        let mut plan = ferry();
        plan.args(["plan", "--inventory"])
            .arg(d.join(format!("{name}.hosts")))
            .arg("--config")
            .arg(d.join(format!("{name}.yml")))
            .arg("--bundle")
            .arg(&self.bundle)
            .arg("--trust")
            .arg(d.join("key.pub"))
            .arg("--out")
            .arg(d.join(name))
            .arg("--cluster-dir")
            .arg(d.join("cluster"));
        ok(plan.output().unwrap(), "ferry plan");
        d.join(name).join("hosts").join(HOST)
    }

    /// Upstream registry names to pin to [`PINNED`] inside containerd's namespace.
    fn upstream_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .images()
            .iter()
            .map(|(r, _)| r.split('/').next().unwrap_or_default().to_owned())
            .chain(["docker.io".into(), "registry-1.docker.io".into()])
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

fn unpacked_manifest(data: &Path) -> Value {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(data.join("bundles"))
        .expect("data/bundles")
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "one unpacked bundle: {dirs:?}");
    let text = std::fs::read(dirs.remove(0).join("bundle.json")).expect("bundle.json");
    serde_json::from_slice(&text).expect("bundle.json is JSON")
}

/// `ferry registry serve` on the plan's registry port with the plan's TLS
/// certificate and key for the registry host; killed on drop.
struct Serve {
    child: Child,
    log: PathBuf,
}

impl Serve {
    /// Plans `name` (see [`Site::plan`]) with a registry port and starts the
    /// mirror there; when the port is taken, plans again with another one.
    /// Returns the mirror and the host's rendered tree.
    fn start(site: &mut Site, name: &str) -> (Serve, PathBuf) {
        let log = site.dir.path().join("mirror.log");
        let mut tree = PathBuf::new();
        let (mut child, _) =
            common::ports::start_on_free_port("ferry registry serve", &log, |port| {
                site.port = port;
                tree = site.plan(name, "");
                let tls = tree.join("etc/ferry/registry");
                ferry()
                    .args(["registry", "serve", "--listen"])
                    .arg(format!("127.0.0.1:{port}"))
                    .arg("--data-dir")
                    .arg(site.data())
                    .arg("--tls-cert")
                    .arg(tls.join("tls.pem"))
                    .arg("--tls-key")
                    .arg(tls.join("tls-key.pem"))
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(std::fs::File::create(&log).unwrap())
                    .spawn()
                    .expect("start ferry registry serve")
            });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = format!("listening on https://127.0.0.1:{}", site.port);
        assert_eq!(line.trim(), url);
        (Serve { child, log }, tree)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// containerd with CRI on a rendered host tree, in its own mount and PID
/// namespace; everything it writes lands in `work`.
struct Cri {
    unshare: Child,
    work: PathBuf,
    log: PathBuf,
    gen: PathBuf,
}

impl Cri {
    fn start(tree: &Path, dir: &Path, pins: &[String]) -> Cri {
        let work = dir.join("ns");
        std::fs::create_dir_all(&work).unwrap();
        let log = dir.join("containerd.log");
        let file = std::fs::File::create(&log).unwrap();
        let unshare = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--pid", "--fork"])
            .args(["--kill-child", "--mount-proc", "sh"])
            .arg(cri_dir().join("containerd-ns.sh"))
            .arg(tree)
            .arg(&work)
            .args(["--log-level", "debug"])
            .env("FERRY_TEST_PIN_HOSTS", pins.join(" "))
            .env("FERRY_TEST_PIN_ADDR", PINNED)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start unshare");
        let gen = dir.join("cri-gen");
        let cri = Cri {
            unshare,
            work,
            log,
            gen,
        };
        cri.wait_ready();
        cri
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.call(&["version"]) {
                Ok(v) => {
                    assert_eq!(v["runtime_api_version"], "v1", "{v}");
                    return;
                }
                Err(e) if e["code"] == "CLIENT" => panic!(
                    "the test CRI client failed (it needs python3 with grpcio and \
                     grpcio-tools, which .ci/run installs): {e}"
                ),
                Err(_) => {}
            }
            assert!(
                Instant::now() < deadline,
                "containerd's CRI did not come up:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// One RPC through the test client: Ok(answer) or Err({"code", "details"}).
    fn call(&self, args: &[&str]) -> Result<Value, Value> {
        let out = Command::new("python3")
            .arg(cri_dir().join("cri_client.py"))
            .arg("--socket")
            .arg(self.work.join("run/containerd.sock"))
            .arg("--gen")
            .arg(&self.gen)
            .args(args)
            .output()
            .expect("run cri_client.py");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            serde_json::json!({"error": {"code": "CLIENT",
                "details": String::from_utf8_lossy(&out.stderr)}})
        });
        match (out.status.success(), v.get("error")) {
            (true, None) => Ok(v),
            (_, Some(e)) => Err(e.clone()),
            (false, None) => Err(v),
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Hosts containerd sent requests to (its "do request" debug lines) for URLs containing `part`.
    fn requested_hosts(&self, part: &str) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| l.contains("msg=\"do request\"") && l.contains(part))
            .filter_map(|l| l.split(" host=").nth(1))
            .map(|h| {
                h.split(' ')
                    .next()
                    .unwrap_or("")
                    .trim_matches('"')
                    .to_owned()
            })
            .collect()
    }
}

impl Drop for Cri {
    fn drop(&mut self) {
        // containerd is PID 1 of the namespace: killing it takes the shims and mounts along.
        let pid = self.unshare.id();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for child in children.split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", child]).status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.unshare.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

/// `registry.k8s.io/pause:3.9` -> (`registry.k8s.io`, `pause`, `3.9`).
fn split_ref(reference: &str) -> (&str, &str, &str) {
    let (name, tag) = reference.rsplit_once(':').expect("tagged reference");
    let (registry, path) = name.split_once('/').expect("registry/path");
    (registry, path, tag)
}

/// The `sandbox_image` of a rendered config.toml (a TOML basic string, written with tojson).
fn sandbox_image(tree: &Path) -> String {
    let text = std::fs::read_to_string(tree.join("etc/containerd/config.toml")).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("sandbox_image = "))
        .expect("sandbox_image in config.toml");
    serde_json::from_str(line).expect("sandbox_image is a quoted string")
}

fn pull_all_through_cri(cri: &Cri, site: &Site, serve: &Serve) {
    for (reference, digest) in site.images() {
        let pulled = cri.call(&["pull", &reference]);
        let status = cri.call(&["image-status", &reference]);
        let (registry, path, tag) = split_ref(&reference);
        let (Ok(pulled), Ok(status)) = (pulled, status) else {
            panic!(
                "CRI pull of {reference} failed: {:?}\nmirror log:\n{}",
                cri.call(&["pull", &reference]),
                serve.log_text()
            );
        };
        let image = &status["image"];
        assert_eq!(image["id"], pulled["image_ref"], "{reference}: {status}");
        let want = format!("{registry}/{path}@{digest}");
        let digests: Vec<&str> = image["repo_digests"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(digests, [want.as_str()], "CRI's repo digest of {reference}");
        // containerd asked the mirror with the upstream registry as `ns`.
        let asked = format!("/v2/{path}/manifests/{tag}?ns={registry} ");
        assert!(
            serve.log_text().lines().any(|l| l.contains(&asked)),
            "the mirror's access log has no {asked}:\n{}",
            serve.log_text()
        );
    }
    eprintln!(
        "CRI pulled {} images through the mirror, each with its upstream digest",
        site.images().len()
    );
    let listed = cri.call(&["list"]).expect("ListImages");
    for (reference, digest) in site.images() {
        let (registry, path, _) = split_ref(&reference);
        let want = format!("{registry}/{path}@{digest}");
        assert!(
            listed["images"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["repo_tags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|t| t == &reference)
                    && i["repo_digests"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|d| d == &want)),
            "ListImages lacks {reference} as {want}: {listed}"
        );
    }
}

/// The sandbox image CRI resolves is config.toml's `sandbox_image`, and CRI
/// gets it from the mirror with the bundle's upstream digest.
fn sandbox_image_comes_from_the_mirror(cri: &Cri, site: &Site, tree: &Path, serve: &Serve) {
    let rendered = sandbox_image(tree);
    let status = cri.call(&["status"]).expect("CRI Status");
    let config = status["info"]["config"]
        .as_str()
        .expect("verbose Status has config");
    let config: Value = serde_json::from_str(config).expect("CRI config is JSON");
    assert_eq!(config["sandboxImage"], rendered.as_str(), "{config}");
    assert_eq!(config["registry"]["configPath"], "/etc/containerd/certs.d");
    let (_, digest) = site
        .images()
        .into_iter()
        .find(|(r, _)| *r == rendered)
        .unwrap_or_else(|| panic!("sandbox image {rendered} is not in bundle.json"));
    let before = cri.call(&["image-status", &rendered]).expect("ImageStatus");
    assert!(before["image"].is_null(), "a fresh store: {before}");
    let pulled = cri.call(&["pull", &rendered]);
    assert!(pulled.is_ok(), "CRI pull of {rendered}: {pulled:?}");
    let image = &cri.call(&["image-status", &rendered]).expect("ImageStatus")["image"];
    let (registry, path, tag) = split_ref(&rendered);
    let want = format!("{registry}/{path}@{digest}");
    assert_eq!(image["repo_digests"], serde_json::json!([want]), "{image}");
    let asked = format!("/v2/{path}/manifests/{tag}?ns={registry} ");
    assert!(serve.log_text().contains(&asked), "{}", serve.log_text());
}

/// A pull of an image the bundle lacks: fails quickly with `not found`, and
/// containerd sent every request for it to the mirror. Returns the hosts
/// containerd tried, for the fallback control.
fn pull_missing(cri: &Cri) -> (Value, Vec<String>, Duration) {
    let missing = "registry.k8s.io/ferry-test/not-in-bundle:1.0";
    let start = Instant::now();
    let err = cri
        .call(&["pull", missing])
        .expect_err("an image the bundle lacks cannot be pulled");
    (err, cri.requested_hosts("not-in-bundle"), start.elapsed())
}

#[test]
fn cri_pulls_every_bundle_image_through_the_mirror_as_kubelet_does() {
    let mut site = Site::build();
    let (serve, tree) = Serve::start(&mut site, "default");
    let pins = site.upstream_names();
    let cri = Cri::start(&tree, &site.dir.path().join("cri"), &pins);
    sandbox_image_comes_from_the_mirror(&cri, &site, &tree, &serve);
    pull_all_through_cri(&cri, &site, &serve);

    // No upstream fallback by default: the missing image is asked of the mirror only.
    let mirror = format!("127.0.0.1:{}", site.port);
    let (err, hosts, took) = pull_missing(&cri);
    let details = err["details"].as_str().unwrap_or_default();
    assert!(details.contains("not found"), "{err}");
    assert!(!hosts.is_empty(), "no request logged:\n{}", cri.log_text());
    assert!(hosts.iter().all(|h| *h == mirror), "tried {hosts:?}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let asked = "/v2/ferry-test/not-in-bundle/manifests/1.0?ns=registry.k8s.io ";
    assert!(serve.log_text().contains(asked), "{}", serve.log_text());
    drop(cri);

    // Control: with FERRY_UPSTREAM_FALLBACK the same check sees the upstream
    // (pinned to 127.0.0.9 in the namespace, so nothing leaves the machine).
    let tree = site.plan("fallback", "FERRY_UPSTREAM_FALLBACK: true\n");
    let cri = Cri::start(&tree, &site.dir.path().join("cri-fallback"), &pins);
    let (err, hosts, _) = pull_missing(&cri);
    assert!(hosts.contains(&mirror), "tried {hosts:?}");
    assert!(
        hosts.iter().any(|h| h == "registry.k8s.io"),
        "tried {hosts:?}"
    );
    assert!(
        hosts.iter().all(|h| *h == mirror || h == "registry.k8s.io"),
        "{hosts:?}"
    );
    let details = err["details"].as_str().unwrap_or_default();
    assert!(
        details.contains(PINNED),
        "the upstream stayed on loopback: {err}"
    );
}
