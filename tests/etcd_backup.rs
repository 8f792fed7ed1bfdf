//! `ferry etcd backup` on a 4-host bare rig (3 masters that are etcd
//! members, 1 node): 1,000 keys are written, the backup is taken on a
//! member that does not lead, copied to the deploy host with its sha256,
//! accepted by `etcdctl snapshot status`, restored into a throwaway etcd on
//! this machine's loopback with every key and value as written; older
//! backups beyond --keep are removed. Then keys are overwritten and deleted
//! and `ferry etcd restore` brings back every key and value as backed up,
//! with every member healthy and the control plane running again. The
//! etcd restore drill restores the newest backup into a throwaway etcd on
//! a member's host and reports a match, leaving nothing behind. Each
//! member's snapshot timer (ETCD_BACKUP_SCHEDULE) is armed; its service
//! takes snapshots etcd reads and keeps ETCD_BACKUP_KEEP of them. `ferry
//! certs check` agrees with `openssl x509 -enddate` on every certificate of
//! every host, and names a host copy that differs from the cluster dir's;
//! `ferry certs renew` replaces the install's 10-day leaves with one-year
//! ones, restarting one etcd member and one apiserver at a time. `ferry
//! drill master-failure` fails the VIP's holder (two of the masters are
//! `[ex_lb]`) and brings it back. Last, `ferry destroy --yes --purge-data`
//! leaves every host with the files it had before the install.
//!
//! Real parts: etcd and etcdctl (the members, snapshot save, status,
//! restore), containerd, systemd, sshd. STAND-INS: kube-apiserver,
//! kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl and
//! helm are the python script tests/fixtures/standins/kube-standin.py (not
//! Kubernetes).

mod common;

use common::cluster::{cluster_args, etcdctl, inventory_with_lb, ok, Probe, Watcher};
use common::hostfiles::{file_list, left_behind};
use common::rig::Rig;
use common::upstream::signed_amd64_bundle;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const OCTET: u8 = 56;
const MASTERS: [&str; 3] = ["h1", "h2", "h3"];
/// `[ex_lb]` on two masters: haproxy and keepalived holding the VIP.
const LBS: [&str; 2] = ["h1", "h2"];

/// The test hosts are containers without CAP_SYS_RESOURCE (see install_e2e).
const CONFIG: &str = "CLUSTER_NAME: \"bak\"\nK8S_VER: \"1.29.6\"\nETCD_BACKUP_SCHEDULE: \"*-*-* 03:30:00\"\nETCD_BACKUP_KEEP: 2\nCA_EXPIRY: \"43800h\"\nCERT_EXPIRY: \"240h\"\nCONTAINER_RUNTIME: \"containerd\"\nPROXY_MODE: \"ipvs\"\nCLUSTER_CIDR: \"10.244.0.0/16\"\nSERVICE_CIDR: \"10.96.0.0/16\"\nCONTAINERD_RESTRICT_OOM_SCORE_ADJ: true\nVIP: \"198.18.56.250\"\nVIP_IF: \"eth0\"\nHOST_SUBNET_PREFIX: 24\nEX_LB_MAXCONN: 4000\n";

struct Setup {
    rig: Rig,
    dir: tempfile::TempDir,
}

impl Setup {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ferry(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(args)
            .args(cluster_args(self.dir.path(), &self.rig))
            .output()
            .expect("run ferry")
    }

    fn backup(&self, extra: &[&str]) -> Value {
        let mut args = vec!["etcd", "backup", "--json"];
        args.extend(extra);
        serde_json::from_str(&ok(self.ferry(&args), "ferry etcd backup")).unwrap()
    }

    /// etcdctl on this machine against h1's member, as the cluster dir's
    /// health-check client.
    fn local_etcdctl(&self, endpoint: &str) -> Command {
        let pki = self.path("cluster/pki/etcd");
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .arg(format!("--cacert={}", pki.join("ca.pem").display()))
            .arg(format!(
                "--cert={}",
                pki.join("healthcheck-client.pem").display()
            ))
            .arg(format!(
                "--key={}",
                pki.join("healthcheck-client-key.pem").display()
            ));
        cmd
    }
}

