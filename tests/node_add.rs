//! `ferry node add` on a 7-host bare rig: a cluster of 3 masters that are
//! etcd members and 1 node is installed; then the inventory gains two
//! etcd-only hosts and a worker, and `ferry node add` adds them.
//!
//! Real parts: etcd and etcdctl (membership, replication, health),
//! containerd with ferry's mirror, haproxy, systemd, sshd.
//! STAND-INS: kube-apiserver, kube-controller-manager, kube-scheduler,
//! kubelet, kube-proxy, kubectl and helm are the python script
//! tests/fixtures/standins/kube-standin.py (not Kubernetes); its apiserver
//! answers /readyz over TLS with ferry's certificate when etcd answers.

mod common;

use common::cluster::{cluster_args, ok, text};
use common::hostfiles::{file_list, left_behind};

use common::cluster::{
    etcdctl, inventory, overlapping_outages, sandbox_comes_from_the_mirror, Probe, Watcher,
};
use common::rig::Rig;
use common::upstream::signed_amd64_bundle;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const OCTET: u8 = 54;
const MASTERS: [&str; 3] = ["h1", "h2", "h3"];

fn ferry() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
}

/// The test hosts are containers without CAP_SYS_RESOURCE (see install_e2e).
const CONFIG: &str = "CLUSTER_NAME: \"nadd\"\nK8S_VER: \"1.29.6\"\nCONTAINER_RUNTIME: \"containerd\"\nPROXY_MODE: \"ipvs\"\nCLUSTER_CIDR: \"10.244.0.0/16\"\nSERVICE_CIDR: \"10.96.0.0/16\"\nCONTAINERD_RESTRICT_OOM_SCORE_ADJ: true\n";

struct Setup {
    rig: Rig,
    dir: tempfile::TempDir,
    bundle: PathBuf,
}

impl Setup {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write_inventory(&self, etcd: &[&str], nodes: &[&str]) {
        std::fs::write(
            self.path("hosts"),
            inventory(&self.rig, &MASTERS, etcd, nodes),
        )
        .unwrap();
    }

    fn common_args(&self, cmd: &mut Command) {
        cmd.args(cluster_args(self.dir.path(), &self.rig))
            .args(["--forks", "7", "--json"]);
    }

    fn install(&self) -> Output {
        let mut cmd = ferry();
        cmd.arg("install")
            .arg("--bundle")
            .arg(&self.bundle)
            .arg("--trust")
            .arg(self.path("key.pub"));
        self.common_args(&mut cmd);
        cmd.output().expect("run ferry install")
    }

    fn node_add(&self, hosts: &[&str]) -> Output {
        let mut cmd = ferry();
        cmd.args(["node", "add"]).args(hosts);
        self.common_args(&mut cmd);
        cmd.output().expect("run ferry node add")
    }

    fn node_remove(&self, hosts: &[&str], extra: &[&str]) -> Output {
        let mut cmd = ferry();
        cmd.args(["node", "remove"]).args(hosts).args(extra);
        self.common_args(&mut cmd);
        cmd.output().expect("run ferry node remove")
    }

    fn record(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.path("cluster/etcd-members.json")).unwrap())
            .unwrap()
    }
}

fn report(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("no JSON report ({e}):\n{stdout}"))
}

/// (host, unit) of every unit the report says was restarted.
fn restarted(report: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for h in report["hosts"].as_array().unwrap() {
        for u in h["restarted_units"].as_array().unwrap() {
            out.push((
                h["host"].as_str().unwrap().into(),
                u.as_str().unwrap().into(),
            ));
        }
    }
    out
}

