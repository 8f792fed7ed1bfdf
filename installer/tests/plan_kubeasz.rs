//! kubeasz's own example files (tests/fixtures/kubeasz/<release>/, unedited),
//! with the placeholders filled the way `ezctl new` fills them, planned as is.

mod common;
use common::Inputs;
use ferry_installer::plan::validate::San;
use ferry_installer::plan::ClusterPlan;

#[path = "../../tests/common/kubeasz.rs"]
mod kubeasz;
use kubeasz::{example_dir, Release, KUBEASZ_3_6_3, KUBEASZ_3_7_0};

fn ezctl_new(release: &Release, cluster: &str) -> Inputs {
    let (hosts, config) = kubeasz::ezctl_new(release, cluster, "1.29.6");
    Inputs::new(&hosts, &config)
}

fn plan(release: &Release) -> ClusterPlan {
    ezctl_new(release, "k8s-01")
        .plan()
        .unwrap_or_else(|e| panic!("kubeasz {}'s example plans: {e}", release.dir))
}

#[test]
fn the_examples_are_the_upstream_files_unedited() {
    // Git blob ids of example/ at the release commits (`git ls-tree <commit> example/`).
    for (release, file, blob) in [
        (
            &KUBEASZ_3_6_3,
            "hosts.multi-node",
            "64771f473bf5e1c17817a8317576810d5c540b0b",
        ),
        (
            &KUBEASZ_3_6_3,
            "config.yml",
            "310f1582d5fe5a2b2bad92985fa2691bb4b0c8dd",
        ),
        (
            &KUBEASZ_3_7_0,
            "hosts.multi-node",
            "38ca621274cf74c1074746eef96f22ab6c0b9b67",
        ),
        (
            &KUBEASZ_3_7_0,
            "config.yml",
            "34901d7515a974070b68c1a0fb8e9d48883407a1",
        ),
    ] {
        let path = example_dir(release).join(file);
        let out = std::process::Command::new("git")
            .arg("hash-object")
            .arg(&path)
            .output()
            .expect("git hash-object");
        let id = String::from_utf8_lossy(&out.stdout);
        assert_eq!(id.trim(), blob, "{} is not kubeasz's file", path.display());
    }
}

#[test]
fn kubeasz_3_6_3_plans_calico_with_its_names_and_dirs() {
    let plan = plan(&KUBEASZ_3_6_3);
    let names: Vec<&str> = plan.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "master-01",
            "master-02",
            "master-03",
            "worker-01",
            "worker-02"
        ]
    );
    // bin_dir and ca_dir from the inventory.
    let m1 = plan.host("master-01").expect("master-01");
    assert!(m1.file("/opt/kube/bin/kube-apiserver").is_some());
    assert!(m1.file("/etc/kubernetes/ssl/apiserver.pem").is_some());
    let apiserver = common::text(
        &plan,
        "master-01",
        "/etc/systemd/system/kube-apiserver.service",
    );
    assert!(
        apiserver.contains("--secure-port=6443")
            && apiserver.contains("--service-cluster-ip-range=10.68.0.0/16"),
        "{apiserver}"
    );
    // CLUSTER_NETWORK calico with CALICO_IPV4POOL_IPIP, and
    // IP_AUTODETECTION_METHOD's `groups['kube_master'][0]` evaluated.
    let calico = common::text(&plan, "master-01", "/etc/ferry/addons/00-calico.yaml");
    assert!(
        calico.contains("encapsulation: IPIP") && calico.contains("172.20.0.0/16"),
        "{calico}"
    );
    assert!(calico.contains("192.168.1.1"), "can-reach the first master");
    // NODE_CIDR_LEN reaches the controller-manager.
    let kcm = common::text(
        &plan,
        "master-01",
        "/etc/systemd/system/kube-controller-manager.service",
    );
    assert!(kcm.contains("--node-cidr-mask-size=24"), "{kcm}");
    // KUBE_RESERVED_ENABLED / SYS_RESERVED_ENABLED "no": no reservations.
    let kubelet = common::text(&plan, "worker-01", "/var/lib/kubelet/config.yaml");
    assert!(
        !kubelet.contains("kubeReserved") && !kubelet.contains("systemReserved"),
        "{kubelet}"
    );
    // LOCAL_DNS_CACHE is the kubelet's DNS.
    assert!(kubelet.contains("169.254.20.10"), "{kubelet}");
}

