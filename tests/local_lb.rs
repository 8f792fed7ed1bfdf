//! Every node's local apiserver load balancer (haproxy on 127.0.0.1, as
//! kubeasz's kube-lb), on test hosts with no `[ex_lb]`: kubelet's and
//! kube-proxy's kubeconfigs point at it; with kube-apiserver stopped on the
//! first master every node still reaches an apiserver through it; a master
//! added to the inventory and installed is in every balancer, and the running
//! balancers use it.
//!
//! Real parts: haproxy, etcd, containerd, systemd, sshd. STAND-INS:
//! kube-apiserver and kubectl are the python script
//! tests/fixtures/standins/kube-standin.py (not Kubernetes).

mod common;

use common::rig::Rig;
use common::upstream::signed_amd64_bundle;
use std::path::Path;

const OCTET: u8 = 45;

fn inventory(rig: &Rig, masters: &[&str], key: &Path) -> String {
    let line = |h: &str| format!("{a} ansible_host={a} ip={a} node_name={h}", a = rig.addr(h));
    let mut hosts = format!(
        "[all]\n{}\n{}\n{}\n{}\n[etcd]\n{}\n[kube_master]\n",
        line("h1"),
        line("h2"),
        line("h3"),
        line("h4"),
        rig.addr("h1")
    );
    for m in masters {
        hosts.push_str(rig.addr(m));
        hosts.push('\n');
    }
    hosts.push_str(&format!(
        "[kube_node]\n{}\n[all:vars]\nansible_user=root\nansible_ssh_private_key_file={}\n",
        rig.addr("h3"),
        key.display()
    ));
    hosts
}

fn install(rig: &Rig, dir: &Path, bundle: &Path) {
    let out = rig
        .install_command(Path::new(env!("CARGO_BIN_EXE_ferry")), dir, bundle)
        .output()
        .expect("run ferry install");
    assert!(
        out.status.success(),
        "install failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What kubelet does: reach an apiserver at its kubeconfig's server with its
/// kubeconfig's credentials (curl, since workers carry no kubectl).
fn kubelet_reaches_apiserver(rig: &Rig, host: &str) -> Result<String, String> {
    let out = rig.exec(
        host,
        "set -e; kc=/etc/kubernetes/kubelet.kubeconfig; d=$(mktemp -d); \
         field() { sed -n \"s/^ *$1: *//p\" $kc | head -n1; }; \
         field certificate-authority-data | base64 -d > $d/ca; \
         field client-certificate-data | base64 -d > $d/crt; \
         field client-key-data | base64 -d > $d/key; \
         curl -sS --max-time 10 --cacert $d/ca --cert $d/crt --key $d/key \"$(field server)/healthz\"; \
         rm -rf $d",
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    match out.status.success() && text.trim() == "ok" {
        true => Ok(text),
        false => Err(format!(
            "{host}: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

#[test]
fn nodes_reach_an_apiserver_through_their_local_balancer() {
    eprintln!("NOTE: kube-apiserver and kubectl in this test are python stand-ins (tests/fixtures/standins), not Kubernetes");
    let rig = Rig::up(4, "flb", OCTET);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let bundle = signed_amd64_bundle(dir, "b");
    std::fs::write(
        dir.join("config.yml"),
        "CLUSTER_NAME: \"lb\"\nK8S_VER: \"1.29.6\"\nCLUSTER_CIDR: \"10.244.0.0/16\"\nSERVICE_CIDR: \"10.96.0.0/16\"\nCONTAINERD_RESTRICT_OOM_SCORE_ADJ: true\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("hosts"),
        inventory(&rig, &["h1", "h2"], &rig.key()),
    )
    .unwrap();
    install(&rig, dir, &bundle);

    let nodes = ["h1", "h2", "h3"];
    for h in nodes {
        for kc in ["kubelet", "kube-proxy"] {
            let text = rig.sh(h, &format!("cat /etc/kubernetes/{kc}.kubeconfig"));
            assert!(
                text.contains("server: https://127.0.0.1:6444"),
                "{h}: {kc} uses the local balancer:\n{text}"
            );
        }
        assert_eq!(
            rig.sh(h, "systemctl is-active ferry-kube-lb.service")
                .trim(),
            "active",
            "{h}"
        );
        kubelet_reaches_apiserver(&rig, h).unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(
        !rig.exec("h4", "test -e /etc/ferry/kube-lb/haproxy.cfg")
            .status
            .success(),
        "h4 is in no group yet"
    );

    // The first master's apiserver goes away: every node still gets through,
    // each time (round robin would pick h1 every other connection).
    rig.sh("h1", "systemctl stop kube-apiserver.service");
    for h in nodes {
        for attempt in 0..4 {
            kubelet_reaches_apiserver(&rig, h)
                .unwrap_or_else(|e| panic!("attempt {attempt} with h1's apiserver down: {e}"));
        }
    }
    rig.sh("h1", "systemctl start kube-apiserver.service");

    // A third master joins: every balancer lists it, and the running ones use
    // it: with h1's and h2's apiservers stopped, only h4 can answer.
    std::fs::write(
        dir.join("hosts"),
        inventory(&rig, &["h1", "h2", "h4"], &rig.key()),
    )
    .unwrap();
    install(&rig, dir, &bundle);
    let h4 = format!("{}:6443 check", rig.addr("h4"));
    for h in ["h1", "h2", "h3", "h4"] {
        let cfg = rig.sh(h, "cat /etc/ferry/kube-lb/haproxy.cfg");
        assert!(cfg.contains(&h4), "{h}'s balancer lists h4:\n{cfg}");
    }
    rig.sh("h1", "systemctl stop kube-apiserver.service");
    rig.sh("h2", "systemctl stop kube-apiserver.service");
    for h in ["h1", "h2", "h3", "h4"] {
        kubelet_reaches_apiserver(&rig, h)
            .unwrap_or_else(|e| panic!("only h4's apiserver is up: {e}"));
    }
}
