//! The closure check: the plan fails, naming the file and the image or binary,
//! when a rendered file needs something the bundle does not carry for the
//! host's architecture.

mod common;
use common::{Inputs, SMALL_CONFIG, SMALL_HOSTS};
use ferry_bundles::BundleManifest;

fn without_image(mut b: BundleManifest, short: &str) -> BundleManifest {
    b.images
        .retain(|i| !i.reference.contains(&format!("/{short}:")));
    b
}

fn without_file(mut b: BundleManifest, path: &str) -> BundleManifest {
    b.files.retain(|f| f.path != path);
    b.components.retain(|c| c.path != path);
    b
}

fn closure_err(inputs: &Inputs, bundle: &BundleManifest) -> String {
    let err = inputs
        .plan_with(bundle)
        .expect_err("closure check must fail");
    assert!(
        matches!(err, ferry_installer::plan::PlanError::Closure(_)),
        "closure error expected: {err}"
    );
    err.to_string()
}

#[test]
fn the_full_fixture_bundle_closes() {
    Inputs::new(SMALL_HOSTS, SMALL_CONFIG)
        .plan()
        .expect("complete bundle");
}

#[test]
fn missing_addon_image_names_the_file_and_image() {
    let inputs = Inputs::new(SMALL_HOSTS, SMALL_CONFIG);
    let err = closure_err(&inputs, &without_image(common::bundle(), "coredns"));
    assert!(err.contains("host master-01: /etc/ferry/addons/10-coredns.yaml: image coredns is not in bundle prod-1.29.6"), "{err}");
}

#[test]
fn disabled_addons_need_no_image() {
    let config = format!("{SMALL_CONFIG}CERT_MANAGER_ENABLED: false\n");
    let inputs = Inputs::new(SMALL_HOSTS, &config);
    let plan = inputs
        .plan_with(&without_image(common::bundle(), "cert-manager-webhook"))
        .expect("cert-manager is off");
    assert!(plan
        .host("master-01")
        .unwrap()
        .file("/etc/ferry/addons/40-cert-manager.yaml")
        .is_none());
}

#[test]
fn missing_binary_for_the_hosts_architecture() {
    let hosts = SMALL_HOSTS.replace(
        "10.1.0.4 k8s_nodename='worker-01'",
        "10.1.0.4 k8s_nodename='worker-01' arch=arm64",
    );
    let inputs = Inputs::new(&hosts, SMALL_CONFIG);
    let bundle = without_file(common::bundle(), "bin/linux-arm64/kubelet");
    let err = closure_err(&inputs, &bundle);
    assert!(
        err.contains("host worker-01: binary kubelet for linux/arm64 is not in the bundle"),
        "{err}"
    );
    // and the arm64 worker gets arm64 binaries otherwise
    let plan = inputs.plan().expect("full bundle");
    match &plan
        .host("worker-01")
        .unwrap()
        .file("/opt/kube/bin/kube-proxy")
        .unwrap()
        .content
    {
        ferry_installer::plan::FileContent::BundleFile { bundle_path, .. } => {
            assert_eq!(bundle_path, "bin/linux-arm64/kube-proxy")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn missing_containerd_archive() {
    let inputs = Inputs::new(SMALL_HOSTS, SMALL_CONFIG);
    let bundle = without_file(
        common::bundle(),
        "archives/linux-amd64/containerd-1.7.18-linux-amd64.tar.gz",
    );
    let err = closure_err(&inputs, &bundle);
    assert!(
        err.contains("host worker-01: the containerd archive for linux/amd64 is not in the bundle"),
        "{err}"
    );
}

#[test]
fn image_without_the_nodes_platform() {
    let hosts = SMALL_HOSTS.replace(
        "10.1.0.4 k8s_nodename='worker-01'",
        "10.1.0.4 k8s_nodename='worker-01' arch=arm64",
    );
    let inputs = Inputs::new(&hosts, SMALL_CONFIG);
    let mut bundle = common::bundle();
    for i in bundle
        .images
        .iter_mut()
        .filter(|i| i.reference.contains("/cilium:"))
    {
        i.platforms = vec!["linux/amd64".into()];
    }
    let err = closure_err(&inputs, &bundle);
    assert!(
        err.contains(
            "host master-01: /etc/ferry/addons/00-cilium.yaml: image quay.io/cilium/cilium:v1.15.6"
        ) && err.contains("is in the bundle only for linux/amd64, not linux/arm64"),
        "{err}"
    );
}

#[test]
fn sandbox_image_of_another_version() {
    let config =
        format!("{SMALL_CONFIG}SANDBOX_IMAGE: \"harbor.corp/google_containers/pause:3.8\"\n");
    let inputs = Inputs::new(SMALL_HOSTS, &config);
    let err = closure_err(&inputs, &common::bundle());
    assert!(
        err.contains(
            "/etc/containerd/config.toml: sandbox image harbor.corp/google_containers/pause:3.8"
        ),
        "{err}"
    );
    assert!(
        err.contains("config.yml:5"),
        "names where SANDBOX_IMAGE is set: {err}"
    );
}

#[test]
fn a_platform_the_bundle_lacks_is_an_inventory_error() {
    let hosts = SMALL_HOSTS.replace(
        "10.1.0.4 k8s_nodename='worker-01'",
        "10.1.0.4 k8s_nodename='worker-01' arch=riscv64",
    );
    let inputs = Inputs::new(&hosts, SMALL_CONFIG);
    let err = inputs
        .plan()
        .expect_err("no riscv64 in the bundle")
        .to_string();
    assert!(
        err.contains(&format!(
            "{}:12: host 10.1.0.4 is linux/riscv64",
            inputs.hosts().display()
        )),
        "{err}"
    );
}

#[test]
fn registry_host_of_another_architecture_needs_ferry_in_the_bundle() {
    let hosts = SMALL_HOSTS.replace(
        "10.1.0.4 k8s_nodename='worker-01'",
        "10.1.0.4 k8s_nodename='worker-01' arch=arm64",
    );
    let config = format!("{SMALL_CONFIG}FERRY_REGISTRY_HOSTS: [\"worker-01\"]\n");
    let inputs = Inputs::new(&hosts, &config);
    let this = ferry_installer::images::deploy_arch();
    if this == "arm64" {
        // On an arm64 machine the running ferry fits; the check is the mirror image.
        inputs.plan().expect("this ferry fits an arm64 host");
        return;
    }
    let err = closure_err(&inputs, &common::bundle());
    assert!(
        err.contains("host worker-01: its registry mirror or scheduled etcd snapshot needs ferry for linux/arm64"),
        "{err}"
    );
    // With ferry for arm64 in the bundle the plan closes, copying the bundle's.
    let mut bundle = common::bundle();
    bundle.files.push(ferry_bundles::FileEntry {
        path: "bin/linux-arm64/ferry".into(),
        size: 10,
        sha256: "0".repeat(64),
        mode: 0o755,
        in_base: false,
    });
    bundle.files.sort_by(|a, b| a.path.cmp(&b.path));
    let plan = inputs.plan_with(&bundle).expect("closes");
    match &plan
        .host("worker-01")
        .unwrap()
        .file("/opt/kube/bin/ferry")
        .unwrap()
        .content
    {
        ferry_installer::plan::FileContent::BundleFile { bundle_path, .. } => {
            assert_eq!(bundle_path, "bin/linux-arm64/ferry")
        }
        other => panic!("{other:?}"),
    }
}
