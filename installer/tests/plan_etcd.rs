//! A real 3-member etcd cluster (Debian's etcd, standing in for the bundle's
//! etcd binary) started with the rendered certificates and the rendered
//! etcd.service flags, checked with `etcdctl endpoint health` over TLS using
//! the rendered healthcheck client certificate.
//!
//! The members listen on distinct loopback addresses 127.X.Y.{11,12,13} with
//! ports picked free. The only changes to the rendered command line: the
//! executable is /usr/bin/etcd, host paths point into the test's tree of
//! rendered files, and the data/WAL dirs are per-member temp dirs.

mod common;
use std::net::{Ipv4Addr, TcpListener};
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

fn free_port(ip: Ipv4Addr) -> u16 {
    TcpListener::bind((ip, 0))
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
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
    // A loopback /24 of our own so parallel tests and other runs do not collide.
    let pid = std::process::id();
    let (a, b) = (((pid >> 8) % 200 + 20) as u8, (pid % 250) as u8);
    let ips: Vec<Ipv4Addr> = [11u8, 12, 13]
        .iter()
        .map(|d| Ipv4Addr::new(127, a, b, *d))
        .collect();
    let client_port = free_port(ips[0]);
    let peer_port = free_port(ips[0]);
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
