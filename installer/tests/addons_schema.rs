//! Every addon object ferry renders, for every configuration that changes the
//! addons, validated strictly against the Kubernetes 1.29 OpenAPI schemas with
//! kubernetes-validate (PyPI, `make deps`; its schemas are offline). Kinds the
//! schemas do not have (cert-manager's, monitoring.coreos.com's) must be defined
//! by a CRD rendered before them and are validated against that CRD's
//! openAPIV3Schema (tests/validate_addons.py). Cilium's own CRDs are created by
//! its operator at start-up; ferry renders no object of theirs.

mod common;
use common::{Inputs, SMALL_CONFIG, SMALL_HOSTS};
use ferry_installer::plan::{ClusterPlan, FileContent, PlanError};
use std::path::{Path, PathBuf};
use std::process::Command;

const K8S: &str = "1.29.0";

/// The addon files of the plan (first master), written to `dir` in apply order.
fn write_addons(plan: &ClusterPlan, dir: &Path) -> Vec<PathBuf> {
    let master = plan
        .hosts
        .iter()
        .find(|h| {
            h.files
                .iter()
                .any(|f| f.path.starts_with("/etc/ferry/addons"))
        })
        .expect("a host applies the addons");
    let mut out = Vec::new();
    for f in &master.files {
        if !f.path.starts_with("/etc/ferry/addons") {
            continue;
        }
        let FileContent::Inline(bytes) = &f.content else {
            panic!("{} is not inline", f.path.display());
        };
        let p = dir.join(f.path.file_name().expect("file name"));
        std::fs::write(&p, bytes).expect("write addon");
        out.push(p);
    }
    out.sort();
    out
}

/// Runs the validator; returns (success, output).
fn validate(files: &[PathBuf]) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/validate_addons.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(K8S)
        .args(files)
        .output()
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("ModuleNotFoundError"),
        "kubernetes-validate is not installed: run `make deps` (.ci/requirements.txt)\n{text}"
    );
    (out.status.success(), text)
}

/// Plans `config` (on the small inventory), validates its addons, returns the file names and output.
fn plan_and_validate(name: &str, hosts: &str, config: &str) -> (Vec<String>, String) {
    let inputs = Inputs::new(hosts, config);
    let plan = inputs
        .plan()
        .unwrap_or_else(|e| panic!("variant {name} plans: {e}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let files = write_addons(&plan, dir.path());
    let (ok, out) = validate(&files);
    assert!(ok, "variant {name}: addons do not validate:\n{out}");
    let names = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    (names, out)
}

/// "validated N objects against the Kubernetes ... and M against CRD schemas"
fn counts(out: &str) -> (usize, usize) {
    let line = out
        .lines()
        .find(|l| l.starts_with("validated "))
        .unwrap_or_else(|| panic!("no summary in:\n{out}"));
    let nums: Vec<usize> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (nums[0], nums[1])
}

#[test]
fn the_guide_example_validates() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let plan = common::guide_plan(&tmp.path().join("cluster"));
    let dir = tempfile::tempdir().expect("tempdir");
    let files = write_addons(&plan, dir.path());
    let names: Vec<_> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "00-cilium-secrets.yaml",
            "00-cilium.yaml",
            "10-coredns.yaml",
            "20-nodelocaldns.yaml",
            "30-metrics-server.yaml",
            "40-cert-manager.yaml",
            "45-prometheus-operator-crds.yaml",
            "50-prometheus-rules.yaml",
            "60-tenant-baseline.yaml"
        ]
    );
    let (ok, out) = validate(&files);
    assert!(ok, "{out}");
    let (builtin, custom) = counts(&out);
    assert!(builtin >= 60, "{out}");
    // The PrometheusRule, against the CRD carried before it.
    assert_eq!(custom, 1, "{out}");
    // The agents (host network) reach the apiservers through their node's
    // local balancer, not through one address.
    let cilium = std::fs::read_to_string(dir.path().join("00-cilium.yaml")).unwrap();
    assert!(
        cilium.contains("name: KUBERNETES_SERVICE_HOST\n          value: \"127.0.0.1\"")
            && cilium.contains("name: KUBERNETES_SERVICE_PORT\n          value: \"6444\""),
        "{cilium}"
    );
}

/// The Calico variants validate too (the Installation against its CRD).
#[test]
fn calico_variants_validate() {
    for (name, extra) in [
        ("calico defaults", "CNI_PLUGIN: \"calico\"\n"),
        (
            "calico vxlan",
            "CNI_PLUGIN: \"calico\"\nCALICO_NETWORKING_BACKEND: \"vxlan\"\nIP_AUTODETECTION_METHOD: \"cidr=10.1.0.0/24\"\n",
        ),
    ] {
        let (files, out) = plan_and_validate(name, SMALL_HOSTS, &format!("{SMALL_CONFIG}{extra}"));
        assert!(files.iter().any(|f| f == "00-calico.yaml"), "{name}: {files:?}");
        assert!(!files.iter().any(|f| f.starts_with("00-cilium")), "{name}: {files:?}");
        // The Installation, against the operator's CRD.
        assert!(counts(&out).1 >= 2, "{name}: {out}");
    }
}

