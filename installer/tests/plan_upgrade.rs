//! A new binary in the bundle (an upgrade) changes exactly the units that
//! run it: each unit names its executable's sha256, so the unit's own step
//! restarts it (rolling where that step rolls) and a run killed after the
//! binaries were placed still restarts it next time.

mod common;

use common::{Inputs, SMALL_CONFIG, SMALL_HOSTS};
use ferry_installer::plan::{ClusterPlan, FileContent};
use std::collections::BTreeMap;

fn contents(plan: &ClusterPlan) -> BTreeMap<(String, String), Option<String>> {
    plan.hosts
        .iter()
        .flat_map(|h| {
            h.files.iter().map(|f| {
                (
                    (h.name.clone(), f.path.display().to_string()),
                    f.content.sha256(),
                )
            })
        })
        .collect()
}

#[test]
fn a_new_apiserver_binary_changes_only_the_apiserver_units() {
    let inputs = Inputs::new(SMALL_HOSTS, SMALL_CONFIG);
    let before = inputs.plan().expect("plans");
    let mut bundle = common::bundle();
    let mut swapped = 0;
    for f in bundle
        .files
        .iter_mut()
        .filter(|f| f.path.ends_with("/kube-apiserver"))
    {
        f.sha256 = "ab".repeat(32);
        swapped += 1;
    }
    assert!(swapped > 0, "the fixture bundle carries kube-apiserver");
    let after = inputs
        .plan_with(&bundle)
        .expect("plans with the new binary");
    let (a, b) = (contents(&before), contents(&after));
    let changed: Vec<&(String, String)> = a.keys().filter(|k| a[*k] != b[*k]).collect();
    let masters = ["master-01", "master-02", "master-03"];
    let expected: Vec<(String, String)> = masters
        .iter()
        .flat_map(|m| {
            [
                (
                    m.to_string(),
                    "/etc/systemd/system/kube-apiserver.service".to_string(),
                ),
                (m.to_string(), "/opt/kube/bin/kube-apiserver".to_string()),
            ]
        })
        .collect();
    let mut changed: Vec<(String, String)> = changed.into_iter().cloned().collect();
    changed.sort();
    let mut expected = expected;
    expected.sort();
    assert_eq!(changed, expected);
    let unit = after.hosts[0]
        .files
        .iter()
        .find(|f| f.path.ends_with("kube-apiserver.service"))
        .unwrap();
    let FileContent::Inline(text) = &unit.content else {
        panic!("inline unit")
    };
    assert!(
        String::from_utf8_lossy(text).contains(&format!(
            "# ferry: runs /opt/kube/bin/kube-apiserver sha256 {}",
            "ab".repeat(32)
        )),
        "{}",
        String::from_utf8_lossy(text)
    );
}
