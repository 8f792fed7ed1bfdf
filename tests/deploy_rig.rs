//! The deploy engine on rig hosts with a small hand-written plan (one config
//! file, one bundle binary, one systemd unit per host): files placed only when
//! they differ, units enabled and restarted only when their step changed, a
//! no-op re-run, all preflight problems at once, and a host whose sshd is
//! down failing alone, with its log, until it is back.

mod common;

use common::rig::Rig;
use ferry_bundles::manifest::FileEntry;
use ferry_bundles::BundleManifest;
use ferry_installer::deploy::{deploy, DeployContext, DeployError, DeployOptions, Status};
use ferry_installer::exec::{KnownHostsPolicy, SshOptions};
use ferry_installer::plan::{
    ClusterPlan, FileContent, HostPlan, PlannedFile, PlannedService, Role, SshTarget, Step,
};
use ferry_installer::store::Store;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const TOOL: &[u8] = b"#!/bin/sh\necho tool from the bundle\n";

fn unit(addr: &str) -> Vec<u8> {
    format!(
        "[Unit]\nDescription=ferry deploy test service\n[Service]\nExecStart=/usr/bin/python3 -m http.server 8099 --bind {addr} --directory /etc/ferry-test\n[Install]\nWantedBy=multi-user.target\n"
    )
    .into_bytes()
}

fn host(name: &str, addr: &str, rig: &Rig, greeting: &str) -> HostPlan {
    let file = |path: &str, mode: u32, content: FileContent, step: Step| PlannedFile {
        path: PathBuf::from(path),
        mode,
        secret: false,
        content,
        step,
    };
    HostPlan {
        name: name.into(),
        inventory_host: addr.into(),
        address: addr.into(),
        ssh: SshTarget {
            host: addr.into(),
            port: 22,
            user: "root".into(),
            identity_file: Some(rig.key()),
            become_root: false,
        },
        arch: "amd64".into(),
        roles: BTreeSet::from([Role::Node]),
        pool: None,
        files: vec![
            file(
                "/opt/ferry-test/bin/tool",
                0o755,
                FileContent::BundleFile {
                    bundle_path: "bin/linux-amd64/tool".into(),
                    sha256: hex::encode(Sha256::digest(TOOL)),
                    size: TOOL.len() as u64,
                },
                Step::Binaries,
            ),
            file(
                "/etc/ferry-test/index.html",
                0o644,
                FileContent::Inline(greeting.as_bytes().to_vec()),
                Step::Nodes,
            ),
            file(
                "/etc/systemd/system/ferry-test.service",
                0o644,
                FileContent::Inline(unit(addr)),
                Step::Nodes,
            ),
        ],
        archives: vec![],
        services: vec![PlannedService {
            unit: "ferry-test.service".into(),
            step: Step::Nodes,
            enable: true,
        }],
        kernel_modules: vec![],
        sysctls: vec![],
    }
}

fn cluster_dir(rig: &Rig) -> PathBuf {
    std::env::temp_dir().join(format!("ferry-deploy-rig-{}", rig.id))
}

fn plan(rig: &Rig, greetings: &[&str]) -> ClusterPlan {
    ClusterPlan {
        cluster_name: "t".into(),
        cni: "cilium".into(),
        // The deploy records there what it places on each host.
        cluster_dir: cluster_dir(rig),
        kubernetes: "1.29.6".into(),
        bundle_name: "t".into(),
        registry_mirrors: vec![],
        vip: None,
        apiserver_endpoint: "https://127.0.0.1:6443".into(),
        node_apiserver_endpoint: "https://127.0.0.1:6444".into(),
        apiserver_port: 6443,
        etcd_endpoints: vec![],
        bin_dir: PathBuf::from("/opt/ferry-test/bin"),
        restrict_oom_score_adj: false,
        new_cluster: false,
        etcd_members: Default::default(),
        data_dirs: Default::default(),
        admin_kubeconfig: PathBuf::from("/nonexistent"),
        hosts: rig
            .hosts
            .iter()
            .zip(greetings)
            .map(|((n, a), g)| host(n, a, rig, g))
            .collect(),
    }
}

fn context(data: &Path) -> DeployContext {
    let store = Store::open(data);
    store.create_dirs().unwrap();
    let dir = store.bundle_dir("t").unwrap().join("bin/linux-amd64");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tool"), TOOL).unwrap();
    let manifest = BundleManifest {
        schema: 1,
        name: "t".into(),
        created: "2026-01-01T00:00:00Z".into(),
        builder: "test".into(),
        kubernetes: "1.29.6".into(),
        platforms: vec!["linux/amd64".into()],
        components: vec![],
        images: vec![],
        files: vec![FileEntry {
            path: "bin/linux-amd64/tool".into(),
            size: TOOL.len() as u64,
            sha256: hex::encode(Sha256::digest(TOOL)),
            mode: 0o755,
            in_base: false,
        }],
        base: None,
        os_packages: Vec::new(),
    };
    DeployContext {
        store,
        bundle: "t".into(),
        manifest,
    }
}

