//! The kind check: before anything is applied, every addon object must be a
//! kind built into the bundle's Kubernetes version (with an apiVersion that
//! version serves, in the right scope) or one defined by a
//! CustomResourceDefinition that comes earlier in the same install (files in
//! name order, documents in file order). Anything else is a plan error that
//! names the file and the object.

use crate::plan::error::{PlanError, Result};
use crate::plan::model::{FileContent, HostPlan, Step};
use serde::Deserialize;
use serde_norway::Value;
use std::collections::BTreeMap;
use std::fmt;

/// `apiVersion kind scope` of every kind Kubernetes 1.29 serves by default.
const BUILTIN_1_29: &str = include_str!("../../data/builtin-kinds-1.29.txt");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Namespaced,
    Cluster,
}

/// Kinds by (apiVersion, kind).
#[derive(Debug, Clone, Default)]
pub struct KindSet {
    kinds: BTreeMap<(String, String), Scope>,
}

impl KindSet {
    /// The built-in kinds of Kubernetes `version` (`1.29.6`, `v1.29.0`...).
    pub fn builtin(version: &str) -> std::result::Result<KindSet, String> {
        let v = version.trim_start_matches('v');
        let minor: Vec<&str> = v.split('.').take(2).collect();
        if minor != ["1", "29"] {
            return Err(format!(
                "ferry carries the built-in kinds of Kubernetes 1.29 only; the bundle is Kubernetes {version}"
            ));
        }
        let mut set = KindSet::default();
        for line in BUILTIN_1_29.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let f: Vec<&str> = line.split_whitespace().collect();
            if let [api, kind, scope] = f[..] {
                let scope = if scope == "cluster" {
                    Scope::Cluster
                } else {
                    Scope::Namespaced
                };
                set.kinds.insert((api.into(), kind.into()), scope);
            }
        }
        Ok(set)
    }

    pub fn get(&self, api_version: &str, kind: &str) -> Option<Scope> {
        self.kinds
            .get(&(api_version.to_string(), kind.to_string()))
            .copied()
    }

    /// The apiVersions under which `kind` is known.
    pub fn versions_of(&self, kind: &str) -> Vec<&str> {
        self.kinds
            .keys()
            .filter(|(_, k)| k == kind)
            .map(|(a, _)| a.as_str())
            .collect()
    }

    fn insert(&mut self, api_version: String, kind: String, scope: Scope) {
        self.kinds.insert((api_version, kind), scope);
    }
}

/// One object of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))
        .and_then(Value::as_str)
}

/// Every non-empty document of `text` with its identity; `file` names it in errors.
pub fn objects(file: &str, text: &str) -> std::result::Result<Vec<(ObjectRef, Value)>, String> {
    let mut out = Vec::new();
    for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let v = Value::deserialize(doc)
            .map_err(|e| format!("{file}: document {}: not valid YAML: {e}", i + 1))?;
        if v.is_null() {
            continue;
        }
        let field = |path: &[&str]| {
            str_at(&v, path)
                .map(str::to_string)
                .ok_or_else(|| format!("{file}: document {} has no {}", i + 1, path.join(".")))
        };
        let obj = ObjectRef {
            api_version: field(&["apiVersion"])?,
            kind: field(&["kind"])?,
            name: field(&["metadata", "name"])?,
            namespace: str_at(&v, &["metadata", "namespace"]).map(str::to_string),
        };
        out.push((obj, v));
    }
    Ok(out)
}

/// The kinds a v1 CustomResourceDefinition defines: (apiVersion, kind, scope) per served version.
fn crd_kinds(crd: &Value) -> Vec<(String, String, Scope)> {
    let group = str_at(crd, &["spec", "group"]).unwrap_or_default();
    let kind = str_at(crd, &["spec", "names", "kind"]).unwrap_or_default();
    let scope = match str_at(crd, &["spec", "scope"]) {
        Some("Cluster") => Scope::Cluster,
        _ => Scope::Namespaced,
    };
    let versions = crd
        .get("spec")
        .and_then(|s| s.get("versions"))
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    versions
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool) == Some(true))
        .filter_map(|v| str_at(v, &["name"]))
        .filter(|_| !group.is_empty() && !kind.is_empty())
        .map(|v| (format!("{group}/{v}"), kind.to_string(), scope))
        .collect()
}

