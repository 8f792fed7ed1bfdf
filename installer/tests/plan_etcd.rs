//! A real 3-member etcd cluster (Debian's etcd, standing in for the bundle's
//! etcd binary) started with the rendered certificates and the rendered
//! etcd.service flags, checked with `etcdctl endpoint health` over TLS using
//! the rendered healthcheck client certificate.
//!
//! The members listen on three loopback addresses no other process uses
//! (derived from this process's pid, see [`member_ips`]), on fixed ports:
//! nobody else binds those addresses, so the ports cannot be taken between
//! planning and etcd's start, and nothing is bound and released to "find"
//! them. The ports sit below the kernel's ephemeral range, so no outgoing
//! connection holds them either. The only changes to the rendered command line: the
//! executable is /usr/bin/etcd, host paths point into the test's tree of
//! rendered files, and the data/WAL dirs are per-member temp dirs.

mod common;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Members(Vec<Child>);

impl Drop for Members {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// etcd's client and peer ports on the members' own addresses.
const CLIENT_PORT: u16 = 2379;
const PEER_PORT: u16 = 2380;

/// Three loopback addresses of this process alone: pid `p` (< 2^22, the
/// kernel's limit) gets the addresses numbered 3p, 3p+1, 3p+2 counted from
/// 127.1.0.1, skipping .0 and .255 in the last octet. Distinct pids get
/// disjoint addresses, none in 127.0.0.0/16 (where 127.0.0.1 is).
fn member_ips(pid: u32) -> Vec<Ipv4Addr> {
    (0..3)
        .map(|i| {
            let k = 3 * pid + i;
            let (a, rest) = (1 + k / (256 * 254), k % (256 * 254));
            Ipv4Addr::new(127, a as u8, (rest / 254) as u8, (1 + rest % 254) as u8)
        })
        .collect()
}

#[test]
fn member_addresses_are_disjoint_between_processes() {
    let max = (1 << 22) - 1;
    for pid in [1, 253, 254, 21674, 21675, 65535, max] {
        let (mine, next) = (member_ips(pid), member_ips(pid + 1));
        assert!(
            mine.iter().all(|ip| !next.contains(ip)),
            "{pid}: {mine:?} {next:?}"
        );
        for ip in mine.iter().chain(&next) {
            let o = ip.octets();
            assert!(o[1] >= 1 && o[3] != 0 && o[3] != 255, "{pid}: {ip}");
        }
    }
    assert_eq!(member_ips(0)[0], Ipv4Addr::new(127, 1, 0, 1));
    assert_eq!(member_ips(84)[1], Ipv4Addr::new(127, 1, 0, 254));
    assert_eq!(member_ips(84)[2], Ipv4Addr::new(127, 1, 1, 1));
    assert_eq!(member_ips(max)[2], Ipv4Addr::new(127, 194, 131, 6));
}

/// The ExecStart command of a unit, continuation lines joined, split into words.
fn exec_start(unit: &str) -> Vec<String> {
    let joined = unit.replace("\\\n", " ");
    let line = joined
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    line.split_whitespace().map(str::to_string).collect()
}

#[test]
fn rendered_etcd_cluster_starts_and_is_healthy_over_tls() {
    // Loopback addresses of our own so parallel tests and other runs do not collide.
    let ips = member_ips(std::process::id());
    let (client_port, peer_port) = (CLIENT_PORT, PEER_PORT);
    let hosts = format!(
        "[etcd]\n{0} NODE_NAME=etcd-a\n{1} NODE_NAME=etcd-b\n{2} NODE_NAME=etcd-c\n\n[kube_master]\n{0}\n{1}\n{2}\n",
        ips[0], ips[1], ips[2]
    );
    let config = format!(
        "CLUSTER_NAME: etcd-test\nETCD_CLIENT_PORT: {client_port}\nETCD_PEER_PORT: {peer_port}\nETCD_DATA_DIR: /var/lib/etcd\nETCD_WAL_DIR: /var/lib/etcd/wal\n"
    );
    let inputs = common::Inputs::new(&hosts, &config);
    let plan = inputs.plan().expect("plan");
    let tree = inputs.dir.path().join("tree");
    common::write_trees(&plan, &tree);

    let mut members = Members(Vec::new());
    for h in plan.hosts.iter() {
        let root = tree.join(&h.name);
        let unit = common::text(&plan, &h.name, "/etc/systemd/system/etcd.service");
        let words = exec_start(&unit);
        assert_eq!(words[0], "/opt/kube/bin/etcd");
        let data = inputs.dir.path().join(format!("data-{}", h.name));
        let mut args = Vec::new();
        for w in &words[1..] {
            let (flag, value) = w.split_once('=').expect("--flag=value");
            let value = match flag {
                "--data-dir" => data.display().to_string(),
                "--wal-dir" => data.join("wal").display().to_string(),
                _ if value.starts_with('/') => {
                    let p: PathBuf = root.join(value.trim_start_matches('/'));
                    assert!(
                        p.is_file(),
                        "{flag} names {value}, which the plan puts on {}",
                        h.name
                    );
                    p.display().to_string()
                }
                _ => value.to_string(),
            };
            args.push(format!("{flag}={value}"));
        }
        let log =
            std::fs::File::create(inputs.dir.path().join(format!("{}.log", h.name))).expect("log");
        let child = Command::new("/usr/bin/etcd")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        members.0.push(child);
    }

    // etcdctl as an operator on the first member would run it, with the rendered client cert.
    let root = tree.join(&plan.hosts[0].name);
    let pki = |f: &str| {
        root.join("etc/kubernetes/ssl/etcd")
            .join(f)
            .display()
            .to_string()
    };
    let endpoints = plan.etcd_endpoints.join(",");
    assert_eq!(plan.etcd_endpoints.len(), 3);
    let deadline = Instant::now() + Duration::from_secs(60);
    let health = loop {
        let out = Command::new("/usr/bin/etcdctl")
            .env("ETCDCTL_API", "3")
            .args([
                "--endpoints",
                &endpoints,
                "--cacert",
                &pki("ca.pem"),
                "--cert",
                &pki("healthcheck-client.pem"),
                "--key",
                &pki("healthcheck-client-key.pem"),
                "--command-timeout=5s",
                "endpoint",
                "health",
            ])
            .output()
            .expect("etcdctl");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            break text;
        }
        for (i, c) in members.0.iter_mut().enumerate() {
            if let Ok(Some(status)) = c.try_wait() {
                let log = std::fs::read_to_string(
                    inputs
                        .dir
                        .path()
                        .join(format!("{}.log", plan.hosts[i].name)),
                )
                .unwrap_or_default();
                panic!(
                    "etcd member {} exited ({status}):\n{log}",
                    plan.hosts[i].name
                );
            }
        }
        assert!(
            Instant::now() < deadline,
            "etcd never became healthy: {text}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    for e in &plan.etcd_endpoints {
        assert!(health.contains(&format!("{e} is healthy")), "{health}");
    }

    // A client without a certificate is refused: client-cert-auth is on.
    let refused = Command::new("/usr/bin/etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &plan.etcd_endpoints[0],
            "--cacert",
            &pki("ca.pem"),
            "--command-timeout=3s",
            "endpoint",
            "health",
        ])
        .output()
        .expect("etcdctl");
    assert!(
        !refused.status.success(),
        "etcd must require a client certificate"
    );

    // The cluster has exactly the three rendered members.
    let list = Command::new("/usr/bin/etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &endpoints,
            "--cacert",
            &pki("ca.pem"),
            "--cert",
            &pki("healthcheck-client.pem"),
            "--key",
            &pki("healthcheck-client-key.pem"),
            "member",
            "list",
        ])
        .output()
        .expect("etcdctl");
    let list = String::from_utf8_lossy(&list.stdout);
    for name in ["etcd-a", "etcd-b", "etcd-c"] {
        assert!(list.contains(name), "{list}");
    }
    // ETCD_WAL_DIR is honoured: each member's WAL lives in its own directory.
    for h in &plan.hosts {
        let wal = inputs
            .dir
            .path()
            .join(format!("data-{}", h.name))
            .join("wal");
        let n = std::fs::read_dir(&wal).map(|d| d.count()).unwrap_or(0);
        assert!(n > 0, "{} has WAL files", wal.display());
    }
}
