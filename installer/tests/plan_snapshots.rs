//! Snapshots (insta) of the files rendered for the production guide's example
//! inventory and config.yml, and of the plan's shape for every host. Run with
//! INSTA_UPDATE=no in CI: the snapshots under tests/snapshots/ are committed.
//! Certificates, keys and kubeconfigs differ per run and are checked by plan_pki.rs.

mod common;
use ferry_installer::plan::{ClusterPlan, FileContent};

fn snapshot_name(host: &str, path: &str) -> String {
    format!("{host}{}", path.replace('/', "__"))
}

fn guide() -> (ClusterPlan, tempfile::TempDir) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let plan = common::guide_plan(&tmp.path().join("cluster"));
    (plan, tmp)
}

#[test]
fn rendered_files_of_the_guide_example() {
    let (plan, _tmp) = guide();
    // One host of each kind: master+etcd+registry, worker, load balancer.
    for host in ["master-1", "worker-a-1", "10.10.0.21"] {
        let h = plan.host(host).expect("host");
        for f in &h.files {
            let FileContent::Inline(bytes) = &f.content else {
                continue;
            };
            let text = String::from_utf8(bytes.clone()).expect("utf-8");
            // Release manifests applied as published are the fixture's text,
            // checked whole below; they are not ferry's rendering.
            let published = [
                "30-metrics-server.yaml",
                "40-cert-manager.yaml",
                "45-prometheus-operator-crds.yaml",
            ]
            .iter()
            .any(|p| f.path.ends_with(p));
            if f.secret || text.contains("-----BEGIN") || published {
                continue;
            }
            let name = snapshot_name(host, &f.path.display().to_string());
            insta::assert_snapshot!(name, text);
        }
    }
}

#[test]
fn plan_shape_of_the_guide_example() {
    let (plan, tmp) = guide();
    let mut out = String::new();
    out.push_str(&format!(
        "cluster {} k8s {} bundle {}\nendpoint {}\nvip {:?}\nmirrors {:?}\netcd {:?}\nbin_dir {}\n",
        plan.cluster_name,
        plan.kubernetes,
        plan.bundle_name,
        plan.apiserver_endpoint,
        plan.vip,
        plan.registry_mirrors,
        plan.etcd_endpoints,
        plan.bin_dir.display()
    ));
    for h in &plan.hosts {
        let roles: Vec<&str> = h.roles.iter().map(|r| r.as_str()).collect();
        out.push_str(&format!(
            "\nhost {} ({}) {} ssh {}@{}:{} {} roles {}\n",
            h.name,
            h.inventory_host,
            h.address,
            h.ssh.user,
            h.ssh.host,
            h.ssh.port,
            h.arch,
            roles.join(",")
        ));
        for f in &h.files {
            let src = match &f.content {
                FileContent::Inline(_) => "inline".to_string(),
                FileContent::BundleFile { bundle_path, .. } => format!("bundle:{bundle_path}"),
                FileContent::FerryExecutable => "ferry".to_string(),
            };
            out.push_str(&format!(
                "  {:<13} {:o}{} {} <- {src}\n",
                f.step.as_str(),
                f.mode,
                if f.secret { " secret" } else { "" },
                f.path.display()
            ));
        }
        for a in &h.archives {
            out.push_str(&format!(
                "  {:<13} unpack {} -> {} (strip {})\n",
                a.step.as_str(),
                a.bundle_path,
                a.dest_dir.display(),
                a.strip_components
            ));
        }
        for s in &h.services {
            out.push_str(&format!(
                "  {:<13} service {}{}\n",
                s.step.as_str(),
                s.unit,
                if s.enable { " (enabled)" } else { "" }
            ));
        }
    }
    let out = out.replace(&tmp.path().display().to_string(), "<tmp>");
    insta::assert_snapshot!("plan_shape", out);
}

