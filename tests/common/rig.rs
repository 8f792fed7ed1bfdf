//! The multi-host test rig (tests/rig/rig.sh) as a guard: `Rig::up` boots N
//! test hosts (network + mount/PID/UTS/cgroup namespaces, overlay root,
//! systemd, sshd) and Drop tears them down by the ids the rig recorded, also
//! when the test panics. Each rig gets its own state dir and netns/link names
//! (unique among live rigs, see [`claim_name`]), and the test's own /24 inside
//! 198.18.0.0/15, so tests can run side by side; rig.sh refuses to start a
//! rig whose /24 another rig holds, naming that rig and how to remove it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

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

/// Rigs this process has named so far.
static NAMED: AtomicU32 = AtomicU32::new(0);
/// Two base-36 characters.
const SUFFIXES: u32 = 36 * 36;

/// A rig name of its own, within rig.sh's 5 characters: the first 3 of the
/// test's `id` and 2 of base 36 (`fe2e` -> `fe2k7`), and its state dir
/// `/var/tmp/ferry-rig-<name>`. Creating that dir claims the name, so no two
/// live rigs share one, whichever test run they belong to; a name whose dir,
/// netns or bridge a rig left behind is passed over. Rigs of one process
/// start from consecutive suffixes, so they differ even one after another.
fn claim_name(id: &str) -> (String, PathBuf) {
    let prefix: String = id.chars().take(3).collect();
    let first = std::process::id()
        .wrapping_mul(7)
        .wrapping_add(NAMED.fetch_add(1, Ordering::Relaxed));
    for k in 0..SUFFIXES {
        let s = first.wrapping_add(k) % SUFFIXES;
        let name = format!("{prefix}{}{}", base36(s / 36), base36(s % 36));
        let dir = PathBuf::from(format!("/var/tmp/ferry-rig-{name}"));
        let leftover = Path::new(&format!("/run/netns/{name}-h1")).exists()
            || Path::new(&format!("/sys/class/net/{name}-br0")).exists();
        if leftover || std::fs::create_dir(&dir).is_err() {
            continue;
        }
        return (name, dir);
    }
    panic!("no rig name {prefix}?? is free: remove rigs left behind (/var/tmp/ferry-rig-{prefix}*, `ip netns list`)");
}

fn base36(d: u32) -> char {
    std::char::from_digit(d, 36).expect("a digit below 36")
}

impl Rig {
    /// Boots `n` hosts. `id` (a few letters naming the test) starts the
    /// rig's netns and link names, which are its own (see [`claim_name`]);
    /// `octet` picks the /24: 198.18.<octet>.0.
    pub fn up(n: usize, id: &str, octet: u8) -> Rig {
        Rig::boot(n, id, octet, "machine").unwrap_or_else(|e| panic!("{e}"))
    }

    /// Boots `n` bare hosts: their root is a minimal Debian 12 (systemd and
    /// openssh-server on Debian's minimal base), nothing of this machine.
    pub fn up_bare(n: usize, id: &str, octet: u8) -> Rig {
        Rig::boot(n, id, octet, "bare").unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Rig::up`], but a rig that does not start is an error naming the
    /// rig (its name and state dir) and saying why; nothing is left behind.
    pub fn try_up(n: usize, id: &str, octet: u8) -> Result<Rig, String> {
        Rig::boot(n, id, octet, "machine")
    }

    fn boot(n: usize, id: &str, octet: u8, base: &'static str) -> Result<Rig, String> {
        let (name, dir) = claim_name(id);
        let net = format!("198.18.{octet}");
        let rig = Rig {
            dir,
            id: name,
            net: net.clone(),
            hosts: (1..=n)
                .map(|i| (format!("h{i}"), format!("{net}.{}", 10 + i)))
                .collect(),
            base,
        };
        // From here on, Drop runs `rig.sh down`, also when `up` fails.
        let out = rig
            .cmd()
            .arg("up")
            .arg(n.to_string())
            .output()
            .expect("run tests/rig/rig.sh");
        if !out.status.success() {
            return Err(format!(
                "rig {} ({}) up {n} failed:\n{}{}",
                rig.id,
                rig.dir.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(rig)
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
