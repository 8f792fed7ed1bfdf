//! Faults in the middle of `ferry install`, on 3 bare test hosts: h1 is the
//! master, h2 and h3 are nodes, all three are etcd members (so one host lost
//! leaves an etcd quorum, and losing h1 leaves no control plane).
//!
//! - a host whose sshd is killed, or whose link is cut, while one of its steps
//!   runs fails with that step named; the other hosts finish what does not
//!   depend on it (nodes and addons are skipped without a control plane; the
//!   control plane goes on with 2 of 3 etcd members) and a re-run, once the
//!   host is back, converges;
//! - `ferry install` SIGKILLed while dpkg installs the OS packages, during
//!   the upload of the binaries and while etcd members restart, then run
//!   again, converges and leaves no temporary upload file (nor the package
//!   step's policy-rc.d) on any host.
//!
//! A step is held open on a host by a systemd drop-in the test adds there
//! (`ExecStartPre=/bin/sleep`), so the fault lands while ferry waits for the
//! unit: the test waits for that condition, it does not time the run.
//! STAND-INS: kube-* binaries, kubectl, crictl and helm are the python script
//! tests/fixtures/standins/kube-standin.py (not Kubernetes).

mod common;

use common::rig::Rig;
use common::upstream::signed_amd64_bundle;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const HOSTS: [&str; 3] = ["h1", "h2", "h3"];
/// Remote commands give up after this many seconds (a cut link fails fast).
const COMMAND_TIMEOUT: &str = "20";
/// How long a whole install on the bare hosts may take in these tests.
const INSTALL_BOUND: u64 = 900;

/// The signed test bundle, built once for every test of this file.
fn bundle() -> &'static (PathBuf, PathBuf) {
    static BUNDLE: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUNDLE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("install-faults");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let bundle = signed_amd64_bundle(&dir, "faults");
        (bundle, dir.join("key.pub"))
    })
}

fn inventory(rig: &Rig) -> String {
    let a = |h: &str| rig.addr(h).to_string();
    let mut s = String::from("[all]\n");
    for (i, h) in HOSTS.iter().enumerate() {
        s += &format!(
            "{} ansible_host={} ip={} etcd_name=etcd-{} node_name={h}\n",
            a(h),
            a(h),
            a(h),
            i + 1
        );
    }
    s += "[etcd]\n";
    for h in HOSTS {
        s += &format!("{}\n", a(h));
    }
    s += &format!("[kube_master]\n{}\n[kube_node]\n", a("h1"));
    for h in &HOSTS[1..] {
        s += &format!("{}\n", a(h));
    }
    s += &format!(
        "[all:vars]\nansible_user=root\nansible_ssh_port=22\nansible_ssh_private_key_file={}\n",
        rig.key().display()
    );
    s
}

/// Test hosts are containers without CAP_SYS_RESOURCE: containerd must not
/// lower OOM scores there.
const CONFIG: &str = "CLUSTER_NAME: \"faults\"\nK8S_VER: \"1.29.6\"\nCONTAINER_RUNTIME: \"containerd\"\nHOST_SUBNET_PREFIX: 24\nPROXY_MODE: \"ipvs\"\nCLUSTER_CIDR: \"10.244.0.0/16\"\nSERVICE_CIDR: \"10.96.0.0/16\"\nCONTAINERD_RESTRICT_OOM_SCORE_ADJ: true\n";

struct Setup {
    rig: Rig,
    dir: tempfile::TempDir,
}

fn setup(id: &str, octet: u8) -> Setup {
    eprintln!("NOTE: kube-* binaries, kubectl, crictl and helm in this test are python stand-ins (tests/fixtures/standins), not Kubernetes");
    let (_, key) = bundle();
    let rig = Rig::up_bare(HOSTS.len(), id, octet);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("hosts"), inventory(&rig)).unwrap();
    std::fs::write(d.join("config.yml"), CONFIG).unwrap();
    std::fs::copy(key, d.join("key.pub")).unwrap();
    // ferry's SSH control sockets go here, so that what a killed run left
    // behind can be told to exit (see `end_masters`).
    std::fs::create_dir_all(d.join("tmp")).unwrap();
    Setup { rig, dir }
}

