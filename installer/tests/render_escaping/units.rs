//! The systemd units rendered with hostile strings: every command line,
//! environment assignment and description reads, by systemd's rules, as
//! the same words as with plain markers (no argument added, split or
//! expanded), and systemd-analyze verify accepts every unit.

use crate::words::{command, environment, logical_lines, text, values};
use crate::{renderer, HOSTILE, HOSTILE_LINE};
use ferry_installer::plan::render::TEMPLATES;
use serde_json::{json, Value as Json};
use std::path::Path;

/// Where [`HOSTILE_LINE`] goes.
const A: &str = "MARKA";
/// The last part of the binaries' directory (commands refuse `$`, quotes and
/// backslashes).
const B: &str = "MARKB";
/// What [`B`] becomes: a directory that exists, holding the binaries.
const HOSTILE_DIR: &str = "b i%n ;x";

/// A context naming every value of every unit; `bin` is the binaries' parent.
fn ctx(bin: &Path) -> Json {
    let bin_dir = format!("{}/{B}", bin.display());
    json!({
        "cluster": {"name": A, "bin_dir": bin_dir, "ca_dir": A, "apiserver_port": 6443,
            "etcd_endpoints": [A, A], "cluster_cidr": A, "service_cidr": A, "node_port_range": A,
            "proxy_mode": A, "node_cidr_len": 24, "dns_domain": A},
        "host": {"name": A, "ip": A},
        "etcd": {"name": A, "data_dir": "/var/lib/etcd", "wal_dir": A, "client_port": 2379,
            "peer_port": 2380, "initial_cluster": A, "initial_cluster_state": A, "auto_compaction_retention": A, "snapshot_count": A},
        "apiserver": {"admission_plugins": [A, A], "max_requests_inflight": 400,
            "max_mutating_requests_inflight": 200, "request_timeout": A, "event_ttl": A,
            "profiling": false, "audit_log_max_age": 30, "audit_log_max_backup": 10,
            "audit_log_max_size": 100},
        "kubelet": {"root_dir": "/var/lib/kubelet"},
        "registration": {"labels": A, "taints": A},
        "containerd": {"bin_dir": bin_dir},
        "registry": {"port": 5000},
        "lb": {"config": A, "maxconn": 2000, "nofile": 5024},
        "backup": {"schedule": A, "keep": 7, "dir": A},
    })
}

fn replaced(v: &Json) -> Json {
    let r = |s: &str| s.replace(A, HOSTILE_LINE).replace(B, HOSTILE_DIR);
    match v {
        Json::String(s) => Json::String(r(s)),
        Json::Array(a) => Json::Array(a.iter().map(replaced).collect()),
        Json::Object(o) => Json::Object(o.iter().map(|(k, v)| (k.clone(), replaced(v))).collect()),
        other => other.clone(),
    }
}

/// What systemd reads from a unit: its commands, environment and description.
fn reading(unit: &str) -> Result<Vec<Vec<String>>, String> {
    let lines = logical_lines(unit);
    let mut out = Vec::new();
    for key in ["ExecStartPre", "ExecStart", "ExecReload"] {
        for v in values(&lines, key) {
            out.push(command(v)?);
        }
    }
    for v in values(&lines, "Environment") {
        out.push(environment(v)?);
    }
    for v in values(&lines, "Description") {
        out.push(vec![text(v)]);
    }
    Ok(out)
}

fn unit_templates() -> impl Iterator<Item = &'static str> {
    TEMPLATES
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| n.starts_with("systemd/"))
}

#[test]
fn hostile_strings_stay_one_word_in_every_unit() {
    let r = renderer();
    let tmp = tempfile::tempdir().expect("tempdir");
    let plain_ctx = ctx(tmp.path());
    for name in unit_templates() {
        let plain = r.render(name, &plain_ctx).expect("renders with markers");
        let hostile = r
            .render(name, &replaced(&plain_ctx))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let want: Vec<Vec<String>> = reading(&plain)
            .unwrap_or_else(|e| panic!("{name} with markers: {e}"))
            .into_iter()
            .map(|ws| {
                ws.iter()
                    .map(|w| w.replace(A, HOSTILE_LINE).replace(B, HOSTILE_DIR))
                    .collect()
            })
            .collect();
        let got = reading(&hostile).unwrap_or_else(|e| panic!("{name}: {e}\n{hostile}"));
        assert_eq!(
            got, want,
            "{name} reads differently with hostile values:\n{hostile}"
        );
    }
}