#[test]
fn every_addon_variant_validates() {
    let variants: &[(&str, &str)] = &[
        ("defaults", ""),
        ("hubble off", "CILIUM_ENABLE_HUBBLE: false\n"),
        ("vxlan tunnel", "CILIUM_TUNNEL_MODE: \"vxlan\"\n"),
        (
            "geneve, no BPF masquerade",
            "CILIUM_TUNNEL_MODE: \"geneve\"\nCILIUM_ENABLE_BPF_MASQUERADE: false\n",
        ),
        ("NodeLocal DNS off", "ENABLE_LOCAL_DNS_CACHE: false\n"),
        ("iptables proxy", "PROXY_MODE: \"iptables\"\n"),
        (
            "metrics-server and cert-manager off",
            "METRICS_SERVER_ENABLED: false\nCERT_MANAGER_ENABLED: false\n",
        ),
        (
            "tenants",
            "TENANT_NAMESPACES:\n  - team-a\n  - team-b\nDNS_DOMAIN: \"corp.example\"\n",
        ),
        ("no tenants", "TENANT_NAMESPACES: []\n"),
    ];
    for (name, extra) in variants {
        let (files, out) = plan_and_validate(name, SMALL_HOSTS, &format!("{SMALL_CONFIG}{extra}"));
        assert!(counts(&out).0 > 20, "variant {name}: {out}");
        let hubble = files.iter().any(|f| f == "00-cilium-secrets.yaml");
        assert_eq!(
            hubble,
            !extra.contains("HUBBLE: false"),
            "{name}: {files:?}"
        );
        let cert_manager = files.iter().any(|f| f == "40-cert-manager.yaml");
        assert_eq!(cert_manager, !extra.contains("CERT_MANAGER_ENABLED: false"));
        let nodelocal = files.iter().any(|f| f == "20-nodelocaldns.yaml");
        assert_eq!(nodelocal, !extra.contains("LOCAL_DNS_CACHE: false"));
    }
}

/// With system and batch pools: the placed Deployments and the PriorityClass validate.
#[test]
fn the_pool_variant_validates() {
    let hosts = SMALL_HOSTS.replace(
        "[all:vars]",
        "[kube_node]\n10.1.0.5 k8s_nodename='system-01' node_pool=system\n10.1.0.6 k8s_nodename='jobs-01' node_pool=batch\n\n[all:vars]",
    );
    let (files, out) = plan_and_validate("pools", &hosts, SMALL_CONFIG);
    assert!(
        files.iter().any(|f| f == "15-priority-classes.yaml"),
        "{files:?}"
    );
    assert!(counts(&out).0 > 20, "{out}");
}

/// The validator itself refuses what the apiserver would refuse.
#[test]
fn the_validator_refuses_unknown_fields_and_kinds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "unknown field",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: b}\ndata: {}\nspec: {}\n",
            "Additional properties are not allowed",
        ),
        (
            "wrong type",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a, namespace: b}\nspec: {replicas: two, selector: {}, template: {}}\n",
            "spec.replicas",
        ),
        (
            "custom kind without CRD",
            "apiVersion: cert-manager.io/v1\nkind: ClusterIssuer\nmetadata: {name: ca}\nspec: {ca: {secretName: x}}\n",
            "no CRD before it defines it",
        ),
        (
            "custom object against its CRD",
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: ws.example.io}\nspec:\n  group: example.io\n  scope: Namespaced\n  names: {kind: W, plural: ws, singular: w, listKind: WList}\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        properties:\n          spec: {type: object, required: [size], properties: {size: {type: integer}}}\n---\napiVersion: example.io/v1\nkind: W\nmetadata: {name: w, namespace: n}\nspec: {size: 1, colour: red}\n",
            "'colour' was unexpected",
        ),
    ];
    for (name, yaml, expect) in cases {
        let p = dir.path().join("x.yaml");
        std::fs::write(&p, yaml).unwrap();
        let (ok, out) = validate(&[p]);
        assert!(!ok, "{name}: accepted:\n{out}");
        assert!(out.contains(expect), "{name}: {out}");
    }
}

/// Values that would break a Corefile or a certificate name are refused at plan time.
#[test]
fn addon_values_that_cannot_be_escaped_are_refused() {
    for (extra, expect) in [
        ("DNS_DOMAIN: \"cluster.local {\"\n", "DNS_DOMAIN"),
        (
            "LOCAL_DNS_CACHE: \"169.254.20.10\\nlog\"\n",
            "LOCAL_DNS_CACHE",
        ),
        ("TENANT_NAMESPACES: [\"Team_A\"]\n", "TENANT_NAMESPACES"),
    ] {
        let inputs = Inputs::new(SMALL_HOSTS, &format!("{SMALL_CONFIG}{extra}"));
        match inputs.plan() {
            Err(PlanError::Invalid(p)) => {
                let text = p.to_string();
                assert!(
                    text.contains(expect) && text.contains("config.yml"),
                    "{text}"
                );
            }
            other => panic!("{extra}: {:?}", other.map(|_| "planned")),
        }
    }
}

