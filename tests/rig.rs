//! The test rig itself: hosts boot systemd, answer SSH with the generated
//! key, reach each other over the bridge, keep apt-enabled services off, keep
//! the machine's kernel settings out of reach, and leave nothing behind.

mod common;

use common::rig::Rig;
use std::path::Path;
use std::process::Command;

#[test]
fn rig_boots_hosts_and_tears_down_completely() {
    let rig = Rig::up(2, "frt", 40);
    let (id, dir) = (rig.id.clone(), rig.dir.clone());

    for (host, addr) in &rig.hosts {
        let out = rig.ssh(
            host,
            "hostname; systemctl is-system-running --wait; ip -4 -o addr show eth0",
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{host}: ssh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.starts_with(&format!("{host}\n")),
            "{host}: hostname: {text}"
        );
        assert!(
            text.contains("running"),
            "{host}: systemd not running: {text}"
        );
        assert!(
            text.contains(&format!("{addr}/24")),
            "{host}: address: {text}"
        );
    }
    // Host to host over the bridge, and no default route.
    let peer = rig.addr("h2").to_string();
    rig.sh(
        "h1",
        &format!("exec 3<>/dev/tcp/{peer}/22 && head -c 7 <&3 | grep -q SSH-2.0"),
    );
    assert_eq!(rig.sh("h1", "ip route show default"), "");
    // apt enabled these on the machine; the hosts keep them off.
    for unit in [
        "containerd",
        "etcd",
        "haproxy",
        "keepalived",
        "docker-registry",
    ] {
        let out = rig.exec("h1", &format!("systemctl is-active {unit}"));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "inactive",
            "{unit} runs in h1"
        );
    }
    // The installer can still enable a unit of the same name.
    rig.sh("h1", "systemctl enable containerd && systemctl start containerd && systemctl is-active containerd");
    // Per-host containerd state on a real filesystem, not on the overlay root.
    let fs = rig.sh("h1", "stat -f -c %T /var/lib/containerd");
    assert_ne!(
        fs.trim(),
        "overlayfs",
        "containerd state sits on the overlay root"
    );
    // net.* is per host; the machine's vm.* is out of reach.
    rig.sh("h1", "sysctl -w net.ipv4.ip_forward=1");
    assert!(!rig.exec("h1", "sysctl -w vm.swappiness=1").status.success());
    // A stopped sshd refuses SSH; exec still reaches the host.
    rig.sh("h2", "systemctl stop ssh");
    assert!(!rig.ssh("h2", "true").status.success());
    rig.sh("h2", "systemctl start ssh");
    assert!(rig.ssh("h2", "true").status.success());

    drop(rig);
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&netns.stdout).contains(&format!("{id}-h")),
        "netns left"
    );
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains(&format!("{id}-")),
        "links left"
    );
    assert!(
        !Path::new(&dir).exists(),
        "state dir {} left",
        dir.display()
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(dir.to_str().unwrap()), "mounts left");
}

/// Bare hosts: their root is the cached minimal Debian 12 (mmdebstrap from
/// Debian's packages), so they hold exactly its packages and none of what
/// this machine has installed; they still boot systemd and answer SSH.
#[test]
fn bare_hosts_inherit_nothing_from_this_machine() {
    let rig = Rig::up_bare(1, "fbare", 46);
    let out = rig.ssh(
        "h1",
        "systemctl is-system-running --wait; systemctl --failed --no-legend; . /etc/os-release; echo \"$ID $VERSION_ID\"",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text, "running\ndebian 12\n", "booted with no failed unit");

    // Exactly the cached root's packages, and far fewer than this machine's.
    let packages = |admindir: &str| {
        let out = Command::new("dpkg-query")
            .args(["--admindir", admindir, "-W", "-f", "${Package}\n"])
            .output()
            .expect("dpkg-query");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let on_host = rig.sh("h1", "dpkg-query -W -f '${Package}\\n'");
    let root = std::env::var("FERRY_RIG_BARE_ROOT")
        .unwrap_or_else(|_| "/var/cache/ferry-rig/debian-12-minimal".into());
    assert_eq!(on_host, packages(&format!("{root}/var/lib/dpkg")));
    let machine = packages("/var/lib/dpkg");
    assert!(
        on_host.lines().count() * 2 < machine.lines().count(),
        "{on_host}"
    );
    for base in ["systemd", "openssh-server"] {
        assert!(on_host.lines().any(|p| p == base), "{base} is in the root");
    }

    // What the installer needs from a host is not there unless it brings it:
    // this machine has every one of these, the bare host none.
    for tool in [
        "/usr/sbin/haproxy",
        "/usr/sbin/keepalived",
        "/usr/bin/containerd",
        "/usr/sbin/runc",
        "/usr/bin/etcd",
        "/usr/bin/python3",
        "/usr/bin/curl",
    ] {
        assert!(Path::new(tool).exists(), "this machine has {tool}");
        let absent = rig.exec("h1", &format!("test ! -e {tool}"));
        assert!(absent.status.success(), "bare h1 has {tool}");
    }
}

/// Preflight's facts script runs on a bare host (Debian's minimal base, no
/// `ss`): it finds who listens on a port the cluster needs.
#[test]
fn preflight_facts_name_a_port_holder_on_a_bare_host() {
    let rig = Rig::up_bare(1, "fbpf", 47);
    assert!(
        !rig.exec("h1", "command -v ss").status.success(),
        "the minimal base has no ss"
    );
    rig.sh(
        "h1",
        "systemd-run --unit=squatter /usr/sbin/sshd -D -p 2379 && sleep 1 && systemctl is-active squatter.service",
    );
    let script = ferry_installer::deploy::preflight::facts_script(&[2379, 2380], &[], &[]);
    let out = rig.sh("h1", &script);
    let ports: Vec<&str> = out.lines().filter(|l| l.starts_with("port=")).collect();
    assert_eq!(ports, ["port=2379 squatter.service"], "{out}");
    for key in ["kernel=", "cgroup=", "systemd_version=", "os=debian 12"] {
        assert!(out.lines().any(|l| l.starts_with(key)), "{key} in {out}");
    }
}