#[test]
fn kubeasz_keys_reach_certificates_kubeconfigs_and_containerd() {
    let inputs = ezctl_new(&KUBEASZ_3_6_3, "k8s-01");
    let plan = inputs.plan().expect("plans");
    // MASTER_CERT_HOSTS in the apiserver's SANs.
    let pem = std::fs::read(inputs.dir.path().join("cluster/pki/apiserver.pem")).expect("cert");
    let sans = common::cert_sans(&pem);
    for want in [
        San::Ip("10.1.1.1".parse().unwrap()),
        San::Dns("k8s.easzlab.io".into()),
        San::Ip("192.168.1.3".parse().unwrap()),
    ] {
        assert!(sans.contains(&want), "{want:?} in {sans:?}");
    }
    // CA_EXPIRY 876000h and CERT_EXPIRY 438000h.
    let valid_for = |name: &str, days: u64| {
        let pem = std::fs::read(inputs.dir.path().join("cluster/pki").join(name)).unwrap();
        common::cert_valid_in_days(&pem, days)
    };
    assert!(valid_for("ca.pem", 36_499) && !valid_for("ca.pem", 36_501));
    assert!(valid_for("apiserver.pem", 18_249) && !valid_for("apiserver.pem", 18_251));
    // CONTEXT_NAME "context-{{ CLUSTER_NAME }}".
    let admin = std::fs::read_to_string(
        inputs
            .dir
            .path()
            .join("cluster/kubeconfig/admin.kubeconfig"),
    )
    .expect("admin kubeconfig");
    assert!(
        admin.contains("current-context: \"context-cluster1\""),
        "{admin}"
    );
    // INSECURE_REG: the plain-HTTP registry, and HARBOR_REGISTRY's Jinja evaluated.
    let http = common::text(
        &plan,
        "worker-01",
        "/etc/containerd/certs.d/easzlab.io.local:5000/hosts.toml",
    );
    assert!(
        http.contains("server = \"http://easzlab.io.local:5000\""),
        "{http}"
    );
    let harbor = common::text(
        &plan,
        "worker-01",
        "/etc/containerd/certs.d/harbor.easzlab.io.local:8443/hosts.toml",
    );
    assert!(
        harbor.contains("server = \"https://harbor.easzlab.io.local:8443\"")
            && harbor.contains("skip_verify = true"),
        "{harbor}"
    );
    // CONTAINERD_STORAGE_DIR is containerd's root.
    let containerd = common::text(&plan, "worker-01", "/etc/containerd/config.toml");
    assert!(
        containerd.contains("root = \"/var/lib/containerd\""),
        "{containerd}"
    );
}

#[test]
fn kubeasz_3_7_0_plans_with_its_node_names_and_nftables() {
    let plan = plan(&KUBEASZ_3_7_0);
    let names: Vec<&str> = plan.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "master-01",
            "master-02",
            "master-03",
            "worker-01",
            "worker-02"
        ]
    );
    let proxy = common::text(&plan, "worker-01", "/var/lib/kube-proxy/config.yaml");
    assert!(
        proxy.contains("mode: \"nftables\"") && proxy.contains("NFTablesProxyMode: true"),
        "{proxy}"
    );
    let hosts_toml = common::text(
        &plan,
        "worker-01",
        "/etc/containerd/certs.d/reg.yourcompany.com/hosts.toml",
    );
    assert!(hosts_toml.contains("skip_verify = true"), "{hosts_toml}");
}

#[test]
fn k8s_nodename_default_names_hosts_without_one() {
    // kubeasz 3.7.0's K8S_NODENAME: `k8s-<ip with dashes>` when k8s_nodename is empty.
    let inputs = ezctl_new(&KUBEASZ_3_7_0, "k8s-01");
    let hosts = std::fs::read_to_string(inputs.hosts()).unwrap();
    let hosts = hosts.replace("192.168.1.5 k8s_nodename='worker-02'", "192.168.1.5");
    std::fs::write(inputs.hosts(), hosts).unwrap();
    let plan = inputs.plan().expect("plans");
    assert!(plan.host("k8s-192-168-1-5").is_some());
}

#[test]
fn refused_kubeasz_keys_name_the_line_and_the_reason() {
    let inputs = ezctl_new(&KUBEASZ_3_6_3, "k8s-01");
    let config = std::fs::read_to_string(inputs.config()).unwrap();
    let config = config
        .replace("CHANGE_CA: false", "CHANGE_CA: true")
        .replace("dns_install: \"yes\"", "dns_install: \"no\"")
        .replace("CERT_EXPIRY: \"438000h\"", "CERT_EXPIRY: \"50y\"")
        .replace("\"k8s.easzlab.io\"", "\"k8s easzlab\"");
    std::fs::write(inputs.config(), &config).unwrap();
    let err = inputs.plan().expect_err("refused").to_string();
    let line = |key: &str| {
        1 + config
            .lines()
            .position(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("{key} in config"))
    };
    for (key, says) in [
        ("CHANGE_CA", "ferry never replaces a CA"),
        ("dns_install", "ferry always deploys CoreDNS"),
        ("CERT_EXPIRY", "unit `y` is not h, m or s"),
        (
            "MASTER_CERT_HOSTS",
            "\"k8s easzlab\" is neither an IP address nor a DNS name",
        ),
    ] {
        let at = format!("config.yml:{}", line(key));
        assert!(
            err.lines().any(|l| l.contains(&at) && l.contains(says)),
            "{key} at {at}: {says}\n{err}"
        );
    }
}

