//! Rig names and networks: every rig of a test run gets netns and link names
//! of its own (the test's id starts them), and a rig whose 198.18.<octet>.0/24
//! is held already, by a running rig or by something left behind, does not
//! start: the error names what holds the network and the command that
//! removes it, and the refused rig leaves nothing behind.

mod common;

use common::rig::Rig;
use std::path::{Path, PathBuf};
use std::process::Command;

const OCTET: u8 = 53;
const ID: &str = "fnam";

fn rig_script() -> PathBuf {
    std::fs::canonicalize(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rig/rig.sh"))
        .expect("tests/rig/rig.sh")
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The name of the rig an error of [`Rig::try_up`] is about (`rig NAME (DIR) up ...`).
fn refused_name(err: &str) -> String {
    err.strip_prefix("rig ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no rig name in: {err}"))
        .to_owned()
}

/// A refused rig left no state dir, netns or link.
fn assert_nothing_left(name: &str) {
    let dir = format!("/var/tmp/ferry-rig-{name}");
    assert!(!Path::new(&dir).exists(), "{dir} left");
    let netns = ip(&["netns", "list"]);
    assert!(!netns.contains(&format!("{name}-")), "netns left: {netns}");
    let links = ip(&["-o", "link"]);
    assert!(!links.contains(&format!("{name}-")), "links left: {links}");
}

/// A network namespace as a crashed run leaves it: an address in the rig's
/// /24, nothing recorded by any rig. Deleted on drop.
struct Leftover(String);

impl Leftover {
    fn hold(addr: &str) -> Leftover {
        let name = format!("ferry-left-{}", std::process::id());
        ip(&["netns", "add", &name]);
        let ns = Leftover(name);
        ip(&["-n", &ns.0, "addr", "add", addr, "dev", "lo"]);
        ns
    }
}

impl Drop for Leftover {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn rigs_of_a_run_have_their_own_names_and_a_held_network_is_refused() {
    let first = Rig::up(1, ID, OCTET);
    assert!(
        first.id.len() == 5 && first.id.starts_with("fna"),
        "{}",
        first.id
    );

    // The same test id again in this run, on the /24 the first rig holds.
    let err = match Rig::try_up(1, ID, OCTET) {
        Ok(second) => panic!("a second rig {} started on 198.18.53", second.id),
        Err(e) => e,
    };
    let second = refused_name(&err);
    assert!(second.starts_with("fna") && second != first.id, "{err}");
    assert!(err.contains("198.18.53.0/24"), "{err}");
    let down = format!(
        "remove it with: FERRY_RIG_DIR={} {} down",
        first.dir.display(),
        rig_script().display()
    );
    for holder in [
        format!("link {}-br0 holds 198.18.53.1/24; {down}", first.id),
        format!(
            "netns {}-h1 holds 198.18.53.11/24 (on its eth0); {down}",
            first.id
        ),
    ] {
        assert!(err.contains(&holder), "no {holder:?} in:\n{err}");
    }
    assert_nothing_left(&second);
    // The first rig is untouched.
    let out = first.ssh("h1", "hostname");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "h1\n", "{out:?}");

    // Once it is down the /24 is free, and the next rig has a third name.
    let first_id = first.id.clone();
    drop(first);
    let third = Rig::up(1, ID, OCTET);
    assert!(
        third.id != first_id && third.id != second && third.id.starts_with("fna"),
        "{first_id} {second} {}",
        third.id
    );
    assert!(third.ssh("h1", "true").status.success());
    drop(third);

    // A namespace left behind (no rig recorded it) is named with `ip netns del`.
    let left = Leftover::hold("198.18.53.99/24");
    let err = match Rig::try_up(1, ID, OCTET) {
        Ok(r) => panic!("a rig {} started on a held 198.18.53", r.id),
        Err(e) => e,
    };
    let holder = format!(
        "netns {0} holds 198.18.53.99/24 (on its lo); remove it with: ip netns del {0}",
        left.0
    );
    assert!(err.contains(&holder), "no {holder:?} in:\n{err}");
    assert_nothing_left(&refused_name(&err));
}

/// Pids are reused (pid_max may be 32768): a process that took the pid a rig
/// recorded for a host that is gone survives that rig's `down`, and a host
/// recorded with its own start time is still removed.
#[test]
fn down_kills_only_the_processes_the_rig_started() {
    let dir = std::env::temp_dir().join(format!("ferry-rig-pids-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut bystander = Command::new("sleep").arg("300").spawn().expect("sleep");
    let mut own = Command::new("sleep").arg("300").spawn().expect("sleep");
    let start = |pid: u32| -> String {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        after_comm.split_whitespace().nth(19).unwrap().to_owned()
    };
    // The bystander's pid as a dead host's: recorded with another start time.
    let state = format!(
        "rigdir {0}\nproc {1} h1 1\nproc {2} h2 {3}\n",
        dir.display(),
        bystander.id(),
        own.id(),
        start(own.id())
    );
    std::fs::write(dir.join("state"), state).unwrap();
    let out = Command::new(rig_script())
        .arg("down")
        .env("FERRY_RIG_DIR", &dir)
        .env("FERRY_RIG_ID", "fnp")
        .output()
        .expect("run rig.sh down");
    assert!(out.status.success(), "{out:?}");
    let own_status = own.wait().unwrap();
    let bystander_alive = bystander.try_wait().unwrap().is_none();
    let _ = bystander.kill();
    let _ = bystander.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!own_status.success(), "the recorded process was not killed");
    assert!(bystander_alive, "down killed a process it did not start");
}
