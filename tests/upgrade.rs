//! `ferry upgrade` from a 1.29.6 bundle to a 1.29.7 bundle on a 5-host bare
//! rig (3 masters that are etcd members, 2 nodes), both built by `ferry
//! bundle build` from the fixture upstream.
//!
//! Real parts: etcd and etcdctl (health, snapshot), containerd with
//! ferry's mirror, systemd, sshd. STAND-INS: kube-apiserver,
//! kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl and
//! helm are the python script tests/fixtures/standins/kube-standin.py (not
//! Kubernetes), reporting the release they were built as (`/version`); its
//! kubelet registers its Node and its kubectl drains, cordons and uncordons.

mod common;

use common::cluster::{cluster_args, cri, ok, text};

use common::cluster::{
    apiserver_client, inventory_with_lb, longest_outage, overlapping_outages, Probe, Watcher,
};
use common::rig::Rig;
use common::upstream::signed_amd64_bundles;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const OCTET: u8 = 55;
const MASTERS: [&str; 3] = ["h1", "h2", "h3"];
const NODES: [&str; 2] = ["h4", "h5"];
const LBS: [&str; 2] = ["h6", "h7"];

/// The test hosts are containers without CAP_SYS_RESOURCE (see install_e2e).
/// haproxy on [ex_lb] gets fewer connections (open files are capped here).
const CONFIG: &str = "CLUSTER_NAME: \"upg\"\nK8S_VER: \"1.29.6\"\nCONTAINER_RUNTIME: \"containerd\"\nVIP: \"198.18.55.250\"\nVIP_IF: \"eth0\"\nHOST_SUBNET_PREFIX: 24\nPROXY_MODE: \"ipvs\"\nCLUSTER_CIDR: \"10.244.0.0/16\"\nSERVICE_CIDR: \"10.96.0.0/16\"\nCONTAINERD_RESTRICT_OOM_SCORE_ADJ: true\nEX_LB_MAXCONN: 4000\n";

struct Setup {
    rig: Rig,
    dir: tempfile::TempDir,
    old: PathBuf,
    new: PathBuf,
}

impl Setup {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ferry(&self, args: &[&str], bundle: Option<&Path>) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.args(args);
        if let Some(b) = bundle {
            cmd.arg("--bundle")
                .arg(b)
                .arg("--trust")
                .arg(self.path("key.pub"));
        }
        cmd.args(cluster_args(self.dir.path(), &self.rig))
            .args(["--forks", "5"]);
        cmd
    }

    fn run(&self, args: &[&str], bundle: Option<&Path>) -> Output {
        self.ferry(args, bundle).output().expect("run ferry")
    }

    fn cluster_file(&self, name: &str) -> Value {
        serde_json::from_slice(&std::fs::read(self.path("cluster").join(name)).unwrap()).unwrap()
    }

    /// `gitVersion` each master's apiserver reports.
    fn versions(&self) -> Vec<String> {
        MASTERS
            .iter()
            .map(|h| {
                let out = Command::new("curl")
                    .args(["-sS", "--max-time", "5"])
                    .args(apiserver_client(&self.path("cluster")))
                    .arg(format!("https://{}:6443/version", self.rig.addr(h)))
                    .output()
                    .unwrap();
                let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
                v["gitVersion"].as_str().unwrap_or("?").to_owned()
            })
            .collect()
    }
}

fn report(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("no JSON report ({e}):\n{stdout}"))
}

fn changes(report: &Value) -> (usize, usize) {
    let hosts = report["hosts"].as_array().unwrap();
    let sum = |k: &str| {
        hosts
            .iter()
            .map(|h| h[k].as_array().map_or(0, Vec::len))
            .sum()
    };
    (sum("changed_files"), sum("restarted_units"))
}

