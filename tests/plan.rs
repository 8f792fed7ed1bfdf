//! `ferry plan` as a user runs it on the production guide's example.

mod common;
use std::path::Path;
use std::process::Command;

fn ferry() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
}

/// `ferry plan` of these files; callers add the trust and output flags.
fn plan_cmd(inventory: &Path, config: &Path, bundle: &Path, cluster_dir: &Path) -> Command {
    let mut cmd = ferry();
    cmd.args(["plan", "--inventory"])
        .arg(inventory)
        .arg("--config")
        .arg(config)
        .arg("--bundle")
        .arg(bundle)
        .arg("--cluster-dir")
        .arg(cluster_dir);
    cmd
}

#[test]
fn plans_the_guide_example_from_a_real_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = common::plan::guide_bundle(tmp.path());
    let g = common::plan::guide_dir();
    let out_dir = tmp.path().join("out");
    let cluster = tmp.path().join("cluster");
    let out = plan_cmd(&g.join("hosts"), &g.join("config.yml"), &bundle, &cluster)
        .arg("--insecure-skip-signature")
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("cluster prod-k8s (Kubernetes 1.29.6, bundle prod-1.29.6)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("apiserver https://10.10.0.10:6443"),
        "{stdout}"
    );
    for host in [
        "master-1",
        "master-2",
        "master-3",
        "system-1",
        "system-2",
        "worker-a-1",
        "worker-a-4",
        "10.10.0.21",
        "10.10.0.22",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(&format!("{host} "))),
            "summary lists {host}: {stdout}"
        );
        assert!(out_dir.join("hosts").join(host).is_dir(), "tree for {host}");
    }
    let line = stdout.lines().find(|l| l.starts_with("master-1 ")).unwrap();
    assert!(
        line.contains("etcd,master,node,chrony,registry")
            && line.contains("kube-apiserver")
            && line.contains("etcd"),
        "{line}"
    );
    // The guide's SANDBOX_IMAGE is a private copy of the bundle's pause image: said so, and replaced.
    assert!(
        stderr.contains(
            "SANDBOX_IMAGE harbor.company.local/google_containers/pause:3.9 is not in the bundle"
        ),
        "{stderr}"
    );
    assert!(out_dir
        .join("hosts/master-1/etc/systemd/system/kube-apiserver.service")
        .is_file());
    assert!(out_dir
        .join("hosts/10.10.0.22/etc/keepalived/keepalived.conf")
        .is_file());
    assert!(
        cluster.join("pki/ca.pem").is_file()
            && cluster.join("kubeconfig/admin.kubeconfig").is_file()
    );
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("plan.json")).unwrap()).unwrap();
    assert_eq!(plan["hosts"].as_array().unwrap().len(), 11);
}

#[test]
fn json_plan_never_prints_key_material() {
    let tmp = tempfile::tempdir().unwrap();
    let g = common::plan::guide_dir();
    let out = ferry()
        .args(["plan", "--json", "--inventory"])
        .arg(g.join("hosts"))
        .arg("--config")
        .arg(g.join("config.yml"))
        .arg("--bundle")
        .arg(common::plan::guide_bundle(tmp.path()))
        .arg("--insecure-skip-signature")
        .arg("--cluster-dir")
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("PRIVATE KEY") && !text.contains("BEGIN"),
        "no PEM in --json"
    );
    let plan: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let m1 = &plan["hosts"][0];
    assert_eq!(m1["name"], "master-1");
    let key = m1["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "/etc/kubernetes/ssl/apiserver-key.pem")
        .unwrap();
    assert_eq!(key["secret"], true);
    assert_eq!(key["mode"], 0o600);
    assert_eq!(key["content"]["source"], "inline");
    assert!(key["content"]["sha256"].as_str().unwrap().len() == 64);
}

#[test]
fn invalid_inventory_fails_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let g = common::plan::guide_dir();
    let hosts = std::fs::read_to_string(g.join("hosts")).unwrap().replacen(
        "10.10.0.13\n[kube_node]",
        "[kube_node]",
        1,
    );
    let inv = tmp.path().join("hosts");
    std::fs::write(&inv, hosts).unwrap();
    let out = plan_cmd(
        &inv,
        &g.join("config.yml"),
        &g.join("bundle.json"),
        &tmp.path().join("c"),
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:16: [etcd] has 2 member(s)", inv.display())),
        "{err}"
    );
}

