//! Every validation error names the file and line at fault, and the reason.

mod common;
use common::{Inputs, SMALL_CONFIG, SMALL_HOSTS};

/// Plan, expect failure, return the message.
fn fails(hosts: &str, config: &str) -> (String, Inputs) {
    let inputs = Inputs::new(hosts, config);
    let err = inputs.plan().expect_err("plan must fail").to_string();
    (err, inputs)
}

fn at(inputs: &Inputs, file: &str, line: usize) -> String {
    format!("{}:{line}", inputs.dir.path().join(file).display())
}

#[test]
fn small_inventory_is_valid() {
    let inputs = Inputs::new(SMALL_HOSTS, SMALL_CONFIG);
    let plan = inputs.plan().expect("valid");
    assert_eq!(plan.hosts.len(), 4);
    assert_eq!(plan.hosts[0].name, "master-01");
}

#[test]
fn even_etcd_members() {
    let hosts = SMALL_HOSTS.replace("10.1.0.3 NODE_NAME=etcd3\n", "");
    let (err, i) = fails(&hosts, SMALL_CONFIG);
    assert!(
        err.contains(&format!("{}: [etcd] has 2 member(s)", at(&i, "hosts", 1))),
        "{err}"
    );
    assert!(err.contains("odd number"), "{err}");
}

#[test]
fn zero_etcd_members() {
    let hosts = SMALL_HOSTS
        .replace("10.1.0.1 NODE_NAME=etcd1\n", "#10.1.0.1 NODE_NAME=etcd1\n")
        .replace("10.1.0.2 NODE_NAME=etcd2\n", "")
        .replace("10.1.0.3 NODE_NAME=etcd3\n", "");
    let (err, i) = fails(&hosts, SMALL_CONFIG);
    assert!(
        err.contains(&format!("{}: [etcd] has 0 member(s)", at(&i, "hosts", 1))),
        "{err}"
    );
}

#[test]
fn no_master() {
    let hosts = "[etcd]\n10.1.0.1\n\n[kube_master]\n# none yet\n\n[kube_node]\n10.1.0.4\n";
    let (err, i) = fails(hosts, SMALL_CONFIG);
    assert!(
        err.contains(&format!("{}: no master", at(&i, "hosts", 4))),
        "{err}"
    );
}

#[test]
fn duplicate_ip() {
    let hosts = SMALL_HOSTS.replace(
        "10.1.0.4 k8s_nodename='worker-01'",
        "worker1 ip=10.1.0.2 k8s_nodename='worker-01'",
    );
    let (err, i) = fails(&hosts, SMALL_CONFIG);
    assert!(
        err.contains(&format!("{}: duplicate IP 10.1.0.2", at(&i, "hosts", 12))),
        "{err}"
    );
}

#[test]
fn duplicate_name() {
    let hosts = SMALL_HOSTS.replace("k8s_nodename='worker-01'", "k8s_nodename='master-02'");
    let (err, i) = fails(&hosts, SMALL_CONFIG);
    assert!(
        err.contains(&format!(
            "{}: duplicate node name master-02",
            at(&i, "hosts", 12)
        )),
        "{err}"
    );
}

#[test]
fn overlapping_cluster_and_service_cidr() {
    let config = SMALL_CONFIG.replace("10.244.0.0/16", "10.96.0.0/12");
    let (err, i) = fails(SMALL_HOSTS, &config);
    assert!(
        err.contains(&format!(
            "{}: CLUSTER_CIDR 10.96.0.0/12 overlaps SERVICE_CIDR",
            at(&i, "config.yml", 3)
        )),
        "{err}"
    );
    assert!(
        err.contains(&at(&i, "config.yml", 4)),
        "names the other key's line too: {err}"
    );
}

#[test]
fn cidr_overlapping_the_host_network() {
    let config = SMALL_CONFIG.replace("10.96.0.0/16", "10.0.0.0/14");
    let (err, i) = fails(SMALL_HOSTS, &config);
    assert!(
        err.contains(&format!(
            "{}: SERVICE_CIDR 10.0.0.0/14 overlaps the host network 10.1.0.0/24",
            at(&i, "config.yml", 4)
        )),
        "{err}"
    );
}