/// sha256 of each kube-* binary in bundle `name`'s bundle.json.
fn bundle_binaries(s: &Setup, name: &str) -> Vec<(String, String)> {
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(s.path("data/bundles").join(name).join("bundle.json")).unwrap(),
    )
    .unwrap();
    manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| {
            let path = f["path"].as_str()?;
            let name = path.strip_prefix("bin/linux-amd64/")?;
            ["kube-apiserver", "kubelet", "kube-proxy"]
                .contains(&name)
                .then(|| (name.to_owned(), f["sha256"].as_str().unwrap().to_owned()))
        })
        .collect()
}

/// (reference, digest) of every image in bundle `name`'s bundle.json.
fn bundle_images(s: &Setup, name: &str) -> Vec<(String, String)> {
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(s.path("data/bundles").join(name).join("bundle.json")).unwrap(),
    )
    .unwrap();
    manifest["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["reference"].as_str().unwrap().to_owned(),
                i["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Waits until `needle` is in `log` past its first `from` bytes, or `child` ended.
fn wait_for_log(log: &Path, from: usize, needle: &str, child: &mut std::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let text = std::fs::read(log).unwrap_or_default();
        if String::from_utf8_lossy(text.get(from..).unwrap_or_default()).contains(needle) {
            return;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the upgrade ended before {needle:?} was in {}",
            log.display()
        );
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn upgrade_rolls_one_member_and_one_master_at_a_time_and_resumes_after_a_kill() {
    eprintln!("NOTE: kube-* binaries, kubectl and helm in this test are python stand-ins (tests/fixtures/standins), not Kubernetes");
    let rig = Rig::up_bare(7, "fupg", OCTET);
    let dir = tempfile::tempdir().unwrap();
    let mut bundles = signed_amd64_bundles(
        dir.path(),
        &[
            ("k1296", "1.29.6"),
            ("k1297", "1.29.7"),
            ("k1310", "1.31.0"),
        ],
    )
    .into_iter();
    let (old, new, jump) = (
        bundles.next().unwrap(),
        bundles.next().unwrap(),
        bundles.next().unwrap(),
    );
    let s = Setup { rig, dir, old, new };
    let rig = &s.rig;
    std::fs::write(
        s.path("hosts"),
        inventory_with_lb(rig, &MASTERS, &MASTERS, &NODES, &LBS),
    )
    .unwrap();
    std::fs::write(s.path("config.yml"), CONFIG).unwrap();

    ok(
        s.run(&["install", "--json"], Some(&s.old)),
        "ferry install 1.29.6",
    );
    assert_eq!(s.cluster_file("installed.json")["kubernetes"], "1.29.6");
    assert_eq!(s.versions(), ["v1.29.6"; 3]);

    // As with kubeasz, config.yml names the version the cluster is to run.
    std::fs::write(s.path("config.yml"), CONFIG.replace("1.29.6", "1.29.7")).unwrap();
    // ferry install does not change the version: it names ferry upgrade.
    let by_install = s.run(&["install"], Some(&s.new));
    assert!(
        !by_install.status.success() && text(&by_install).contains("ferry upgrade --bundle"),
        "{}",
        text(&by_install)
    );
    // Two minor versions at once: refused before anything changes.
    let two_minors = s.run(&["upgrade"], Some(&jump));
    assert!(
        !two_minors.status.success()
            && text(&two_minors).contains("Kubernetes 1.29.6 to 1.31.0 skips 1 minor version(s)"),
        "{}",
        text(&two_minors)
    );
    // One etcd member down: refused before anything changes.
    rig.sh("h3", "systemctl stop etcd.service");
    let member_down = s.run(&["upgrade"], Some(&s.new));
    assert!(
        !member_down.status.success()
            && text(&member_down).contains("etcd member on h3 is not healthy")
            && text(&member_down).contains("nothing was changed"),
        "{}",
        text(&member_down)
    );
    rig.sh("h3", "systemctl start etcd.service");
    assert_eq!(s.versions(), ["v1.29.6"; 3]);
    assert!(!s.path("cluster/upgrade.json").exists());

    // The order, and nothing changed.
    let dry = ok(
        s.run(
            &["upgrade", "--dry-run", "--max-unavailable", "1"],
            Some(&s.new),
        ),
        "dry run",
    );
    for line in [
        "upgrade k1296 (Kubernetes 1.29.6) to k1297 (Kubernetes 1.29.7)",
        "1. etcd members, one at a time, each healthy before the next: h1, h2, h3",
        "2. masters, one at a time, each /readyz (its own and the VIP's) and the controller-manager and scheduler leases held before the next: h1, h2, h3",
        "3. nodes in batches (cordon, drain, upgrade, uncordon): [h1] [h2] [h3] [h4] [h5]",
    ] {
        assert!(dry.contains(line), "no {line:?} in:\n{dry}");
    }
    assert_eq!(s.versions(), ["v1.29.6"; 3]);

    // The upgrade, watched; killed once the second master is done.
    let mut probes: Vec<Probe> = MASTERS
        .iter()
        .map(|h| {
            let endpoint = format!("https://{}:6443", rig.addr(h));
            Probe::readyz(&format!("apiserver {h}"), &endpoint, &s.path("cluster"))
        })
        .collect();
    probes.extend(
        MASTERS
            .iter()
            .map(|h| Probe::etcd_health(&format!("etcd {h}"), rig.addr(h), &s.path("cluster"))),
    );
    // Clients outside the nodes reach the apiservers through the VIP.
    let admin = std::fs::read_to_string(s.path("cluster/kubeconfig/admin.kubeconfig")).unwrap();
    let server = admin
        .lines()
        .find_map(|l| l.trim().strip_prefix("server:"))
        .expect("server in the admin kubeconfig")
        .trim()
        .to_owned();
    assert!(server.contains("198.18.55.250"), "{server}");
    probes.push(Probe::readyz("vip", &server, &s.path("cluster")));
    let h3_log = s.path("cluster/logs/h3.log");
    let logged = std::fs::metadata(&h3_log).map_or(0, |m| m.len() as usize);
    let watcher = Watcher::start(probes);
    let started = Instant::now();
    let mut first = s
        .ferry(&["upgrade", "--json"], Some(&s.new))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_log(&h3_log, logged, "--- step control_plane", &mut first);
    first.kill().unwrap();
    first.wait().unwrap();
    let state = s.cluster_file("upgrade.json");
    assert_eq!(state["finished"], false, "{state}");
    assert_eq!(s.cluster_file("installed.json")["kubernetes"], "1.29.6");

    let resumed = report(&ok(
        s.run(&["upgrade", "--json"], Some(&s.new)),
        "upgrade after the kill",
    ));
    let wall = started.elapsed();
    let timed = watcher.finish_timed();
    let samples: Vec<Vec<String>> = timed.iter().map(|(_, d)| d.clone()).collect();
    eprintln!(
        "measured: upgrade with a kill and a resume {:.1}s, {} samples",
        wall.as_secs_f64(),
        samples.len()
    );
    assert!(
        changes(&resumed).1 > 0,
        "the resumed upgrade restarted nothing: {resumed}"
    );
    let apiservers = ["apiserver h1", "apiserver h2", "apiserver h3"];
    let both = overlapping_outages(&samples, &apiservers);
    assert!(
        both.is_empty(),
        "two apiservers were down at once: {both:?}"
    );
    // Through the VIP: never away longer than one master's restart (the
    // balancers take a master out while it shuts down and until it is
    // ready again, and retry a refused connection on another).
    let vip_outage = longest_outage(&timed, "vip");
    let master_outage = apiservers
        .iter()
        .map(|a| longest_outage(&timed, a))
        .max()
        .unwrap();
    eprintln!(
        "measured: longest outage through the VIP {:.1}s, of one apiserver {:.1}s",
        vip_outage.as_secs_f64(),
        master_outage.as_secs_f64()
    );
    for (at, down) in timed.iter().filter(|(_, d)| d.iter().any(|x| x == "vip")) {
        eprintln!("measured: at {:.1}s down: {down:?}", at.as_secs_f64());
    }
    assert!(
        timed
            .iter()
            .any(|(_, down)| !down.iter().any(|d| d == "vip")),
        "the VIP never answered during the upgrade"
    );
    assert!(
        vip_outage <= master_outage,
        "the VIP was away {vip_outage:?}, longer than one master's restart ({master_outage:?})"
    );
    let members = ["etcd h1", "etcd h2", "etcd h3"];
    let both = overlapping_outages(&samples, &members);
    assert!(
        both.is_empty(),
        "two etcd members were down at once (no quorum): {both:?}"
    );

    // Every host runs the new binaries; the apiservers report 1.29.7.
    assert_eq!(s.versions(), ["v1.29.7"; 3]);
    let want = bundle_binaries(&s, "k1297");
    assert_eq!(want.len(), 3, "{want:?}");
    for h in MASTERS.iter().chain(NODES.iter()) {
        for (bin, sha) in &want {
            if *bin == "kube-apiserver" && NODES.contains(h) {
                continue;
            }
            let got = rig.sh(h, &format!("sha256sum /opt/kube/bin/{bin} | cut -d' ' -f1"));
            assert_eq!(got.trim(), sha, "{h}: {bin}");
        }
    }
    // The new bundle's images pull on a node through the mirror (the test
    // hosts reach no other registry), with the bundle's digests.
    let images = bundle_images(&s, "k1297");
    assert!(!images.is_empty());
    for (reference, digest) in &images {
        cri(rig, "h5", &format!("pull {reference}"));
        let status = cri(rig, "h5", &format!("image-status {reference}"));
        let repo = reference
            .split('@')
            .next()
            .unwrap()
            .rsplit_once(':')
            .filter(|(_, tag)| !tag.contains('/'))
            .map_or(reference.as_str(), |(r, _)| r);
        let want = format!("{repo}@{digest}");
        assert!(
            status["image"]["repo_digests"]
                .as_array()
                .is_some_and(|d| d.iter().any(|x| *x == want.as_str())),
            "h5: {reference}: {status}, expected {want}"
        );
    }

    // Nodes were drained and are schedulable again.
    let kubectl = s.path("data/bundles/k1297/bin/linux-amd64/kubectl");
    for h in NODES {
        let out = Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(s.path("cluster/kubeconfig/admin.kubeconfig"))
            .args(["get", "node", h, "-o", "json"])
            .output()
            .unwrap();
        let node: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        assert_eq!(node["metadata"]["name"], *h, "{}", text(&out));
        assert!(
            node["spec"]["unschedulable"].is_null() || node["spec"]["unschedulable"] == false,
            "{h}: {node}"
        );
    }
    let state = s.cluster_file("upgrade.json");
    assert_eq!(state["finished"], true, "{state}");
    assert_eq!(s.cluster_file("installed.json")["kubernetes"], "1.29.7");
    let snapshot = &state["snapshot"];
    let (host, path) = (
        snapshot["host"].as_str().unwrap(),
        snapshot["path"].as_str().unwrap(),
    );
    assert!(
        rig.exec(host, &format!("test -s {path}")).status.success(),
        "{state}"
    );

    // A third run changes nothing.
    let again = report(&ok(
        s.run(&["upgrade", "--json"], Some(&s.new)),
        "upgrade again",
    ));
    assert_eq!(changes(&again), (0, 0), "{again}");

    // Back down only when asked.
    let down = s.run(&["upgrade"], Some(&s.old));
    assert!(
        !down.status.success() && text(&down).contains("--allow-downgrade"),
        "{}",
        text(&down)
    );
    assert_eq!(s.versions(), ["v1.29.7"; 3]);

    // --rollback returns to the bundle the upgrade came from, in the same order.
    std::fs::write(s.path("config.yml"), CONFIG).unwrap();
    let back = report(&ok(
        s.run(&["upgrade", "--rollback", "--json"], None),
        "rollback",
    ));
    assert!(changes(&back).1 > 0, "{back}");
    assert_eq!(s.versions(), ["v1.29.6"; 3]);
    assert_eq!(s.cluster_file("installed.json")["bundle"], "k1296");
}