/// Every value of DESIGN.md section 8 (the guide's profile) appears in a rendered file.
#[test]
fn every_guide_value_is_rendered() {
    let (plan, _tmp) = guide();
    let t = |host: &str, path: &str| common::text(&plan, host, path);
    let api = t("master-1", "/etc/systemd/system/kube-apiserver.service");
    for v in [
        "--max-requests-inflight=3000",
        "--max-mutating-requests-inflight=1500",
        "--event-ttl=1h",
        "--profiling=false",
        "--audit-log-maxage=7",
        "--audit-log-maxbackup=10",
        "--audit-log-maxsize=100",
        "--anonymous-auth=false",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction,NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultStorageClass,ResourceQuota,Priority,MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
        "--encryption-provider-config=",
        "--audit-policy-file=",
        "--service-cluster-ip-range=10.96.0.0/16",
        "--service-node-port-range=30000-32767",
        "--request-timeout=1m",
    ] {
        assert!(api.contains(v), "apiserver lacks {v}");
    }
    let cm = t(
        "master-1",
        "/etc/systemd/system/kube-controller-manager.service",
    );
    assert!(cm.contains("--cluster-cidr=10.244.0.0/16"));
    let kubelet = t("worker-a-1", "/var/lib/kubelet/config.yaml");
    for v in [
        "cgroupDriver: systemd",
        "maxPods: 110",
        "serializeImagePulls: false",
        "imageGCHighThresholdPercent: 80",
        "imageGCLowThresholdPercent: 70",
        "containerLogMaxSize: 50Mi",
        "containerLogMaxFiles: 5",
        "podPidsLimit: 4096",
        "readOnlyPort: 0",
        "\"memory.available\": \"500Mi\"",
        "\"nodefs.available\": \"10%\"",
        "\"imagefs.available\": \"15%\"",
        "shutdownGracePeriod: 30s",
        "shutdownGracePeriodCriticalPods: 10s",
        "clusterDomain: \"cluster.local\"",
    ] {
        assert!(kubelet.contains(v), "kubelet config lacks {v}");
    }
    for block in [
        "systemReserved:\n  \"cpu\": \"500m\"\n  \"ephemeral-storage\": \"5Gi\"\n  \"memory\": \"1Gi\"",
        "kubeReserved:\n  \"cpu\": \"500m\"\n  \"ephemeral-storage\": \"5Gi\"\n  \"memory\": \"1Gi\"",
    ] {
        assert!(kubelet.contains(block), "kubelet config lacks {block}");
    }
    let proxy = t("worker-a-1", "/var/lib/kube-proxy/config.yaml");
    assert!(proxy.contains("mode: \"ipvs\"") && proxy.contains("clusterCIDR: \"10.244.0.0/16\""));
    let ctr = t("worker-a-1", "/etc/containerd/config.toml");
    for v in [
        "sandbox_image = \"registry.k8s.io/pause:3.9\"",
        "max_concurrent_downloads = 6",
        "config_path = \"/etc/containerd/certs.d\"",
        "address = \"127.0.0.1:1338\"",
        "SystemdCgroup = true",
    ] {
        assert!(ctr.contains(v), "containerd lacks {v}");
    }
    let etcd = t("master-2", "/etc/systemd/system/etcd.service");
    for v in [
        "--auto-compaction-retention=8",
        "--snapshot-count=10000",
        "--wal-dir=/var/lib/etcd/wal",
        "--data-dir=/var/lib/etcd",
    ] {
        assert!(etcd.contains(v), "etcd lacks {v}");
    }
    let sysctl = t("system-1", "/etc/sysctl.d/99-kubernetes-cri.conf");
    for v in [
        "net.bridge.bridge-nf-call-iptables = 1",
        "net.bridge.bridge-nf-call-ip6tables = 1",
        "net.ipv4.ip_forward = 1",
        "net.ipv4.tcp_tw_reuse = 1",
        "net.ipv4.tcp_fin_timeout = 15",
        "net.core.somaxconn = 32768",
        "net.ipv4.tcp_max_syn_backlog = 8192",
        "fs.inotify.max_user_instances = 8192",
        "fs.inotify.max_user_watches = 1048576",
        "fs.file-max = 2097152",
        "vm.max_map_count = 262144",
        "vm.swappiness = 0",
    ] {
        assert!(sysctl.contains(v), "sysctl lacks {v}");
    }
    let modules = t("system-1", "/etc/modules-load.d/k8s.conf");
    assert!(modules.contains("overlay\nbr_netfilter\n"));
    assert!(t("system-1", "/etc/systemd/system/ferry-swapoff.service")
        .contains("ExecStart=/usr/sbin/swapoff -a"));
    let addons = |f: &str| t("master-1", &format!("/etc/ferry/addons/{f}"));
    let coredns = addons("10-coredns.yaml");
    assert!(coredns.contains("replicas: 2") && coredns.contains("clusterIP: \"10.96.0.10\""));
    assert!(coredns.contains("image: \"registry.k8s.io/coredns/coredns:v1.11.1@sha256:"));
    assert!(addons("20-nodelocaldns.yaml").contains("k8s-dns-node-cache:1.22.28@sha256:"));
    // Release manifests are applied as published: the artifact's text, whole.
    let root = common::artifacts().root().to_path_buf();
    for (file, artifact) in [
        (
            "30-metrics-server.yaml",
            "manifests/metrics-server/components.yaml",
        ),
        (
            "40-cert-manager.yaml",
            "manifests/cert-manager/cert-manager.yaml",
        ),
    ] {
        let published = std::fs::read_to_string(root.join(artifact)).unwrap();
        assert!(
            addons(file).ends_with(&published),
            "{file} is not {artifact} as published"
        );
    }
    assert!(addons("30-metrics-server.yaml")
        .contains("registry.k8s.io/metrics-server/metrics-server:v0.7.1"));
    // Cilium's chart, rendered with the guide's values.
    let cilium = addons("00-cilium.yaml");
    for v in [
        "routing-mode: \"native\"",
        "enable-bpf-masquerade: \"true\"",
        "enable-hubble: \"true\"",
        "ipv4-native-routing-cidr: 10.244.0.0/16",
        "quay.io/cilium/hubble-relay:v1.15.6",
        "# Source: cilium/templates/cilium-agent/daemonset.yaml",
    ] {
        assert!(cilium.contains(v), "cilium lacks {v}");
    }
    assert!(
        !cilium.contains("kind: Secret"),
        "Secrets belong in the 0600 file"
    );
    let secrets = plan
        .host("master-1")
        .unwrap()
        .file("/etc/ferry/addons/00-cilium-secrets.yaml")
        .expect("Hubble's secrets");
    assert!(secrets.secret && secrets.mode == 0o600);
    let crds = addons("45-prometheus-operator-crds.yaml");
    assert!(crds.contains("name: prometheusrules.monitoring.coreos.com"));
    assert!(
        !crds.contains("name: servicemonitors.monitoring.coreos.com"),
        "only the PrometheusRule CRD is taken"
    );
    let rules = addons("50-prometheus-rules.yaml");
    for v in [
        "KubeAPIServerHighLatency",
        "EtcdHighFsyncLatency",
        "NodeDiskPressureRisk",
        "> 0.05",
        "< 0.15",
    ] {
        assert!(rules.contains(v), "PrometheusRule lacks {v}");
    }
    let tenants = addons("60-tenant-baseline.yaml");
    for v in [
        "kind: ResourceQuota",
        "kind: LimitRange",
        "name: default-deny-ingress",
        "namespace: \"prod-business\"",
    ] {
        assert!(tenants.contains(v), "tenant baseline lacks {v}");
    }
    let enc = t("master-3", "/etc/kubernetes/encryption-config.yaml");
    assert!(enc.contains("aescbc:") && enc.contains("- secrets"));
    // Binaries come from the bundle, by its components, for the host's architecture.
    let m1 = plan.host("master-1").unwrap();
    match &m1
        .file("/opt/kube/bin/kube-apiserver")
        .expect("apiserver binary")
        .content
    {
        FileContent::BundleFile { bundle_path, .. } => {
            assert_eq!(bundle_path, "bin/linux-amd64/kube-apiserver")
        }
        other => panic!("{other:?}"),
    }
    let archives: Vec<&str> = m1.archives.iter().map(|a| a.bundle_path.as_str()).collect();
    assert_eq!(
        archives,
        [
            "archives/linux-amd64/containerd-1.7.18-linux-amd64.tar.gz",
            "archives/linux-amd64/cni-plugins-linux-amd64-v1.4.0.tgz"
        ]
    );
}