impl Setup {
    fn command(&self) -> Command {
        let ferry = Path::new(env!("CARGO_BIN_EXE_ferry"));
        let mut cmd = self
            .rig
            .install_command(ferry, self.dir.path(), &bundle().0);
        cmd.args(["--json", "--forks", "3"])
            .env("TMPDIR", self.dir.path().join("tmp"));
        cmd
    }

    /// Starts `ferry install`, its report going to `out.json`.
    fn start(&self) -> Child {
        self.start_with(self.command())
    }

    /// Starts `ferry install` with remote commands bounded by
    /// [`COMMAND_TIMEOUT`] (only on an installed cluster: installing the
    /// packages on these hosts takes longer).
    fn start_bounded(&self) -> Child {
        let mut cmd = self.command();
        cmd.env("FERRY_COMMAND_TIMEOUT", COMMAND_TIMEOUT);
        self.start_with(cmd)
    }

    fn start_with(&self, mut cmd: Command) -> Child {
        let out = std::fs::File::create(self.dir.path().join("out.json")).unwrap();
        let err = std::fs::File::create(self.dir.path().join("err.txt")).unwrap();
        cmd.stdout(out)
            .stderr(err)
            .stdin(Stdio::null())
            .spawn()
            .expect("run ferry install")
    }

    /// Waits for a started install; its exit status and JSON report.
    fn finish(&self, mut child: Child) -> (bool, Value) {
        let status = child.wait().expect("wait for ferry install");
        let out = std::fs::read_to_string(self.dir.path().join("out.json")).unwrap();
        let err = std::fs::read_to_string(self.dir.path().join("err.txt")).unwrap();
        let report = serde_json::from_str(&out).unwrap_or_else(|e| {
            panic!("install ({status}) printed no report ({e}):\n{out}\nstderr:\n{err}")
        });
        (status.success(), report)
    }

    fn install(&self) -> (bool, Value) {
        let child = self.start();
        self.finish(child)
    }

    /// `host`'s deploy log, from byte `from` on.
    fn log_since(&self, host: &str, from: usize) -> String {
        let path = self.dir.path().join(format!("cluster/logs/{host}.log"));
        let text = std::fs::read(path).unwrap_or_default();
        String::from_utf8_lossy(text.get(from..).unwrap_or_default()).into_owned()
    }

    fn log_len(&self, host: &str) -> usize {
        let path = self.dir.path().join(format!("cluster/logs/{host}.log"));
        std::fs::metadata(path).map_or(0, |m| m.len() as usize)
    }

    /// Waits until `reached` holds while `run` goes on; panics with its
    /// output if it ends first.
    fn wait_during(&self, run: &mut Child, what: &str, mut reached: impl FnMut() -> bool) {
        wait_for(what, INSTALL_BOUND, || {
            if let Ok(Some(status)) = run.try_wait() {
                let out = std::fs::read_to_string(self.dir.path().join("out.json"));
                let err = std::fs::read_to_string(self.dir.path().join("err.txt"));
                panic!(
                    "install ended ({status}) before {what}:\n{}\n{}",
                    out.unwrap_or_default(),
                    err.unwrap_or_default()
                );
            }
            reached()
        });
    }

