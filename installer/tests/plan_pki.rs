//! The PKI checked with the stock openssl tool: every chain verifies, SANs and
//! key usages are right, kubeconfigs parse and their client certs chain to the
//! CA, keys are 0600, a second run changes nothing and --rotate renews leaves only.

mod common;
use base64::Engine;
use ferry_installer::plan::{build_plan, PlanOptions};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "openssl {args:?} failed: {text}");
    text
}

fn x509_text(cert: &Path) -> String {
    openssl(&[
        "x509",
        "-noout",
        "-text",
        "-in",
        cert.to_str().expect("utf-8 path"),
    ])
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.expect("walk"))
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            (
                e.path()
                    .strip_prefix(dir)
                    .expect("prefix")
                    .display()
                    .to_string(),
                std::fs::read(e.path()).expect("read"),
            )
        })
        .collect()
}

#[test]
fn every_chain_verifies_and_sans_and_usages_are_right() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let plan = common::guide_plan(tmp.path());
    let pki = tmp.path().join("pki");
    let issued: BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(pki.join("issued.json")).expect("issued.json"))
            .expect("json");
    assert!(issued.len() >= 30, "every leaf recorded: {}", issued.len());
    for (name, spec) in &issued {
        let ca = spec
            .split_whitespace()
            .next()
            .and_then(|s| s.strip_prefix("ca="))
            .expect("ca in spec");
        let ca_file = pki.join(format!("{ca}.pem"));
        let cert = pki.join(format!("{name}.pem"));
        let out = openssl(&[
            "verify",
            "-CAfile",
            ca_file.to_str().unwrap(),
            cert.to_str().unwrap(),
        ]);
        assert!(out.contains(": OK"), "{name}: {out}");
        // the key matches the certificate
        let key = pki.join(format!("{name}-key.pem"));
        let a = openssl(&["pkey", "-pubout", "-in", key.to_str().unwrap()]);
        let b = openssl(&["x509", "-noout", "-pubkey", "-in", cert.to_str().unwrap()]);
        assert_eq!(a, b, "{name}: key and certificate belong together");
        let mode = std::fs::metadata(&key).expect("key").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name}-key.pem is private");
    }
    // A certificate must not verify against the wrong CA.
    let wrong = Command::new("openssl")
        .args([
            "verify",
            "-CAfile",
            pki.join("ca.pem").to_str().unwrap(),
            pki.join("etcd/etcd-1-server.pem").to_str().unwrap(),
        ])
        .output()
        .expect("openssl");
    assert!(
        !wrong.status.success(),
        "etcd certs are signed by the etcd CA, not the cluster CA"
    );

    let api = x509_text(&pki.join("apiserver.pem"));
    for san in [
        "IP Address:10.10.0.10",
        "IP Address:10.10.0.11",
        "IP Address:10.10.0.12",
        "IP Address:10.10.0.13",
        "IP Address:10.96.0.1",
        "IP Address:127.0.0.1",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
        "DNS:localhost",
        "DNS:master-1",
        "DNS:master-3",
    ] {
        assert!(api.contains(san), "apiserver SAN {san} missing:\n{api}");
    }
    assert!(
        api.contains("TLS Web Server Authentication")
            && !api.contains("TLS Web Client Authentication"),
        "{api}"
    );
    assert!(api.contains("Digital Signature, Key Encipherment"), "{api}");

    let ca = x509_text(&pki.join("ca.pem"));
    assert!(
        ca.contains("CA:TRUE") && ca.contains("Certificate Sign"),
        "{ca}"
    );

    let etcd = x509_text(&pki.join("etcd/etcd-2-peer.pem"));
    assert!(
        etcd.contains("IP Address:10.10.0.12") && etcd.contains("DNS:etcd-2"),
        "{etcd}"
    );
    assert!(
        etcd.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
        "{etcd}"
    );

    let kubelet = x509_text(&pki.join("kubelet/worker-a-1.pem"));
    assert!(
        kubelet.contains("O=system:nodes, CN=system:node:worker-a-1")
            || kubelet.contains("O = system:nodes, CN = system:node:worker-a-1"),
        "{kubelet}"
    );
    assert!(
        kubelet.contains("TLS Web Client Authentication"),
        "{kubelet}"
    );

    let registry = x509_text(&pki.join("registry.pem"));
    for ip in ["10.10.0.11", "10.10.0.12", "10.10.0.13"] {
        assert!(
            registry.contains(&format!("IP Address:{ip}")),
            "registry SAN {ip}: {registry}"
        );
    }
    let admin = x509_text(&pki.join("admin.pem"));
    assert!(admin.contains("system:masters"), "{admin}");
    // The balancers' health check: a client of its own, in no group.
    let check = x509_text(&pki.join("apiserver-health-check.pem"));
    assert!(
        check.contains("Subject: CN = ferry:apiserver-health-check\n")
            && check.contains("TLS Web Client Authentication")
            && !check.contains("TLS Web Server Authentication"),
        "{check}"
    );

    // service-account key pair
    let sa = openssl(&[
        "pkey",
        "-pubout",
        "-in",
        pki.join("sa.key").to_str().unwrap(),
    ]);
    assert_eq!(
        sa,
        std::fs::read_to_string(pki.join("sa.pub")).expect("sa.pub")
    );
    assert_eq!(
        std::fs::metadata(pki.join("sa.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(tmp.path().join("secrets/encryption-key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    drop(plan);
}

#[test]
fn kubeconfigs_parse_and_chain_to_the_ca() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let plan = common::guide_plan(tmp.path());
    let ca = tmp.path().join("pki/ca.pem");
    let dir = tmp.path().join("kubeconfig");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("kubeconfig dir") {
        let path = entry.expect("entry").path();
        let doc: serde_norway::Value =
            serde_norway::from_slice(&std::fs::read(&path).expect("read")).expect("YAML");
        let user = &doc["users"][0]["user"];
        let server = doc["clusters"][0]["cluster"]["server"]
            .as_str()
            .expect("server");
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name.starts_with("kube-controller-manager") || name.starts_with("kube-scheduler") {
            // The master's own apiserver.
            assert_eq!(server, "https://127.0.0.1:6443", "{name}");
        } else if name.starts_with("kubelet-") || name == "kube-proxy" {
            // The node's local balancer in front of every apiserver.
            assert_eq!(server, "https://127.0.0.1:6444", "{name}");
        } else {
            // External clients: the VIP.
            assert_eq!(server, plan.apiserver_endpoint, "{name}");
        }
        let b64 = |v: &serde_norway::Value| {
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().expect("data"))
                .expect("base64")
        };
        let cert = tmp.path().join(format!("{name}.crt"));
        std::fs::write(&cert, b64(&user["client-certificate-data"])).unwrap();
        let out = openssl(&[
            "verify",
            "-CAfile",
            ca.to_str().unwrap(),
            cert.to_str().unwrap(),
        ]);
        assert!(out.contains(": OK"), "{name}: {out}");
        let ca_data = b64(&doc["clusters"][0]["cluster"]["certificate-authority-data"]);
        assert_eq!(
            ca_data,
            std::fs::read(&ca).unwrap(),
            "{name} carries the cluster CA"
        );
        let text = x509_text(&cert);
        if let Some(node) = name.strip_prefix("kubelet-") {
            assert!(
                text.contains(&format!("CN = system:node:{node}"))
                    && text.contains("O = system:nodes"),
                "{text}"
            );
        }
        assert!(!b64(&user["client-key-data"]).is_empty());
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600,
            "{name}"
        );
        seen += 1;
    }
    // admin, controller-manager, scheduler, kube-proxy + one kubelet per node (3 masters + 6 nodes)
    assert_eq!(seen, 4 + 9);
}

