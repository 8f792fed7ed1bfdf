//! Calico as the second CNI: kubeasz's CALICO_* keys become the values of
//! Calico's tigera-operator chart, rendered by helm from the artifact the
//! bundle carries. STAND-IN: helm is tests/fixtures/standins/kube-standin.py,
//! which renders the fixture chart (tests/fixtures/mkartifacts.py, shaped like
//! tigera-operator v3.27.3) with the subset of helm's template language it uses.

mod common;
use common::{Inputs, SMALL_CONFIG, SMALL_HOSTS};
use ferry_installer::plan::{ClusterPlan, FileContent, PlanError};
use serde_json::Value;

fn addon(plan: &ClusterPlan, name: &str) -> Option<String> {
    let f = plan
        .host("master-01")
        .expect("master-01")
        .file(&format!("/etc/ferry/addons/{name}"))?;
    match &f.content {
        FileContent::Inline(b) => Some(String::from_utf8(b.clone()).expect("utf-8")),
        other => panic!("{name}: {other:?}"),
    }
}

/// The documents of a rendered manifest, parsed by serde (not by ferry).
fn objects(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .filter_map(|d| {
            let v: Value = serde::Deserialize::deserialize(d).expect("YAML");
            (!v.is_null()).then_some(v)
        })
        .collect()
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {objs:#?}"))
}

fn calico_plan(extra: &str) -> Result<ClusterPlan, PlanError> {
    Inputs::new(
        SMALL_HOSTS,
        &format!("{SMALL_CONFIG}CNI_PLUGIN: \"calico\"\n{extra}"),
    )
    .plan()
}

#[test]
fn kubeasz_defaults_give_an_ipip_bgp_installation() {
    // kubeasz's example values, Jinja included.
    let plan = calico_plan(
        "CALICO_ENABLE_OVERLAY: \"Always\"\nIP_AUTODETECTION_METHOD: \"can-reach={{ groups['kube_master'][0] }}\"\nCALICO_NETWORKING_BACKEND: \"bird\"\nCALICO_RR_ENABLED: false\nCALICO_RR_NODES: []\n",
    )
    .expect("plans");
    assert!(
        addon(&plan, "00-cilium.yaml").is_none(),
        "Cilium rendered with calico"
    );
    let text = addon(&plan, "00-calico.yaml").expect("00-calico.yaml");
    let objs = objects(&text);
    let install = find(&objs, "Installation", "default");
    let net = &install["spec"]["calicoNetwork"];
    assert_eq!(net["bgp"], "Enabled", "{install:#}");
    assert_eq!(net["ipPools"][0]["cidr"], "10.244.0.0/16");
    assert_eq!(net["ipPools"][0]["encapsulation"], "IPIP");
    assert_eq!(net["nodeAddressAutodetectionV4"]["canReach"], "10.1.0.1");
    // The operator runs in its own namespace, which ferry adds (the chart does not).
    let ns = find(&objs, "Namespace", "tigera-operator");
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "privileged"
    );
    let operator = find(&objs, "Deployment", "tigera-operator");
    assert_eq!(operator["metadata"]["namespace"], "tigera-operator");
    assert!(text.contains("quay.io/tigera/operator:v1.32.7"), "{text}");
    // The CRDs come with it, so the Installation's kind is known when it is applied.
    find(
        &objs,
        "CustomResourceDefinition",
        "installations.operator.tigera.io",
    );
    // The operator reaches the apiserver without a Service (the small cluster has no VIP).
    assert!(text.contains("10.1.0.1"), "{text}");
}

#[test]
fn vxlan_cross_subnet_turns_bgp_off() {
    let plan = calico_plan(
        "CALICO_NETWORKING_BACKEND: \"vxlan\"\nCALICO_ENABLE_OVERLAY: \"CrossSubnet\"\nIP_AUTODETECTION_METHOD: \"interface=eth.*|ens[0-9]+\"\n",
    )
    .expect("plans");
    let objs = objects(&addon(&plan, "00-calico.yaml").expect("00-calico.yaml"));
    let net = &find(&objs, "Installation", "default")["spec"]["calicoNetwork"];
    assert_eq!(net["bgp"], "Disabled");
    assert_eq!(net["ipPools"][0]["encapsulation"], "VXLANCrossSubnet");
    assert_eq!(
        net["nodeAddressAutodetectionV4"]["interface"],
        "eth.*|ens[0-9]+"
    );
}

#[test]
fn unsupported_calico_settings_are_refused_with_the_reason() {
    for (extra, expect) in [
        ("CALICO_RR_ENABLED: true\n", "CALICO_RR_ENABLED"),
        (
            "CALICO_NETWORKING_BACKEND: \"vxlan\"\nCALICO_ENABLE_OVERLAY: \"Never\"\n",
            "leaves no route between nodes",
        ),
        (
            "CALICO_ENABLE_OVERLAY: \"Sometimes\"\n",
            "not one of Always, CrossSubnet, Never",
        ),
        (
            "CALICO_NETWORKING_BACKEND: \"none\"\n",
            "CALICO_NETWORKING_BACKEND \"none\"",
        ),
        (
            "IP_AUTODETECTION_METHOD: \"interface=eth0\\\"\\n$(reboot)\"\n",
            "IP_AUTODETECTION_METHOD",
        ),
        (
            "IP_AUTODETECTION_METHOD: \"closest\"\n",
            "not a method calico-node knows",
        ),
    ] {
        let err = calico_plan(extra).expect_err(extra).to_string();
        assert!(err.contains(expect), "{extra}: {err}");
        assert!(
            err.contains("config.yml:"),
            "{extra}: no file and line: {err}"
        );
    }
}

#[test]
fn an_unsupported_cni_names_the_two_supported() {
    let err = Inputs::new(
        SMALL_HOSTS,
        &format!("{SMALL_CONFIG}CNI_PLUGIN: \"flannel\"\n"),
    )
    .plan()
    .expect_err("flannel")
    .to_string();
    assert!(
        err.contains("\"flannel\"") && err.contains("cilium or calico"),
        "{err}"
    );
}

#[test]
fn images_the_operator_deploys_must_be_carried() {
    let mut bundle = common::bundle();
    bundle
        .images
        .retain(|i| !i.reference.contains("calico/typha:"));
    let err = Inputs::new(
        SMALL_HOSTS,
        &format!("{SMALL_CONFIG}CNI_PLUGIN: \"calico\"\n"),
    )
    .plan_with(&bundle)
    .expect_err("typha is missing")
    .to_string();
    assert!(
        err.contains("/etc/ferry/addons/00-calico.yaml")
            && err.contains("docker.io/calico/typha:v3.27.3"),
        "{err}"
    );
}

#[test]
fn a_bundle_without_the_calico_chart_is_named() {
    let mut bundle = common::bundle();
    bundle.components.retain(|c| c.name != "tigera-operator");
    let err = Inputs::new(
        SMALL_HOSTS,
        &format!("{SMALL_CONFIG}CNI_PLUGIN: \"calico\"\n"),
    )
    .plan_with(&bundle)
    .expect_err("no chart")
    .to_string();
    assert!(
        err.contains("prod-1.29.6") && err.contains("tigera-operator"),
        "{err}"
    );
}