#[test]
fn vip_outside_the_masters_subnet() {
    let hosts =
        format!("{SMALL_HOSTS}\n[ex_lb]\n10.1.0.8 LB_ROLE=master\n10.1.0.9 LB_ROLE=backup\n");
    let config = format!("{SMALL_CONFIG}VIP: \"10.2.0.10\"\n");
    let (err, i) = fails(&hosts, &config);
    assert!(
        err.contains(&format!(
            "{}: VIP 10.2.0.10 is not in master 10.1.0.1's subnet",
            at(&i, "config.yml", 5)
        )),
        "{err}"
    );
}

#[test]
fn vip_equal_to_a_host_ip() {
    let hosts = format!("{SMALL_HOSTS}\n[ex_lb]\n10.1.0.8\n10.1.0.9\n");
    let config = format!("{SMALL_CONFIG}VIP: \"10.1.0.4\"\n");
    let (err, i) = fails(&hosts, &config);
    assert!(
        err.contains(&format!(
            "{}: VIP 10.1.0.4 is the address of host 10.1.0.4",
            at(&i, "config.yml", 5)
        )),
        "{err}"
    );
}

#[test]
fn k8s_version_not_the_bundles() {
    let config = SMALL_CONFIG.replace("1.29.6", "1.30.2");
    let (err, i) = fails(SMALL_HOSTS, &config);
    assert!(
        err.contains(&format!(
            "{}: K8S_VER \"1.30.2\" is not the bundle's Kubernetes version 1.29.6",
            at(&i, "config.yml", 2)
        )),
        "{err}"
    );
}

#[test]
fn unknown_cni() {
    let config = format!("{SMALL_CONFIG}CNI_PLUGIN: \"weave\"\n");
    let (err, i) = fails(SMALL_HOSTS, &config);
    assert!(
        err.contains(&format!(
            "{}: CNI \"weave\" is not supported: ferry deploys cilium or calico",
            at(&i, "config.yml", 5)
        )),
        "{err}"
    );
}

#[test]
fn inventory_and_config_disagree() {
    let hosts = format!("{SMALL_HOSTS}SERVICE_CIDR=\"10.68.0.0/16\"\n");
    let (err, i) = fails(&hosts, SMALL_CONFIG);
    assert!(
        err.contains(&format!(
            "{}: SERVICE_CIDR: \"10.96.0.0/16\" disagrees with SERVICE_CIDR=\"10.68.0.0/16\" at {}",
            at(&i, "config.yml", 4),
            at(&i, "hosts", 16)
        )),
        "{err}"
    );
}

#[test]
fn inventory_value_is_used_when_config_is_silent() {
    let hosts =
        format!("{SMALL_HOSTS}PROXY_MODE=\"iptables\"\nCLUSTER_DNS_DOMAIN=\"cluster.local.\"\n");
    let inputs = Inputs::new(&hosts, SMALL_CONFIG);
    let plan = inputs.plan().expect("valid");
    let proxy = common::text(&plan, "worker-01", "/var/lib/kube-proxy/config.yaml");
    assert!(proxy.contains("mode: \"iptables\""), "{proxy}");
}

#[test]
fn jinja_in_a_used_inventory_value_is_evaluated_or_refused() {
    // With what it names in scope, Jinja is evaluated as Ansible would.
    let hosts =
        format!("{SMALL_HOSTS}base_dir=\"/srv/kube\"\nbin_dir=\"{{{{ base_dir }}}}/bin\"\n");
    let plan = Inputs::new(&hosts, SMALL_CONFIG).plan().expect("valid");
    let m1 = plan.host("master-01").expect("master-01");
    assert!(m1.file("/srv/kube/bin/kube-apiserver").is_some());
    // Without, it is an error naming the line: never taken literally.
    let hosts = format!("{SMALL_HOSTS}bin_dir=\"{{{{ base_dir }}}}/bin\"\n");
    let (err, i) = fails(&hosts, SMALL_CONFIG);
    assert!(
        err.contains(&format!(
            "{}: bin_dir={{{{ base_dir }}}}/bin holds Jinja that ferry cannot evaluate (undefined value: `base_dir` is undefined)",
            at(&i, "hosts", 16)
        )),
        "{err}"
    );
}

