//! `ferry install` end to end on a 7-host rig: 3 masters that are also etcd
//! members, 2 nodes, 2 ex_lb hosts; the test process is the deploy host.
//!
//! Real parts: etcd, etcdctl, containerd (pulled from through its CRI plugin
//! with the test client tests/fixtures/cri/cri_client.py), runc and the CNI plugins are
//! Debian's binaries carried in the fixture bundle; haproxy, keepalived,
//! systemd and sshd are the machine's own; the registry mirror is ferry's.
//! STAND-INS: kube-apiserver, kube-controller-manager, kube-scheduler,
//! kubelet, kube-proxy, kubectl, crictl and helm are the python script
//! tests/fixtures/standins/kube-standin.py (not Kubernetes). The stand-in
//! apiserver serves TLS with the certificate ferry rendered, which is what
//! the VIP test talks to.

mod common;

use common::cluster::{cri, sandbox_comes_from_the_mirror, wait_for};
use common::rig::Rig;
use common::upstream::signed_amd64_bundle;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

const MASTERS: [&str; 3] = ["h1", "h2", "h3"];
const NODES: [&str; 2] = ["h4", "h5"];
const LBS: [&str; 2] = ["h6", "h7"];
const OCTET: u8 = 5;
const KERNEL_UNITS: [&str; 5] = [
    "systemd-modules-load.service",
    "systemd-sysctl.service",
    "ferry-swapoff.service",
    "chrony.service",
    "chronyd.service",
];

fn ferry() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
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

fn vip() -> String {
    format!("198.18.{OCTET}.250")
}

fn inventory(rig: &Rig) -> String {
    let a = |h: &str| rig.addr(h).to_string();
    let mut s = String::from("[all]\n");
    for (i, h) in MASTERS.iter().enumerate() {
        s += &format!(
            "{} ansible_host={} ip={} etcd_name=etcd-{} node_name={h}\n",
            a(h),
            a(h),
            a(h),
            i + 1
        );
    }
    for h in NODES.iter().chain(LBS.iter()) {
        s += &format!("{} ansible_host={} ip={} node_name={h}\n", a(h), a(h), a(h));
    }
    s += "[etcd]\n";
    for h in MASTERS {
        s += &format!("{}\n", a(h));
    }
    s += "[kube_master]\n";
    for h in MASTERS {
        s += &format!("{}\n", a(h));
    }
    s += "[kube_node]\n";
    for h in NODES {
        s += &format!("{}\n", a(h));
    }
    s += "[ex_lb]\n";
    for h in LBS {
        s += &format!("{}\n", a(h));
    }
    s += &format!(
        "[all:vars]\nansible_user=root\nansible_ssh_port=22\nansible_ssh_private_key_file={}\n",
        rig.key().display()
    );
    s
}

/// The test hosts are containers on a machine without CAP_SYS_RESOURCE, like
/// LXC nodes: containerd must not lower OOM scores there.
const RESTRICT_OOM: &str = "CONTAINERD_RESTRICT_OOM_SCORE_ADJ: true\n";
/// Open files are capped at 20000 on this machine and test hosts cannot
/// raise them: haproxy on [ex_lb] gets fewer connections (and so open files).
const TEST_HOST_MAXCONN: &str = "EX_LB_MAXCONN: 4000\n";

fn config() -> String {
    format!(
        "CLUSTER_NAME: \"e2e\"\nK8S_VER: \"1.29.6\"\nCONTAINER_RUNTIME: \"containerd\"\nVIP: \"{}\"\nVIP_IF: \"eth0\"\nHOST_SUBNET_PREFIX: 24\nPROXY_MODE: \"ipvs\"\nCLUSTER_CIDR: \"10.244.0.0/16\"\nSERVICE_CIDR: \"10.96.0.0/16\"\n{RESTRICT_OOM}{TEST_HOST_MAXCONN}",
        vip()
    )
}

struct Setup {
    rig: Rig,
    dir: tempfile::TempDir,
    bundle: PathBuf,
    key_pub: PathBuf,
}

