//! The rendered configs checked by the stock tools: `haproxy -c`,
//! `keepalived -t`, `systemd-analyze verify` (with stand-in executables on
//! the binary paths: small shell scripts, since the kube-* binaries cannot be
//! had here), and containerd's own config parser (`containerd config dump`).

mod common;
use ferry_installer::plan::render::access::APISERVER_CHECK_DIR;
use ferry_installer::plan::{ClusterPlan, Role};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// `text` with the health-check credentials the plan places on `host`
/// written under `root` and the config pointing there, so `haproxy -c`
/// loads the planned CA and client certificate.
fn with_check_credentials(plan: &ClusterPlan, host: &str, text: &str, root: &Path) -> String {
    let dir = root.join(host).join("apiserver-check");
    for f in ["ca.pem", "client.pem"] {
        let planned = common::text(plan, host, &format!("{APISERVER_CHECK_DIR}/{f}"));
        write(&dir.join(f), &planned);
    }
    assert!(
        text.contains(&format!("crt {APISERVER_CHECK_DIR}/client.pem")),
        "{host}: the health check presents no client certificate: {text}"
    );
    text.replace(APISERVER_CHECK_DIR, &dir.display().to_string())
}

#[test]
fn every_node_local_balancer_config_is_accepted_by_haproxy() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = common::guide_plan(&tmp.path().join("cluster"));
    let nodes: Vec<_> = plan.hosts_with(Role::Node).collect();
    assert_eq!(nodes.len(), 9, "masters and workers");
    for n in nodes {
        let text = common::text(&plan, &n.name, "/etc/ferry/kube-lb/haproxy.cfg");
        assert!(text.contains("bind 127.0.0.1:6444"), "{text}");
        for m in ["10.10.0.11:6443", "10.10.0.12:6443", "10.10.0.13:6443"] {
            assert!(
                text.contains(&format!("{m} check")),
                "{}: backend {m}: {text}",
                n.name
            );
        }
        assert!(
            ferry_installer::deploy::preflight::ports_for(&plan, n).contains(&6444),
            "{}: preflight checks that the balancer's port is free",
            n.name
        );
        let path = tmp.path().join(format!("{}-kube-lb.cfg", n.name));
        write(
            &path,
            &with_check_credentials(&plan, &n.name, &text, tmp.path()),
        );
        let (ok, out) = run(Command::new("haproxy").arg("-c").arg("-f").arg(&path));
        assert!(ok, "haproxy -c rejected {}: {out}", path.display());
    }
    for lb in plan.hosts_with(Role::ExLb) {
        assert!(
            lb.file("/etc/ferry/kube-lb/haproxy.cfg").is_none(),
            "{} runs no kubelet",
            lb.name
        );
    }
}

