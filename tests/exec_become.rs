//! `ansible_become` against real sudo and sshd in a rig host: a non-root SSH
//! user with passwordless sudo runs commands and places files as root; one
//! whose sudo asks for a password fails naming the host and the user.
//!
//! The rig's hosts overlay this machine's root, which has no sudo: the test
//! fetches Debian's sudo package here (`apt-get download`) and installs it
//! into its own host only (dpkg in the host's overlay).

mod common;

use common::rig::Rig;
use ferry_installer::exec::{
    Executor, HostLog, KnownHostsPolicy, Source, SshDestination, SshExecutor, SshOptions, Upload,
};
use std::path::PathBuf;
use std::sync::Arc;

/// Debian's sudo package, as this machine's apt finds it.
fn sudo_deb() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("apt-get")
        .args(["download", "-q", "sudo"])
        .current_dir(dir.path())
        .output()
        .expect("run apt-get");
    assert!(
        out.status.success(),
        "apt-get download sudo failed (run apt-get update first): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("apt-get download left no .deb");
    std::fs::read(deb).unwrap()
}

/// A login `user` reachable with the rig's key, with `sudoers` as its rule.
fn add_user(rig: &Rig, user: &str, sudoers: &str) {
    rig.sh(
        "h1",
        &format!(
            "useradd -m -s /bin/sh {user} && usermod -p '*' {user} \
             && install -d -m 700 -o {user} -g {user} /home/{user}/.ssh \
             && install -m 600 -o {user} -g {user} /root/.ssh/authorized_keys /home/{user}/.ssh/ \
             && echo '{sudoers}' > /etc/sudoers.d/{user} && chmod 440 /etc/sudoers.d/{user} \
             && visudo -c -q"
        ),
    );
}

async fn connect(rig: &Rig, user: &str, become_root: bool) -> Result<Executor, String> {
    let dest = SshDestination {
        host: rig.addr("h1").to_string(),
        port: None,
        user: Some(user.into()),
        identity_file: Some(rig.key()),
        become_root,
    };
    let opts = SshOptions {
        config_file: Some(rig.ssh_config()),
        known_hosts: KnownHostsPolicy::Strict,
        control_dir: None,
        connect_timeout: None,
    };
    SshExecutor::connect("h1", &dest, &opts, HostLog::discard())
        .await
        .map(Executor::Ssh)
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sudo_user_with_become_runs_and_writes_as_root() {
    let deb = sudo_deb();
    let rig = Rig::up(1, "fbec", 48);
    rig.put("h1", "/root/sudo.deb", &deb);
    rig.sh(
        "h1",
        "dpkg -i /root/sudo.deb >/dev/null && rm /root/sudo.deb",
    );
    add_user(&rig, "deploy", "deploy ALL=(ALL) NOPASSWD: ALL");
    add_user(&rig, "asker", "asker ALL=(ALL) ALL");

    // Without become the user is itself; with it every command is root's.
    let plain = connect(&rig, "deploy", false)
        .await
        .expect("connect deploy");
    assert_eq!(plain.check("id -un").await.unwrap(), "deploy\n");
    let h1 = connect(&rig, "deploy", true)
        .await
        .expect("connect deploy with become");
    assert_eq!(
        h1.check("id -un; echo \"it's $((6 * 7))\"").await.unwrap(),
        "root\nit's 42\n"
    );
    let out = h1.run("echo to-stderr >&2; exit 4").await.unwrap();
    assert_eq!((out.code, out.stderr.as_str()), (4, "to-stderr\n"));

    // Uploads go the same way: an in-memory secret (batch on stdin) and a
    // streamed binary land root-owned with their modes; a second put reads
    // them back as root and changes nothing.
    let ups = vec![
        Upload {
            path: "/etc/ferry-become/key.pem".into(),
            mode: 0o600,
            source: Source::Bytes(Arc::from(&b"secret\n"[..])),
            sha256: None,
        },
        Upload {
            path: "/opt/ferry-become/bin/etcd".into(),
            mode: 0o755,
            source: Source::File(PathBuf::from("/usr/bin/etcd")),
            sha256: None,
        },
    ];
    assert_eq!(h1.put_files(&ups).await.unwrap().len(), 2);
    let local = std::process::Command::new("sha256sum")
        .arg("/usr/bin/etcd")
        .output()
        .unwrap();
    let etcd_hash = String::from_utf8_lossy(&local.stdout)[..64].to_string();
    assert_eq!(
        rig.sh(
            "h1",
            "stat -c '%U %G %a' /etc/ferry-become/key.pem /opt/ferry-become/bin/etcd; \
             cat /etc/ferry-become/key.pem; sha256sum < /opt/ferry-become/bin/etcd; \
             find /etc/ferry-become /opt/ferry-become -name '.ferry-tmp*'"
        ),
        format!("root root 600\nroot root 755\nsecret\n{etcd_hash}  -\n")
    );
    assert!(h1.put_files(&ups).await.unwrap().is_empty());

    // A sudo that asks for a password: the connection fails, naming both.
    let err = connect(&rig, "asker", true)
        .await
        .err()
        .expect("a sudo that wants a password was accepted");
    assert!(
        err.starts_with("h1: ")
            && err.contains("passwordless sudo (NOPASSWD) is required for asker")
            && err.contains("a password is required"),
        "{err}"
    );
    // A user outside sudoers altogether fails the same way.
    rig.sh("h1", "rm /etc/sudoers.d/asker");
    let err = connect(&rig, "asker", true)
        .await
        .err()
        .expect("a user without sudo rights was accepted");
    assert!(
        err.contains("passwordless sudo (NOPASSWD) is required for asker"),
        "{err}"
    );
}