impl Setup {
    fn install(&self) -> Output {
        self.install_with(&self.cluster_dir(), &[])
    }

    fn install_with(&self, cluster_dir: &Path, extra: &[&str]) -> Output {
        let d = self.dir.path();
        ferry()
            .args([
                "install",
                "--json",
                "--forks",
                "7",
                "--ssh-known-hosts",
                "strict",
            ])
            .arg("--bundle")
            .arg(&self.bundle)
            .arg("--inventory")
            .arg(d.join("hosts"))
            .arg("--config")
            .arg(d.join("config.yml"))
            .arg("--trust")
            .arg(&self.key_pub)
            .arg("--data-dir")
            .arg(d.join("data"))
            .arg("--cluster-dir")
            .arg(cluster_dir)
            .arg("--ssh-config")
            .arg(self.rig.ssh_config())
            .args(extra)
            .output()
            .expect("run ferry install")
    }

    fn cluster_dir(&self) -> PathBuf {
        self.dir.path().join("cluster")
    }
}

fn setup() -> Setup {
    eprintln!("NOTE: kube-* binaries, kubectl, crictl and helm in this test are python stand-ins (tests/fixtures/standins), not Kubernetes");
    let rig = Rig::up_bare(7, "fe2e", OCTET);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let bundle = signed_amd64_bundle(d, "e2e");
    std::fs::write(d.join("hosts"), inventory(&rig)).unwrap();
    std::fs::write(d.join("config.yml"), config()).unwrap();
    Setup {
        rig,
        key_pub: d.join("key.pub"),
        bundle,
        dir,
    }
}

fn report(stdout: &str) -> Value {
    serde_json::from_str(stdout)
        .unwrap_or_else(|e| panic!("install --json printed no report ({e}):\n{stdout}"))
}

fn counts(report: &Value) -> (usize, usize) {
    let hosts = report["hosts"].as_array().expect("hosts");
    let sum = |k: &str| {
        hosts
            .iter()
            .map(|h| h[k].as_array().map_or(0, Vec::len))
            .sum()
    };
    (sum("changed_files"), sum("restarted_units"))
}

fn etcdctl(s: &Setup, host: &str, args: &str) -> String {
    common::cluster::etcdctl(&s.rig, host, args)
}

fn vip_holder(rig: &Rig) -> Option<&'static str> {
    LBS.into_iter().find(|h| {
        rig.sh(h, "ip -4 -o addr show dev eth0")
            .contains(&format!(" {}/", vip()))
    })
}

/// `(package, version)` of every installed package in a dpkg status file.
fn dpkg_installed(status: &str) -> BTreeSet<(String, String)> {
    status
        .split("\n\n")
        .filter(|p| p.lines().any(|l| l == "Status: install ok installed"))
        .filter_map(|p| {
            let field = |f: &str| p.lines().find_map(|l| l.strip_prefix(f)).map(str::to_owned);
            Some((field("Package: ")?, field("Version: ")?))
        })
        .collect()
}

