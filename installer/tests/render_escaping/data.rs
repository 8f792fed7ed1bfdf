//! The YAML and TOML templates rendered with hostile strings, parsed back by
//! the real parsers: each must read as the same documents as with plain
//! markers, every marker replaced by its hostile string (so every value
//! round-trips as one string and no key, list item or table appears).

use crate::{renderer, HOSTILE, HOSTILE_LINE};
use ferry_installer::plan::render::TEMPLATES;
use serde::Deserialize;
use serde_json::{json, Value as Json};

/// Where [`HOSTILE`] goes (values written with `tojson`).
const S: &str = "MARKS";
/// Where [`HOSTILE_LINE`] goes (values also written in a comment).
const L: &str = "MARKL";

/// Every YAML/JSON/TOML template with a context naming all its values.
fn contexts() -> Vec<(&'static str, Json)> {
    let cluster = json!({"name": L});
    let toleration = json!({"key": S, "operator": "Exists"});
    vec![
        (
            "containerd/config.toml",
            json!({"cluster": cluster, "containerd": {
            "root_dir": S, "state_dir": S, "sandbox_image": S, "runc": S,
            "restrict_oom_score_adj": true}}),
        ),
        (
            "containerd/hosts.toml",
            json!({"cluster": cluster, "registry": L, "fallback": false,
            "server": S, "ca_file": S, "mirrors": [S, format!("{S}-2")], "fallbacks": [format!("{S}-3")]}),
        ),
        (
            "containerd/hosts-insecure.toml",
            json!({"cluster": cluster,
            "registry": {"url": L, "skip_verify": true}}),
        ),
        (
            "kubernetes/kubelet-config.yaml",
            json!({
            "cluster": {"name": L, "ca_dir": S, "dns_domain": S},
            "kubelet": {"cluster_dns": S, "max_pods": 110, "eviction_hard": {S: S},
                "system_reserved_enabled": true, "system_reserved": {S: S},
                "kube_reserved_enabled": true, "kube_reserved": {format!("{S}-k"): S}}}),
        ),
        (
            "kubernetes/kube-proxy-config.yaml",
            json!({
            "cluster": {"name": L, "cluster_cidr": S, "proxy_mode": S, "nftables_feature_gate": true},
            "host": {"name": S}}),
        ),
        ("kubernetes/audit-policy.yaml", json!({"cluster": cluster})),
        (
            "kubernetes/admission-config.yaml",
            json!({"cluster": cluster}),
        ),
        (
            "kubernetes/encryption-config.yaml",
            json!({"cluster": cluster, "encryption_key": S}),
        ),
        (
            "kubernetes/kubeconfig",
            json!({"cluster_name": S, "user": format!("{S}-u"),
            "context": format!("{S}-c"), "server": "https://10.0.0.1:6443",
            "ca_data": "Y2E=", "cert_data": "Y2VydA==", "key_data": "a2V5"}),
        ),
        (
            "addons/10-coredns.yaml",
            json!({"cluster": {"name": L, "dns_domain": "cluster.local"},
            "dns": {"replicas": 2, "service_ip": S}, "pools": {"system": true},
            "placement": {"toleration": toleration, "affinity": {"nodeAffinity": {S: [S]}}}}),
        ),
        (
            "addons/15-priority-classes.yaml",
            json!({"cluster": cluster, "batch_priority_class": S}),
        ),
        (
            "addons/20-nodelocaldns.yaml",
            json!({"cluster": {"name": L, "dns_domain": "cluster.local"},
            "dns": {"local_ip": "169.254.20.10", "bind": ["169.254.20.10", "10.96.0.10"]}}),
        ),
        (
            "addons/50-prometheus-rules.yaml",
            json!({"cluster": cluster}),
        ),
        (
            "addons/60-tenant-baseline.yaml",
            json!({"cluster": cluster, "tenants": [S, format!("{S}-2")]}),
        ),
    ]
}

/// The documents of a rendered template, as its consumer's parser reads them.
fn parse(template: &str, text: &str) -> Result<Vec<Json>, String> {
    if template.ends_with(".toml") {
        return toml::from_str::<Json>(text)
            .map(|v| vec![v])
            .map_err(|e| e.to_string());
    }
    serde_norway::Deserializer::from_str(text)
        .map(|doc| Json::deserialize(doc).map_err(|e| e.to_string()))
        .collect()
}

/// `v` with every marker in its strings and keys replaced by its hostile string.
fn replaced(v: &Json) -> Json {
    let r = |s: &str| s.replace(S, HOSTILE).replace(L, HOSTILE_LINE);
    match v {
        Json::String(s) => Json::String(r(s)),
        Json::Array(a) => Json::Array(a.iter().map(replaced).collect()),
        Json::Object(o) => Json::Object(o.iter().map(|(k, v)| (r(k), replaced(v))).collect()),
        other => other.clone(),
    }
}

#[test]
fn hostile_strings_round_trip_through_yaml_and_toml() {
    let r = renderer();
    let cases = contexts();
    for (name, _) in TEMPLATES.iter().filter(|(n, _)| {
        n.ends_with(".yaml") || n.ends_with(".toml") || *n == "kubernetes/kubeconfig"
    }) {
        assert!(
            cases.iter().any(|(c, _)| c == name),
            "{name}: add its context to render_escaping/data.rs"
        );
    }
    for (name, ctx) in &cases {
        let plain = r.render(name, ctx).expect("renders with markers");
        let hostile = r
            .render(name, &replaced(ctx))
            .expect("renders hostile values");
        let want: Vec<Json> = parse(name, &plain)
            .unwrap_or_else(|e| panic!("{name} with markers: {e}\n{plain}"))
            .iter()
            .map(replaced)
            .collect();
        let got = parse(name, &hostile).unwrap_or_else(|e| panic!("{name}: {e}\n{hostile}"));
        assert_eq!(
            got, want,
            "{name} reads differently with hostile values:\n{hostile}"
        );
        assert!(
            plain.contains(S) || plain.contains(L),
            "{name}: no marker reached the text"
        );
    }
}

#[test]
fn a_hostile_string_is_one_toml_string() {
    let r = renderer();
    let ctx = json!({"cluster": {"name": "c"}, "containerd": {"root_dir": "\"]\n[x]\nroot = \"/",
        "state_dir": "/run/containerd", "sandbox_image": "pause", "runc": "/usr/bin/runc",
        "restrict_oom_score_adj": false}});
    let text = r.render("containerd/config.toml", &ctx).expect("renders");
    let doc: toml::Table = toml::from_str(&text).expect("TOML");
    assert_eq!(doc["root"].as_str(), Some("\"]\n[x]\nroot = \"/"));
    let keys: Vec<&str> = doc.keys().map(String::as_str).collect();
    assert_eq!(keys, ["metrics", "plugins", "root", "state", "version"]);
}

#[test]
fn a_corefile_refuses_what_it_cannot_quote() {
    let r = renderer();
    let ctx = json!({"cluster": {"name": "c", "dns_domain": "cluster.local\n    }\n    evil"},
        "dns": {"replicas": 2, "service_ip": "10.96.0.10"}, "pools": {"system": false}});
    let err = r
        .render("addons/10-coredns.yaml", &ctx)
        .expect_err("refused");
    let msg = format!("{err}");
    assert!(
        msg.contains("addons/10-coredns.yaml") && msg.contains("cluster.local\\n"),
        "{msg}"
    );
}