/// Writes /ferry-test/k<i> for i in `keys` (100 puts per transaction),
/// each value naming `tag`.
fn write_keys(s: &Setup, keys: std::ops::Range<usize>, tag: &str) {
    let endpoint = format!("https://{}:2379", s.rig.addr("h1"));
    let keys: Vec<usize> = keys.collect();
    for batch in keys.chunks(100) {
        let mut ops = String::from("\n");
        for i in batch {
            ops += &format!("put /ferry-test/k{i:04} {tag}-{i}-{}\n", i * 7919 % 1000);
        }
        ops += "\n\n";
        let mut child = s
            .local_etcdctl(&endpoint)
            .arg("txn")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ops.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("SUCCESS"),
            "etcdctl txn: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// sha256 over every key and value under /ferry-test/ at `endpoint`, and the count.
fn keys_digest(cmd: &mut Command) -> (usize, String) {
    let out = cmd
        .args(["get", "--prefix", "/ferry-test/", "-w", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let kvs = v["kvs"].as_array().cloned().unwrap_or_default();
    let mut h = Sha256::new();
    for kv in &kvs {
        h.update(kv["key"].as_str().unwrap());
        h.update(kv["value"].as_str().unwrap());
    }
    (kvs.len(), hex::encode(h.finalize()))
}

fn sha256_file(p: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
}

/// Restores `snapshot` into a throwaway etcd on this machine's loopback and
/// returns what [`keys_digest`] says of it.
fn restored_digest(snapshot: &Path, work: &Path) -> (usize, String) {
    let data = work.join("restored");
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "restore"])
        .arg(snapshot)
        .arg(format!("--data-dir={}", data.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = work.join("restored-etcd.log");
    let (mut etcd, port) = common::ports::start_on_free_port("a throwaway etcd", &log, |port| {
        let url = format!("http://127.0.0.1:{port}");
        Command::new("etcd")
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls={url}"))
            .arg(format!("--advertise-client-urls={url}"))
            // Its peer port is never used (one member); next to the client's.
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{}", port + 1))
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::options().append(true).open(&log).unwrap())
            .spawn()
            .unwrap()
    });
    let url = format!("http://127.0.0.1:{port}");
    let digest = common::cluster::wait_for("the restored etcd to answer", 30, || {
        let probe = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={url}"))
            .args(["endpoint", "health"])
            .output()
            .unwrap();
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={url}"));
        probe.status.success().then(|| keys_digest(&mut cmd))
    });
    let _ = etcd.kill();
    let _ = etcd.wait();
    digest
}

#[test]
fn a_backup_is_taken_off_the_leader_copied_whole_and_restored_over_changed_data() {
    eprintln!("NOTE: kube-* binaries, kubectl and helm in this test are python stand-ins (tests/fixtures/standins), not Kubernetes");
    let rig = Rig::up_bare(4, "fbak", OCTET);
    let dir = tempfile::tempdir().unwrap();
    signed_amd64_bundle(dir.path(), "bak");
    let s = Setup { rig, dir };
    let rig = &s.rig;
    // haproxy on a master listens on the VIP at a port of its own.
    let mut hosts = inventory_with_lb(rig, &MASTERS, &MASTERS, &["h4"], &LBS);
    for h in LBS {
        let a = rig.addr(h);
        hosts = hosts.replace(
            &format!("\n{a}\n[all:vars]"),
            &format!("\n{a} EX_APISERVER_PORT=8443\n[all:vars]"),
        );
        hosts = hosts.replace(
            &format!("[ex_lb]\n{a}\n"),
            &format!("[ex_lb]\n{a} EX_APISERVER_PORT=8443\n"),
        );
    }
    assert_eq!(
        hosts.matches("EX_APISERVER_PORT=8443").count(),
        2,
        "{hosts}"
    );
    std::fs::write(s.path("hosts"), hosts).unwrap();
    std::fs::write(s.path("config.yml"), CONFIG).unwrap();
    let before_install: BTreeMap<&str, BTreeSet<String>> = ["h1", "h2", "h3", "h4"]
        .into_iter()
        .map(|h| (h, file_list(rig, h)))
        .collect();
    let install = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("install")
        .arg("--bundle")
        .arg(s.path("bak.tar.zst"))
        .arg("--trust")
        .arg(s.path("key.pub"))
        .args(cluster_args(s.dir.path(), rig))
        .output()
        .unwrap();
    ok(install, "ferry install");

    write_keys(&s, 0..1000, "value");
    let endpoint = format!("https://{}:2379", rig.addr("h2"));
    let written = keys_digest(&mut s.local_etcdctl(&endpoint));
    assert_eq!(written.0, 1000);

    let first = s.backup(&["--keep", "2"]);
    let path = PathBuf::from(first["path"].as_str().unwrap());
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        path.starts_with(s.path("cluster/backups")) && name.starts_with("bak-rev"),
        "{first}"
    );
    // Taken on a member that does not lead (all three are healthy).
    let member = first["member"].as_str().unwrap();
    let status = etcdctl(rig, member, "endpoint status");
    assert!(
        status.contains(", false, false,"),
        "{member} leads: {status}"
    );
    // Whole: the sha256 the member's file had, and etcd reads it.
    assert_eq!(sha256_file(&path), first["sha256"].as_str().unwrap());
    let sums = std::fs::read_to_string(format!("{}.sha256", path.display())).unwrap();
    assert_eq!(
        sums,
        format!("{}  {name}\n", first["sha256"].as_str().unwrap())
    );
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "status", "-w", "json"])
        .arg(&path)
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["revision"], first["revision"], "{status}");
    assert_eq!(status["totalKey"], first["keys"], "{status}");
    assert!(first["keys"].as_u64().unwrap() >= 1000, "{first}");
    assert!(
        name.contains(&format!("-rev{}-", first["revision"])),
        "{name}"
    );
    // No copy stays on the member.
    let left = rig.sh(member, "ls /var/lib/ferry/snapshots | wc -l");
    assert_eq!(left.trim(), "0", "{member} kept its snapshot");

    // Every key and value, as written, in an etcd restored from it.
    assert_eq!(restored_digest(&path, s.dir.path()), written);

    // Two more: the oldest goes, with its .sha256.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let second = s.backup(&["--keep", "2"]);
    assert!(second["pruned"].as_array().unwrap().is_empty(), "{second}");
    std::thread::sleep(std::time::Duration::from_secs(1));
    let third = s.backup(&["--keep", "2"]);
    assert_eq!(third["pruned"][0].as_str().unwrap(), path.to_str().unwrap());
    let mut left: Vec<String> = std::fs::read_dir(s.path("cluster/backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let mut want: Vec<String> = [&second, &third]
        .iter()
        .flat_map(|b| {
            let n = Path::new(b["path"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            [n.clone(), format!("{n}.sha256")]
        })
        .collect();
    want.sort();
    assert_eq!(left, want);

    scheduled_snapshots(&s);
    restore_over_changed_data(&s, Path::new(third["path"].as_str().unwrap()), &written);
    drill_with_the_newest_backup(&s, &third);
    renew_the_short_lived_certificates(&s);
    certs_check_agrees_with_openssl(&s);
    master_failure_drill(&s);

    // A destination that cannot be a directory: named, nothing taken.
    std::fs::write(s.path("not-a-dir"), "x").unwrap();
    let to = s.path("not-a-dir").display().to_string();
    let refused = s.ferry(&["etcd", "backup", "--to", &to]);
    let text = common::cluster::text(&refused);
    assert!(!refused.status.success() && text.contains(&to), "{text}");

    destroy_leaves_the_hosts_as_they_were(&s, &before_install);
}

/// `ferry destroy` changes nothing without --yes; with --yes --purge-data
/// no ferry unit or file is left on any host (compared with its file list
/// from before the install, less what the OS packages own), and the
/// cluster dir keeps its PKI and backups but no longer says a cluster runs.
fn destroy_leaves_the_hosts_as_they_were(s: &Setup, before: &BTreeMap<&str, BTreeSet<String>>) {
    let rig = &s.rig;
    let refused = s.ferry(&["destroy", "--purge-data"]);
    let text = common::cluster::text(&refused);
    assert!(
        !refused.status.success() && text.contains("nothing was changed") && text.contains("--yes"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("h4: ") && l.contains(" files ")),
        "{text}"
    );
    assert!(
        etcdctl(rig, "h1", "endpoint health").contains("is healthy"),
        "the refused destroy stopped etcd"
    );

    let out = ok(
        s.ferry(&["destroy", "--yes", "--purge-data"]),
        "ferry destroy",
    );
    eprintln!("ferry destroy: {out}");
    for h in ["h1", "h2", "h3", "h4"] {
        let units = rig.sh(
            h,
            "systemctl list-unit-files --no-legend 'etcd*' 'kube*' 'containerd*' 'ferry*' | wc -l",
        );
        assert_eq!(units.trim(), "0", "{h} still has ferry's units");
        let running = rig.sh(
            h,
            "pgrep -c '^(etcd|containerd.*|kube-.*|kubelet)$' || true",
        );
        assert_eq!(running.trim(), "0", "{h} still runs ferry's processes");
        let left = left_behind(rig, h, &before[h]);
        assert!(left.is_empty(), "{h}: ferry left {left:?}");
    }
    let cluster = s.path("cluster");
    assert!(cluster.join("pki/ca.pem").exists() && cluster.join("backups").is_dir());
    assert!(
        !cluster.join("installed.json").exists(),
        "the cluster dir still says a cluster runs"
    );
    assert!(!cluster.join("placed").join("h1.json").exists());
}

/// Overwrites and deletes keys, then restores `snapshot`: refused while
/// etcd answers unless --yes, refused for a damaged copy; with --yes every
/// key and value is as at snapshot time and the cluster runs again.
fn restore_over_changed_data(s: &Setup, snapshot: &Path, written: &(usize, String)) {
    let rig = &s.rig;
    // Every member has the bundle's etcdutl beside etcd, which the restore
    // runs (here the fixture's STAND-IN, wrapping etcd 3.4's etcdctl).
    for h in MASTERS {
        let utl = rig.sh(
            h,
            "u=$(systemctl cat etcd.service | sed -n 's/^ExecStart=\\([^ ]*\\).*/\\1/p'); head -n 2 \"$(dirname \"$u\")/etcdutl\"",
        );
        assert!(utl.contains("STAND-IN for etcdutl"), "{h}: {utl}");
    }
    let endpoint = format!("https://{}:2379", rig.addr("h3"));
    write_keys(s, 0..100, "changed");
    let del = s
        .local_etcdctl(&endpoint)
        .args(["del", "--prefix", "/ferry-test/k09"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&del.stdout).trim(), "100");
    let changed = keys_digest(&mut s.local_etcdctl(&endpoint));
    assert_eq!(changed.0, 900);
    let snap = snapshot.display().to_string();

    let refused = s.ferry(&["etcd", "restore", &snap]);
    let text = common::cluster::text(&refused);
    assert!(
        !refused.status.success()
            && text.contains("etcd answers on")
            && text.contains("--yes")
            && text.contains("nothing was changed"),
        "{text}"
    );
    assert_eq!(keys_digest(&mut s.local_etcdctl(&endpoint)), changed);

    // A damaged copy (one byte flipped, its .sha256 beside it): refused.
    let damaged = s.path("damaged.db");
    let mut bytes = std::fs::read(snapshot).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&damaged, bytes).unwrap();
    std::fs::copy(
        format!("{snap}.sha256"),
        format!("{}.sha256", damaged.display()),
    )
    .unwrap();
    let bad = s.ferry(&["etcd", "restore", damaged.to_str().unwrap(), "--yes"]);
    let text = common::cluster::text(&bad);
    assert!(
        !bad.status.success() && text.contains("damaged") && text.contains("nothing was changed"),
        "{text}"
    );
    assert_eq!(keys_digest(&mut s.local_etcdctl(&endpoint)), changed);

    let done: Value = serde_json::from_str(&ok(
        s.ferry(&["etcd", "restore", &snap, "--yes", "--json"]),
        "ferry etcd restore",
    ))
    .unwrap();
    assert_eq!(done["members"].as_array().unwrap().len(), 3, "{done}");
    // Every key and value as at snapshot time, read from every member.
    for h in MASTERS {
        let at = format!("https://{}:2379", rig.addr(h));
        assert_eq!(&keys_digest(&mut s.local_etcdctl(&at)), written, "{h}");
    }
    let health = etcdctl(rig, "h1", "endpoint health --cluster");
    assert_eq!(health.matches("is healthy").count(), 3, "{health}");
    for h in MASTERS {
        let active = rig.sh(
            h,
            "systemctl is-active etcd kube-apiserver kube-controller-manager kube-scheduler",
        );
        assert_eq!(
            active.split_whitespace().collect::<Vec<_>>(),
            ["active"; 4],
            "{h}"
        );
    }
    // The old data dirs are kept aside, not deleted.
    for kept in done["kept_aside"].as_array().unwrap() {
        let (host, dir) = kept.as_str().unwrap().split_once(':').unwrap();
        assert!(
            rig.exec(host, &format!("test -d '{dir}/member'"))
                .status
                .success(),
            "{kept}"
        );
    }
}

/// `ferry drill etcd-restore` picks the newest backup, reports that the
/// throwaway etcd restored from it matches it, and leaves nothing behind.
fn drill_with_the_newest_backup(s: &Setup, newest: &Value) {
    let rig = &s.rig;
    let report: Value = serde_json::from_str(&ok(
        s.ferry(&["drill", "etcd-restore", "--json"]),
        "ferry drill etcd-restore",
    ))
    .unwrap();
    eprintln!("etcd-restore drill report: {report:#}");
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(report["snapshot"], newest["path"], "{report}");
    assert_eq!(report["snapshot_revision"], newest["revision"], "{report}");
    assert_eq!(report["restored_revision"], newest["revision"], "{report}");
    assert_eq!(report["snapshot_keys"], newest["keys"], "{report}");
    // Restored after the restore above: the cluster still has the revision.
    assert_eq!(report["hash_compared"], "equal", "{report}");
    assert!(report["live_keys"].as_u64().unwrap() >= 1000, "{report}");
    let written: Value =
        serde_json::from_slice(&std::fs::read(report["report"].as_str().unwrap()).unwrap())
            .unwrap();
    assert_eq!(written, report);
    assert!(
        report["report"]
            .as_str()
            .unwrap()
            .starts_with(s.path("cluster/drills").to_str().unwrap()),
        "{report}"
    );
    let host = report["host"].as_str().unwrap();
    let left = rig.sh(host, "ls -A /var/lib/ferry/drills 2>/dev/null | wc -l");
    assert_eq!(left.trim(), "0", "{host} kept the drill's directory");
    let health = etcdctl(rig, "h1", "endpoint health --cluster");
    assert_eq!(health.matches("is healthy").count(), 3, "{health}");
    // A damaged snapshot is no drill: refused, naming it.
    let damaged = s.path("damaged.db");
    let bad = s.ferry(&[
        "drill",
        "etcd-restore",
        "--snapshot",
        damaged.to_str().unwrap(),
    ]);
    let text = common::cluster::text(&bad);
    assert!(
        !bad.status.success() && text.contains("damaged.db") && text.contains("damaged"),
        "{text}"
    );
}

/// Every member's timer is armed for ETCD_BACKUP_SCHEDULE; its service,
/// started three times, leaves the newest two snapshots, each read by
/// `snapshot status` and matching its `.sha256`.
fn scheduled_snapshots(s: &Setup) {
    let rig = &s.rig;
    for h in MASTERS {
        let timer = rig.sh(
            h,
            "systemctl is-enabled ferry-etcd-backup.timer; systemctl is-active ferry-etcd-backup.timer; systemctl show -p TimersCalendar --value ferry-etcd-backup.timer",
        );
        assert!(
            timer.starts_with("enabled\nactive\n") && timer.contains("*-*-* 03:30:00"),
            "{h}: {timer}"
        );
    }
    for _ in 0..3 {
        rig.sh("h2", "systemctl start ferry-etcd-backup.service");
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let dir = "/var/lib/ferry/snapshots/scheduled";
    let files = rig.sh("h2", &format!("ls {dir}"));
    let dbs: Vec<&str> = files.lines().filter(|f| f.ends_with(".db")).collect();
    assert_eq!(dbs.len(), 2, "{files}");
    assert_eq!(files.lines().count(), 4, "each with its .sha256: {files}");
    for db in dbs {
        assert!(db.starts_with("bak-rev"), "{db}");
        let status = rig.sh(
            "h2",
            &format!("cd {dir} && sha256sum -c {db}.sha256 && ETCDCTL_API=3 /opt/kube/bin/etcdctl snapshot status {db} -w json"),
        );
        assert!(
            status.contains(": OK") && status.contains("\"totalKey\""),
            "{status}"
        );
    }
}

/// When `unit` on `host` last stopped (left active) and was active again,
/// in CLOCK_MONOTONIC microseconds: the rig's hosts share this machine's
/// kernel clock, so the hosts' windows compare.
fn restart_window(rig: &Rig, host: &str, unit: &str) -> (u64, u64) {
    let out = rig.sh(
        host,
        &format!("systemctl show -p ActiveExitTimestampMonotonic -p ActiveEnterTimestampMonotonic {unit}"),
    );
    let get = |key: &str| -> u64 {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{host} {unit}: {out}"))
    };
    let (down, up) = (
        get("ActiveExitTimestampMonotonic"),
        get("ActiveEnterTimestampMonotonic"),
    );
    assert!(
        down > 0 && up > down,
        "{host} {unit} did not restart: {out}"
    );
    (down, up)
}

/// No two hosts' restart windows overlap.
fn one_at_a_time(unit: &str, mut windows: Vec<(&str, (u64, u64))>) {
    windows.sort_by_key(|(_, (down, _))| *down);
    for pair in windows.windows(2) {
        let ((a, (_, a_up)), (b, (b_down, _))) = (pair[0], pair[1]);
        assert!(
            a_up < b_down,
            "{unit}: {b} stopped {}ms before {a} was active again",
            (a_up - b_down) / 1000
        );
    }
}

/// `ferry certs check --json`: its rows, and whether it passed.
fn certs_check(s: &Setup) -> (Vec<Value>, bool) {
    let out = s.ferry(&["certs", "check", "--json"]);
    let rows: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", common::cluster::text(&out)));
    (rows.as_array().unwrap().clone(), out.status.success())
}

/// Whether a row is a CA's certificate (it signed itself).
fn is_ca(row: &Value) -> bool {
    row["subject"] == row["issuer"]
}

/// CERT_EXPIRY is 240h at install: every leaf is flagged for renewal.
/// `ferry certs renew` with CERT_EXPIRY 8760h issues them again and rolls
/// them out: every etcd member and apiserver restarted, never two at once
/// (by systemd's own timestamps);
/// the CAs are kept, and so is the PKI as it was.
fn renew_the_short_lived_certificates(s: &Setup) {
    let rig = &s.rig;
    let (rows, passed) = certs_check(s);
    assert!(!passed, "10-day certificates pass certs check: {rows:?}");
    let flagged = |rows: &[Value]| {
        rows.iter()
            .filter(|r| r["days_left"].as_i64().unwrap() < 30)
            .count()
    };
    assert_eq!(
        flagged(&rows),
        rows.iter().filter(|r| !is_ca(r)).count(),
        "{rows:?}"
    );
    let config = std::fs::read_to_string(s.path("config.yml")).unwrap();
    std::fs::write(
        s.path("config.yml"),
        config.replace("CERT_EXPIRY: \"240h\"", "CERT_EXPIRY: \"8760h\""),
    )
    .unwrap();
    let started = |unit: &str, host: &str| {
        rig.sh(
            host,
            &format!("systemctl show -p InvocationID --value {unit}"),
        )
    };
    let before: Vec<(String, String)> = MASTERS
        .iter()
        .map(|h| (started("kube-apiserver", h), started("etcd", h)))
        .collect();
    let cluster_dir = s.path("cluster");
    let out = s.ferry(&["certs", "renew"]);
    let text = ok(out, "ferry certs renew");
    eprintln!("ferry certs renew:\n{text}");
    // Not two at once: each stopped only once the one before was active
    // again. (Readiness seen from outside is no measure here: restarting
    // etcd's leader makes every apiserver unready for its election.)
    for unit in ["etcd", "kube-apiserver"] {
        one_at_a_time(
            unit,
            MASTERS.map(|h| (h, restart_window(rig, h, unit))).to_vec(),
        );
    }
    for (h, (api, etcd)) in MASTERS.iter().zip(&before) {
        assert_ne!(
            &started("kube-apiserver", h),
            api,
            "{h}'s apiserver kept its certificate"
        );
        assert_ne!(&started("etcd", h), etcd, "{h}'s etcd kept its certificate");
    }
    // The table it ends with passes: every leaf has a year again.
    assert!(text.contains("EXPIRES"), "{text}");
    let (rows, passed) = certs_check(s);
    assert!(passed && flagged(&rows) == 0, "{rows:?}");
    let kept: Vec<PathBuf> = std::fs::read_dir(&cluster_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("pki.before-renew-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    for f in ["ca.pem", "ca-key.pem", "etcd/ca.pem"] {
        assert_eq!(
            std::fs::read(kept[0].join(f)).unwrap(),
            std::fs::read(cluster_dir.join("pki").join(f)).unwrap(),
            "{f}: the CA is kept"
        );
    }
    assert_ne!(
        std::fs::read(kept[0].join("apiserver.pem")).unwrap(),
        std::fs::read(cluster_dir.join("pki/apiserver.pem")).unwrap()
    );
}

/// `ferry certs check` reads every certificate of every host: each row's
/// expiry is what openssl says of the host's copy (leaves have a year left
/// since the renew, CAs 5 years); a copy that differs from the cluster dir's is named
/// and fails the command.
fn certs_check_agrees_with_openssl(s: &Setup) {
    // One year since the renew.
    let leaf_days = 364..=365;
    let rig = &s.rig;
    let (rows, _) = certs_check(s);
    // Every host has certificates (h4 is a node: kubelet, kube-proxy, the
    // local balancer's check, containerd's CA).
    for h in ["h1", "h2", "h3", "h4"] {
        assert!(
            rows.iter().filter(|r| r["host"] == h).count() >= 4,
            "{h}: {rows:?}"
        );
    }
    let tmp = s.path("cert.pem");
    for r in &rows {
        let (host, path) = (r["host"].as_str().unwrap(), r["path"].as_str().unwrap());
        assert!(
            r["problem"].is_null() && r["matches_cluster_dir"] == true,
            "{r}"
        );
        let days = r["days_left"].as_i64().unwrap();
        if is_ca(r) {
            assert!((1824..=1825).contains(&days), "CA_EXPIRY 43800h: {r}");
        } else {
            assert!(leaf_days.contains(&days), "{r}");
        }
        let pem = if path.ends_with(".pem") {
            rig.sh(host, &format!("cat '{path}'"))
        } else {
            rig.sh(
                host,
                &format!("sed -n 's/^ *client-certificate-data: *//p' '{path}' | base64 -d"),
            )
        };
        std::fs::write(&tmp, pem).unwrap();
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-enddate", "-dateopt", "iso_8601", "-in"])
            .arg(&tmp)
            .output()
            .unwrap();
        let openssl = String::from_utf8_lossy(&out.stdout);
        let want = openssl
            .trim()
            .strip_prefix("notAfter=")
            .unwrap_or("?")
            .replace(' ', "T");
        assert_eq!(r["not_after"].as_str().unwrap(), want, "{host}:{path}");
    }
    // A host copy that is not the cluster dir's: named, and the command fails.
    let path = "/etc/ferry/apiserver-check/ca.pem";
    rig.sh(
        "h4",
        &format!("cp {path} /root/ca.saved && sed -n 's/^ *client-certificate-data: *//p' /etc/kubernetes/kube-proxy.kubeconfig | base64 -d > {path}"),
    );
    let out = s.ferry(&["certs", "check"]);
    let text = common::cluster::text(&out);
    assert!(
        !out.status.success()
            && text
                .lines()
                .any(|l| l.starts_with("h4") && l.contains(path) && l.contains("DIFFERS"))
            && text.contains("need attention"),
        "{text}"
    );
    rig.sh("h4", &format!("cp /root/ca.saved {path}"));
}

/// `ferry drill master-failure`: refused on a cluster with a member down
/// and for a host that is not a master; on the healthy cluster it fails the
/// VIP's holder (watched from here: its member and apiserver go down, never
/// a second member), reports the VIP moved, quorum kept and the API
/// answering through the VIP and h4's local balancer, and leaves every
/// member healthy and the VIP held.
fn master_failure_drill(s: &Setup) {
    let rig = &s.rig;
    let refused = s.ferry(&["drill", "master-failure", "--host", "h4"]);
    let text = common::cluster::text(&refused);
    assert!(
        !refused.status.success() && text.contains("h4 is not a master"),
        "{text}"
    );
    rig.sh("h3", "systemctl stop etcd");
    let refused = s.ferry(&["drill", "master-failure"]);
    let text = common::cluster::text(&refused);
    rig.sh("h3", "systemctl start etcd");
    assert!(
        !refused.status.success() && text.contains("h3") && text.contains("nothing was stopped"),
        "{text}"
    );
    for h in ["h1", "h2"] {
        let active = rig.sh(h, "systemctl is-active etcd kube-apiserver keepalived");
        assert_eq!(
            active.trim(),
            "active\nactive\nactive",
            "{h}: the refused drill stopped something"
        );
    }
    common::cluster::wait_for("h3's member to be healthy again", 60, || {
        etcdctl(rig, "h3", "endpoint health")
            .contains("is healthy")
            .then_some(())
    });

    let holder = common::cluster::wait_for("a VIP holder", 30, || {
        LBS.into_iter().find(|h| {
            rig.sh(h, "ip -4 -o addr show dev eth0")
                .contains(" 198.18.56.250/")
        })
    });
    let cluster_dir = s.path("cluster");
    let mut probes = vec![Probe::readyz(
        "vip",
        "https://198.18.56.250:8443",
        &cluster_dir,
    )];
    for h in MASTERS {
        let addr = rig.addr(h).to_string();
        probes.push(Probe::readyz(
            &format!("apiserver-{h}"),
            &format!("https://{addr}:6443"),
            &cluster_dir,
        ));
        probes.push(Probe::etcd_health(
            &format!("etcd-{h}"),
            &addr,
            &cluster_dir,
        ));
    }
    let watcher = Watcher::start(probes);
    let out = s.ferry(&["drill", "master-failure", "--json"]);
    let timed = watcher.finish_timed();
    let samples: Vec<Vec<String>> = timed.iter().map(|(_, d)| d.clone()).collect();
    let report: Value = serde_json::from_str(&ok(out, "ferry drill master-failure")).unwrap();
    eprintln!("master-failure drill report: {report:#}");
    assert_eq!(
        report["host"], holder,
        "the VIP's holder is failed by default"
    );
    assert_eq!(report["held_vip"], true, "{report}");
    let other = LBS.into_iter().find(|h| *h != holder).unwrap();
    assert_eq!(report["vip_holder_after"], other, "{report}");
    for key in [
        "vip_moved_seconds",
        "etcd_quorum_seconds",
        "api_via_vip_seconds",
        "recovered_seconds",
    ] {
        assert!(report[key].as_f64().is_some(), "{key}: {report}");
    }
    // Every other host with a local balancer (h4 and the masters that stay).
    let balancers = report["local_balancers"].as_array().unwrap();
    let mut asked: Vec<&str> = balancers
        .iter()
        .map(|b| b["host"].as_str().unwrap())
        .collect();
    asked.sort();
    let mut want: Vec<&str> = ["h1", "h2", "h3", "h4"]
        .into_iter()
        .filter(|h| *h != holder)
        .collect();
    want.sort();
    assert_eq!(asked, want, "{report}");
    assert!(
        balancers.iter().all(|b| b["seconds"].as_f64().is_some()),
        "{report}"
    );
    assert!(
        report["passed"] == true && report["problems"].as_array().unwrap().is_empty(),
        "{report}"
    );
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(report["report"].as_str().unwrap()).unwrap())
            .unwrap();
    assert_eq!(written, report);
    // Seen from here: the holder's member and apiserver went down.
    let down = |name: &str| {
        samples
            .iter()
            .filter(|d| d.iter().any(|n| n == name))
            .count()
    };
    assert!(
        down(&format!("etcd-{holder}")) > 0,
        "the drill did not stop {holder}'s etcd"
    );
    assert!(
        down(&format!("apiserver-{holder}")) > 0,
        "the drill did not stop {holder}'s apiserver"
    );
    // The others lose their leader when the holder led, and elect another
    // within a few election timeouts: a quorum kept, not one lost.
    let others: Vec<String> = MASTERS
        .iter()
        .filter(|h| **h != holder)
        .map(|h| format!("etcd-{h}"))
        .collect();
    let both_down: Vec<(std::time::Duration, Vec<String>)> = timed
        .iter()
        .map(|(at, down)| {
            let both = others.iter().all(|o| down.contains(o));
            (
                *at,
                if both {
                    vec!["quorum".to_string()]
                } else {
                    vec![]
                },
            )
        })
        .collect();
    let leaderless = common::cluster::longest_outage(&both_down, "quorum");
    eprintln!("measured: the other etcd members answered no health for {leaderless:?} at most");
    assert!(
        leaderless < std::time::Duration::from_secs(10),
        "the other members had no quorum for {leaderless:?}"
    );
    assert!(
        report["etcd_quorum_seconds"].as_f64().unwrap() < 10.0,
        "{report}"
    );
    // And after it: every member healthy, the VIP held, the holder's units active.
    for h in MASTERS {
        assert!(
            etcdctl(rig, h, "endpoint health").contains("is healthy"),
            "{h}"
        );
    }
    let active = rig.sh(holder, "systemctl is-active etcd kube-apiserver keepalived");
    assert_eq!(active.trim(), "active\nactive\nactive");
    common::cluster::wait_for("the VIP to be held", 30, || {
        LBS.into_iter()
            .any(|h| {
                rig.sh(h, "ip -4 -o addr show dev eth0")
                    .contains(" 198.18.56.250/")
            })
            .then_some(())
    });
}