fn is_crd(o: &ObjectRef) -> bool {
    o.api_version == "apiextensions.k8s.io/v1" && o.kind == "CustomResourceDefinition"
}

/// What is wrong with `o`, given the kinds known so far and the CRDs still to come.
fn problem(
    o: &ObjectRef,
    known: &KindSet,
    later: &BTreeMap<(String, String), String>,
    version: &str,
) -> Option<String> {
    match known.get(&o.api_version, &o.kind) {
        Some(Scope::Cluster) if o.namespace.is_some() => {
            return Some(format!(
                "{} is cluster-scoped and must not name a namespace",
                o.kind
            ))
        }
        Some(Scope::Namespaced) if o.namespace.is_none() => {
            return Some(format!(
                "{} is namespaced; name its namespace in metadata.namespace",
                o.kind
            ))
        }
        Some(_) => return None,
        None => {}
    }
    if let Some(file) = later.get(&(o.api_version.clone(), o.kind.clone())) {
        return Some(format!(
            "{} ({}) is defined by a CRD that comes later, in {file}; a CRD must come before the objects of its kind",
            o.kind, o.api_version
        ));
    }
    let served = known.versions_of(&o.kind);
    if !served.is_empty() {
        return Some(format!(
            "apiVersion {} does not serve {}; Kubernetes {version} (with the CRDs before it) serves it as {}",
            o.api_version,
            o.kind,
            served.join(", ")
        ));
    }
    Some(format!(
        "kind {} ({}) is neither built into Kubernetes {version} nor defined by a CRD earlier in this install",
        o.kind, o.api_version
    ))
}