/// The hosts started from a minimal Debian 12 root: every package they hold
/// is the root's or the bundle's debian-12 set's, installed from the copy of
/// the set's repository ferry placed (apt named no other source), and the
/// binaries ferry placed are the bundle's bytes.
fn bare_hosts_hold_only_the_base_and_the_bundle(s: &Setup, manifest: &Value) {
    let rig = &s.rig;
    let root = std::env::var("FERRY_RIG_BARE_ROOT")
        .unwrap_or("/var/cache/ferry-rig/debian-12-minimal".into());
    let base =
        dpkg_installed(&std::fs::read_to_string(format!("{root}/var/lib/dpkg/status")).unwrap());
    let set = manifest["os_packages"]
        .as_array()
        .and_then(|sets| {
            sets.iter()
                .find(|x| x["name"] == "debian-12" && x["platform"] == "linux/amd64")
        })
        .expect("the bundle carries a debian-12 set for linux/amd64");
    let carried: BTreeSet<(String, String)> = set["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().into(),
                p["version"].as_str().unwrap().into(),
            )
        })
        .collect();
    let all: Vec<&str> = MASTERS
        .iter()
        .chain(NODES.iter())
        .chain(LBS.iter())
        .copied()
        .collect();
    for h in &all {
        let listed = dpkg_installed(&rig.sh(h, "cat /var/lib/dpkg/status"));
        for p in &listed {
            assert!(
                base.contains(p) || carried.contains(p),
                "{h}: {p:?} is neither the minimal root's nor in the bundle's set"
            );
        }
        // What each host's planned units run: kubelet and kube-proxy on
        // masters and nodes, haproxy and keepalived on [ex_lb], chrony and
        // the stand-ins' python3 everywhere.
        let wants: &[&str] = if LBS.contains(h) {
            &["chrony", "haproxy", "keepalived", "python3"]
        } else {
            &[
                "chrony",
                "conntrack",
                "ipset",
                "ipvsadm",
                "socat",
                "haproxy",
                "curl",
                "python3",
            ]
        };
        if LBS.contains(h) {
            assert!(
                !listed.iter().any(|(n, _)| n == "conntrack"),
                "{h}: conntrack installed on an [ex_lb] host"
            );
        }
        for want in wants {
            assert!(
                listed
                    .iter()
                    .any(|(n, v)| n == *want && carried.contains(&(n.clone(), v.clone()))),
                "{h}: {want} not installed from the bundle"
            );
        }
        let sources = rig.sh(h, "cat /var/lib/ferry/apt/sources.list");
        assert_eq!(
            sources.trim(),
            "deb [trusted=yes] file:/var/lib/ferry/os/debian-12/amd64 ./",
            "{h}"
        );
    }
    for h in LBS {
        let active = rig.exec(h, "systemctl is-active haproxy.service keepalived.service");
        assert_eq!(
            String::from_utf8_lossy(&active.stdout).trim(),
            "active\nactive",
            "{h}: haproxy and keepalived from the bundle run"
        );
    }
    bare_hosts_run_the_bundles_binaries(s, manifest);
}

