//! The addons step of `ferry install` on one test host that is etcd member,
//! master and node: a kubectl that fails or hangs fails the step with a
//! message naming the object (or the apiserver endpoint), the install exits
//! non-zero and the report shows the addons step failed; an object removed
//! from the cluster is applied again, and only that one.
//!
//! Real parts: etcd (the apiserver stand-in's object store), containerd,
//! systemd, sshd. STAND-INS: kube-apiserver and kubectl are the python script
//! tests/fixtures/standins/kube-standin.py (not Kubernetes); its fault
//! switches (/etc/ferry-standin/{fail,hang}-VERB on the host) make kubectl
//! fail or hang.

mod common;

use common::rig::Rig;
use common::upstream::signed_amd64_bundle;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const OCTET: u8 = 43;
/// The Calico test's rig.
const CALICO_OCTET: u8 = 44;

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

struct Setup {
    rig: Rig,
    dir: tempfile::TempDir,
    bundle: PathBuf,
}

/// Where the stand-in apiserver keeps Leases.
const LEASES: &str = "/registry/coordination.k8s.io/leases/";

impl Setup {
    fn new() -> Setup {
        Setup::with("fadd", OCTET, "")
    }

    /// One host on 198.18.`octet`.x, config.yml with `extra` appended.
    fn with(prefix: &str, octet: u8, extra: &str) -> Setup {
        eprintln!("NOTE: kube-apiserver, kubectl and helm in this test are python stand-ins (tests/fixtures/standins), not Kubernetes");
        let rig = Rig::up(1, prefix, octet);
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let bundle = signed_amd64_bundle(d, "b");
        let a = rig.addr("h1").to_string();
        let inventory = format!(
            "[all]\n{a} ansible_host={a} ip={a} etcd_name=etcd-1 node_name=h1\n[etcd]\n{a}\n[kube_master]\n{a}\n[kube_node]\n{a}\n\
             [all:vars]\nansible_user=root\nansible_ssh_private_key_file={}\n",
            rig.key().display()
        );
        std::fs::write(d.join("hosts"), inventory).unwrap();
        std::fs::write(
            d.join("config.yml"),
            format!("CLUSTER_NAME: \"addons\"\nK8S_VER: \"1.29.6\"\nCLUSTER_CIDR: \"10.244.0.0/16\"\nSERVICE_CIDR: \"10.96.0.0/16\"\nCONTAINERD_RESTRICT_OOM_SCORE_ADJ: true\n{extra}"),
        )
        .unwrap();
        Setup { rig, dir, bundle }
    }

    /// `ferry install`; `timeout` sets FERRY_ADDONS_TIMEOUT.
    fn command(&self, timeout: Option<&str>) -> Command {
        let mut cmd = self.rig.install_command(
            Path::new(env!("CARGO_BIN_EXE_ferry")),
            self.dir.path(),
            &self.bundle,
        );
        match timeout {
            Some(t) => cmd.env("FERRY_ADDONS_TIMEOUT", t),
            None => cmd.env_remove("FERRY_ADDONS_TIMEOUT"),
        };
        cmd
    }

    /// `ferry install --json`: its output and report.
    fn install(&self, timeout: Option<&str>) -> (Output, Value) {
        let out = self
            .command(timeout)
            .arg("--json")
            .output()
            .expect("run ferry install");
        let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "install --json printed no report ({e}):\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out, report)
    }

    /// etcdctl on h1 with the apiserver's etcd client certificate.
    fn etcdctl(&self, args: &str) -> String {
        self.rig.sh(
            "h1",
            &format!(
                "unit=$(systemctl cat kube-apiserver.service); f() {{ printf '%s' \"$unit\" | grep -o -- \"--$1=[^ ]*\" | head -n1 | cut -d= -f2; }}; \
                 ctl=$(dirname $(systemctl cat etcd.service | sed -n 's/^ExecStart=\\([^ ]*\\).*/\\1/p'))/etcdctl; \
                 ETCDCTL_API=3 $ctl --endpoints=$(f etcd-servers) --cacert=$(f etcd-cafile) --cert=$(f etcd-certfile) --key=$(f etcd-keyfile) {args}"
            ),
        )
    }