    /// Asks the SSH masters a killed ferry left running to exit.
    fn end_masters(&self) {
        let tmp = self.dir.path().join("tmp");
        for entry in std::fs::read_dir(&tmp).unwrap().flatten() {
            let ctl = entry.path().join("master");
            if ctl.exists() {
                let _ = Command::new("ssh")
                    .args(["-F", "/dev/null", "-S"])
                    .arg(&ctl)
                    .args(["-O", "exit", "--", "ferry-master"])
                    .output();
            }
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The report's row for `host`.
fn row<'r>(report: &'r Value, host: &str) -> &'r Value {
    report["hosts"]
        .as_array()
        .expect("hosts in the report")
        .iter()
        .find(|h| h["host"] == host)
        .unwrap_or_else(|| panic!("{host} not in the report: {report}"))
}

/// Every host ok, having done every step to the final checks.
fn assert_all_ok(ok: bool, report: &Value, what: &str) {
    assert_all_ok_at(ok, report, what, |_| "checks");
}

/// Every host ok, at the step `step(host)`: `checks` for a host that did
/// its steps, `unchanged` for one found as the last run that passed left it.
fn assert_all_ok_at(ok: bool, report: &Value, what: &str, step: impl Fn(&str) -> &'static str) {
    assert!(ok, "{what}: install failed: {report}");
    for h in HOSTS {
        let r = row(report, h);
        assert_eq!(
            (r["status"].as_str(), r["step"].as_str()),
            (Some("ok"), Some(step(h))),
            "{what}: {r}"
        );
    }
}

/// A drop-in that keeps `unit` starting for ten minutes: ferry's step waits
/// for it, and the fault lands meanwhile.
fn hold(rig: &Rig, host: &str, unit: &str) {
    rig.sh(
        host,
        &format!(
            "mkdir -p /etc/systemd/system/{unit}.d && printf '[Service]\\nExecStartPre=/bin/sleep 600\\n' > /etc/systemd/system/{unit}.d/zz-test-hold.conf"
        ),
    );
}

/// Takes the drop-in away again and stops the held unit.
fn release(rig: &Rig, host: &str, unit: &str) {
    rig.sh(
        host,
        &format!("rm -rf /etc/systemd/system/{unit}.d/zz-test-hold.conf && systemctl daemon-reload && systemctl stop {unit}"),
    );
}

fn starting(rig: &Rig, host: &str, unit: &str) -> bool {
    let out = rig.exec(host, &format!("systemctl is-active {unit}"));
    String::from_utf8_lossy(&out.stdout).trim() == "activating"
}

fn active(rig: &Rig, host: &str, unit: &str) -> bool {
    rig.exec(host, &format!("systemctl is-active --quiet {unit}"))
        .status
        .success()
}

/// The failed row of `host`: its step, and the error naming the host.
fn assert_failed_at(report: &Value, host: &str, addr: &str, step: &str) -> String {
    let r = row(report, host);
    assert_eq!(r["status"], "failed", "{r}");
    assert_eq!(r["step"], step, "{r}");
    let error = r["error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains(host) || error.contains(addr),
        "{host}'s error does not name it: {error}"
    );
    let log = std::fs::read_to_string(r["log"].as_str().unwrap()).unwrap();
    assert!(
        log.contains(&format!("step {step}: FAILED")),
        "{host}'s log does not show {step} failing"
    );
    error
}

/// (a) h1, the only master, loses its sshd while its control plane units
/// start: h1 fails at control_plane, h2 and h3 finish etcd and their access
/// layer and skip nodes (no control plane), no addon is applied; once h1's
/// sshd is back a re-run converges. (b) Then h3's link is cut while its etcd
/// restarts: h3 fails at etcd within the command timeout, h1 and h2 finish
/// (the control plane goes on with 2 of 3 etcd members); with the link back
/// a re-run converges.
#[test]
fn a_host_lost_in_the_middle_of_a_step_fails_alone_and_a_rerun_converges() {
    let s = setup("flost", 50);
    let rig = &s.rig;

    hold(rig, "h1", "kube-apiserver.service");
    let mut run = s.start();
    s.wait_during(&mut run, "h1's kube-apiserver to be starting", || {
        starting(rig, "h1", "kube-apiserver.service")
    });
    // ssh.service restarts a killed sshd: stop it, then kill the sessions.
    rig.sh(
        "h1",
        "systemctl stop ssh.service; pkill -KILL -x sshd || true",
    );
    let (ok, report) = s.finish(run);
    assert!(!ok, "install with h1's sshd killed succeeded: {report}");
    assert_failed_at(&report, "h1", rig.addr("h1"), "control_plane");
    for h in ["h2", "h3"] {
        let r = row(&report, h);
        assert_eq!(
            (
                r["status"].as_str(),
                r["step"].as_str(),
                r["error"].as_str()
            ),
            (
                Some("skipped"),
                Some("nodes"),
                Some("skipped: no control plane host succeeded")
            ),
            "{r}"
        );
        assert!(active(rig, h, "etcd.service"), "{h}: etcd not running");
        assert!(
            active(rig, h, "ferry-kube-lb.service"),
            "{h}: the access layer was not finished"
        );
        assert!(!active(rig, h, "kubelet.service"), "{h}: kubelet started");
    }
    let notes = report["notes"].to_string();
    assert!(!notes.contains("addons:"), "addons applied: {notes}");

    release(rig, "h1", "kube-apiserver.service");
    rig.sh("h1", "systemctl start ssh.service");
    let (ok, report) = s.install();
    assert_all_ok(ok, &report, "re-run after h1's sshd is back");

    // (b) h3's etcd unit differs, so its etcd step restarts it (held).
    hold(rig, "h3", "etcd.service");
    rig.sh("h3", "echo '# edited' >> /etc/systemd/system/etcd.service");
    let veth = format!("{}-h3", rig.id);
    let mut run = s.start_bounded();
    s.wait_during(&mut run, "h3's etcd to be restarting", || {
        starting(rig, "h3", "etcd.service")
    });
    link(&veth, "down");
    let (ok, report) = s.finish(run);
    link(&veth, "up");
    assert!(!ok, "install with h3's link cut succeeded: {report}");
    // Named with its host and step; ssh's keepalive may see the link gone
    // before the command limit does.
    assert_failed_at(&report, "h3", rig.addr("h3"), "etcd");
    // h1 and h2 are as the last run left them (their fingerprints say so).
    for h in ["h1", "h2"] {
        let r = row(&report, h);
        assert_eq!(
            (r["status"].as_str(), r["step"].as_str()),
            (Some("ok"), Some("unchanged")),
            "{r}"
        );
    }
    release(rig, "h3", "etcd.service");
    let (ok, report) = s.install();
    // h3 failed, so it kept no manifest: it does every step again.
    assert_all_ok_at(ok, &report, "re-run after h3's link is back", |h| {
        if h == "h3" {
            "checks"
        } else {
            "unchanged"
        }
    });
}

/// Sets the bridge side of a host's link down or up.
fn link(veth: &str, state: &str) {
    let out = Command::new("ip")
        .args(["link", "set", veth, state])
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip link set {veth} {state}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Where each run is SIGKILLed: what it has reached on h1 by then.
struct KillPoint {
    what: &'static str,
    reached: fn(&Setup, &str) -> bool,
}

const KILL_POINTS: [KillPoint; 3] = [
    KillPoint {
        what: "after preflight, while dpkg installs the OS packages",
        reached: |s, log| log.contains("--- step packages") && dpkg_runs(&s.rig, "h1"),
    },
    KillPoint {
        what: "during the upload of the binaries",
        reached: |_, log| log.contains("--- step binaries"),
    },
    KillPoint {
        what: "while etcd members restart",
        reached: |s, log| log.contains("--- step etcd") && starting_or_up(&s.rig, "etcd.service"),
    },
];

fn dpkg_runs(rig: &Rig, host: &str) -> bool {
    rig.exec(host, "pgrep -x dpkg").status.success()
}

/// Some host's `unit` was (re)started.
fn starting_or_up(rig: &Rig, unit: &str) -> bool {
    HOSTS.iter().any(|h| {
        let out = rig.exec(h, &format!("systemctl is-active {unit}"));
        matches!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "activating" | "active"
        )
    })
}

/// Every file under the host's own layer that only a run in progress has:
/// an upload's temporary name (installer/src/exec/upload.rs:
/// `.ferry-tmp.<pid>`) or the policy-rc.d the package step puts in place
/// while it installs (installer/src/deploy/packages.rs).
fn leftovers(rig: &Rig, host: &str) -> Vec<String> {
    let upper = rig.dir.join(host).join("upper");
    let out = Command::new("find")
        .arg(&upper)
        // Not overlay whiteouts (character devices 0/0): those are deletions.
        .args([
            "(",
            "-name",
            ".ferry-tmp*",
            "-o",
            "-path",
            "*/usr/sbin/policy-rc.d",
            ")",
        ])
        .args(["!", "-type", "c"])
        .output()
        .expect("run find");
    assert!(out.status.success(), "find in {}", upper.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            l.trim_start_matches(&upper.to_string_lossy().into_owned())
                .to_string()
        })
        .collect()
}