/// containerd, runc, the CNI plugins and etcd on the hosts are the bundle's
/// bytes (the bare root has none of them).
fn bare_hosts_run_the_bundles_binaries(s: &Setup, manifest: &Value) {
    let rig = &s.rig;
    let store = ferry_installer::store::Store::open(s.dir.path().join("data"));
    let bundle_file = |path: &str| store.file_path("e2e", path).unwrap();
    let sha = |path: &str| {
        manifest["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == path)
            .unwrap_or_else(|| panic!("{path} in bundle.json"))["sha256"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let member_sha = |archive: &str, member: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "tar -xzOf {} {member} | sha256sum",
                bundle_file(archive).display()
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let archive = |prefix: &str| {
        manifest["files"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f["path"].as_str())
            .find(|p| p.starts_with(&format!("archives/linux-amd64/{prefix}")))
            .unwrap()
            .to_owned()
    };
    let (containerd, cni) = (archive("containerd-"), archive("cni-plugins-"));
    let mut expected = vec![
        ("/usr/bin/runc", sha("bin/linux-amd64/runc")),
        (
            "/usr/bin/containerd",
            member_sha(&containerd, "bin/containerd"),
        ),
        ("/opt/cni/bin/bridge", member_sha(&cni, "./bridge")),
    ];
    for (path, want) in &expected {
        assert_eq!(want.len(), 64, "{path}: no digest from the bundle");
    }
    for h in MASTERS.iter().chain(NODES.iter()) {
        if MASTERS.contains(h) {
            expected.push(("/opt/kube/bin/etcd", sha("bin/linux-amd64/etcd")));
        }
        for (path, want) in &expected {
            let got = rig.sh(h, &format!("sha256sum {path}"));
            assert_eq!(
                got.split_whitespace().next(),
                Some(want.as_str()),
                "{h}: {path} is not the bundle's"
            );
        }
        expected.truncate(3);
    }
}

/// Standard base64 (etcdctl -w json prints keys and values so).
fn unbase64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {s}"),
    };
    let digits: Vec<u8> = s.bytes().filter(|c| *c != b'=').map(val).collect();
    let mut out = Vec::new();
    for chunk in digits.chunks(4) {
        let n = chunk.iter().fold(0u32, |n, d| n << 6 | u32::from(*d)) << (6 * (4 - chunk.len()));
        out.extend(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// An object in the stand-in apiserver's store (the cluster's etcd, under /registry/).
struct Stored {
    key: String,
    create: u64,
    modified: u64,
    object: Value,
}

fn addon_store(s: &Setup) -> Vec<Stored> {
    let out = etcdctl(s, "h1", "get --prefix /registry/ -w json");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let kvs = v["kvs"].as_array().cloned().unwrap_or_default();
    let stored: Vec<Stored> = kvs
        .iter()
        .map(|kv| Stored {
            key: String::from_utf8(unbase64(kv["key"].as_str().unwrap())).unwrap(),
            create: kv["create_revision"].as_u64().unwrap(),
            modified: kv["mod_revision"].as_u64().unwrap(),
            object: serde_json::from_slice(&unbase64(kv["value"].as_str().unwrap())).unwrap(),
        })
        .collect();
    // The kubelets register their Nodes (every master and node has one),
    // the controllers keep their Leases; the rest is what the addons step
    // applied.
    let nodes: Vec<&str> = stored
        .iter()
        .filter_map(|o| o.key.strip_prefix("/registry/core/nodes/"))
        .collect();
    for h in MASTERS.iter().chain(NODES.iter()) {
        assert!(nodes.contains(h), "no Node {h} registered: {nodes:?}");
    }
    // The controller-manager and scheduler elected leaders and keep their
    // Leases (renewed every few seconds: cluster state, not addons).
    let leases = "/registry/coordination.k8s.io/leases/kube-system/";
    for lease in ["kube-controller-manager", "kube-scheduler"] {
        assert!(
            stored.iter().any(|o| o.key == format!("{leases}{lease}")),
            "no Lease {lease}"
        );
    }
    stored
        .into_iter()
        .filter(|o| !o.key.starts_with("/registry/core/nodes/"))
        .filter(|o| !o.key.starts_with("/registry/coordination.k8s.io/leases/"))
        .collect()
}

/// Every document of the addon manifests placed on `host`, parsed by PyYAML
/// (not by ferry): (file, document).
fn rendered_addons(rig: &Rig, host: &str) -> Vec<(String, Value)> {
    let out = rig.sh(
        host,
        "/usr/bin/python3 -c 'import glob, json, yaml\nprint(json.dumps([[f, d] for f in sorted(glob.glob(\"/etc/ferry/addons/*.yaml\")) for d in yaml.safe_load_all(open(f)) if d is not None]))'",
    );
    let v: Vec<(String, Value)> =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(v.len() > 10, "too few addon objects rendered: {v:?}");
    v
}

fn object_id(o: &Value) -> (String, String, String, String) {
    let t = |p: &str| {
        o.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (
        t("/apiVersion"),
        t("/kind"),
        t("/metadata/namespace"),
        t("/metadata/name"),
    )
}

/// Every rendered object is in the store as rendered, applied by ferry with
/// its content hash; CRDs were created before Namespaces, Namespaces before
/// everything else; nothing else is there. Returns the number of rollouts.
fn addons_applied(rendered: &[(String, Value)], store: &[Stored]) -> usize {
    let stage = |o: &Value| match object_id(o) {
        (a, k, _, _)
            if a.starts_with("apiextensions.k8s.io/") && k == "CustomResourceDefinition" =>
        {
            0
        }
        (a, k, _, _) if a == "v1" && k == "Namespace" => 1,
        _ => 2,
    };
    let mut created: [Vec<u64>; 3] = Default::default();
    for (file, doc) in rendered {
        let id = object_id(doc);
        let found = store
            .iter()
            .find(|s| object_id(&s.object) == id)
            .unwrap_or_else(|| {
                panic!("{file}: {id:?} was not applied (not in the apiserver's store)")
            });
        for (k, v) in doc.as_object().unwrap() {
            if k != "metadata" && k != "status" {
                assert_eq!(
                    &found.object[k], v,
                    "{file}: {id:?}: {k} differs in the store"
                );
            }
        }
        let meta = &found.object["metadata"];
        assert_eq!(meta["labels"], doc["metadata"]["labels"], "{id:?}");
        assert_eq!(
            meta["managedFields"][0]["manager"], "ferry",
            "{id:?}: {meta}"
        );
        assert_eq!(
            meta["annotations"]["ferry.io/content-hash"]
                .as_str()
                .map(str::len),
            Some(64),
            "{id:?}: {meta}"
        );
        created[stage(doc)].push(found.create);
    }
    assert_eq!(
        store.len(),
        rendered.len(),
        "the store holds other objects than the rendered addons"
    );
    assert!(
        !created[1].is_empty() && !created[2].is_empty(),
        "{created:?}"
    );
    for (earlier, later) in [(0, 1), (1, 2)] {
        if let (Some(last), Some(first)) =
            (created[earlier].iter().max(), created[later].iter().min())
        {
            assert!(
                last < first,
                "stage {earlier} applied after stage {later} began: {created:?}"
            );
        }
    }
    rendered
        .iter()
        .filter(|(_, d)| {
            let (a, k, _, _) = object_id(d);
            a == "apps/v1" && matches!(k.as_str(), "Deployment" | "DaemonSet" | "StatefulSet")
        })
        .count()
}

/// Every host's last step in `report` is `want(host)`, and it is ok.
fn assert_steps(report: &Value, want: impl Fn(&str) -> &'static str) {
    for h in report["hosts"].as_array().unwrap() {
        let name = h["host"].as_str().unwrap();
        assert_eq!(h["status"], "ok", "{h}");
        assert_eq!(h["step"], want(name), "{name}: {report}");
    }
}

fn addons_note(report: &Value) -> String {
    report["notes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|n| n.starts_with("addons:"))
        .unwrap_or_else(|| panic!("no addons note in {report}"))
        .to_string()
}

#[test]
fn install_deploys_a_working_cluster_to_seven_hosts() {
    let s = setup();
    let rig = &s.rig;

    // Without CONTAINERD_RESTRICT_OOM_SCORE_ADJ, preflight stops the install on
    // these hosts (no pod sandbox could start), naming the key, before any change.
    let config_file = s.dir.path().join("config.yml");
    std::fs::write(&config_file, config().replace(RESTRICT_OOM, "")).unwrap();
    let refused = s.install();
    let text = String::from_utf8_lossy(&refused.stdout).into_owned()
        + &String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{text}");
    assert!(
        text.contains("set CONTAINERD_RESTRICT_OOM_SCORE_ADJ: true"),
        "{text}"
    );
    assert!(rig
        .exec(
            "h4",
            "test ! -e /etc/systemd/system/containerd.service && test ! -e /etc/containerd/certs.d"
        )
        .status
        .success());
    std::fs::write(&config_file, config()).unwrap();

    let t = Instant::now();
    let first = s.install();
    let first_secs = t.elapsed().as_secs_f64();
    let first_out = ok(first, "ferry install");
    let r1 = report(&first_out);
    assert!(
        counts(&r1).0 > 0 && counts(&r1).1 > 0,
        "first install changed nothing: {r1}"
    );
    eprintln!("measured: 7-host install {first_secs:.1}s");

    // Addons: every object of every rendered manifest is in the (stand-in)
    // apiserver's store, CRDs first, then Namespaces, then the rest, and
    // every Deployment and DaemonSet was waited for.
    let rendered = rendered_addons(rig, "h1");
    let addons = addon_store(&s);
    let rollouts = addons_applied(&rendered, &addons);
    let n = rendered.len();
    assert!(
        addons_note(&r1).starts_with(&format!("addons: {n} of {n} objects applied"))
            && addons_note(&r1).ends_with(&format!(", {rollouts} rollouts complete")),
        "{}",
        addons_note(&r1)
    );

    // etcd: 3 members healthy over TLS; a key written through one is read from another.
    let health = etcdctl(&s, "h1", "endpoint health --cluster");
    assert_eq!(health.matches("is healthy").count(), 3, "{health}");
    etcdctl(&s, "h1", "put ferry-e2e written-on-h1");
    assert_eq!(
        etcdctl(&s, "h3", "get --print-value-only ferry-e2e").trim(),
        "written-on-h1"
    );

    // containerd from ferry's unit, through its CRI plugin as kubelet calls it,
    // pulls every image of the bundle by its upstream name through the mirror
    // (the hosts have no route anywhere else), with the upstream digests.
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(
            s.dir
                .path()
                .join("data/bundles")
                .read_dir()
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path()
                .join("bundle.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let images: Vec<(String, String)> = manifest["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let digest = i["digest"].as_str().unwrap().to_string();
            (i["reference"].as_str().unwrap().to_string(), digest)
        })
        .collect();
    assert!(
        images.iter().any(|(i, _)| i.contains("pause")),
        "{images:?}"
    );
    let repo_digest = |reference: &str, digest: &str| {
        format!("{}@{digest}", reference.rsplit_once(':').unwrap().0)
    };
    bare_hosts_hold_only_the_base_and_the_bundle(&s, &manifest);
    for h in MASTERS.iter().chain(NODES.iter()) {
        let unit = rig.sh(h, "systemctl cat containerd.service | head -n 3");
        assert!(
            unit.contains("/etc/systemd/system/containerd.service"),
            "{h}: containerd unit is not ferry's: {unit}"
        );
        let sandbox = rig.sh(
            h,
            "grep -E '^\\s*sandbox_image' /etc/containerd/config.toml",
        );
        assert!(sandbox.contains("pause"), "{h}: {sandbox}");
        if *h == NODES[0] {
            sandbox_comes_from_the_mirror(rig, h, &images);
        }
        for (img, digest) in &images {
            cri(rig, h, &format!("pull {img}"));
            let status = cri(rig, h, &format!("image-status {img}"));
            let digests = &status["image"]["repo_digests"];
            assert!(
                digests
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|d| *d == repo_digest(img, digest).as_str()),
                "{h}: {img} has repo digests {digests}, not the bundle's {digest}"
            );
        }
    }

    // haproxy's open files follow EX_LB_MAXCONN (4000) through ferry's drop-in.
    for lb in LBS {
        assert_eq!(
            rig.sh(lb, "systemctl show -p LimitNOFILE --value haproxy.service")
                .trim(),
            "9024",
            "{lb}"
        );
    }
    // The apiserver (stand-in, serving ferry's certificate) answers through the VIP.
    let holder = wait_for("keepalived to take the VIP", 30, || vip_holder(rig));
    let admin = std::fs::read_to_string(s.cluster_dir().join("kubeconfig/admin.kubeconfig"))
        .expect("admin kubeconfig in the cluster dir");
    let server = admin
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .expect("server in kubeconfig")
        .to_string();
    assert!(
        server.contains(&vip()),
        "kubeconfig does not point at the VIP: {server}"
    );
    let client = common::cluster::apiserver_client(&s.cluster_dir());
    let healthz = |url: &str| {
        Command::new("curl")
            .args(["-sS", "--max-time", "5"])
            .args(&client)
            .arg(format!("{url}/healthz"))
            .output()
            .unwrap()
    };
    assert_eq!(ok(healthz(&server), "healthz through the VIP"), "ok");
    // Stopping the holder's keepalived moves the VIP, and the apiserver still answers.
    rig.sh(holder, "systemctl stop keepalived");
    let other = wait_for("the VIP to move", 30, || {
        vip_holder(rig).filter(|h| *h != holder)
    });
    assert_ne!(other, holder);
    assert_eq!(ok(healthz(&server), "healthz after the VIP moved"), "ok");
    rig.sh(holder, "systemctl start keepalived");

    // Every unit ferry wrote is enabled and active; etcd healthy and mirrors reachable per status.
    let st = ferry()
        .args(["status", "--json", "--ssh-known-hosts", "strict"])
        .arg("--inventory")
        .arg(s.dir.path().join("hosts"))
        .arg("--config")
        .arg(s.dir.path().join("config.yml"))
        .arg("--data-dir")
        .arg(s.dir.path().join("data"))
        .arg("--cluster-dir")
        .arg(s.cluster_dir())
        .arg("--ssh-config")
        .arg(rig.ssh_config())
        .output()
        .unwrap();
    let st: Value = serde_json::from_str(&ok(st, "ferry status")).unwrap();
    let mut units = 0;
    for h in st.as_array().unwrap() {
        for u in h["units"].as_array().unwrap() {
            units += 1;
            if u["enabled"] == "-" {
                // Kernel-wide baseline units are not run in a container (the kernel is the machine's).
                let name = u["unit"].as_str().unwrap();
                assert!(KERNEL_UNITS.contains(&name), "{}: {u}", h["host"]);
                continue;
            }
            assert_eq!(u["active"], "active", "{}: {u}", h["host"]);
            assert_eq!(u["enabled"], "enabled", "{}: {u}", h["host"]);
        }
        if MASTERS.contains(&h["host"].as_str().unwrap()) {
            assert_eq!(h["etcd_healthy"], true, "{h}");
        }
        for m in h["mirrors"].as_array().unwrap() {
            assert_eq!(m[1], true, "{}: mirror {m}", h["host"]);
        }
    }
    assert!(units >= 7 * 2, "too few units reported: {units}");

    // Nothing changed: the second run writes and restarts nothing.
    let t = Instant::now();
    let second = s.install();
    let second_secs = t.elapsed().as_secs_f64();
    let r2 = report(&ok(second, "second ferry install"));
    assert_eq!(
        counts(&r2),
        (0, 0),
        "second install changed something: {r2}"
    );
    eprintln!("measured: no-op re-run {second_secs:.1}s");
    // ... and applies no addon object: every key in the store is as it was.
    let again = addon_store(&s);
    let revisions = |st: &[Stored]| -> Vec<(String, u64, u64)> {
        st.iter()
            .map(|o| (o.key.clone(), o.create, o.modified))
            .collect()
    };
    assert_eq!(
        revisions(&again),
        revisions(&addons),
        "the no-op re-run applied addon objects"
    );
    // Every host was found as the first run left it, by its fingerprint: no step ran there.
    assert_steps(&r2, |_| "unchanged");
    assert!(
        addons_note(&r2).starts_with(&format!(
            "addons: all {n} objects are in the cluster with their content hash"
        )),
        "{}",
        addons_note(&r2)
    );
    for h in MASTERS.iter().chain(&NODES).chain(&LBS) {
        let m: Value = serde_json::from_slice(
            &std::fs::read(s.cluster_dir().join(format!("manifests/{h}.json"))).unwrap(),
        )
        .unwrap();
        let has = |p: &str, mode: &str| {
            m["files"].as_array().unwrap().iter().any(|f| {
                f["path"] == p && f["mode"] == mode && f["sha256"].as_str().unwrap().len() == 64
            })
        };
        if !LBS.contains(h) {
            assert!(has("/etc/containerd/config.toml", "644"), "{h}: {m}");
        }
        let units = m["units"].as_array().unwrap();
        assert!(!units.is_empty(), "{h}: {m}");
        for u in units {
            let unit = u["unit"].as_str().unwrap();
            if !KERNEL_UNITS.contains(&unit) {
                assert_eq!(u["state"], "active enabled", "{h}: {m}");
            }
        }
    }

    // --verify-hosts: every file is hashed on every host, the addons are applied again, and still nothing changes.
    let verified = report(&ok(
        s.install_with(&s.cluster_dir(), &["--verify-hosts"]),
        "ferry install --verify-hosts",
    ));
    assert_eq!(
        counts(&verified),
        (0, 0),
        "--verify-hosts changed something: {verified}"
    );
    assert_steps(&verified, |_| "checks");
    assert!(
        addons_note(&verified).starts_with(&format!("addons: 0 of {n} objects applied")),
        "{}",
        addons_note(&verified)
    );

    // Changed by hand: a file's content on h2, a unit stopped on h4. Those two
    // hosts do their steps again and are put back; the others are left alone.
    let edited = "/etc/containerd/config.toml";
    let before = rig.sh("h2", &format!("sha256sum {edited}"));
    rig.sh("h2", &format!("echo '# edited by hand' >> {edited}"));
    rig.sh("h4", "systemctl stop kube-proxy.service");
    let fixed = report(&ok(s.install(), "re-run after changes by hand"));
    assert_steps(&fixed, |h| {
        if h == "h2" || h == "h4" {
            "checks"
        } else {
            "unchanged"
        }
    });
    let host = |name: &str| {
        fixed["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["host"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(
        host("h2")["changed_files"],
        serde_json::json!([edited]),
        "{fixed}"
    );
    assert_eq!(rig.sh("h2", &format!("sha256sum {edited}")), before);
    assert!(
        host("h4")["restarted_units"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u == "kube-proxy.service"),
        "{fixed}"
    );
    assert_eq!(
        rig.sh("h4", "systemctl is-active kube-proxy.service")
            .trim(),
        "active"
    );
    let h2_log = std::fs::read_to_string(host("h2")["log"].as_str().unwrap()).unwrap();
    assert!(
        h2_log.contains(&format!("fingerprint: the host changed: now {edited} ")),
        "h2's log does not say what changed"
    );

    // Fault: a node's sshd is down during the run -> that node fails with its log, the rest completes.
    rig.sh("h5", "systemctl stop ssh; pkill -KILL -x sshd || true");
    rig.sh("h1", "rm -f /etc/containerd/config.toml");
    let third = s.install();
    assert!(
        !third.status.success(),
        "install with h5 unreachable succeeded"
    );
    let r3 = report(&String::from_utf8_lossy(&third.stdout));
    for h in r3["hosts"].as_array().unwrap() {
        let name = h["host"].as_str().unwrap();
        if name == "h5" {
            assert_eq!(h["status"], "failed", "{h}");
            let log = h["log"].as_str().unwrap();
            assert!(
                std::fs::read_to_string(log).unwrap().contains("FAILED"),
                "{log}"
            );
        } else {
            assert_eq!(h["status"], "ok", "{h}");
        }
    }
    assert!(rig
        .sh("h1", "cat /etc/containerd/config.toml")
        .contains("sandbox_image"));
    rig.sh("h5", "systemctl start ssh");
    let fourth = s.install();
    let r4 = report(&ok(fourth, "re-run after sshd is back"));
    assert!(
        r4["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["status"] == "ok"),
        "{r4}"
    );

    another_cluster_dir_is_refused_by_preflight(&s);
}

/// An empty cluster dir would mint a new CA, service-account key and
/// encryption key: preflight sees that the hosts hold this cluster's, stops
/// naming each file, and changes nothing.
fn another_cluster_dir_is_refused_by_preflight(s: &Setup) {
    let ca = "/etc/kubernetes/ssl/ca.pem";
    let before = s.rig.sh(MASTERS[0], &format!("sha256sum {ca}"));
    let other = s.dir.path().join("other-cluster");
    let out = s.install_with(&other, &[]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "a new CA was accepted: {stdout}");
    for says in [
        &format!("{ca} holds another cluster CA"),
        "encryption-config.yaml holds an encryption key the cluster dir does not have",
        "sa.pub holds another service-account key",
        "--new-cluster",
        "nothing was changed",
    ] {
        assert!(stderr.contains(says), "{says}: {stderr}");
    }
    let after = s.rig.sh(MASTERS[0], &format!("sha256sum {ca}"));
    assert_eq!(before, after, "the hosts' CA was replaced");
}