#[test]
fn bad_config_types_name_the_line() {
    let config = format!(
        "{SMALL_CONFIG}KUBE_APISERVER_MAX_REQUESTS_INFLIGHT: many\nCERT_MANAGER_ENABLED: perhaps\n"
    );
    let (err, i) = fails(SMALL_HOSTS, &config);
    assert!(
        err.contains(&format!(
            "{}: KUBE_APISERVER_MAX_REQUESTS_INFLIGHT must be a whole number",
            at(&i, "config.yml", 5)
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{}: CERT_MANAGER_ENABLED must be true or false",
            at(&i, "config.yml", 6)
        )),
        "{err}"
    );
}

#[test]
fn broken_yaml_names_the_line() {
    let config = format!("{SMALL_CONFIG}VIP: [unclosed\n");
    let (err, i) = fails(SMALL_HOSTS, &config);
    // The parser reports where it gave up: the end of the unclosed list.
    assert!(
        err.contains(&format!("{}: not valid YAML", at(&i, "config.yml", 6))),
        "{err}"
    );
}

#[test]
fn all_problems_are_reported_at_once() {
    let config = SMALL_CONFIG.replace("1.29.6", "1.28.0") + "CNI_PLUGIN: flannel\n";
    let (err, _) = fails(SMALL_HOSTS, &config);
    assert!(
        err.contains("K8S_VER") && err.contains("CNI \"flannel\" is not supported"),
        "{err}"
    );
}

#[test]
fn kubeasz_layout_with_ex_lb_uncommented_and_cilium() {
    // A cluster dir edited after `ezctl new`: the [ex_lb] lines uncommented,
    // cilium instead of calico, another SSH port and key. (The unedited
    // example files are planned in plan_kubeasz.rs.)
    let hosts = "\
# 'etcd' cluster should have odd member(s) (1,3,5,...)
[etcd]
192.168.1.1
192.168.1.2
192.168.1.3

# master node(s), set unique 'k8s_nodename' for each node
[kube_master]
192.168.1.1 k8s_nodename='master-01'
192.168.1.2 k8s_nodename='master-02'
192.168.1.3 k8s_nodename='master-03'

[kube_node]
192.168.1.4 k8s_nodename='worker-01'
192.168.1.5 k8s_nodename='worker-02'

[harbor]
#192.168.1.8 NEW_INSTALL=false

[ex_lb]
192.168.1.6 LB_ROLE=backup EX_APISERVER_VIP=192.168.1.250 EX_APISERVER_PORT=8443
192.168.1.7 LB_ROLE=master EX_APISERVER_VIP=192.168.1.250 EX_APISERVER_PORT=8443

[chrony]
#192.168.1.1

[all:vars]
SECURE_PORT=\"6443\"
CONTAINER_RUNTIME=\"containerd\"
CLUSTER_NETWORK=\"cilium\"
PROXY_MODE=\"ipvs\"
SERVICE_CIDR=\"10.68.0.0/16\"
CLUSTER_CIDR=\"172.20.0.0/16\"
NODE_PORT_RANGE=\"30000-32767\"
CLUSTER_DNS_DOMAIN=\"cluster.local\"
bin_dir=\"/opt/kube/bin\"
base_dir=\"/etc/kubeasz\"
cluster_dir=\"{{ base_dir }}/clusters/_cluster_name_\"
ca_dir=\"/etc/kubernetes/ssl\"
k8s_nodename=''
ansible_ssh_port=2222
ansible_ssh_private_key_file=/root/.ssh/ferry_ed25519
";
    let inputs = Inputs::new(hosts, "CLUSTER_NAME: lab\n");
    let plan = inputs.plan().expect("kubeasz's example plans");
    assert_eq!(plan.vip.as_deref(), Some("192.168.1.250"));
    assert_eq!(plan.apiserver_endpoint, "https://192.168.1.250:8443");
    let names: Vec<&str> = plan.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "master-01",
            "master-02",
            "master-03",
            "worker-01",
            "worker-02",
            "192.168.1.6",
            "192.168.1.7"
        ]
    );
    let m1 = plan.host("master-01").expect("master-01");
    assert_eq!(m1.ssh.port, 2222);
    assert_eq!(
        m1.ssh.identity_file.as_deref(),
        Some(std::path::Path::new("/root/.ssh/ferry_ed25519"))
    );
    let ka = common::text(&plan, "192.168.1.7", "/etc/keepalived/keepalived.conf");
    assert!(ka.contains("state MASTER"), "{ka}");
    let kb = common::text(&plan, "192.168.1.6", "/etc/keepalived/keepalived.conf");
    assert!(kb.contains("state BACKUP"), "{kb}");
    let ha = common::text(&plan, "192.168.1.6", "/etc/haproxy/haproxy.cfg");
    assert!(
        ha.contains("bind 192.168.1.250:8443")
            && ha.contains("server master-03 192.168.1.3:6443 check"),
        "{ha}"
    );
    let svc = common::text(
        &plan,
        "master-01",
        "/etc/systemd/system/kube-apiserver.service",
    );
    assert!(
        svc.contains("--service-cluster-ip-range=10.68.0.0/16"),
        "{svc}"
    );
}