/// `ferry install` SIGKILLed at three points, each run going further; the
/// run after them converges, leaves no temporary upload file on any host,
/// and a further run changes nothing.
#[test]
fn an_install_killed_at_several_points_converges_when_run_again() {
    let s = setup("fkill", 51);
    let rig = &s.rig;
    for point in &KILL_POINTS {
        let from = s.log_len("h1");
        let mut run = s.start();
        s.wait_during(&mut run, point.what, || {
            (point.reached)(&s, &s.log_since("h1", from))
        });
        run.kill().expect("SIGKILL ferry install");
        let status = run.wait().unwrap();
        assert!(!status.success(), "{}: {status}", point.what);
        s.end_masters();
        eprintln!("killed {}", point.what);
    }
    let (ok, report) = s.install();
    assert_all_ok(ok, &report, "the run after the killed ones");
    for h in HOSTS {
        assert_eq!(
            leftovers(rig, h),
            Vec::<String>::new(),
            "{h}: files of an unfinished run left"
        );
    }
    let (ok, report) = s.install();
    assert_all_ok_at(ok, &report, "a further run", |_| "unchanged");
    for h in HOSTS {
        let r = row(&report, h);
        assert_eq!(
            (
                r["changed_files"].as_array().map(Vec::len),
                r["restarted_units"].as_array().map(Vec::len)
            ),
            (Some(0), Some(0)),
            "{h}: the run after convergence changed something: {r}"
        );
    }

    // A run killed after it placed a step's files but before it restarted
    // the step's units leaves the step marked pending (written before any
    // file of the step changes): the next run restarts those units although
    // no file differs any more, and clears the mark.
    let marker = "/var/lib/ferry/pending/etcd";
    rig.sh(
        "h1",
        &format!("mkdir -p /var/lib/ferry/pending && : > {marker}"),
    );
    let (ok, report) = s.install();
    // The mark is part of h1's fingerprint: h1 does its steps, the others are left alone.
    assert_all_ok_at(
        ok,
        &report,
        "the run after a kill before the restart",
        |h| {
            if h == "h1" {
                "checks"
            } else {
                "unchanged"
            }
        },
    );
    let restarted = |h: &str| -> Vec<String> {
        row(&report, h)["restarted_units"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u.as_str().unwrap().to_string())
            .collect()
    };
    // The etcd step's units: the member and its snapshot timer.
    assert_eq!(
        restarted("h1"),
        vec![
            "etcd.service".to_string(),
            "ferry-etcd-backup.timer".to_string()
        ],
        "{report}"
    );
    assert!(
        restarted("h2").is_empty() && restarted("h3").is_empty(),
        "{report}"
    );
    assert_eq!(
        rig.sh("h1", &format!("ls {marker} 2>/dev/null || true"))
            .trim(),
        ""
    );
}
