//! Looking into a cluster on the rig: etcdctl with a member's own
//! certificates, containerd's CRI through a host's socket, waiting.

use super::rig::Rig;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `--flag=value` from a unit's ExecStart.
pub fn unit_flag(unit_text: &str, flag: &str) -> String {
    let key = format!("--{flag}=");
    unit_text
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&key))
        .unwrap_or_else(|| panic!("no {key} in unit:\n{unit_text}"))
        .to_string()
}

/// etcdctl on `host`'s own member, with the binary and certificates its unit names.
pub fn etcdctl(rig: &Rig, host: &str, args: &str) -> String {
    let unit = rig.sh(host, "systemctl cat etcd.service");
    let exe = unit
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("ExecStart=")
                .map(|r| r.split_whitespace().next().unwrap_or("").to_string())
        })
        .expect("ExecStart in etcd.service");
    let ctl = Path::new(&exe).with_file_name("etcdctl");
    rig.sh(
        host,
        &format!(
            "ETCDCTL_API=3 {} --endpoints=https://{}:2379 --cacert={} --cert={} --key={} {args} 2>&1",
            ctl.display(),
            rig.addr(host),
            unit_flag(&unit, "trusted-ca-file"),
            unit_flag(&unit, "trusted-ca-file").replace("ca.pem", "healthcheck-client.pem"),
            unit_flag(&unit, "trusted-ca-file").replace("ca.pem", "healthcheck-client-key.pem"),
        ),
    )
}

/// Polls `f` every 300 ms until it gives a value; panics after `secs`.
pub fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}
/// The CRI test client, run on this machine (the bare hosts have none of its
/// python modules) against a host's containerd socket through the host's
/// root: one call, its JSON answer.
pub fn cri(rig: &Rig, host: &str, call: &str) -> Value {
    let client = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cri/cri_client.py");
    let gen = std::env::temp_dir().join(format!("ferry-e2e-cri-{}", std::process::id()));
    let socket = format!(
        "/proc/{}/root/run/containerd/containerd.sock",
        rig.pid(host)
    );
    let out = Command::new("python3")
        .arg(&client)
        .args(["--socket", &socket, "--gen"])
        .arg(&gen)
        .args(call.split_whitespace())
        .output()
        .expect("run cri_client.py");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "{host}: CRI {call}: {e}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A pod sandbox started through CRI on a host that has pulled nothing yet:
/// containerd resolves its sandbox image (the bundle's pause) through the
/// mirror, with the upstream digest, and the sandbox runs.
pub fn sandbox_comes_from_the_mirror(rig: &Rig, host: &str, images: &[(String, String)]) {
    let status = cri(rig, host, "status");
    let config: Value = serde_json::from_str(status["info"]["config"].as_str().unwrap()).unwrap();
    let pause = config["sandboxImage"].as_str().unwrap().to_owned();
    let (_, digest) = images
        .iter()
        .find(|(r, _)| *r == pause)
        .expect("sandbox image in the bundle");
    assert!(cri(rig, host, &format!("image-status {pause}"))["image"].is_null());
    let id = cri(rig, host, "run-sandbox e2e-probe")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let state = cri(rig, host, &format!("sandbox-status {id}"));
    assert_eq!(state["state"], "SANDBOX_READY", "{host}: {state}");
    let pulled = cri(rig, host, &format!("image-status {pause}"));
    let expected = format!("{}@{digest}", pause.rsplit_once(':').unwrap().0);
    assert!(
        pulled["image"]["repo_digests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| *d == expected.as_str()),
        "{host}: sandbox image {pulled}, expected {expected}"
    );
    cri(rig, host, &format!("remove-sandbox {id}"));
}

/// One thing a [`Watcher`] polls: its name, and the curl arguments whose
/// output is `expect` (or, with `contains`, holds it) while it serves.
#[derive(Clone)]
pub struct Probe {
    pub name: String,
    pub curl: Vec<String>,
    pub expect: String,
    pub contains: bool,
}

impl Probe {
    /// `/readyz` at `endpoint` (`https://host:port`), verified with the
    /// cluster CA and read with the cluster dir's health-check certificate
    /// (the apiservers refuse anonymous requests).
    pub fn readyz(name: &str, endpoint: &str, cluster_dir: &Path) -> Probe {
        let mut curl = apiserver_client(cluster_dir);
        curl.push(format!("{endpoint}/readyz"));
        Probe {
            name: name.to_owned(),
            curl,
            expect: "ok".into(),
            contains: false,
        }
    }

    /// An etcd member's `/health`, with the cluster dir's etcd client certificate.
    pub fn etcd_health(name: &str, addr: &str, cluster_dir: &Path) -> Probe {
        let pki = cluster_dir.join("pki/etcd");
        Probe {
            name: name.to_owned(),
            curl: vec![
                "--cacert".into(),
                pki.join("ca.pem").display().to_string(),
                "--cert".into(),
                pki.join("healthcheck-client.pem").display().to_string(),
                "--key".into(),
                pki.join("healthcheck-client-key.pem").display().to_string(),
                format!("https://{addr}:2379/health"),
            ],
            // etcd 3.4 answers {"health":"true"}, 3.5 adds a reason.
            expect: "\"health\":\"true\"".into(),
            contains: true,
        }
    }
}

/// curl arguments that reach an apiserver as the cluster dir's
/// health-check client (verified against the cluster CA).
pub fn apiserver_client(cluster_dir: &Path) -> Vec<String> {
    let pki = cluster_dir.join("pki");
    vec![
        "--cacert".into(),
        pki.join("ca.pem").display().to_string(),
        "--cert".into(),
        pki.join("apiserver-health-check.pem").display().to_string(),
        "--key".into(),
        pki.join("apiserver-health-check-key.pem")
            .display()
            .to_string(),
    ]
}

/// Polls every probe every 200 ms from the deploy host while a command
/// runs; each sample is the names of the probes that did not answer.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(Duration, Vec<String>)>>,
}

impl Watcher {
    pub fn start(probes: Vec<Probe>) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            let started = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                let at = started.elapsed();
                // All probes at once, so a sample is one moment.
                let running: Vec<_> = probes
                    .iter()
                    .map(|p| {
                        Command::new("curl")
                            .args(["-sS", "--max-time", "1"])
                            .args(&p.curl)
                            .stdout(std::process::Stdio::piped())
                            .stderr(std::process::Stdio::null())
                            .spawn()
                            .expect("curl")
                    })
                    .collect();
                let down: Vec<String> = probes
                    .iter()
                    .zip(running)
                    .filter_map(|(p, child)| {
                        let out = child.wait_with_output().expect("curl");
                        let got = String::from_utf8_lossy(&out.stdout);
                        let got = got.trim();
                        let up = got == p.expect || (p.contains && got.contains(&p.expect));
                        (!up).then(|| p.name.clone())
                    })
                    .collect();
                samples.push((at, down));
                std::thread::sleep(Duration::from_millis(200));
            }
            samples
        });
        Watcher { stop, thread }
    }

    pub fn finish(self) -> Vec<Vec<String>> {
        self.finish_timed().into_iter().map(|(_, d)| d).collect()
    }

    /// The samples with when each was taken.
    pub fn finish_timed(self) -> Vec<(Duration, Vec<String>)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("watcher")
    }
}

