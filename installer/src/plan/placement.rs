//! Where ferry's own addons run when the cluster has a system pool: their
//! Deployments tolerate the pool's taint and require its nodes (the guide's
//! system pool is for DNS, monitoring, logging and ingress). DaemonSets
//! (NodeLocal DNS) run everywhere and already tolerate every taint.

use crate::plan::pools::{Pool, POOL_LABEL};
use serde_norway::Value as Yaml;

/// The toleration of the system pool's taint, as a pod spec lists it.
pub fn system_toleration() -> serde_json::Value {
    serde_json::json!({"key": POOL_LABEL, "operator": "Equal", "value": Pool::System.name(), "effect": "NoSchedule"})
}

/// Node affinity requiring the system pool.
pub fn system_affinity() -> serde_json::Value {
    serde_json::json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": POOL_LABEL, "operator": "In", "values": [Pool::System.name()]}]}]}}})
}

/// A published manifest with its Deployments placed on the system pool; every
/// other document stays as published, byte for byte.
pub fn deployments_onto_system_pool(text: &str) -> Result<String, String> {
    let docs = crate::deploy::addons::objects::documents(text);
    let mut out = Vec::with_capacity(docs.len());
    for (i, doc) in docs.into_iter().enumerate() {
        let mut v: Yaml = match serde_norway::from_str(&doc) {
            Ok(v) => v,
            Err(e) => return Err(format!("document {}: not valid YAML: {e}", i + 1)),
        };
        if v.get("kind").and_then(Yaml::as_str) != Some("Deployment") {
            out.push(doc);
            continue;
        }
        place(&mut v).map_err(|e| format!("document {}: {e}", i + 1))?;
        out.push(serde_norway::to_string(&v).map_err(|e| e.to_string())?);
    }
    Ok(out.join("---\n"))
}

fn place(deployment: &mut Yaml) -> Result<(), String> {
    let spec = deployment
        .get_mut("spec")
        .and_then(|s| s.get_mut("template"))
        .and_then(|t| t.get_mut("spec"))
        .and_then(Yaml::as_mapping_mut)
        .ok_or("a Deployment without spec.template.spec")?;
    let toleration: Yaml = to_yaml(system_toleration())?;
    let tolerations = spec
        .entry(Yaml::from("tolerations"))
        .or_insert_with(|| Yaml::Sequence(Vec::new()));
    match tolerations.as_sequence_mut() {
        Some(list) if !list.contains(&toleration) => list.push(toleration),
        Some(_) => {}
        None => return Err("tolerations is not a list".into()),
    }
    // A nodeSelector (upstream's `kubernetes.io/os: linux`) still applies
    // alongside; a node affinity of its own would be overridden, so refuse.
    let affinity = spec
        .entry(Yaml::from("affinity"))
        .or_insert_with(|| Yaml::Mapping(Default::default()))
        .as_mapping_mut()
        .ok_or("affinity is not a mapping")?;
    if affinity.contains_key("nodeAffinity") {
        return Err("it already has a node affinity of its own".into());
    }
    let wanted = to_yaml(system_affinity())?;
    affinity.insert(Yaml::from("nodeAffinity"), wanted["nodeAffinity"].clone());
    Ok(())
}

fn to_yaml(v: serde_json::Value) -> Result<Yaml, String> {
    serde_norway::to_value(v).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_deployments_move_and_the_rest_is_kept_as_written() {
        let text = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a}  # kept\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  template:\n    spec:\n      tolerations:\n      - {key: CriticalAddonsOnly, operator: Exists}\n      containers: []\n";
        let out = deployments_onto_system_pool(text).unwrap();
        assert!(
            out.starts_with(
                "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a}  # kept\n---\n"
            ),
            "{out}"
        );
        let d: Yaml = serde_norway::from_str(out.split("---\n").nth(1).unwrap()).unwrap();
        let spec = &d["spec"]["template"]["spec"];
        assert_eq!(spec["tolerations"].as_sequence().unwrap().len(), 2);
        assert_eq!(spec["tolerations"][1]["value"].as_str(), Some("system"));
        assert_eq!(
            spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                ["nodeSelectorTerms"][0]["matchExpressions"][0]["key"]
                .as_str(),
            Some("node.kubernetes.io/pool")
        );
        let os = text.replace(
            "      containers: []",
            "      nodeSelector: {kubernetes.io/os: linux}\n      containers: []",
        );
        assert!(deployments_onto_system_pool(&os)
            .unwrap()
            .contains("kubernetes.io/os: linux"));
        let chosen = text.replace(
            "      containers: []",
            "      affinity: {nodeAffinity: {}}\n      containers: []",
        );
        assert!(deployments_onto_system_pool(&chosen)
            .unwrap_err()
            .contains("node affinity of its own"));
    }
}
