//! The kube stand-in's Node handling, which the day-2 commands (node remove,
//! rolling upgrade) are tested against: its kubelet registers its Node with
//! the stand-in apiserver (a real etcd as its store, both on loopback, no rig)
//! through a kubeconfig in the layout ferry renders, retrying while the
//! apiserver does not answer; its kubectl cordons, uncordons, drains
//! (honouring a PodDisruptionBudget) and deletes nodes; a restarted kubelet
//! leaves its existing Node (cordon included) as it is.
//!
//! NOTE: kube-apiserver, kubelet and kubectl here are the python stand-in
//! tests/fixtures/standins/kube-standin.py, not Kubernetes. etcd is real.

#[allow(dead_code)]
#[path = "common/ports.rs"]
mod ports;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const NODE: &str = "worker-1";

/// Children killed (and reaped) when the test ends, however it ends.
struct Procs(Vec<(String, Child)>);

impl Procs {
    fn kill(&mut self, what: &str) {
        let i = self.0.iter().position(|(w, _)| w == what).unwrap();
        let (_, mut child) = self.0.remove(i);
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: String,
    client_key: String,
}

fn pki(dir: &Path) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ferry test cluster CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    let server = params.signed_by(&server_key, &issuer).unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("system:node:{NODE}"));
    params
        .distinguished_name
        .push(DnType::OrganizationName, "system:nodes");
    let client = params.signed_by(&client_key, &issuer).unwrap();
    let out = Pki {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("apiserver.pem"),
        server_key: dir.join("apiserver-key.pem"),
        client_cert: client.pem(),
        client_key: client_key.serialize_pem(),
    };
    std::fs::write(&out.ca, ca_cert.pem()).unwrap();
    std::fs::write(&out.server_cert, server.pem()).unwrap();
    std::fs::write(&out.server_key, server_key.serialize_pem()).unwrap();
    out
}

fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A kubeconfig for `server`, rendered from ferry's own template
/// (manifests/kubernetes/kubeconfig.j2) so the stand-in reads what ferry writes.
fn kubeconfig(pki: &Pki, server: &str) -> String {
    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/kubernetes/kubeconfig.j2"),
    )
    .unwrap();
    let ca = std::fs::read(&pki.ca).unwrap();
    let text = template
        .replace("{{ cluster_name | tojson }}", "\"ferry-test\"")
        .replace("{{ user | tojson }}", &format!("\"system:node:{NODE}\""))
        .replace("{{ context | tojson }}", "\"default\"")
        .replace("{{ server }}", server)
        .replace("{{ ca_data }}", &b64(&ca))
        .replace("{{ cert_data }}", &b64(pki.client_cert.as_bytes()))
        .replace("{{ key_data }}", &b64(pki.client_key.as_bytes()));
    assert!(
        !text.contains("{{"),
        "a placeholder of kubeconfig.j2 is left:\n{text}"
    );
    text
}

struct Env {
    dir: tempfile::TempDir,
    bin: PathBuf,
    procs: Procs,
    kubeconfig: PathBuf,
    faults: PathBuf,
}

impl Env {
    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(self.bin.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env("FERRY_STANDIN_FAULTS", &self.faults)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed ({}):\n{text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    /// kubectl that must fail: its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(1),
            "kubectl {args:?} did not exit 1:\n{}{err}",
            String::from_utf8_lossy(&out.stdout)
        );
        err
    }

    fn node(&self) -> Value {
        serde_json::from_str(&self.ok(&["get", "node", NODE, "-o", "json"])).unwrap()
    }

    fn unschedulable(&self) -> String {
        self.ok(&["get", "node", NODE, "-o", "jsonpath={.spec.unschedulable}"])
    }

    /// The kubelet stand-in, started as ferry's kubelet.service starts it.
    fn start_kubelet(&mut self, what: &str) {
        let root = self.dir.path().join("kubelet");
        let log = std::fs::File::create(self.log(what)).unwrap();
        let child = Command::new(self.bin.join("kubelet"))
            .arg(format!("--config={}/config.yaml", root.display()))
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg("--container-runtime-endpoint=unix:///run/containerd/containerd.sock")
            .arg("--hostname-override=Worker-1")
            .arg("--node-ip=127.0.0.1")
            .arg(format!("--root-dir={}", root.display()))
            .arg("--node-labels=node.kubernetes.io/pool=blue,ferry.io/zone=a")
            .arg("--v=2")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.procs.0.push((what.to_owned(), child));
    }

