//! Host executors against real sshd in rig hosts: commands, hash-checked
//! streamed uploads, known_hosts policy, ansible_port/user/key, jump hosts.

mod common;

use common::rig::Rig;
use ferry_installer::exec::{
    Executor, HostLog, KnownHostsPolicy, LocalExecutor, Source, SshDestination, SshExecutor,
    SshOptions, Upload,
};
use std::path::PathBuf;
use std::sync::Arc;

fn dest(rig: &Rig, host: &str, port: Option<u16>) -> SshDestination {
    SshDestination {
        host: rig.addr(host).to_string(),
        port,
        user: Some("root".into()),
        identity_file: Some(rig.key()),
        become_root: false,
    }
}

fn opts(rig: &Rig, policy: KnownHostsPolicy, config: Option<PathBuf>) -> SshOptions {
    SshOptions {
        config_file: Some(config.unwrap_or_else(|| rig.ssh_config())),
        known_hosts: policy,
        control_dir: None,
        connect_timeout: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ssh_and_local_executors_run_and_place_files() {
    let rig = Rig::up(2, "fex", 41);
    let logdir = tempfile::tempdir().unwrap();
    let log = HostLog::open(&logdir.path().join("h1.log"));
    let ssh = SshExecutor::connect(
        "h1",
        &dest(&rig, "h1", None),
        &opts(&rig, KnownHostsPolicy::Strict, None),
        log,
    )
    .await
    .expect("connect h1");
    let h1 = Executor::Ssh(ssh);

    let out = h1.run("hostname; echo err >&2; exit 3").await.unwrap();
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (3, "h1\n", "err\n")
    );
    assert!(h1.check("false").await.is_err());

    // A big binary is streamed, a small secret is written 0600; a second put changes nothing.
    let big = PathBuf::from("/usr/bin/etcd");
    let ups = vec![
        Upload {
            path: "/opt/ferry-test/bin/etcd".into(),
            mode: 0o755,
            source: Source::File(big.clone()),
            sha256: None,
        },
        Upload {
            path: "/etc/ferry-test/key.pem".into(),
            mode: 0o600,
            source: Source::Bytes(Arc::from(&b"secret\n"[..])),
            sha256: None,
        },
    ];
    assert_eq!(h1.put_files(&ups).await.unwrap().len(), 2);
    let remote = rig.sh("h1", "sha256sum /opt/ferry-test/bin/etcd; stat -c %a /etc/ferry-test/key.pem; ls -a /opt/ferry-test/bin");
    let local = std::process::Command::new("sha256sum")
        .arg(&big)
        .output()
        .unwrap();
    let local_hash = String::from_utf8_lossy(&local.stdout)[..64].to_string();
    assert!(remote.starts_with(&local_hash), "hash differs: {remote}");
    assert!(remote.contains("\n600\n"), "mode: {remote}");
    assert!(!remote.contains(".ferry-tmp"), "temp file left: {remote}");
    assert!(
        h1.put_files(&ups).await.unwrap().is_empty(),
        "unchanged files were rewritten"
    );
    // Content changed on the host -> rewritten; mode changed -> fixed.
    rig.sh(
        "h1",
        "echo tampered > /etc/ferry-test/key.pem; chmod 700 /opt/ferry-test/bin/etcd",
    );
    let changed = h1.put_files(&ups).await.unwrap();
    assert_eq!(changed.len(), 2);
    assert_eq!(
        rig.sh(
            "h1",
            "cat /etc/ferry-test/key.pem; stat -c %a /opt/ferry-test/bin/etcd"
        ),
        "secret\n755\n"
    );
    let logtext = std::fs::read_to_string(logdir.path().join("h1.log")).unwrap();
    assert!(logtext.contains("wrote /etc/ferry-test/key.pem"));
    assert!(!logtext.contains("secret\n"), "file content in the log");

    // Strict known_hosts refuses a host whose key is unknown; accept-new takes it.
    let empty_kh = logdir.path().join("known_hosts");
    std::fs::write(&empty_kh, "").unwrap();
    let cfg = logdir.path().join("ssh_config");
    std::fs::write(
        &cfg,
        format!(
            "Host *\n  UserKnownHostsFile {}\n  IdentitiesOnly yes\n",
            empty_kh.display()
        ),
    )
    .unwrap();
    let strict = SshExecutor::connect(
        "h2",
        &dest(&rig, "h2", None),
        &opts(&rig, KnownHostsPolicy::Strict, Some(cfg.clone())),
        HostLog::discard(),
    )
    .await;
    let err = strict
        .err()
        .expect("strict accepted an unknown host key")
        .to_string();
    assert!(err.contains("h2") && err.contains("known_hosts"), "{err}");
    assert!(
        err.contains("Host key verification failed"),
        "ssh's own words: {err}"
    );
    let accept = SshExecutor::connect(
        "h2",
        &dest(&rig, "h2", None),
        &opts(&rig, KnownHostsPolicy::AcceptNew, Some(cfg)),
        HostLog::discard(),
    )
    .await
    .expect("accept-new");
    assert_eq!(
        Executor::Ssh(accept).check("hostname").await.unwrap(),
        "h2\n"
    );
    assert!(std::fs::read_to_string(&empty_kh)
        .unwrap()
        .contains(rig.addr("h2")));

    // A key the host does not accept: ssh's own words name it.
    let other_key = logdir.path().join("other_key");
    let keygen = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other_key)
        .status()
        .unwrap();
    assert!(keygen.success());
    let mut wrong = dest(&rig, "h2", None);
    wrong.identity_file = Some(other_key);
    let only_that_key = logdir.path().join("only_that_key");
    std::fs::write(
        &only_that_key,
        format!(
            "Host *\n  UserKnownHostsFile {}\n  IdentitiesOnly yes\n",
            rig.known_hosts().display()
        ),
    )
    .unwrap();
    let denied = SshExecutor::connect(
        "h2",
        &wrong,
        &opts(&rig, KnownHostsPolicy::Strict, Some(only_that_key)),
        HostLog::discard(),
    )
    .await
    .err()
    .expect("a key the host does not know was accepted")
    .to_string();
    assert!(denied.contains("Permission denied (publickey"), "{denied}");

    // ansible_port: a second sshd on 2222.
    rig.sh("h2", "/usr/sbin/sshd -p 2222");
    let p = SshExecutor::connect(
        "h2",
        &dest(&rig, "h2", Some(2222)),
        &opts(&rig, KnownHostsPolicy::Strict, None),
        HostLog::discard(),
    )
    .await
    .expect("connect to port 2222");
    let conn = Executor::Ssh(p)
        .check("echo $SSH_CONNECTION")
        .await
        .unwrap();
    assert!(conn.trim().ends_with(" 2222"), "{conn}");

    // Jump host from ssh config: h2 reached through h1.
    let jump_cfg = logdir.path().join("jump_config");
    std::fs::write(
        &jump_cfg,
        format!(
            "Host via-h1\n  HostName {h2}\n  ProxyJump root@{h1}\nHost *\n  User root\n  IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {kh}\n",
            h2 = rig.addr("h2"),
            h1 = rig.addr("h1"),
            key = rig.key().display(),
            kh = rig.known_hosts().display()
        ),
    )
    .unwrap();
    let jd = SshDestination {
        host: "via-h1".into(),
        port: None,
        user: None,
        identity_file: None,
        become_root: false,
    };
    let j = SshExecutor::connect(
        "h2",
        &jd,
        &opts(&rig, KnownHostsPolicy::Strict, Some(jump_cfg)),
        HostLog::discard(),
    )
    .await
    .expect("connect through the jump host");
    let conn = Executor::Ssh(j)
        .check("echo $SSH_CONNECTION")
        .await
        .unwrap();
    assert!(
        conn.starts_with(&format!("{} ", rig.addr("h1"))),
        "not via h1: {conn}"
    );

    // The local executor places files the same way.
    let local = Executor::Local(LocalExecutor::new("deploy", HostLog::discard()));
    let target = logdir.path().join("sub/file.txt");
    let up = vec![Upload {
        path: target.clone(),
        mode: 0o640,
        source: Source::Bytes(Arc::from(&b"x"[..])),
        sha256: None,
    }];
    assert_eq!(local.put_files(&up).await.unwrap(), vec![target.clone()]);
    assert!(local.put_files(&up).await.unwrap().is_empty());
    assert_eq!(std::fs::read(&target).unwrap(), b"x");
}