#[test]
fn second_run_reuses_and_rotate_renews_leaves_only() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let first_plan = common::guide_plan(tmp.path());
    let first = snapshot(tmp.path());
    let second_plan = common::guide_plan(tmp.path());
    let second = snapshot(tmp.path());
    assert_eq!(
        first, second,
        "a second run leaves the cluster dir byte for byte"
    );
    // and renders the same host files
    let files = |p: &ferry_installer::plan::ClusterPlan| -> Vec<(String, Option<String>)> {
        p.hosts
            .iter()
            .flat_map(|h| {
                h.files.iter().map(move |f| {
                    (
                        format!("{}:{}", h.name, f.path.display()),
                        f.content.sha256(),
                    )
                })
            })
            .collect()
    };
    assert_eq!(files(&first_plan), files(&second_plan));

    let f = common::fixtures();
    build_plan(
        &f.join("hosts"),
        &f.join("config.yml"),
        &common::bundle(),
        Some(tmp.path()),
        &PlanOptions {
            rotate: true,
            ..common::options()
        },
    )
    .expect("rotate");
    let rotated = snapshot(tmp.path());
    for ca in [
        "pki/ca.pem",
        "pki/ca-key.pem",
        "pki/etcd/ca.pem",
        "pki/front-proxy-ca.pem",
        "pki/sa.key",
        "secrets/encryption-key",
    ] {
        assert_eq!(first[ca], rotated[ca], "{ca} is kept by --rotate");
    }
    for leaf in [
        "pki/apiserver.pem",
        "pki/etcd/etcd-1-server.pem",
        "pki/kubelet/worker-a-4.pem",
        "pki/registry.pem",
    ] {
        assert_ne!(first[leaf], rotated[leaf], "{leaf} is renewed by --rotate");
    }
    assert_eq!(
        first["pki/apiserver-key.pem"], rotated["pki/apiserver-key.pem"],
        "leaf keys are kept"
    );
    assert_ne!(
        first["kubeconfig/admin.kubeconfig"], rotated["kubeconfig/admin.kubeconfig"],
        "kubeconfigs carry the new certs"
    );
    let out = openssl(&[
        "verify",
        "-CAfile",
        tmp.path().join("pki/ca.pem").to_str().unwrap(),
        tmp.path().join("pki/apiserver.pem").to_str().unwrap(),
    ]);
    assert!(out.contains(": OK"));
}

