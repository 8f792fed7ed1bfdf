//! Shared helpers for the plan tests: fixtures and temp inputs.
#![allow(dead_code)]

use ferry_bundles::{BundleManifest, ComponentKind};
use ferry_installer::plan::addon_artifacts::Artifacts;
use ferry_installer::plan::{build_plan, ClusterPlan, FileContent, PlanError, PlanOptions};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/guide")
}

/// The bundle.json fixture: Kubernetes 1.29.6, amd64 + arm64, the prod profile's images.
pub fn bundle() -> BundleManifest {
    let bytes = std::fs::read(fixtures().join("bundle.json")).expect("fixture bundle.json");
    BundleManifest::from_bytes(&bytes).expect("fixture parses")
}

/// The bundle's files the plan reads, laid out at their bundle paths as an
/// unpack leaves them: the fixture upstream's addon release artifacts
/// (tests/fixtures/mkartifacts.py) and, as `helm`, the test stand-in
/// (tests/fixtures/standins/kube-standin.py), which renders the subset of
/// helm's template language the fixture charts use. Made once per test binary.
pub fn artifacts() -> Artifacts {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let upstream = dir.join("upstream");
        let made = std::process::Command::new("python3")
            .arg(fixtures().join("../mkartifacts.py"))
            .arg(&upstream)
            .status()
            .expect("run mkartifacts.py");
        assert!(made.success(), "mkartifacts.py failed");
        let root = dir.join("bundle");
        for c in &bundle().components {
            let from = match c.kind {
                ComponentKind::Chart | ComponentKind::Manifest => {
                    upstream.join(c.source.trim_start_matches("https://"))
                }
                _ if c.name == "helm" => fixtures().join("../standins/kube-standin.py"),
                _ => continue,
            };
            let bytes = std::fs::read(&from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
            if matches!(c.kind, ComponentKind::Chart | ComponentKind::Manifest) {
                let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
                assert_eq!(
                    sha, c.sha256,
                    "{}: the fixture bundle.json is stale; run tests/fixtures/guide/refresh-artifacts.py",
                    c.path
                );
            }
            let to = root.join(&c.path);
            std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
            std::fs::write(&to, bytes).expect("write");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        root
    });
    Artifacts::new(dir)
}

/// Plan options with the fixture bundle's files.
pub fn options() -> PlanOptions {
    PlanOptions {
        artifacts: Some(artifacts()),
        ..PlanOptions::default()
    }
}

/// The production guide's example inventory and config, planned into a fresh cluster dir.
pub fn guide_plan(cluster_dir: &Path) -> ClusterPlan {
    build_plan(
        &fixtures().join("hosts"),
        &fixtures().join("config.yml"),
        &bundle(),
        Some(cluster_dir),
        &options(),
    )
    .expect("the guide's example plans")
}

/// Inputs written to a temp dir, named `hosts` and `config.yml` like kubeasz's.
pub struct Inputs {
    pub dir: tempfile::TempDir,
}

impl Inputs {
    pub fn new(hosts: &str, config: &str) -> Inputs {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("hosts"), hosts).expect("write hosts");
        std::fs::write(dir.path().join("config.yml"), config).expect("write config");
        Inputs { dir }
    }

    pub fn hosts(&self) -> PathBuf {
        self.dir.path().join("hosts")
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("config.yml")
    }

    pub fn plan(&self) -> Result<ClusterPlan, PlanError> {
        self.plan_with(&bundle())
    }

    pub fn plan_with(&self, bundle: &BundleManifest) -> Result<ClusterPlan, PlanError> {
        build_plan(
            &self.hosts(),
            &self.config(),
            bundle,
            Some(&self.dir.path().join("cluster")),
            &options(),
        )
    }
}

/// Write every inline file of every host under `root/<host>/<path>`.
pub fn write_trees(plan: &ClusterPlan, root: &Path) {
    for h in &plan.hosts {
        for f in &h.files {
            if let FileContent::Inline(b) = &f.content {
                let p = root
                    .join(&h.name)
                    .join(f.path.strip_prefix("/").expect("absolute"));
                std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
                std::fs::write(&p, b).expect("write");
            }
        }
    }
}

/// Text of an inline file on a host.
pub fn text(plan: &ClusterPlan, host: &str, path: &str) -> String {
    let h = plan
        .host(host)
        .unwrap_or_else(|| panic!("host {host} in plan"));
    let f = h
        .file(path)
        .unwrap_or_else(|| panic!("{path} planned on {host}"));
    match &f.content {
        FileContent::Inline(b) => String::from_utf8(b.clone()).expect("utf-8"),
        other => panic!("{path} on {host} is not inline: {other:?}"),
    }
}

/// A minimal valid inventory: 3 masters that are also etcd, one worker.
pub const SMALL_HOSTS: &str = "\
[etcd]
10.1.0.1 NODE_NAME=etcd1
10.1.0.2 NODE_NAME=etcd2
10.1.0.3 NODE_NAME=etcd3

[kube_master]
10.1.0.1 k8s_nodename='master-01'
10.1.0.2 k8s_nodename='master-02'
10.1.0.3 k8s_nodename='master-03'

[kube_node]
10.1.0.4 k8s_nodename='worker-01'

[all:vars]
ansible_user=root
";

pub const SMALL_CONFIG: &str = "\
CLUSTER_NAME: \"small\"
K8S_VER: \"1.29.6\"
CLUSTER_CIDR: \"10.244.0.0/16\"
SERVICE_CIDR: \"10.96.0.0/16\"
";

/// The subject alternative names of a PEM certificate, read by openssl.
pub fn cert_sans(pem: &[u8]) -> Vec<ferry_installer::plan::validate::San> {
    use ferry_installer::plan::validate::San;
    let text = openssl_x509(pem, &["-noout", "-ext", "subjectAltName"]);
    text.split([',', '\n'])
        .filter_map(|part| {
            let part = part.trim();
            if let Some(d) = part.strip_prefix("DNS:") {
                Some(San::Dns(d.to_string()))
            } else {
                part.strip_prefix("IP Address:")
                    .and_then(|ip| ip.parse().ok())
                    .map(San::Ip)
            }
        })
        .collect()
}

/// Whether a PEM certificate is still valid `days` from now (openssl's -checkend).
pub fn cert_valid_in_days(pem: &[u8], days: u64) -> bool {
    let seconds = (days * 86_400).to_string();
    openssl(pem, &["x509", "-noout", "-checkend", &seconds])
        .status
        .success()
}

fn openssl_x509(pem: &[u8], args: &[&str]) -> String {
    let out = openssl(pem, &[&["x509"], args].concat());
    assert!(out.status.success(), "openssl x509 {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `openssl ARGS` with `pem` on its stdin.
fn openssl(pem: &[u8], args: &[&str]) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(pem)
        .expect("write");
    child.wait_with_output().expect("openssl")
}