#[test]
fn etcd_arguments_are_written_as_systemd_words() {
    let r = renderer();
    let tmp = tempfile::tempdir().expect("tempdir");
    let unit = r
        .render("systemd/etcd.service", &replaced(&ctx(tmp.path())))
        .expect("renders");
    let bin = format!("{}/{HOSTILE_DIR}/etcd", tmp.path().display());
    // Written out by hand from systemd.syntax(7): one quoted word each.
    let lines = [
        format!("ExecStart=\"{}\" \\", bin.replace('%', "%%")),
        r#"  "--name=q\"'x $$(touch /tmp/x) %%n $${HOME} \\ \"] [x] = 1 # --flag" \"#.to_string(),
        r#"  "--auto-compaction-retention=q\"'x $$(touch /tmp/x) %%n $${HOME} \\ \"] [x] = 1 # --flag" \"#.to_string(),
        r#"Description=etcd member q"'x $(touch /tmp/x) %%n ${HOME} \ "] [x] = 1 # --flag of q"'x $(touch /tmp/x) %%n ${HOME} \ "] [x] = 1 # --flag"#.to_string(),
    ];
    for l in &lines {
        assert!(unit.lines().any(|u| u == l), "no line {l}\nin:\n{unit}");
    }
    let exec = logical_lines(&unit);
    let words = command(values(&exec, "ExecStart")[0]).expect("words");
    assert_eq!(words[0], bin);
    assert_eq!(words[1], format!("--name={HOSTILE_LINE}"));
    assert_eq!(words.len(), 25, "{words:#?}");
}

#[test]
fn unit_values_that_cannot_be_one_line_are_refused() {
    let r = renderer();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut c = replaced(&ctx(tmp.path()));
    c["etcd"]["name"] = json!(HOSTILE);
    let err = r
        .render("systemd/etcd.service", &c)
        .expect_err("a newline is refused");
    assert!(format!("{err}").contains("$(touch /tmp/x)"), "{err}");
    let mut c = replaced(&ctx(tmp.path()));
    c["cluster"]["bin_dir"] = json!("opt/bin");
    let err = r
        .render("systemd/kubelet.service", &c)
        .expect_err("a relative command");
    assert!(format!("{err}").contains("opt/bin/kubelet"), "{err}");
    let mut c = replaced(&ctx(tmp.path()));
    c["kubelet"]["root_dir"] = json!("/var/lib/kubelet %n");
    let err = r
        .render("systemd/kubelet.service", &c)
        .expect_err("WorkingDirectory");
    assert!(format!("{err}").contains("/var/lib/kubelet %n"), "{err}");
}

/// The units as systemd itself loads them (systemd-analyze verify), with
/// their binaries present under the hostile directory.
#[test]
fn systemd_accepts_every_hostile_unit() {
    let r = renderer();
    let tmp = tempfile::tempdir().expect("tempdir");
    let bin = tmp.path().join(HOSTILE_DIR);
    std::fs::create_dir_all(&bin).expect("mkdir");
    let units = tmp.path().join("units");
    std::fs::create_dir_all(&units).expect("mkdir");
    let c = replaced(&ctx(tmp.path()));
    let mut paths = Vec::new();
    for name in unit_templates().filter(|n| n.ends_with(".service")) {
        let text = r.render(name, &c).expect("renders");
        let exe = &command(values(&logical_lines(&text), "ExecStart")[0]).expect("words")[0];
        if exe.starts_with(bin.to_str().expect("utf-8")) {
            std::fs::write(exe, "#!/bin/sh\n").expect("binary");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let path = units.join(name.trim_start_matches("systemd/"));
        std::fs::write(&path, text).expect("unit");
        paths.push(path);
    }
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&paths)
        .output()
        .expect("systemd-analyze (package systemd) runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        out.status
    );
}