#[test]
fn jinja_ferry_cannot_evaluate_in_a_key_it_uses_is_an_error() {
    let inputs = ezctl_new(&KUBEASZ_3_6_3, "k8s-01");
    let config = std::fs::read_to_string(inputs.config()).unwrap().replace(
        "LOCAL_DNS_CACHE: \"169.254.20.10\"",
        "LOCAL_DNS_CACHE: \"{{ dns_cache_ip }}\"",
    );
    std::fs::write(inputs.config(), &config).unwrap();
    let err = inputs.plan().expect_err("refused").to_string();
    assert!(
        err.contains("LOCAL_DNS_CACHE holds Jinja that ferry cannot evaluate")
            && err.contains("dns_cache_ip"),
        "{err}"
    );
}

#[test]
fn ansible_connection_variables_are_followed_or_refused_with_the_reason() {
    // kubeasz's older names for the user and the key are followed.
    let inputs = ezctl_new(&KUBEASZ_3_6_3, "k8s-01");
    let hosts = std::fs::read_to_string(inputs.hosts()).unwrap()
        + "ansible_ssh_user=admin\nansible_private_key_file=/root/.ssh/kz\nansible_ssh_port=2222\n";
    std::fs::write(inputs.hosts(), &hosts).unwrap();
    let plan = inputs.plan().expect("plans");
    let ssh = &plan.host("worker-01").unwrap().ssh;
    assert_eq!(
        (ssh.user.as_str(), ssh.port, ssh.identity_file.as_deref()),
        ("admin", 2222, Some(std::path::Path::new("/root/.ssh/kz")))
    );
    // sudo to root without a password is followed; for other hosts the
    // default (no become) holds.
    let with_sudo = hosts.replace(
        "192.168.1.4 k8s_nodename='worker-01'",
        "192.168.1.4 k8s_nodename='worker-01' ansible_user=deploy ansible_become=yes ansible_become_user=root ansible_become_method=sudo",
    );
    std::fs::write(inputs.hosts(), &with_sudo).unwrap();
    let plan = inputs.plan().expect("plans with become");
    let ssh = &plan.host("worker-01").unwrap().ssh;
    assert_eq!((ssh.user.as_str(), ssh.become_root), ("deploy", true));
    assert!(plan.hosts.iter().filter(|h| h.ssh.become_root).count() == 1);
    // Another user, another method or a value that is no boolean is refused, at its line.
    for (var, says) in [
        (
            "ansible_become_user=postgres",
            "ansible_become_user=\"postgres\" is not supported: ferry becomes root only",
        ),
        (
            "ansible_become_method=su",
            "ansible_become_method=\"su\" is not supported: ferry becomes root with sudo only",
        ),
        (
            "ansible_become=maybe",
            "ansible_become=\"maybe\" is neither true nor false",
        ),
    ] {
        let bad = hosts.replace(
            "192.168.1.4 k8s_nodename='worker-01'",
            &format!("192.168.1.4 k8s_nodename='worker-01' ansible_become=true {var}"),
        );
        std::fs::write(inputs.hosts(), &bad).unwrap();
        let err = inputs.plan().expect_err(var).to_string();
        let line = 1 + bad.lines().position(|l| l.contains(var)).unwrap();
        assert!(
            err.lines()
                .any(|l| l.contains(&format!("hosts:{line}")) && l.contains(says)),
            "{says}\n{err}"
        );
    }
    // Set for all hosts, a wrong method is reported once, at its line.
    let bad = hosts.clone() + "ansible_become_method=su\n";
    std::fs::write(inputs.hosts(), &bad).unwrap();
    let err = inputs.plan().expect_err("su for all").to_string();
    let says = "ansible_become_method=\"su\" is not supported";
    assert_eq!(err.lines().filter(|l| l.contains(says)).count(), 1, "{err}");
    // A password, also sudo's, is refused, at its line.
    let hosts = hosts.replace(
        "192.168.1.4 k8s_nodename='worker-01'",
        "192.168.1.4 k8s_nodename='worker-01' ansible_password=secret ansible_become=true ansible_become_password=secret",
    );
    std::fs::write(inputs.hosts(), &hosts).unwrap();
    let err = inputs.plan().expect_err("refused").to_string();
    let line = 1 + hosts
        .lines()
        .position(|l| l.contains("ansible_password"))
        .unwrap();
    for says in [
        "ansible_password is not supported: ferry authenticates with SSH keys",
        "ansible_become_password is not supported: ferry carries no passwords: with ansible_become the SSH user needs passwordless sudo (NOPASSWD)",
    ] {
        assert!(
            err.lines()
                .any(|l| l.contains(&format!("hosts:{line}")) && l.contains(says)),
            "{says}\n{err}"
        );
    }
}