fn bytes(path: &str, mode: u32, content: &[u8]) -> Upload {
    Upload {
        path: path.into(),
        mode,
        source: Source::Bytes(Arc::from(content)),
        sha256: None,
    }
}

/// Remote writes are whole or absent: a batch that stops midway (a target
/// below a file, a full file system) keeps what it wrote before, leaves its
/// later targets and the failing one as they were, and no temporary file;
/// a written file has all its bytes and its mode.
#[tokio::test(flavor = "multi_thread")]
async fn remote_writes_are_whole_or_absent() {
    let rig = Rig::up(1, "fdur", 49);
    let h1 = Executor::Ssh(
        SshExecutor::connect(
            "h1",
            &dest(&rig, "h1", None),
            &opts(&rig, KnownHostsPolicy::Strict, None),
            HostLog::discard(),
        )
        .await
        .expect("connect h1"),
    );
    rig.sh(
        "h1",
        "mkdir -p /srv/dur /mnt/full && echo file > /srv/dur/blocker && echo old > /srv/dur/old.conf \
         && mount -t tmpfs -o size=64k tmpfs /mnt/full && echo old > /mnt/full/keep.conf",
    );
    let leftovers = || rig.sh("h1", "find /srv/dur /mnt/full -name '.ferry-tmp*'");

    // Stopped at its second file: the first is in place, the third untouched.
    let ups = [
        bytes("/srv/dur/a.conf", 0o644, b"first\n"),
        bytes("/srv/dur/blocker/b.conf", 0o600, b"second\n"),
        bytes("/srv/dur/old.conf", 0o600, b"third\n"),
    ];
    let err = h1.put_files(&ups).await.expect_err("wrote below a file");
    let err = err.to_string();
    assert!(
        err.starts_with("h1: /srv/dur/blocker/b.conf:") && err.contains("cannot create directory"),
        "{err}"
    );
    assert_eq!(
        rig.sh(
            "h1",
            "cat /srv/dur/a.conf /srv/dur/old.conf; stat -c %a /srv/dur/a.conf"
        ),
        "first\nold\n644\n"
    );
    assert_eq!(leftovers(), "");

    // A full file system: neither an in-memory file nor a streamed one
    // replaces the old content, and their partial temporaries are gone.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let err = h1
        .put_files(&[bytes("/mnt/full/keep.conf", 0o600, &big)])
        .await
        .expect_err("200 kB fit in 64 kB")
        .to_string();
    assert!(err.contains("/mnt/full/keep.conf"), "{err}");
    let streamed = Upload {
        path: "/mnt/full/keep.conf".into(),
        mode: 0o755,
        source: Source::File(PathBuf::from("/usr/bin/etcd")),
        sha256: None,
    };
    let err = h1
        .put_files(&[streamed])
        .await
        .expect_err("etcd fit in 64 kB")
        .to_string();
    assert!(
        err.contains("/mnt/full/keep.conf") && err.contains("No space left"),
        "{err}"
    );
    assert_eq!(rig.sh("h1", "cat /mnt/full/keep.conf"), "old\n");
    assert_eq!(leftovers(), "");

    // A written file is complete after the rename: every byte, its mode, root's.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let changed = h1
        .put_files(&[bytes("/srv/dur/big.bin", 0o640, &big)])
        .await
        .unwrap();
    assert_eq!(changed, vec![PathBuf::from("/srv/dur/big.bin")]);
    let want = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&big))
    };
    assert_eq!(
        rig.sh(
            "h1",
            "stat -c '%s %a %U' /srv/dur/big.bin; sha256sum < /srv/dur/big.bin"
        ),
        format!("3000000 640 root\n{want}  -\n")
    );
    assert_eq!(leftovers(), "");

    // ansible_become with root itself needs no sudo (these hosts have none).
    let mut as_root = dest(&rig, "h1", None);
    as_root.become_root = true;
    let root = SshExecutor::connect(
        "h1",
        &as_root,
        &opts(&rig, KnownHostsPolicy::Strict, None),
        HostLog::discard(),
    )
    .await
    .expect("become as root");
    assert_eq!(rig.sh("h1", "command -v sudo || echo none"), "none\n");
    assert_eq!(Executor::Ssh(root).check("id -un").await.unwrap(), "root\n");

    // Closing an executor ends its master connection and removes its socket.
    let control = tempfile::tempdir().unwrap();
    let mut o = opts(&rig, KnownHostsPolicy::Strict, None);
    o.control_dir = Some(control.path().to_path_buf());
    let ssh = SshExecutor::connect("h1", &dest(&rig, "h1", None), &o, HostLog::discard())
        .await
        .expect("connect h1");
    let masters = || {
        let mark = control.path().to_string_lossy().into_owned();
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
            .filter(|c| String::from_utf8_lossy(c).contains(&mark))
            .count()
    };
    assert_eq!(masters(), 1, "no master runs for the connection");
    ssh.close().await;
    assert_eq!(std::fs::read_dir(control.path()).unwrap().count(), 0);
    // The master acknowledges the exit request, then exits.
    let mut left = masters();
    for _ in 0..100 {
        if left == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        left = masters();
    }
    assert_eq!(left, 0, "the master outlived close()");
}
