//! etcd membership in the plan: without a record every member starts `new`
//! with all members as its initial cluster; with a record, recorded members
//! keep the unit they were started with and members of the inventory not
//! recorded join (`existing`), each with the members before it.

mod common;

use common::{Inputs, SMALL_CONFIG, SMALL_HOSTS};
use ferry_installer::plan::etcd_members::{save, StartState};
use ferry_installer::plan::{ClusterPlan, FileContent};

fn etcd_unit(plan: &ClusterPlan, host: &str) -> String {
    let h = plan
        .hosts
        .iter()
        .find(|h| h.address == host)
        .unwrap_or_else(|| panic!("no host {host}"));
    let f = h
        .files
        .iter()
        .find(|f| f.path.ends_with("etcd.service"))
        .unwrap_or_else(|| panic!("{host} has no etcd.service"));
    match &f.content {
        FileContent::Inline(b) => String::from_utf8(b.clone()).unwrap(),
        _ => panic!("etcd.service is inline"),
    }
}

/// A flag's value in a unit (systemd-quoted words are read back unquoted).
fn flag(unit: &str, name: &str) -> String {
    let key = format!("--{name}=");
    unit.split_whitespace()
        .map(|w| w.trim_matches('"'))
        .find_map(|w| w.strip_prefix(&key))
        .unwrap_or_else(|| panic!("no {key} in:\n{unit}"))
        .to_owned()
}

const FIRST: &str =
    "etcd1=https://10.1.0.1:2380,etcd2=https://10.1.0.2:2380,etcd3=https://10.1.0.3:2380";

/// The small inventory with `extra` etcd members (10.1.0.5 ...).
fn with_members(extra: &[&str]) -> String {
    let mut hosts = SMALL_HOSTS.to_owned();
    let lines: String = extra
        .iter()
        .map(|ip| format!("{ip} NODE_NAME=etcd-{}\n", ip.rsplit('.').next().unwrap()))
        .collect();
    hosts = hosts.replace(
        "10.1.0.3 NODE_NAME=etcd3\n",
        &format!("10.1.0.3 NODE_NAME=etcd3\n{lines}"),
    );
    hosts
}

#[test]
fn without_a_record_every_member_is_new_and_nothing_is_recorded() {
    let inputs = Inputs::new(SMALL_HOSTS, SMALL_CONFIG);
    let plan = inputs.plan().expect("plans");
    assert!(!plan.etcd_members.recorded);
    for ip in ["10.1.0.1", "10.1.0.2", "10.1.0.3"] {
        let unit = etcd_unit(&plan, ip);
        assert_eq!(flag(&unit, "initial-cluster-state"), "new");
        assert_eq!(flag(&unit, "initial-cluster"), FIRST);
    }
    // Recording is the deploy's, when the first members start.
    assert!(!inputs.dir.path().join("cluster/etcd-members.json").exists());
}

#[test]
fn recorded_members_keep_their_units_and_new_ones_join_one_after_another() {
    let inputs = Inputs::new(SMALL_HOSTS, SMALL_CONFIG);
    let before = inputs.plan().expect("plans");
    save(
        &inputs.dir.path().join("cluster"),
        &before.etcd_members.members,
    )
    .unwrap();

    std::fs::write(inputs.hosts(), with_members(&["10.1.0.5", "10.1.0.6"])).unwrap();
    let after = inputs.plan().expect("plans with two new members");
    assert!(after.etcd_members.recorded);
    assert_eq!(after.etcd_members.joining, ["etcd-5", "etcd-6"]);
    for ip in ["10.1.0.1", "10.1.0.2", "10.1.0.3"] {
        assert_eq!(
            etcd_unit(&before, ip),
            etcd_unit(&after, ip),
            "{ip}'s unit changed"
        );
    }
    let fifth = etcd_unit(&after, "10.1.0.5");
    assert_eq!(flag(&fifth, "initial-cluster-state"), "existing");
    assert_eq!(
        flag(&fifth, "initial-cluster"),
        format!("{FIRST},etcd-5=https://10.1.0.5:2380")
    );
    let sixth = etcd_unit(&after, "10.1.0.6");
    assert_eq!(
        flag(&sixth, "initial-cluster"),
        format!("{FIRST},etcd-5=https://10.1.0.5:2380,etcd-6=https://10.1.0.6:2380")
    );
    // Once the fifth has joined (recorded), the sixth still joins after it.
    let mut joined = before.etcd_members.members.clone();
    joined.push(after.etcd_members.get("etcd-5").unwrap().clone());
    save(&inputs.dir.path().join("cluster"), &joined).unwrap();
    let later = inputs.plan().expect("plans");
    assert_eq!(later.etcd_members.joining, ["etcd-6"]);
    assert_eq!(etcd_unit(&later, "10.1.0.5"), fifth);
    assert_eq!(etcd_unit(&later, "10.1.0.6"), sixth);
    assert_eq!(
        later.etcd_members.get("etcd-5").unwrap().state,
        StartState::Existing
    );
}

#[test]
fn a_recorded_member_at_another_address_is_refused() {
    let inputs = Inputs::new(SMALL_HOSTS, SMALL_CONFIG);
    let plan = inputs.plan().expect("plans");
    save(
        &inputs.dir.path().join("cluster"),
        &plan.etcd_members.members,
    )
    .unwrap();
    std::fs::write(
        inputs.hosts(),
        SMALL_HOSTS.replace("10.1.0.3 NODE_NAME=etcd3", "10.1.0.9 NODE_NAME=etcd3"),
    )
    .unwrap();
    let err = inputs.plan().expect_err("a member that moved").to_string();
    assert!(
        err.contains("etcd member etcd3")
            && err.contains("https://10.1.0.3:2380")
            && err.contains("https://10.1.0.9:2380")
            && err.contains("etcd-members.json"),
        "{err}"
    );
}