#[test]
fn a_new_master_reissues_the_apiserver_certificate() {
    let inputs = common::Inputs::new(common::SMALL_HOSTS, common::SMALL_CONFIG);
    inputs.plan().expect("plan");
    let cert = inputs.dir.path().join("cluster/pki/apiserver.pem");
    let before = std::fs::read(&cert).unwrap();
    let etcd_before =
        std::fs::read(inputs.dir.path().join("cluster/pki/etcd/etcd1-server.pem")).unwrap();
    let hosts = common::SMALL_HOSTS.replace(
        "10.1.0.3 k8s_nodename='master-03'\n",
        "10.1.0.3 k8s_nodename='master-03'\n10.1.0.5 k8s_nodename='master-04'\n",
    );
    std::fs::write(inputs.hosts(), hosts).unwrap();
    inputs.plan().expect("plan with a fourth master");
    let after = std::fs::read(&cert).unwrap();
    assert_ne!(
        before, after,
        "the SANs changed, so the certificate is reissued"
    );
    assert!(x509_text(&cert).contains("IP Address:10.1.0.5"));
    assert_eq!(
        etcd_before,
        std::fs::read(inputs.dir.path().join("cluster/pki/etcd/etcd1-server.pem")).unwrap()
    );
}

/// The PKI never changes silently: a half-present CA, a lost service-account
/// key or encryption key of an existing cluster dir, and a private key others
/// can read each stop the plan, naming the file and the fix; nothing is
/// regenerated.
#[test]
fn a_damaged_pki_is_refused_not_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = tmp.path().join("cluster");
    common::guide_plan(&cluster);
    let pki = cluster.join("pki");
    let before = snapshot(&pki);
    let key = std::fs::read(pki.join("ca-key.pem")).unwrap();
    let plan_err = || {
        build_plan(
            &common::fixtures().join("hosts"),
            &common::fixtures().join("config.yml"),
            &common::bundle(),
            Some(&cluster),
            &common::options(),
        )
        .expect_err("planned over a damaged PKI")
        .to_string()
    };

    std::fs::remove_file(pki.join("ca-key.pem")).unwrap();
    let err = plan_err();
    assert!(
        err.contains("ca.pem exists but") && err.contains("ca-key.pem does not"),
        "{err}"
    );
    assert!(!pki.join("ca-key.pem").exists(), "no new CA key was made");
    std::fs::write(pki.join("ca-key.pem"), &key).unwrap();
    std::fs::set_permissions(
        pki.join("ca-key.pem"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let err = plan_err();
    assert!(
        err.contains("mode 0644") && err.contains("chmod 600"),
        "{err}"
    );
    std::fs::set_permissions(
        pki.join("ca-key.pem"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();

    let sa = std::fs::read(pki.join("sa.key")).unwrap();
    std::fs::remove_file(pki.join("sa.key")).unwrap();
    assert!(plan_err().contains("sa.key is missing"));
    std::fs::write(pki.join("sa.key"), &sa).unwrap();
    std::fs::set_permissions(pki.join("sa.key"), std::fs::Permissions::from_mode(0o600)).unwrap();

    let enc = cluster.join("secrets/encryption-key");
    std::fs::remove_file(&enc).unwrap();
    let err = plan_err();
    assert!(
        err.contains("encryption-key is missing") && err.contains("unreadable"),
        "{err}"
    );
    assert!(!enc.exists(), "no new encryption key was made");
    assert_eq!(snapshot(&pki), before, "the PKI is unchanged");
    let leftovers: Vec<_> = walkdir::WalkDir::new(&cluster)
        .into_iter()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".ferry-"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

/// `ferry status` plans read-only: a cluster dir without a PKI is an error
/// and stays empty; an installed one is read and nothing in it changes.
#[test]
fn a_read_only_plan_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = tmp.path().join("cluster");
    let read_only = |dir: &Path| {
        build_plan(
            &common::fixtures().join("hosts"),
            &common::fixtures().join("config.yml"),
            &common::bundle(),
            Some(dir),
            &PlanOptions {
                read_only: true,
                ..common::options()
            },
        )
    };
    let err = read_only(&cluster)
        .expect_err("planned without a PKI")
        .to_string();
    assert!(
        err.contains("no PKI in") && err.contains("ferry install"),
        "{err}"
    );
    assert!(
        !cluster.exists(),
        "a read-only plan created {}",
        cluster.display()
    );
    common::guide_plan(&cluster);
    let before = snapshot(&cluster);
    std::fs::remove_dir_all(cluster.join("kubeconfig")).unwrap();
    read_only(&cluster).expect("read-only plan of an installed cluster dir");
    assert!(
        !cluster.join("kubeconfig").exists(),
        "kubeconfigs were written"
    );
    let after = snapshot(&cluster);
    assert!(
        after.iter().all(|(k, v)| before.get(k) == Some(v)),
        "files changed"
    );
}

/// Whether a certificate is still valid `days` from now (`openssl x509 -checkend`).
fn valid_in(cert: &Path, days: u64) -> bool {
    Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-checkend",
            &(days * 86400).to_string(),
            "-in",
        ])
        .arg(cert)
        .output()
        .unwrap()
        .status
        .success()
}

/// `notAfter` of a certificate file, as openssl prints it.
fn enddate(cert: &Path) -> String {
    openssl(&["x509", "-noout", "-enddate", "-in", cert.to_str().unwrap()])
}

#[test]
fn lifetimes_follow_the_config_and_a_renewed_leaf_stops_at_its_ca() {
    let f = common::fixtures();
    let hosts = std::fs::read_to_string(f.join("hosts")).unwrap();
    let config = std::fs::read_to_string(f.join("config.yml")).unwrap();
    let short = common::Inputs::new(
        &hosts,
        &format!("{config}\nCA_EXPIRY: \"480h\"\nCERT_EXPIRY: \"240h\"\n"),
    );
    short.plan().expect("short lifetimes plan");
    let pki = short.dir.path().join("cluster/pki");
    // Leaves for 10 days, CAs for 20.
    assert!(valid_in(&pki.join("apiserver.pem"), 9));
    assert!(
        !valid_in(&pki.join("apiserver.pem"), 11),
        "CERT_EXPIRY 240h gives 10 days"
    );
    assert!(
        valid_in(&pki.join("ca.pem"), 19),
        "CA_EXPIRY 480h gives 20 days"
    );
    assert!(!valid_in(&pki.join("ca.pem"), 21));
    let ca_end = enddate(&pki.join("ca.pem"));

    // A year asked for, renewed under the 20-day CAs: the leaves end with their CA.
    std::fs::write(
        short.config(),
        format!("{config}\nCERT_EXPIRY: \"8760h\"\n"),
    )
    .unwrap();
    build_plan(
        &short.hosts(),
        &short.config(),
        &common::bundle(),
        Some(&short.dir.path().join("cluster")),
        &PlanOptions {
            rotate: true,
            ..common::options()
        },
    )
    .expect("rotate");
    assert_eq!(enddate(&pki.join("ca.pem")), ca_end, "the CA is kept");
    assert_eq!(enddate(&pki.join("apiserver.pem")), ca_end);
    assert_eq!(
        enddate(&pki.join("etcd/etcd-1-server.pem")),
        enddate(&pki.join("etcd/ca.pem"))
    );
}