/// The chain that ran a command as root during preflight began with a
/// newline in CLUSTER_NAME: such a value is refused at load, naming the file,
/// line and key, and nothing is written.
#[test]
fn a_value_with_a_control_character_is_refused_and_nothing_written() {
    let tmp = tempfile::tempdir().unwrap();
    let g = common::plan::guide_dir();
    let text = std::fs::read_to_string(g.join("config.yml")).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("CLUSTER_NAME:"))
        .expect("CLUSTER_NAME")
        + 1;
    let hostile: String = text
        .lines()
        .map(|l| match l.starts_with("CLUSTER_NAME:") {
            true => "CLUSTER_NAME: \"prod\\n$(touch /tmp/ferry-pwned)\"".to_string(),
            false => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let config = tmp.path().join("config.yml");
    std::fs::write(&config, hostile).unwrap();
    let cluster = tmp.path().join("c");
    let out = plan_cmd(&g.join("hosts"), &config, &g.join("bundle.json"), &cluster)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("{}:{line}", config.display()))
            && err.contains("CLUSTER_NAME")
            && err.contains("U+000A"),
        "{err}"
    );
    assert!(!cluster.exists(), "nothing is written for a refused value");
}

/// An SSH destination or user that ssh would read as an option is refused,
/// naming the inventory line.
#[test]
fn ssh_destinations_and_users_that_read_as_options_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let g = common::plan::guide_dir();
    let hosts = std::fs::read_to_string(g.join("hosts")).unwrap();
    for (from, to, what) in [
        (
            "ansible_host=10.10.0.12",
            "ansible_host=-oProxyCommand=id",
            "ansible_host (or the inventory host) \"-oProxyCommand=id\"",
        ),
        (
            "node_name=master-2",
            "node_name=master-2 ansible_user='-oProxyCommand=id'",
            "ansible_user: \"-oProxyCommand=id\" is not a user name",
        ),
    ] {
        let inv = tmp.path().join("hosts");
        std::fs::write(&inv, hosts.replacen(from, to, 1)).unwrap();
        let out = plan_cmd(
            &inv,
            &g.join("config.yml"),
            &g.join("bundle.json"),
            &tmp.path().join("c"),
        )
        .output()
        .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!("{}:4", inv.display())) && err.contains(what),
            "{err}"
        );
    }
}

#[test]
fn unknown_keys_and_unused_jinja_warn_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let g = common::plan::guide_dir();
    let hosts = std::fs::read_to_string(g.join("hosts")).unwrap()
        + "cluster_dir=\"{{ base_dir }}/clusters/prod\"\nFANCY_KNOB=1\n";
    let config = std::fs::read_to_string(g.join("config.yml")).unwrap() + "ETCD_QUOTA_MAGIC: 3\n";
    let (inv, cfg) = (tmp.path().join("hosts"), tmp.path().join("config.yml"));
    std::fs::write(&inv, hosts).unwrap();
    std::fs::write(&cfg, config).unwrap();
    let out = plan_cmd(
        &inv,
        &cfg,
        &common::plan::guide_bundle(tmp.path()),
        &tmp.path().join("c"),
    )
    .arg("--insecure-skip-signature")
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "warnings do not fail the plan: {err}");
    assert!(
        err.contains(&format!(
            "{}:58: unknown key ETCD_QUOTA_MAGIC is ignored",
            cfg.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{}:36: [all:vars] FANCY_KNOB is not used by ferry",
            inv.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{}:35: cluster_dir={{{{ base_dir }}}}/clusters/prod holds Jinja",
            inv.display()
        )),
        "{err}"
    );
}

#[test]
fn a_bare_bundle_json_is_not_enough_to_render_the_addons() {
    let tmp = tempfile::tempdir().unwrap();
    let g = common::plan::guide_dir();
    let json = tmp.path().join("bundle.json");
    std::fs::copy(g.join("bundle.json"), &json).unwrap();
    let out = plan_cmd(
        &g.join("hosts"),
        &g.join("config.yml"),
        &json,
        &tmp.path().join("c"),
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("manifests/cilium/cilium-1.15.6.tgz")
            && err.contains("a bare bundle.json carries no files"),
        "{err}"
    );
}

#[test]
fn a_bundle_file_is_verified_before_its_helm_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let g = common::plan::guide_dir();
    let bundle = common::plan::guide_bundle(tmp.path());
    // Unsigned, and no --insecure-skip-signature: nothing of it is run.
    let out = plan_cmd(
        &g.join("hosts"),
        &g.join("config.yml"),
        &bundle,
        &tmp.path().join("c"),
    )
    .arg("--trust")
    .arg(tmp.path().join("none.pub"))
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("none.pub") || err.contains("signature"),
        "{err}"
    );
    assert!(
        !tmp.path().join("c/pki/ca.pem").exists(),
        "the plan went ahead"
    );
}