    /// The stand-in apiserver's store: etcd's /registry/ keys with (create,
    /// mod) revisions, less the Leases the controller-manager and scheduler
    /// renew every few seconds (cluster state, not addons).
    fn store(&self) -> Vec<(String, u64, u64)> {
        let out = self.etcdctl("get --prefix /registry/ --keys-only -w fields");
        let mut rows: Vec<(String, u64, u64)> = Vec::new();
        let (mut create, mut modr) = (0, 0);
        for line in out.lines() {
            let (k, v) = line.split_once(" : ").unwrap_or(("", ""));
            match k.trim_matches('"') {
                "CreateRevision" => create = v.trim().parse().unwrap(),
                "ModRevision" => modr = v.trim().parse().unwrap(),
                "Key" => rows.push((v.trim().trim_matches('"').to_string(), 0, 0)),
                "Lease" => {
                    // Last field of a kv in `-w fields`: the row is complete.
                    let r = rows.last_mut().expect("a key before its fields");
                    (r.1, r.2) = (create, modr);
                }
                _ => {}
            }
        }
        rows.retain(|(k, _, _)| !k.starts_with(LEASES));
        rows
    }

    fn fault(&self, switch: &str, object: &str) {
        self.rig.sh(
            "h1",
            &format!("mkdir -p /etc/ferry-standin && printf '%s\\n' '{object}' > /etc/ferry-standin/{switch}"),
        );
    }

    fn clear_faults(&self) {
        self.rig.sh("h1", "rm -rf /etc/ferry-standin");
    }
}

/// The install failed at the addons step, with `words` in its error.
fn failed_at_addons(out: &Output, report: &Value, words: &[&str]) -> String {
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "install succeeded:\n{text}");
    let h1 = &report["hosts"][0];
    assert_eq!(
        (h1["step"].as_str(), h1["status"].as_str()),
        (Some("addons"), Some("failed")),
        "{report}"
    );
    let error = h1["error"].as_str().unwrap_or_default().to_string();
    for w in words {
        assert!(error.contains(w), "error does not name {w:?}: {error}");
    }
    error
}

fn note(report: &Value) -> String {
    report["notes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|n| n.starts_with("addons:"))
        .unwrap_or_else(|| panic!("no addons note: {report}"))
        .to_string()
}

#[test]
fn failing_and_hanging_kubectl_fail_the_addons_step_naming_the_object() {
    let s = Setup::new();
    let (out, report) = s.install(None);
    ok(out, "first install");
    let first = note(&report);
    assert!(first.contains("(0 unchanged)"), "{first}");
    let before = s.store();
    let coredns = "/registry/apps/deployments/kube-system/coredns";
    assert!(before.iter().any(|r| r.0 == coredns), "{before:?}");

    // The Deployment disappears from the cluster: the next run must apply it
    // again, and here kubectl fails (then hangs) on exactly that object.
    assert_eq!(s.etcdctl(&format!("del {coredns}")).trim(), "1");
    s.fault("fail-apply", "Deployment kube-system/coredns");
    // Without --json: the table shows the step failed, with the error line.
    let out = s.command(None).output().expect("run ferry install");
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "install succeeded:\n{table}{stderr}");
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().take(3).collect::<Vec<_>>() == ["h1", "addons", "FAILED"]),
        "the table does not show the addons step failed on h1:\n{table}"
    );
    assert!(stderr.contains("1 of 1 hosts did not finish"), "{stderr}");
    let e = table
        .lines()
        .find_map(|l| l.strip_prefix("h1: "))
        .unwrap_or_else(|| panic!("no error line for h1:\n{table}"));
    for w in [
        "Deployment kube-system/coredns",
        "10-coredns.yaml",
        "kubectl exited with 1",
        "fault switch",
    ] {
        assert!(e.contains(w), "error does not name {w:?}: {e}");
    }
    eprintln!("failing kubectl: {e}");

    s.clear_faults();
    s.fault("hang-apply", "Deployment kube-system/coredns");
    let t = std::time::Instant::now();
    let (out, report) = s.install(Some("5"));
    let e = failed_at_addons(
        &out,
        &report,
        &["Deployment kube-system/coredns", "did not finish within 5s"],
    );
    eprintln!("hanging kubectl ({:.0}s): {e}", t.elapsed().as_secs_f64());

    // An apiserver that never becomes ready: the step names the endpoint.
    s.clear_faults();
    s.fault("hang-get", "/readyz");
    let (out, report) = s.install(Some("4"));
    let endpoint = format!("https://{}:6443", s.rig.addr("h1"));
    failed_at_addons(&out, &report, &[&endpoint, "/readyz within 4s"]);

    // Without faults the run converges: coredns alone is applied again.
    s.clear_faults();
    let (out, report) = s.install(None);
    ok(out, "install after the faults are gone");
    let n = note(&report);
    assert!(n.starts_with("addons: 1 of "), "{n}");
    let applied: u64 = report["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["applied_objects"].as_u64().unwrap())
        .sum();
    assert_eq!(applied, 1, "{report}");
    let after = s.store();
    assert_eq!(after.len(), before.len(), "{after:?}");
    for (key, create, modr) in &after {
        let (_, c0, m0) = before.iter().find(|r| &r.0 == key).unwrap();
        if key == coredns {
            assert!(create > c0, "{key} was not applied again");
        } else {
            assert_eq!((create, modr), (c0, m0), "{key} was applied again");
        }
    }
}