#[test]
fn ex_lb_vip_disagrees_with_config_vip() {
    let hosts = format!("{SMALL_HOSTS}\n[ex_lb]\n10.1.0.8 LB_ROLE=master EX_APISERVER_VIP=10.1.0.250\n10.1.0.9 LB_ROLE=backup EX_APISERVER_VIP=10.1.0.250\n");
    let config = format!("{SMALL_CONFIG}VIP: \"10.1.0.200\"\n");
    let (err, i) = fails(&hosts, &config);
    assert!(
        err.contains(&format!(
            "{}: VIP: \"10.1.0.200\" disagrees with EX_APISERVER_VIP=10.1.0.250 at {}",
            at(&i, "config.yml", 5),
            at(&i, "hosts", 18)
        )),
        "{err}"
    );
}

#[test]
fn bad_lb_role_and_missing_ip() {
    let hosts = format!("{SMALL_HOSTS}\n[ex_lb]\nlb-a LB_ROLE=primary ip=10.1.0.8\nlb-b\n");
    let config = format!("{SMALL_CONFIG}VIP: \"10.1.0.200\"\n");
    let (err, i) = fails(&hosts, &config);
    assert!(
        err.contains(&format!(
            "{}: LB_ROLE=\"primary\" must be master or backup",
            at(&i, "hosts", 18)
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{}: host lb-b: \"lb-b\" is not an IPv4 address",
            at(&i, "hosts", 19)
        )),
        "{err}"
    );
}

#[test]
fn apiserver_port_disagrees_with_secure_port() {
    let hosts = format!("{SMALL_HOSTS}SECURE_PORT=\"8443\"\n");
    let config = format!("{SMALL_CONFIG}KUBE_APISERVER_BIND_PORT: 6443\n");
    let (err, i) = fails(&hosts, &config);
    assert!(
        err.contains(&format!(
            "{}: KUBE_APISERVER_BIND_PORT: \"6443\" disagrees with SECURE_PORT=\"8443\" at {}",
            at(&i, "config.yml", 5),
            at(&i, "hosts", 16)
        )),
        "{err}"
    );
}

#[test]
fn ex_lb_on_a_master_needs_a_port_of_its_own() {
    let lb = "\n[ex_lb]\n10.1.0.1 LB_ROLE=master\n10.1.0.2 LB_ROLE=backup\n";
    let hosts = format!("{SMALL_HOSTS}{lb}");
    let config = format!("{SMALL_CONFIG}VIP: \"10.1.0.250\"\n");
    let (err, i) = fails(&hosts, &config);
    let line = hosts
        .lines()
        .position(|l| l == "10.1.0.1 LB_ROLE=master")
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!(
            "{}: 10.1.0.1 is in [ex_lb] and [kube_master]",
            at(&i, "hosts", line)
        )) && err.contains("EX_APISERVER_PORT=8443"),
        "{err}"
    );
    // With a port of its own it plans.
    let hosts = hosts.replace("LB_ROLE=master", "LB_ROLE=master EX_APISERVER_PORT=8443");
    let plan = Inputs::new(&hosts, &config)
        .plan()
        .expect("ex_lb on masters with 8443");
    assert_eq!(plan.apiserver_endpoint, "https://10.1.0.250:8443");
}