/// `ferry plan` on kubeasz's own example, as `ezctl new` writes it: one
/// summary line for the keys of components ferry does not deploy (each key
/// under --verbose), and no other warning about the unedited files.
#[test]
fn kubeasz_example_plans_with_one_summary_of_ignored_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let (hosts, config) =
        common::kubeasz::ezctl_new(&common::kubeasz::KUBEASZ_3_6_3, "k8s-01", "1.29.6");
    let (inv, cfg) = (tmp.path().join("hosts"), tmp.path().join("config.yml"));
    std::fs::write(&inv, hosts).unwrap();
    std::fs::write(&cfg, &config).unwrap();
    let bundle = common::plan::guide_bundle(tmp.path());
    let plan = |verbose: bool| {
        let mut cmd = plan_cmd(&inv, &cfg, &bundle, &tmp.path().join("c"));
        cmd.arg("--insecure-skip-signature");
        if verbose {
            cmd.arg("--verbose");
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        (String::from_utf8_lossy(&out.stdout).into_owned(), err)
    };
    let (stdout, err) = plan(false);
    // Warnings about the cluster dir's files (not the test's unsigned bundle).
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("WARN") && !l.contains(".tar.zst"))
        .collect();
    let summary = format!(
        "{}: 50 kubeasz keys configure what ferry does not deploy and are ignored: dashboard (3), docker (2), flannel (2), harbor (8), image versions (9), kube-router (2), kubeapps (5), kubeasz's cilium role (3), local-path-provisioner (3), network-check (2), nfs-provisioner (6), prometheus (3), system preparation (2); --verbose lists each",
        cfg.display()
    );
    assert!(warnings.iter().any(|w| w.ends_with(&summary)), "{err}");
    // The only other warning: SANDBOX_IMAGE names kubeasz's local registry.
    assert_eq!(warnings.len(), 2, "{err}");
    assert!(
        warnings.iter().any(|w| w.contains("SANDBOX_IMAGE easzlab.io.local:5000/easzlab/pause:3.9 is kubeasz's local registry copy")),
        "{err}"
    );
    assert!(
        !err.contains("prom_install"),
        "no per-key line without --verbose: {err}"
    );
    assert!(
        stdout.contains("cluster cluster1 (Kubernetes 1.29.6"),
        "{stdout}"
    );

    let (_, verbose) = plan(true);
    let line = 1 + config
        .lines()
        .position(|l| l.starts_with("prom_install:"))
        .unwrap();
    assert!(
        verbose.contains(&format!(
            "{}:{line}: prom_install is ignored: prometheus (not in the bundle)",
            cfg.display()
        )),
        "{verbose}"
    );
}