    /// Waits until the log of `what` has a line containing `text`.
    fn wait_log(&self, what: &str, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = std::fs::read_to_string(self.log(what)).unwrap_or_default();
            if log.contains(text) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "{what} did not log {text:?} within 30s:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn setup() -> (Env, Pki) {
    eprintln!("NOTE: kube-apiserver, kubelet and kubectl in this test are the python stand-in (tests/fixtures/standins), not Kubernetes");
    let dir = tempfile::Builder::new()
        .prefix("ferry-standin-nodes-")
        .tempdir()
        .unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let standin =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/standins/kube-standin.py");
    for name in ["kube-apiserver", "kubelet", "kubectl"] {
        std::os::unix::fs::symlink(&standin, bin.join(name)).unwrap();
    }
    let pki = pki(dir.path());
    let env = Env {
        kubeconfig: dir.path().join("kubelet.kubeconfig"),
        faults: dir.path().join("faults"),
        bin,
        procs: Procs(Vec::new()),
        dir,
    };
    (env, pki)
}

#[test]
fn kubelet_registers_its_node_and_kubectl_cordons_drains_and_deletes_it() {
    let (mut env, pki) = setup();
    let d = env.dir.path().to_owned();

    // etcd on loopback (client port P, peer port P+1; both retried when taken).
    let etcd_log = env.log("etcd");
    let (etcd, etcd_port) = ports::start_on_free_port("etcd", &etcd_log, |port| {
        let out = std::fs::File::create(&etcd_log).unwrap();
        let client = format!("http://127.0.0.1:{port}");
        let peer = format!("http://127.0.0.1:{}", port + 1);
        Command::new("etcd")
            .arg("--data-dir")
            .arg(d.join(format!("etcd-{port}")))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("default={peer}")])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap()
    });
    env.procs.0.push(("etcd".into(), etcd));

    // The kubelet starts while its apiserver refuses connections: it retries.
    let refusing = ports::Unlistened::bind();
    std::fs::write(
        &env.kubeconfig,
        kubeconfig(&pki, &format!("https://{}", refusing.addr)),
    )
    .unwrap();
    env.start_kubelet("kubelet");
    env.wait_log("kubelet", "Unable to register node with API server");
    let log = env.wait_log("kubelet", "Attempting to register node");
    assert!(log.contains("node=\"worker-1\""), "{log}");

    let api_log = env.log("apiserver");
    let bin = env.bin.clone();
    let (api, api_port) = ports::start_on_free_port("kube-apiserver stand-in", &api_log, |port| {
        let out = std::fs::File::create(&api_log).unwrap();
        Command::new(bin.join("kube-apiserver"))
            .arg(format!("--secure-port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--tls-cert-file={}", pki.server_cert.display()))
            .arg(format!(
                "--tls-private-key-file={}",
                pki.server_key.display()
            ))
            .arg(format!("--client-ca-file={}", pki.ca.display()))
            .arg(format!("--etcd-servers=http://127.0.0.1:{etcd_port}"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap()
    });
    env.procs.0.push(("apiserver".into(), api));
    std::fs::write(
        &env.kubeconfig,
        kubeconfig(&pki, &format!("https://127.0.0.1:{api_port}")),
    )
    .unwrap();
    env.wait_log("kubelet", "Successfully registered node");

    // The Node: its name and labels from the flags, Ready, schedulable.
    let node = env.node();
    assert_eq!(node["kind"], "Node", "{node}");
    assert_eq!(node["metadata"]["name"], NODE, "{node}");
    let labels = &node["metadata"]["labels"];
    assert_eq!(labels["node.kubernetes.io/pool"], "blue", "{node}");
    assert_eq!(labels["ferry.io/zone"], "a", "{node}");
    assert_eq!(labels["kubernetes.io/hostname"], NODE, "{node}");
    assert_eq!(labels["kubernetes.io/os"], "linux", "{node}");
    let addresses = node["status"]["addresses"].as_array().unwrap();
    assert!(
        addresses
            .iter()
            .any(|a| a["type"] == "InternalIP" && a["address"] == "127.0.0.1"),
        "{node}"
    );
    assert_eq!(env.unschedulable(), "");
    let list: Value = serde_json::from_str(&env.ok(&["get", "nodes", "-o", "json"])).unwrap();
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [NODE], "{list}");

    // cordon / uncordon.
    assert_eq!(env.ok(&["cordon", NODE]), "node/worker-1 cordoned\n");
    assert_eq!(env.unschedulable(), "true");
    assert_eq!(
        env.ok(&["cordon", NODE]),
        "node/worker-1 already cordoned\n"
    );
    assert_eq!(env.ok(&["uncordon", NODE]), "node/worker-1 uncordoned\n");
    assert_eq!(env.unschedulable(), "");
    let err = env.fails(&["cordon", "ghost"]);
    assert!(
        err.contains("Error from server (NotFound): nodes \"ghost\" not found"),
        "{err}"
    );

    // drain: as ferry's node remove calls it; nothing runs there, so it cordons and is done.
    let out = env.ok(&[
        "drain",
        NODE,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=30s",
    ]);
    assert!(out.contains("node/worker-1 cordoned\n"), "{out}");
    assert!(out.ends_with("node/worker-1 drained\n"), "{out}");
    assert_eq!(env.unschedulable(), "true");

    let err = env.fails(&["drain", "ghost", "--ignore-daemonsets", "--timeout=30s"]);
    assert!(
        err.contains("Error from server (NotFound): nodes \"ghost\" not found"),
        "{err}"
    );

    // A pod on the node under a budget that allows no disruption: drain times
    // out naming it and leaves it; without the budget it is evicted.
    env.ok(&["uncordon", NODE]);
    let pods = env.dir.path().join("pods.json");
    std::fs::write(
        &pods,
        r#"{"apiVersion": "v1", "kind": "List", "items": [
  {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web"},
    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "1", "controller": true}]},
   "spec": {"nodeName": "worker-1", "volumes": [{"name": "tmp", "emptyDir": {}}]}},
  {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-2", "namespace": "default", "labels": {"app": "web"},
    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "1", "controller": true}]},
   "spec": {"nodeName": "worker-2"}},
  {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "agent-x", "namespace": "kube-system",
    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": "2", "controller": true}]},
   "spec": {"nodeName": "worker-1"}},
  {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web", "namespace": "default"},
   "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}}
]}"#,
    )
    .unwrap();
    env.ok(&["apply", "--server-side", "-f", pods.to_str().unwrap()]);
    let err = env.fails(&["drain", NODE, "--delete-emptydir-data", "--timeout=30s"]);
    assert!(
        err.contains("cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): kube-system/agent-x"),
        "{err}"
    );
    assert_eq!(
        env.unschedulable(),
        "true",
        "a refused drain leaves the node cordoned"
    );
    let err = env.fails(&["drain", NODE, "--ignore-daemonsets", "--timeout=30s"]);
    assert!(
        err.contains("cannot delete Pods with local storage (use --delete-emptydir-data to override): default/web-1"),
        "{err}"
    );
    let started = Instant::now();
    let err = env.fails(&[
        "drain",
        NODE,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=2s",
    ]);
    assert!(
        err.contains(
            "error when evicting pods/\"web-1\" -n \"default\": global timeout reached: 2s"
        ),
        "{err}"
    );
    assert!(started.elapsed() >= Duration::from_secs(2), "{err}");
    let left = env.ok(&["get", "pods", "-A", "-o", "name"]);
    assert!(left.contains("pod/web-1\n"), "{left}");
    env.ok(&["delete", "pdb", "web", "-n", "default"]);
    let out = env.ok(&[
        "drain",
        NODE,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=30s",
    ]);
    assert!(
        out.contains("evicting pod default/web-1\npod/web-1 evicted\n"),
        "{out}"
    );
    assert!(out.ends_with("node/worker-1 drained\n"), "{out}");
    let left = env.ok(&["get", "pods", "-A", "-o", "name"]);
    assert_eq!(left, "pod/web-2\npod/agent-x\n");

    // Fault switches cover the new verbs.
    std::fs::create_dir(&env.faults).unwrap();
    std::fs::write(env.faults.join("fail-drain"), "Node worker-1\n").unwrap();
    let err = env.fails(&["drain", NODE, "--ignore-daemonsets", "--timeout=30s"]);
    assert!(err.contains("fault switch"), "{err}");
    std::fs::write(env.faults.join("fail-drain"), "Node other\n").unwrap();
    env.ok(&["drain", NODE, "--ignore-daemonsets", "--timeout=30s"]);
    std::fs::remove_dir_all(&env.faults).unwrap();

    // A restarted kubelet finds its Node and leaves it cordoned.
    assert_eq!(env.unschedulable(), "true");
    env.procs.kill("kubelet");
    env.start_kubelet("kubelet-again");
    env.wait_log("kubelet-again", "Node was previously registered");
    assert_eq!(
        env.unschedulable(),
        "true",
        "the restart uncordoned the node"
    );
    let again = env.node();
    assert_eq!(again["metadata"]["uid"], node["metadata"]["uid"], "{again}");
    assert_eq!(
        again["metadata"]["labels"], node["metadata"]["labels"],
        "{again}"
    );

    // delete node.
    assert_eq!(
        env.ok(&["delete", "node", NODE]),
        "node \"worker-1\" deleted\n"
    );
    let err = env.fails(&["get", "node", NODE, "-o", "json"]);
    assert!(
        err.contains("Error from server (NotFound): nodes \"worker-1\" not found"),
        "{err}"
    );
    assert_eq!(env.ok(&["delete", "node", NODE, "--ignore-not-found"]), "");
    let err = env.fails(&["delete", "node", NODE]);
    assert!(
        err.contains("Error from server (NotFound): nodes \"worker-1\" not found"),
        "{err}"
    );
    let list: Value = serde_json::from_str(&env.ok(&["get", "nodes", "-o", "json"])).unwrap();
    assert_eq!(list["items"], serde_json::json!([]), "{list}");
}