/// The longest time `name` did not answer: from the first sample that
/// found it down to the next that found it up (or the last sample).
pub fn longest_outage(samples: &[(Duration, Vec<String>)], name: &str) -> Duration {
    let mut longest = Duration::ZERO;
    let mut since: Option<Duration> = None;
    for (at, down) in samples {
        match (down.iter().any(|d| d == name), since) {
            (true, None) => since = Some(*at),
            (false, Some(from)) => {
                longest = longest.max(*at - from);
                since = None;
            }
            _ => {}
        }
    }
    if let (Some(from), Some((last, _))) = (since, samples.last()) {
        longest = longest.max(*last - from);
    }
    longest
}

/// The samples in which more than one of `names` was down.
pub fn overlapping_outages<'a>(samples: &'a [Vec<String>], names: &[&str]) -> Vec<&'a Vec<String>> {
    samples
        .iter()
        .filter(|down| down.iter().filter(|d| names.contains(&d.as_str())).count() > 1)
        .collect()
}

/// A kubeasz inventory of `rig`'s hosts: `masters` (also listed first in
/// [all]), `etcd` members, `nodes`; each host named by `node_name` with
/// etcd member name `etcd-<host>`, reached as root with the rig's key.
pub fn inventory(rig: &Rig, masters: &[&str], etcd: &[&str], nodes: &[&str]) -> String {
    inventory_with_lb(rig, masters, etcd, nodes, &[])
}

/// [`inventory`] with `ex_lb` hosts (haproxy and keepalived holding the VIP).
pub fn inventory_with_lb(
    rig: &Rig,
    masters: &[&str],
    etcd: &[&str],
    nodes: &[&str],
    ex_lb: &[&str],
) -> String {
    let a = |h: &str| rig.addr(h).to_string();
    let mut all: Vec<&str> = masters.to_vec();
    for h in etcd.iter().chain(nodes).chain(ex_lb) {
        if !all.contains(h) {
            all.push(h);
        }
    }
    let mut s = String::from("[all]\n");
    for h in &all {
        s += &format!(
            "{0} ansible_host={0} ip={0} node_name={h} etcd_name=etcd-{h}\n",
            a(h)
        );
    }
    for (group, hosts) in [
        ("etcd", etcd),
        ("kube_master", masters),
        ("kube_node", nodes),
        ("ex_lb", ex_lb),
    ] {
        if hosts.is_empty() && group == "ex_lb" {
            continue;
        }
        s += &format!("[{group}]\n");
        for h in hosts {
            s += &format!("{}\n", a(h));
        }
    }
    s += &format!(
        "[all:vars]\nansible_user=root\nansible_ssh_private_key_file={}\n",
        rig.key().display()
    );
    s
}

/// A command's stdout and stderr, as one text.
pub fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// The stdout of a command that must have succeeded; else a panic showing both streams.
pub fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The arguments that name a test cluster laid out in `dir` (its `hosts`,
/// `config.yml`, `data` and `cluster`) and reach its hosts through `rig`.
pub fn cluster_args(dir: &Path, rig: &Rig) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    for (flag, name) in [
        ("--inventory", "hosts"),
        ("--config", "config.yml"),
        ("--data-dir", "data"),
        ("--cluster-dir", "cluster"),
    ] {
        args.push(flag.into());
        args.push(dir.join(name).into());
    }
    args.push("--ssh-config".into());
    args.push(rig.ssh_config().into());
    args
}
