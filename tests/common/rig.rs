//! The multi-host test rig (tests/rig/rig.sh) as a guard: `Rig::up` boots N
//! test hosts (network + mount/PID/UTS/cgroup namespaces, overlay root,
//! systemd, sshd) and Drop tears them down by the ids the rig recorded, also
//! when the test panics. Each rig gets its own state dir, name prefix and
//! /24 inside 198.18.0.0/15, so tests can run side by side.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Rig {
    pub dir: PathBuf,
    pub id: String,
    pub net: String,
    /// (name, address) of every host, h1..hN.
    pub hosts: Vec<(String, String)>,
    /// What the hosts' root overlays: `machine` (this machine's `/`) or
    /// `bare` (a minimal Debian 12 root; see tests/rig/rig.sh).
    pub base: &'static str,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rig/rig.sh")
}

impl Rig {
    /// Boots `n` hosts. `id` (<= 5 chars) names the namespaces and links;
    /// `octet` picks the /24: 198.18.<octet>.0.
    pub fn up(n: usize, id: &str, octet: u8) -> Rig {
        Rig::boot(n, id, octet, "machine")
    }

    /// Boots `n` bare hosts: their root is a minimal Debian 12 (systemd and
    /// openssh-server on Debian's minimal base), nothing of this machine.
    pub fn up_bare(n: usize, id: &str, octet: u8) -> Rig {
        Rig::boot(n, id, octet, "bare")
    }

    fn boot(n: usize, id: &str, octet: u8, base: &'static str) -> Rig {
        let dir = PathBuf::from(format!("/var/tmp/ferry-rig-{id}-{}", std::process::id()));
        let net = format!("198.18.{octet}");
        let rig = Rig {
            dir,
            id: id.to_string(),
            net: net.clone(),
            hosts: (1..=n)
                .map(|i| (format!("h{i}"), format!("{net}.{}", 10 + i)))
                .collect(),
            base,
        };
        let out = rig
            .cmd()
            .arg("up")
            .arg(n.to_string())
            .output()
            .expect("run tests/rig/rig.sh");
        assert!(
            out.status.success(),
            "rig up {n} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        rig
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(script());
        c.env("FERRY_RIG_DIR", &self.dir)
            .env("FERRY_RIG_ID", &self.id)
            .env("FERRY_RIG_NET", &self.net)
            .env("FERRY_RIG_BASE", self.base);
        c
    }

    pub fn ssh_config(&self) -> PathBuf {
        self.dir.join("ssh_config")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    pub fn addr(&self, host: &str) -> &str {
        &self
            .hosts
            .iter()
            .find(|(h, _)| h == host)
            .unwrap_or_else(|| panic!("no rig host {host}"))
            .1
    }

    /// Runs `bash -c script` inside `host` without SSH (works with sshd stopped).
    pub fn exec(&self, host: &str, script: &str) -> Output {
        self.cmd()
            .args(["exec", host, "bash", "-c", script])
            .output()
            .expect("run tests/rig/rig.sh exec")
    }

    /// The pid of `host`'s init: `/proc/<pid>/root` is the host's root as
    /// this machine sees it (a unix socket there is reachable from here).
    pub fn pid(&self, host: &str) -> u32 {
        let out = self
            .cmd()
            .args(["pid", host])
            .output()
            .expect("run tests/rig/rig.sh pid");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| {
                panic!(
                    "{host}: rig.sh pid: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
    }

    /// Writes `bytes` to `path` inside `host` (parent directories made): test
    /// hosts have their own /tmp, so a checkout under /tmp is not theirs to read.
    pub fn put(&self, host: &str, path: &str, bytes: &[u8]) {
        use std::io::Write;
        let script = "mkdir -p \"$(dirname \"$1\")\" && cat > \"$1\"";
        let mut child = self
            .cmd()
            .args(["exec", host, "bash", "-c", script, "put", path])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run tests/rig/rig.sh exec");
        child.stdin.take().unwrap().write_all(bytes).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{host}: writing {path} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Like `exec`, but panics with the output unless it exits 0; returns stdout.
    pub fn sh(&self, host: &str, script: &str) -> String {
        let out = self.exec(host, script);
        assert!(
            out.status.success(),
            "{host}: `{script}` failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ferry install` of `bundle` to this rig's hosts, with the inputs laid
    /// out in `dir` as the tests write them: `hosts`, `config.yml` and the
    /// trusted `key.pub`; the data dir and cluster dir go to `data/` and `cluster/`.
    pub fn install_command(&self, ferry: &Path, dir: &Path, bundle: &Path) -> Command {
        let mut cmd = Command::new(ferry);
        cmd.args(["install", "--ssh-known-hosts", "strict", "--bundle"])
            .arg(bundle)
            .arg("--inventory")
            .arg(dir.join("hosts"))
            .arg("--config")
            .arg(dir.join("config.yml"))
            .arg("--trust")
            .arg(dir.join("key.pub"))
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--cluster-dir")
            .arg(dir.join("cluster"))
            .arg("--ssh-config")
            .arg(self.ssh_config());
        cmd
    }

    /// Runs `script` on `host` over SSH with the rig's ssh_config.
    pub fn ssh(&self, host: &str, script: &str) -> Output {
        Command::new("ssh")
            .arg("-F")
            .arg(self.ssh_config())
            .args(["-o", "BatchMode=yes", host, script])
            .output()
            .expect("run ssh")
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        match self.cmd().arg("down").output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!("rig down failed: {}", String::from_utf8_lossy(&out.stderr)),
            Err(e) => eprintln!("rig down failed: {e}"),
        }
    }
}