fn changed_files(report: &Value) -> usize {
    report["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["changed_files"].as_array().map_or(0, Vec::len))
        .sum()
}

fn main_pid(rig: &Rig, host: &str, unit: &str) -> String {
    rig.sh(host, &format!("systemctl show -p MainPID --value {unit}"))
        .trim()
        .to_owned()
}

fn bundle_images(data: &Path) -> Vec<(String, String)> {
    let dir = data
        .join("bundles")
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("bundle.json")).unwrap()).unwrap();
    manifest["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["reference"].as_str().unwrap().to_string(),
                i["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn node_add_joins_etcd_members_one_at_a_time_and_a_worker() {
    eprintln!("NOTE: kube-* binaries, kubectl and helm in this test are python stand-ins (tests/fixtures/standins), not Kubernetes");
    let rig = Rig::up_bare(7, "fnad", OCTET);
    let dir = tempfile::tempdir().unwrap();
    let bundle = signed_amd64_bundle(dir.path(), "nadd");
    let s = Setup { rig, dir, bundle };
    let rig = &s.rig;
    std::fs::write(s.path("config.yml"), CONFIG).unwrap();

    // node add before any install: there is no running cluster to add to.
    ok(
        ferry()
            .args(["bundle", "unpack"])
            .arg(&s.bundle)
            .arg("--trust")
            .arg(s.path("key.pub"))
            .arg("--data-dir")
            .arg(s.path("data"))
            .output()
            .unwrap(),
        "ferry bundle unpack",
    );
    s.write_inventory(&MASTERS, &["h4"]);
    let early = s.node_add(&["h4"]);
    assert!(!early.status.success(), "{}", text(&early));
    assert!(
        text(&early).contains("run ferry install first"),
        "{}",
        text(&early)
    );

    let before_install: BTreeMap<&str, BTreeSet<String>> = ["h3", "h6", "h7"]
        .into_iter()
        .map(|h| (h, file_list(rig, h)))
        .collect();
    ok(s.install(), "ferry install");
    assert_eq!(
        s.record()["members"].as_array().unwrap().len(),
        3,
        "{}",
        s.record()
    );
    etcdctl(rig, "h1", "put written-before-add 42");

    // One more etcd member would make 4: refused by the plan, naming --force; nothing changed.
    s.write_inventory(&["h1", "h2", "h3", "h5"], &["h4"]);
    let even = s.node_add(&["h5"]);
    assert!(!even.status.success(), "{}", text(&even));
    assert!(
        text(&even).contains("[etcd] has 4 member(s)")
            && text(&even).contains("ferry node add --force"),
        "{}",
        text(&even)
    );
    // With two new members and a worker in the inventory: ferry install
    // does not add members, it names node add; node add names what it lacks.
    s.write_inventory(&["h1", "h2", "h3", "h5", "h6"], &["h4", "h7"]);
    let by_install = s.install();
    assert!(!by_install.status.success(), "{}", text(&by_install));
    assert!(
        text(&by_install).contains("etcd members etcd-h5 (h5), etcd-h6 (h6) are new")
            && text(&by_install).contains("add them with `ferry node add h5 h6`"),
        "{}",
        text(&by_install)
    );
    let unknown = s.node_add(&["h5", "h6", "h9"]);
    assert!(
        text(&unknown).contains("not in the inventory: h9"),
        "{}",
        text(&unknown)
    );
    let unnamed = s.node_add(&["h5", "h7"]);
    assert!(
        text(&unnamed).contains("that were not named: h6 (etcd member etcd-h6)"),
        "{}",
        text(&unnamed)
    );
    assert_eq!(s.record()["members"].as_array().unwrap().len(), 3);
    for h in ["h5", "h6", "h7"] {
        assert!(
            !rig.exec(h, "test -e /etc/systemd/system/etcd.service || test -e /etc/systemd/system/kubelet.service")
                .status
                .success(),
            "{h} was changed by a refused command"
        );
    }

    // Two etcd members and a worker.
    let etcd_pids: Vec<String> = MASTERS
        .iter()
        .map(|h| main_pid(rig, h, "etcd.service"))
        .collect();
    let watcher = Watcher::start(
        MASTERS
            .iter()
            .map(|h| {
                let endpoint = format!("https://{}:6443", rig.addr(h));
                Probe::readyz(h, &endpoint, &s.path("cluster"))
            })
            .collect(),
    );
    let added = report(&ok(s.node_add(&["h5", "h6", "h7"]), "ferry node add"));
    let samples = watcher.finish();

    let members = etcdctl(rig, "h5", "member list");
    assert_eq!(members.matches(", started, ").count(), 5, "{members}");
    let health = etcdctl(rig, "h6", "endpoint health --cluster");
    assert_eq!(health.matches("is healthy").count(), 5, "{health}");
    for h in ["h5", "h6"] {
        assert_eq!(
            etcdctl(
                rig,
                h,
                "get --consistency=s --print-value-only written-before-add"
            )
            .trim(),
            "42",
            "{h} has not the data written before it joined"
        );
    }
    let record = s.record();
    let recorded: Vec<(&str, &str)> = record["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].as_str().unwrap(), m["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        recorded,
        [
            ("etcd-h1", "new"),
            ("etcd-h2", "new"),
            ("etcd-h3", "new"),
            ("etcd-h5", "existing"),
            ("etcd-h6", "existing"),
        ]
    );
    // The first members' units did not change: they were not restarted.
    let after: Vec<String> = MASTERS
        .iter()
        .map(|h| main_pid(rig, h, "etcd.service"))
        .collect();
    assert_eq!(etcd_pids, after, "running etcd members were restarted");

    // The apiservers (their etcd endpoints changed) restarted one at a time.
    let apiservers: Vec<String> = restarted(&added)
        .into_iter()
        .filter(|(_, u)| u == "kube-apiserver.service")
        .map(|(h, _)| h)
        .collect();
    assert_eq!(apiservers, MASTERS, "{added}");
    let both = overlapping_outages(&samples, &MASTERS);
    assert!(
        both.is_empty(),
        "two apiservers were down at once: {both:?}"
    );

    // The new worker runs a pod sandbox whose image came through the mirror.
    sandbox_comes_from_the_mirror(rig, "h7", &bundle_images(&s.path("data")));

    // Again: nothing to do.
    let again = report(&ok(s.node_add(&["h5", "h6", "h7"]), "ferry node add again"));
    assert_eq!(
        (changed_files(&again), restarted(&again).len()),
        (0, 0),
        "{again}"
    );

    remove_an_etcd_member_and_a_worker(&s, &before_install);
    remove_a_master(&s, &before_install);
}

fn remove_an_etcd_member_and_a_worker(s: &Setup, before: &BTreeMap<&str, BTreeSet<String>>) {
    let rig = &s.rig;
    // Two of the four members that would stay are down: no quorum, refused.
    for h in ["h3", "h5"] {
        rig.sh(h, "systemctl stop etcd.service");
    }
    let no_quorum = s.node_remove(&["h6", "h7"], &["--force"]);
    assert!(!no_quorum.status.success(), "{}", text(&no_quorum));
    assert!(
        text(&no_quorum)
            .contains("would leave 4 etcd member(s) of which 2 answer healthy; a quorum needs 3")
            && text(&no_quorum).contains("nothing was changed"),
        "{}",
        text(&no_quorum)
    );
    for h in ["h3", "h5"] {
        rig.sh(h, "systemctl start etcd.service");
    }
    let members = etcdctl(rig, "h1", "member list");
    assert_eq!(members.matches(", started, ").count(), 5, "{members}");
    // Four members left is even: the plan refuses it without --force.
    let even = s.node_remove(&["h6", "h7"], &[]);
    assert!(
        text(&even).contains("[etcd] has 4 member(s)"),
        "{}",
        text(&even)
    );

    let records: Vec<(&str, Value)> = ["h6", "h7"]
        .into_iter()
        .map(|h| {
            let text = std::fs::read(s.path(&format!("cluster/placed/{h}.json"))).unwrap();
            (h, serde_json::from_slice(&text).unwrap())
        })
        .collect();
    let out = s.node_remove(&["h6", "h7"], &["--force", "--purge-data"]);
    let done: Value = serde_json::from_str(&ok(out, "ferry node remove")).unwrap();
    let members = etcdctl(rig, "h1", "member list");
    assert_eq!(members.matches(", started, ").count(), 4, "{members}");
    assert!(!members.contains("etcd-h6"), "{members}");
    let health = etcdctl(rig, "h5", "endpoint health --cluster");
    assert_eq!(health.matches("is healthy").count(), 4, "{health}");
    assert_eq!(
        s.record()["members"].as_array().unwrap().len(),
        4,
        "{}",
        s.record()
    );
    assert!(
        done["removed"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["removed"] == true),
        "{done}"
    );
    // Nothing of ferry's is left on the removed hosts: no file its record
    // listed, no unit, nothing else new but what the OS packages keep.
    for (h, record) in &records {
        let files = record["files"].as_array().unwrap();
        assert!(files.len() > 10, "{h}: {record}");
        for f in files {
            let f = f.as_str().unwrap();
            assert!(
                !rig.exec(h, &format!("test -e '{f}'")).status.success(),
                "{h}: {f} left"
            );
        }
        assert!(!s.path(&format!("cluster/placed/{h}.json")).exists());
    }
    for h in ["h6", "h7"] {
        let units = rig.sh(
            h,
            "systemctl list-unit-files --no-legend 'etcd*' 'kube*' 'containerd*' 'ferry*' | wc -l",
        );
        assert_eq!(units.trim(), "0", "{h} still has ferry's units");
        let left = left_behind(rig, h, &before[h]);
        assert!(left.is_empty(), "{h}: ferry left {left:?}");
    }
    // The apiservers no longer name the removed member.
    for h in MASTERS {
        let unit = rig.sh(h, "systemctl cat kube-apiserver.service");
        assert!(
            !unit.contains(&format!("{}:2379", rig.addr("h6"))),
            "{h}'s apiserver still names h6:\n{unit}"
        );
    }
}

/// h3 (a master and an etcd member) goes: the other masters' apiservers
/// keep serving one at a time, every balancer stops naming it, its member
/// and Node are gone and so is everything ferry placed on it.
fn remove_a_master(s: &Setup, before: &BTreeMap<&str, BTreeSet<String>>) {
    let rig = &s.rig;
    // The operator took the hosts removed before out of the inventory.
    s.write_inventory(&["h1", "h2", "h3", "h5"], &["h4"]);
    let staying = ["h1", "h2"];
    let watcher = Watcher::start(
        staying
            .iter()
            .map(|h| {
                let endpoint = format!("https://{}:6443", rig.addr(h));
                Probe::readyz(h, &endpoint, &s.path("cluster"))
            })
            .collect(),
    );
    let out = s.node_remove(&["h3"], &["--purge-data"]);
    let samples = watcher.finish();
    let done: Value = serde_json::from_str(&ok(out, "ferry node remove h3")).unwrap();
    assert_eq!(done["removed"][0]["removed"], true, "{done}");
    let both = overlapping_outages(&samples, &staying);
    assert!(
        both.is_empty(),
        "both staying apiservers were down: {both:?}"
    );

    let members = etcdctl(rig, "h1", "member list");
    assert_eq!(members.matches(", started, ").count(), 3, "{members}");
    assert!(!members.contains("etcd-h3"), "{members}");
    // No balancer and no apiserver names h3 any more.
    let h3 = format!("{}:6443", rig.addr("h3"));
    for h in ["h1", "h2", "h4"] {
        let lb = rig.sh(h, "cat /etc/ferry/kube-lb/haproxy.cfg");
        assert!(!lb.contains(&h3), "{h}'s balancer still names h3:\n{lb}");
        assert!(lb.contains(&format!("{}:6443", rig.addr("h1"))), "{lb}");
    }
    for h in staying {
        let unit = rig.sh(h, "systemctl cat kube-apiserver.service");
        assert!(
            !unit.contains(&format!("{}:2379", rig.addr("h3"))),
            "{h}'s apiserver still names h3's member:\n{unit}"
        );
    }
    // Its Node is deleted.
    let kubectl = rig.exec(
        "h1",
        "/opt/kube/bin/kubectl --kubeconfig /etc/kubernetes/admin.kubeconfig get node h3",
    );
    assert!(
        String::from_utf8_lossy(&kubectl.stderr).contains("NotFound")
            || String::from_utf8_lossy(&kubectl.stdout).contains("NotFound"),
        "{kubectl:?}"
    );
    let units = rig.sh(
        "h3",
        "systemctl list-unit-files --no-legend 'etcd*' 'kube*' 'containerd*' 'ferry*' | wc -l",
    );
    assert_eq!(units.trim(), "0", "h3 still has ferry's units");
    let left = left_behind(rig, "h3", &before["h3"]);
    assert!(left.is_empty(), "h3: ferry left {left:?}");
}