/// Check `files` (path, text), in apply order, against the built-in kinds of
/// Kubernetes `version`. Returns every problem, each naming the file and the object.
pub fn check(version: &str, files: &[(String, String)]) -> std::result::Result<(), Vec<String>> {
    let mut known = KindSet::builtin(version).map_err(|e| vec![e])?;
    let mut parsed = Vec::new();
    let mut problems = Vec::new();
    for (path, text) in files {
        match objects(path, text) {
            Ok(objs) => parsed.extend(objs.into_iter().map(|(o, v)| (path.as_str(), o, v))),
            Err(e) => problems.push(e),
        }
    }
    // CRDs not yet reached, by the kinds they define (for a clearer message).
    let mut later: BTreeMap<(String, String), String> = BTreeMap::new();
    for (path, o, v) in parsed.iter().rev() {
        if is_crd(o) {
            for (api, kind, _) in crd_kinds(v) {
                later.insert((api, kind), path.to_string());
            }
        }
    }
    for (path, o, v) in &parsed {
        if let Some(p) = problem(o, &known, &later, version) {
            problems.push(format!("{path}: {o}: {p}"));
        }
        if is_crd(o) {
            for (api, kind, scope) in crd_kinds(v) {
                later.remove(&(api.clone(), kind.clone()));
                known.insert(api, kind, scope);
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// The addon manifests each host of the plan applies, in name order, checked.
pub fn check_plan(hosts: &[HostPlan], version: &str) -> Result<()> {
    let mut problems = Vec::new();
    for h in hosts {
        let mut files: Vec<(String, String)> = h
            .files
            .iter()
            .filter(|f| {
                f.step == Step::Addons && f.path.starts_with(crate::plan::render::ADDONS_DIR)
            })
            .filter_map(|f| match &f.content {
                FileContent::Inline(b) => Some((
                    f.path.display().to_string(),
                    String::from_utf8_lossy(b).into_owned(),
                )),
                _ => None,
            })
            .collect();
        files.sort();
        if let Err(p) = check(version, &files) {
            problems.extend(p.into_iter().map(|p| format!("host {}: {p}", h.name)));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(PlanError::Kinds(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect()
    }

    const CRD: &str = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.example.io}\nspec:\n  group: example.io\n  scope: Namespaced\n  names: {kind: Widget, plural: widgets}\n  versions:\n  - {name: v1, served: true, storage: true}\n  - {name: v1beta1, served: false, storage: false}\n";
    const CR: &str =
        "apiVersion: example.io/v1\nkind: Widget\nmetadata: {name: w, namespace: ns}\n";

    #[test]
    fn builtin_kinds_of_1_29() {
        let k = KindSet::builtin("v1.29.6").unwrap();
        assert_eq!(k.get("apps/v1", "Deployment"), Some(Scope::Namespaced));
        assert_eq!(
            k.get("rbac.authorization.k8s.io/v1", "ClusterRole"),
            Some(Scope::Cluster)
        );
        assert_eq!(
            k.get("policy/v1", "PodDisruptionBudget"),
            Some(Scope::Namespaced)
        );
        assert_eq!(k.get("policy/v1beta1", "PodDisruptionBudget"), None);
        assert_eq!(k.get("networking.k8s.io/v1alpha1", "ServiceCIDR"), None);
        assert!(KindSet::builtin("1.30.0").unwrap_err().contains("1.29"));
    }

    #[test]
    fn builtin_objects_and_a_crd_before_its_objects_pass() {
        let ok = files(&[
            (
                "/a/00.yaml",
                "apiVersion: v1\nkind: Namespace\nmetadata: {name: ns}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: ns}\n",
            ),
            ("/a/10.yaml", CRD),
            ("/a/20.yaml", CR),
        ]);
        assert_eq!(check("1.29.6", &ok), Ok(()));
        // Within one file, document order counts too.
        let one = files(&[("/a/00.yaml", &format!("{CRD}---\n{CR}"))]);
        assert_eq!(check("1.29.6", &one), Ok(()));
    }

    #[test]
    fn an_unknown_kind_is_named_with_its_file_and_object() {
        let bad = files(&[(
            "/etc/ferry/addons/50-x.yaml",
            "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata: {name: r, namespace: monitoring}\n",
        )]);
        let err = check("1.29.6", &bad).unwrap_err();
        assert_eq!(err.len(), 1, "{err:?}");
        assert!(
            err[0].starts_with("/etc/ferry/addons/50-x.yaml: PrometheusRule monitoring/r: kind PrometheusRule (monitoring.coreos.com/v1) is neither built into Kubernetes 1.29.6 nor defined by a CRD"),
            "{}",
            err[0]
        );
    }

    #[test]
    fn an_object_before_its_crd_is_refused() {
        let bad = files(&[("/a/00.yaml", CR), ("/a/10.yaml", CRD)]);
        let err = check("1.29.6", &bad).unwrap_err();
        assert_eq!(err.len(), 1, "{err:?}");
        assert!(
            err[0].starts_with("/a/00.yaml: Widget ns/w: "),
            "{}",
            err[0]
        );
        assert!(err[0].contains("defined by a CRD that comes later, in /a/10.yaml"));
    }

    #[test]
    fn a_wrong_api_version_of_a_builtin_kind_is_refused() {
        let bad = files(&[(
            "/a/00.yaml",
            "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata: {name: p, namespace: kube-system}\n",
        )]);
        let err = check("1.29.6", &bad).unwrap_err();
        assert!(
            err[0].contains("PodDisruptionBudget kube-system/p: apiVersion policy/v1beta1 does not serve PodDisruptionBudget; Kubernetes 1.29.6 (with the CRDs before it) serves it as policy/v1"),
            "{}",
            err[0]
        );
        // A version the CRD does not serve is refused the same way.
        let unserved = files(&[(
            "/a/00.yaml",
            &format!(
                "{CRD}---\n{}",
                CR.replace("example.io/v1", "example.io/v1beta1")
            ),
        )]);
        let err = check("1.29.6", &unserved).unwrap_err();
        assert!(err[0].contains("serves it as example.io/v1"), "{}", err[0]);
    }

    #[test]
    fn scope_and_identity_are_checked() {
        let bad = files(&[(
            "/a/00.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: n, namespace: x}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\n",
        )]);
        let err = check("1.29.6", &bad).unwrap_err();
        assert_eq!(err.len(), 2, "{err:?}");
        assert!(err[0].contains("Namespace x/n: Namespace is cluster-scoped"));
        assert!(err[1].contains("Service s: Service is namespaced"));
        let nameless = files(&[("/a/00.yaml", "apiVersion: v1\nkind: Service\n")]);
        assert_eq!(
            check("1.29.6", &nameless).unwrap_err(),
            vec!["/a/00.yaml: document 1 has no metadata.name".to_string()]
        );
    }
}