fn options(rig: &Rig, logs: &Path) -> DeployOptions {
    DeployOptions {
        node_roll: None,
        forks: 2,
        ssh: SshOptions {
            config_file: Some(rig.ssh_config()),
            known_hosts: KnownHostsPolicy::Strict,
            control_dir: None,
            connect_timeout: None,
        },
        log_dir: logs.to_path_buf(),
        limit: None,
        verify_hosts: false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_places_starts_converges_and_isolates_failures() {
    let rig = Rig::up(3, "fdp", 42);
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(&tmp.path().join("data"));
    let logs = tmp.path().join("logs");
    let opts = options(&rig, &logs);

    // First run: everything is new.
    let p = plan(&rig, &["one", "two", "three"]);
    let report = deploy(&p, &ctx, &opts).await.expect("deploy");
    assert!(report.ok(), "{}", report.table());
    assert_eq!(report.changed_files(), 9, "{}", report.table());
    assert_eq!(report.restarted_units(), 3);
    for ((h, addr), want) in rig.hosts.iter().zip(["one", "two", "three"]) {
        assert_eq!(
            rig.sh(
                h,
                "systemctl is-enabled ferry-test; systemctl is-active ferry-test"
            ),
            "enabled\nactive\n"
        );
        let page = rig.sh(h, &format!("exec 3<>/dev/tcp/{addr}/8099; printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3"));
        assert!(page.ends_with(want), "{h}: {page}");
        assert_eq!(
            rig.sh(h, "/opt/ferry-test/bin/tool"),
            "tool from the bundle\n"
        );
        let log = std::fs::read_to_string(logs.join(format!("{h}.log"))).unwrap();
        assert!(
            log.contains("--- step nodes") && log.contains("wrote /etc/ferry-test/index.html"),
            "{h} log:\n{log}"
        );
    }
    let pid_before = rig.sh("h1", "systemctl show -p MainPID --value ferry-test");

    // Second run, nothing changed: nothing written, nothing restarted.
    let report = deploy(&p, &ctx, &opts).await.expect("deploy again");
    assert!(report.ok(), "{}", report.table());
    assert_eq!(
        (report.changed_files(), report.restarted_units()),
        (0, 0),
        "{}",
        report.table()
    );
    assert!(report.table().contains("no changes"), "{}", report.table());
    assert_eq!(
        rig.sh("h1", "systemctl show -p MainPID --value ferry-test"),
        pid_before
    );

    // One host's file changes: only that host writes one file and restarts its unit.
    let p2 = plan(&rig, &["one", "TWO", "three"]);
    let report = deploy(&p2, &ctx, &opts).await.expect("deploy a change");
    let per: Vec<(usize, usize)> = report
        .hosts
        .iter()
        .map(|h| (h.changed_files.len(), h.restarted_units.len()))
        .collect();
    assert_eq!(per, vec![(0, 0), (1, 1), (0, 0)], "{}", report.table());

    // --limit: only the named host is touched.
    let p_limit = plan(&rig, &["ONE", "TWO-2", "three"]);
    let mut limited = options(&rig, &logs);
    limited.limit = Some(BTreeSet::from(["h2".to_string()]));
    let report = deploy(&p_limit, &ctx, &limited)
        .await
        .expect("deploy --limit h2");
    assert_eq!(report.hosts.len(), 1, "{}", report.table());
    assert_eq!(report.hosts[0].host, "h2");
    assert_eq!(
        rig.sh("h1", "cat /etc/ferry-test/index.html"),
        "one",
        "--limit h2 touched h1"
    );
    assert_eq!(rig.sh("h2", "cat /etc/ferry-test/index.html"), "TWO-2");
    limited.limit = Some(BTreeSet::from(["nosuchhost".to_string()]));
    let err = deploy(&p_limit, &ctx, &limited)
        .await
        .expect_err("unknown --limit host");
    assert!(err.to_string().contains("nosuchhost"), "{err}");

    // A host whose sshd is down fails alone, with its log; the others finish.
    rig.sh("h3", "systemctl stop ssh; pkill -KILL -x sshd || true");
    let p3 = plan(&rig, &["uno", "dos", "tres"]);
    let report = deploy(&p3, &ctx, &opts).await.expect("deploy with h3 down");
    let h3 = &report.hosts[2];
    assert_eq!(
        (h3.status.clone(), h3.step.as_str()),
        (Status::Failed, "connect"),
        "{}",
        report.table()
    );
    assert!(report.table().contains(&h3.log.display().to_string()));
    assert!(std::fs::read_to_string(&h3.log).unwrap().contains("FAILED"));
    assert!(
        report.hosts[..2].iter().all(|h| h.status == Status::Ok),
        "{}",
        report.table()
    );
    assert!(rig.sh("h1", "cat /etc/ferry-test/index.html") == "uno");
    rig.sh("h3", "systemctl start ssh");
    let report = deploy(&p3, &ctx, &opts)
        .await
        .expect("re-run after sshd is back");
    assert!(report.ok(), "{}", report.table());
    assert_eq!(report.hosts[2].changed_files.len(), 1);
    assert_eq!(rig.sh("h3", "cat /etc/ferry-test/index.html"), "tres");

    // What each host got is recorded on the deploy host, also what an
    // earlier plan placed (the record only grows).
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(cluster_dir(&rig).join("placed/h1.json")).expect("h1's record"),
    )
    .unwrap();
    assert!(
        record["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "/etc/ferry-test/index.html"),
        "{record}"
    );

    // Preflight lists every problem at once and changes nothing.
    rig.sh("h3", "hostname h2");
    let mut bad = plan(&rig, &["x", "y", "z"]);
    bad.hosts[0].arch = "arm64".into();
    let err = deploy(&bad, &ctx, &opts)
        .await
        .expect_err("preflight must fail");
    let text = err.to_string();
    assert!(matches!(err, DeployError::Preflight { .. }));
    assert!(text.contains("h1: architecture is amd64"), "{text}");
    // The same finding on two hosts is one line naming both.
    assert!(
        text.contains("problem h2, h3: hostname \"h2\" is shared by h2, h3"),
        "{text}"
    );
    assert_eq!(
        rig.sh("h1", "cat /etc/ferry-test/index.html"),
        "uno",
        "preflight failure changed a host"
    );
    let _ = std::fs::remove_dir_all(cluster_dir(&rig));
}