#[test]
fn haproxy_and_keepalived_accept_their_configs() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = common::guide_plan(&tmp.path().join("cluster"));
    let lbs: Vec<_> = plan.hosts_with(Role::ExLb).collect();
    assert_eq!(lbs.len(), 2);
    let mut states = Vec::new();
    for lb in lbs {
        let ha = tmp.path().join(format!("{}-haproxy.cfg", lb.name));
        let text = common::text(&plan, &lb.name, "/etc/haproxy/haproxy.cfg");
        assert!(text.contains("bind 10.10.0.10:6443"), "{text}");
        for m in ["10.10.0.11:6443", "10.10.0.12:6443", "10.10.0.13:6443"] {
            assert!(text.contains(m), "backend {m}: {text}");
        }
        assert!(text.contains("maxconn 50000"), "{text}");
        let limits = common::text(
            &plan,
            &lb.name,
            "/etc/systemd/system/haproxy.service.d/ferry-limits.conf",
        );
        assert!(limits.contains("\nLimitNOFILE=101024\n"), "{limits}");
        write(
            &ha,
            &with_check_credentials(&plan, &lb.name, &text, tmp.path()),
        );
        let (ok, out) = run(Command::new("haproxy").arg("-c").arg("-f").arg(&ha));
        assert!(ok, "haproxy -c rejected {}: {out}", ha.display());

        let ka = tmp.path().join(format!("{}-keepalived.conf", lb.name));
        let text = common::text(&plan, &lb.name, "/etc/keepalived/keepalived.conf");
        write(&ka, &text);
        let (ok, out) = run(Command::new("keepalived").arg("-t").arg("-f").arg(&ka));
        assert!(ok, "keepalived -t rejected {}: {out}", ka.display());
        assert!(
            text.contains("10.10.0.10") && text.contains("interface eth0"),
            "{text}"
        );
        states.push(
            text.lines()
                .find(|l| l.trim().starts_with("state "))
                .unwrap()
                .trim()
                .to_string(),
        );
    }
    assert_eq!(
        states,
        ["state MASTER", "state BACKUP"],
        "first [ex_lb] host holds the VIP when LB_ROLE is unset"
    );

    // The checks do check: a broken keepalived config is refused.
    let bad = tmp.path().join("bad-keepalived.conf");
    write(
        &bad,
        &common::text(&plan, "10.10.0.21", "/etc/keepalived/keepalived.conf")
            .replace("virtual_router_id", "virtual_router_id 999 #"),
    );
    assert!(!run(Command::new("keepalived").arg("-t").arg("-f").arg(&bad)).0);
}

/// The guide's example with bin_dir and RUNTIME_BIN_DIR moved into `root` so stand-ins can sit there.
fn plan_with_bins_in(root: &Path) -> (ClusterPlan, common::Inputs) {
    let f = common::fixtures();
    let hosts = std::fs::read_to_string(f.join("hosts")).unwrap()
        + &format!("bin_dir={}/bin\n", root.display());
    let config = std::fs::read_to_string(f.join("config.yml"))
        .unwrap()
        .replace(
            "RUNTIME_BIN_DIR: \"/usr/bin\"",
            &format!("RUNTIME_BIN_DIR: \"{}/runtime\"", root.display()),
        );
    let inputs = common::Inputs::new(&hosts, &config);
    let plan = inputs.plan().expect("plan");
    (plan, inputs)
}

#[test]
fn systemd_accepts_every_unit() {
    let tmp = tempfile::tempdir().unwrap();
    let (plan, _inputs) = plan_with_bins_in(tmp.path());
    let mut checked = 0;
    for h in &plan.hosts {
        let dir = tmp.path().join("units").join(&h.name);
        let mut units = Vec::new();
        for f in h.files.iter().filter(|f| {
            f.path
                .extension()
                .is_some_and(|e| e == "service" || e == "timer")
        }) {
            let text = common::text(&plan, &h.name, &f.path.display().to_string());
            // Stand-ins for the executables the plan puts on the host (bundle binaries
            // and the containerd archive's members).
            for exe in ferry_installer::plan::closure::exec_paths(&text) {
                let p = Path::new(&exe);
                if p.starts_with(tmp.path()) && !p.exists() {
                    write(p, "#!/bin/sh\n# stand-in for the bundle's binary\nexit 0\n");
                    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
                }
            }
            let unit = dir.join(f.path.file_name().unwrap());
            write(&unit, &text);
            units.push(unit);
        }
        let (ok, out) = run(Command::new("systemd-analyze")
            .arg("verify")
            .arg("--man=no")
            .args(&units));
        assert!(ok, "systemd-analyze verify on {}: {out}", h.name);
        // Warnings (unknown keys, bad values) count as failures too.
        let ours: Vec<&str> = out
            .lines()
            .filter(|l| {
                l.contains(dir.to_str().unwrap())
                    || l.contains(".service:")
                    || l.contains(".timer:")
            })
            .collect();
        assert!(
            ours.is_empty(),
            "systemd-analyze complained about {}: {out}",
            h.name
        );
        checked += units.len();
    }
    // 3 masters x 12 units (with the etcd snapshot's service and timer), 6
    // nodes x 5 (both with the local balancer), 2 LBs x 1
    assert_eq!(checked, 3 * 12 + 6 * 5 + 2, "units checked");

    // And it does check: a unit whose binary is missing fails.
    let broken = tmp.path().join("broken/kubelet.service");
    let text = common::text(&plan, "worker-a-1", "/etc/systemd/system/kubelet.service").replace(
        &format!("{}/bin/kubelet", tmp.path().display()),
        "/nonexistent/kubelet",
    );
    write(&broken, &text);
    assert!(
        !run(Command::new("systemd-analyze")
            .arg("verify")
            .arg("--man=no")
            .arg(&broken))
        .0
    );
}