/// CLUSTER_NETWORK calico: the tigera-operator chart, rendered by the bundle's
/// helm from the artifact the bundle carries, is applied with its CRDs first,
/// the operator's Namespace before the operator, and the Installation that
/// tells the operator what to deploy; nothing of Cilium is applied.
#[test]
fn calico_is_installed_through_its_operator() {
    let s = Setup::with(
        "fcal",
        CALICO_OCTET,
        "CNI_PLUGIN: \"calico\"\nCALICO_ENABLE_OVERLAY: \"CrossSubnet\"\nIP_AUTODETECTION_METHOD: \"can-reach={{ groups['kube_master'][0] }}\"\n",
    );
    let (out, report) = s.install(None);
    ok(out, "install with calico");
    let store = s.store();
    let has = |key: &str| {
        store
            .iter()
            .find(|r| r.0 == key)
            .unwrap_or_else(|| panic!("{key} was not applied: {store:?}"))
            .clone()
    };
    let crd = has(
        "/registry/apiextensions.k8s.io/customresourcedefinitions/installations.operator.tigera.io",
    );
    let ns = has("/registry/core/namespaces/tigera-operator");
    let operator = has("/registry/apps/deployments/tigera-operator/tigera-operator");
    let install = has("/registry/operator.tigera.io/installations/default");
    assert!(
        crd.1 < ns.1 && ns.1 < operator.1,
        "apply order: {crd:?} {ns:?} {operator:?}"
    );
    assert!(crd.1 < install.1, "{crd:?} {install:?}");
    assert!(
        !store.iter().any(|r| r.0.contains("cilium")),
        "Cilium objects applied with calico: {store:?}"
    );
    let spec =
        s.etcdctl("get /registry/operator.tigera.io/installations/default --print-value-only");
    let v: Value = serde_json::from_str(spec.trim()).unwrap_or_else(|e| panic!("{e}: {spec}"));
    let net = &v["spec"]["calicoNetwork"];
    assert_eq!(net["ipPools"][0]["encapsulation"], "IPIPCrossSubnet", "{v}");
    assert_eq!(
        net["nodeAddressAutodetectionV4"]["canReach"],
        s.rig.addr("h1").to_string(),
        "{v}"
    );
    let n = note(&report);
    assert!(n.contains("(0 unchanged)"), "{n}");
}