/// The plan's summary names the node pools and the nodes' local balancer;
/// ENABLE_MIRROR_REGISTRY's public mirrors are not added, and said so.
#[test]
fn plan_prints_pools_and_the_local_balancer() {
    let tmp = tempfile::tempdir().unwrap();
    let (hosts, config) =
        common::kubeasz::ezctl_new(&common::kubeasz::KUBEASZ_3_6_3, "k8s-01", "1.29.6");
    let hosts = hosts
        .replace(
            "192.168.1.4 k8s_nodename='worker-01'",
            "192.168.1.4 k8s_nodename='worker-01' node_pool=system",
        )
        .replace("[chrony]", "[batch]\n192.168.1.5\n\n[chrony]");
    let config = config.replace(
        "ENABLE_MIRROR_REGISTRY: false",
        "ENABLE_MIRROR_REGISTRY: true",
    );
    let (inv, cfg) = (tmp.path().join("hosts"), tmp.path().join("config.yml"));
    std::fs::write(&inv, hosts).unwrap();
    std::fs::write(&cfg, &config).unwrap();
    let out = plan_cmd(
        &inv,
        &cfg,
        &common::plan::guide_bundle(tmp.path()),
        &tmp.path().join("c"),
    )
    .arg("--insecure-skip-signature")
    .output()
    .unwrap();
    let (stdout, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{err}");
    for line in [
        "  nodes reach the apiservers through their local balancer https://127.0.0.1:6444",
        "  pool system (DNS, monitoring, logging, ingress; tainted): worker-01",
        "  pool batch (offline jobs; PriorityClass batch-low): worker-02",
    ] {
        assert!(stdout.lines().any(|l| l == line), "{line}\n{stdout}");
    }
    let at = 1 + config
        .lines()
        .position(|l| l.starts_with("ENABLE_MIRROR_REGISTRY"))
        .unwrap();
    assert!(
        err.contains(&format!(
            "{}:{at}: ENABLE_MIRROR_REGISTRY: true adds kubeasz's public registry mirrors, which a disconnected site cannot reach; ferry adds none",
            cfg.display()
        )),
        "{err}"
    );
}

/// Every inventory variable ferry reads refuses a value outside its kind,
/// naming the inventory line and the variable, and nothing is written.
#[test]
fn every_inventory_variable_refuses_a_value_outside_its_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let g = common::plan::guide_dir();
    let hosts = std::fs::read_to_string(g.join("hosts")).unwrap();
    let master2 = "10.10.0.12 ";
    let lb1 = "\n10.10.0.21\n";
    // Per-host variables go on master-2's line (4) or the first [ex_lb] line;
    // cluster-wide ones at the end of [all:vars].
    let per_host = [
        "ansible_host",
        "ip",
        "node_name",
        "k8s_nodename",
        "NODE_NAME",
        "etcd_name",
        "arch",
        "ansible_user",
        "ansible_port",
        "ansible_ssh_port",
        "ansible_ssh_private_key_file",
        "ansible_ssh_user",
        "ansible_private_key_file",
    ];
    let on_lb = ["LB_ROLE", "EX_APISERVER_VIP", "EX_APISERVER_PORT"];
    let all_vars = [
        "SECURE_PORT",
        "CONTAINER_RUNTIME",
        "CLUSTER_NETWORK",
        "PROXY_MODE",
        "SERVICE_CIDR",
        "CLUSTER_CIDR",
        "NODE_PORT_RANGE",
        "CLUSTER_DNS_DOMAIN",
        "bin_dir",
        "ca_dir",
    ];
    let lb_line = hosts.lines().position(|l| l == "10.10.0.21").unwrap() + 1;
    let last_line = hosts.lines().count() + 1;
    let mut failures = Vec::new();
    for value in ["v$(id)", "../../etc/x", "'a b'"] {
        let mut cases: Vec<(String, &str, usize)> = Vec::new();
        for key in per_host {
            let text = hosts
                .lines()
                .map(|l| match l.starts_with(master2) {
                    true => with_var(l, key, value),
                    false => l.to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n");
            cases.push((text, key, 4));
        }
        for key in on_lb {
            let text = hosts.replacen(lb1, &format!("\n10.10.0.21 {key}={value}\n"), 1);
            cases.push((text, key, lb_line));
        }
        for key in all_vars {
            cases.push((format!("{hosts}{key}={value}\n"), key, last_line));
        }
        for (text, key, line) in cases {
            let inv = tmp.path().join("hosts");
            std::fs::write(&inv, text).unwrap();
            let cluster = tmp.path().join("c");
            let out = plan_cmd(
                &inv,
                &g.join("config.yml"),
                &g.join("bundle.json"),
                &cluster,
            )
            .output()
            .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            let named = err.contains(&format!("{}:{line}", inv.display())) && err.contains(key);
            if out.status.code() != Some(1) || !named || cluster.exists() {
                failures.push(format!("{key}={value}: {err}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// An inventory host line with `key` set to `value` (replaced, else added).
fn with_var(line: &str, key: &str, value: &str) -> String {
    let prefix = format!("{key}=");
    let mut words: Vec<String> = line
        .split(' ')
        .filter(|w| !w.starts_with(&prefix))
        .map(str::to_string)
        .collect();
    words.push(format!("{key}={value}"));
    words.join(" ")
}

/// Through `ferry plan`: a hostile value in any config.yml key ferry reads
/// is refused naming the file, the key's line and the key, and nothing is
/// written. (Each kind's limits are unit-tested in the plan module.)
#[test]
fn every_config_key_refuses_a_hostile_value_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let g = common::plan::guide_dir();
    let guide = std::fs::read_to_string(g.join("config.yml")).unwrap();
    let mut failures = Vec::new();
    let keys = ferry_installer::plan::config::known_keys();
    let values = [
        "x\" --y=\"z\n$(touch /tmp/ferry-pwned)",
        "x\" --y=\"z $(touch /tmp/ferry-pwned)",
        "../../etc/cron.d/x",
    ];
    for (key, hostile) in keys.iter().flat_map(|k| values.iter().map(move |v| (k, v))) {
        // The guide's own line for the key goes; the hostile one is last.
        let mut kept: Vec<&str> = Vec::new();
        let mut in_key = false;
        for l in guide.lines() {
            // The key's own lines: its `KEY:` line and what is nested under it.
            in_key = l.starts_with(&format!("{key}:")) || (in_key && l.starts_with([' ', '-']));
            if !in_key {
                kept.push(l);
            }
        }
        let text = format!(
            "{}\n{key}: {}\n",
            kept.join("\n"),
            serde_json::to_string(hostile).unwrap()
        );
        let line = kept.len() + 1;
        let config = tmp.path().join("config.yml");
        std::fs::write(&config, text).unwrap();
        let cluster = tmp.path().join(format!("c-{key}-{}", hostile.len()));
        let out = plan_cmd(&g.join("hosts"), &config, &g.join("bundle.json"), &cluster)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let at = format!("{}:{line}", config.display());
        let named = err.lines().any(|l| l.contains(&at));
        if out.status.code() != Some(1) || !named || cluster.exists() {
            failures.push(format!("{key}={hostile:?}: {err}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