/// The guide's addon objects, by "Kind namespace/name".
fn guide_objects() -> (
    std::collections::BTreeMap<String, serde_norway::Value>,
    tempfile::TempDir,
) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let plan = common::guide_plan(&tmp.path().join("cluster"));
    let files = write_addons(&plan, tmp.path());
    let mut out = std::collections::BTreeMap::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (o, v) in
            ferry_installer::plan::kinds::objects(&f.display().to_string(), &text).unwrap()
        {
            out.insert(o.to_string(), v);
        }
    }
    (out, tmp)
}

fn yaml(v: &serde_norway::Value) -> String {
    serde_norway::to_string(v).unwrap()
}

/// What a real cluster needs of each addon, read against the upstream releases.
#[test]
fn the_addons_carry_what_upstream_needs() {
    let (objs, _tmp) = guide_objects();
    let get = |k: &str| yaml(objs.get(k).unwrap_or_else(|| panic!("{k} is rendered")));
    let cfg = get("ConfigMap kube-system/cilium-config");
    assert!(cfg.contains("write-cni-conf-when-ready: /host/etc/cni/net.d/05-cilium.conflist"));
    assert!(cfg.contains("hubble-tls-cert-file:"));
    let agent = get("DaemonSet kube-system/cilium");
    for init in [
        "config",
        "mount-cgroup",
        "apply-sysctl-overwrites",
        "mount-bpf-fs",
        "clean-cilium-state",
        "install-cni-binaries",
    ] {
        assert!(
            agent.contains(&format!("name: {init}\n")),
            "init container {init}"
        );
    }
    assert!(
        agent.contains("name: hubble-server-certs"),
        "the agent mounts its Hubble certificates"
    );
    get("Service kube-system/hubble-peer");
    get("Secret kube-system/hubble-server-certs");
    get("Secret kube-system/hubble-relay-client-certs");
    assert!(get("ConfigMap kube-system/hubble-relay-config")
        .contains("hubble-peer.kube-system.svc.cluster.local:443"));
    assert!(get("Deployment kube-system/coredns").contains("dnsPolicy: Default"));
    let nodelocal = get("ConfigMap kube-system/node-local-dns");
    assert!(nodelocal.contains("in-addr.arpa:53") && nodelocal.contains("ip6.arpa:53"));
    for crd in [
        "certificates.cert-manager.io",
        "certificaterequests.cert-manager.io",
        "issuers.cert-manager.io",
        "clusterissuers.cert-manager.io",
        "orders.acme.cert-manager.io",
        "challenges.acme.cert-manager.io",
        "prometheusrules.monitoring.coreos.com",
    ] {
        get(&format!("CustomResourceDefinition {crd}"));
    }
    get("Service cert-manager/cert-manager-webhook");
    get("ValidatingWebhookConfiguration cert-manager-webhook");
    get("MutatingWebhookConfiguration cert-manager-webhook");
    assert!(
        !objs
            .values()
            .any(|v| yaml(v).contains("name: cluster-admin")),
        "nothing is bound to cluster-admin"
    );
    assert!(
        get("ClusterRoleBinding metrics-server:system:auth-delegator")
            .contains("name: system:auth-delegator")
    );
    assert!(get("ClusterRole system:aggregated-metrics-reader").contains("metrics.k8s.io"));
    get("APIService v1beta1.metrics.k8s.io");
}

/// Hubble's certificates chain to the cluster CA with the names Cilium's relay expects.
#[test]
fn hubble_certificates_chain_to_the_cluster_ca() {
    use base64::Engine;
    let (objs, tmp) = guide_objects();
    for (secret, purpose, name) in [
        (
            "hubble-server-certs",
            "sslserver",
            "*.prod-k8s.hubble-grpc.cilium.io",
        ),
        (
            "hubble-relay-client-certs",
            "sslclient",
            "*.hubble-relay.cilium.io",
        ),
    ] {
        let s = &objs[&format!("Secret kube-system/{secret}")];
        let data = |k: &str| {
            let b64 = s["data"][k].as_str().expect("base64 data");
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("base64")
        };
        let ca = tmp.path().join(format!("{secret}-ca.crt"));
        let crt = tmp.path().join(format!("{secret}.crt"));
        std::fs::write(&ca, data("ca.crt")).unwrap();
        std::fs::write(&crt, data("tls.crt")).unwrap();
        assert!(String::from_utf8(data("tls.key"))
            .unwrap()
            .contains("PRIVATE KEY"));
        let out = Command::new("openssl")
            .args(["verify", "-purpose", purpose, "-CAfile"])
            .arg(&ca)
            .arg(&crt)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{secret}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let text = Command::new("openssl")
            .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
            .arg(&crt)
            .output()
            .expect("openssl");
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(text.contains(&format!("DNS:{name}")), "{secret}: {text}");
    }
}