#[test]
fn containerd_parses_its_config_and_hosts_toml() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = common::guide_plan(&tmp.path().join("cluster"));
    let cfg = tmp.path().join("config.toml");
    let text = common::text(&plan, "worker-a-1", "/etc/containerd/config.toml");
    write(&cfg, &text);
    let (ok, out) = run(Command::new("containerd")
        .arg("--config")
        .arg(&cfg)
        .args(["config", "dump"]));
    assert!(ok, "containerd rejected the config: {out}");
    for want in [
        "sandbox_image = \"registry.k8s.io/pause:3.9\"",
        "max_concurrent_downloads = 6",
        "config_path = \"/etc/containerd/certs.d\"",
        "SystemdCgroup = true",
        "address = \"127.0.0.1:1338\"",
    ] {
        assert!(out.contains(want), "containerd's view lacks {want}:\n{out}");
    }
    // hosts.toml is TOML with one [host] per mirror, the cluster CA, pull + resolve;
    // without FERRY_UPSTREAM_FALLBACK its `server` (containerd's last resort) is
    // ferry's first mirror, never the upstream registry.
    for reg in ["registry.k8s.io", "quay.io"] {
        let doc = hosts_toml(&plan, reg);
        let first = format!("https://{}", plan.registry_mirrors[0]);
        assert_eq!(doc["server"].as_str(), Some(first.as_str()));
        assert_eq!(doc["ca"].as_str(), Some("/etc/kubernetes/ssl/ca.pem"));
        let hosts = doc["host"].as_table().expect("host table");
        assert!(!hosts.contains_key(&format!("https://{reg}")), "{hosts:?}");
        for m in &plan.registry_mirrors {
            let h = &hosts[&format!("https://{m}")];
            assert_eq!(h["ca"].as_str(), Some("/etc/kubernetes/ssl/ca.pem"));
            let caps: Vec<&str> = h["capabilities"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert_eq!(caps, ["pull", "resolve"]);
        }
    }
}

fn hosts_toml(plan: &ClusterPlan, reg: &str) -> toml::Table {
    let t = common::text(
        plan,
        "worker-a-1",
        &format!("/etc/containerd/certs.d/{reg}/hosts.toml"),
    );
    t.parse()
        .unwrap_or_else(|e| panic!("{reg}/hosts.toml: {e}\n{t}"))
}

#[test]
fn upstream_fallback_is_an_explicit_choice() {
    let config = std::fs::read_to_string(common::fixtures().join("config.yml")).unwrap()
        + "FERRY_UPSTREAM_FALLBACK: true\n";
    let hosts = std::fs::read_to_string(common::fixtures().join("hosts")).unwrap();
    let inputs = common::Inputs::new(&hosts, &config);
    let plan = inputs.plan().expect("plans with the fallback on");
    for reg in ["registry.k8s.io", "quay.io"] {
        let doc = hosts_toml(&plan, reg);
        let upstream = format!("https://{reg}");
        assert_eq!(doc["server"].as_str(), Some(upstream.as_str()));
        // The upstream is checked with the system's CAs, not the cluster CA.
        assert!(doc.get("ca").is_none(), "{doc:?}");
        let hosts = doc["host"].as_table().expect("host table");
        assert_eq!(hosts.len(), plan.registry_mirrors.len() + 2, "{hosts:?}");
    }
}
