//! The objects of the rendered addon manifests: parsed from YAML, checked
//! (apiVersion, kind, metadata.name, no duplicates), given a content hash
//! and put in dependency order (CRDs, Namespaces, the rest; file and
//! document order within each).

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The annotation carrying the sha256 of the object as ferry rendered it.
pub const HASH_ANNOTATION: &str = "ferry.io/content-hash";

/// When an object is applied, relative to the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Crds,
    Namespaces,
    Rest,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Crds, Stage::Namespaces, Stage::Rest];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Crds => "CustomResourceDefinitions",
            Stage::Namespaces => "Namespaces",
            Stage::Rest => "other objects",
        }
    }
}

/// (group, kind, namespace, name): how the apiserver knows an object.
pub type ObjectKey = (String, String, Option<String>, String);

/// One document of a manifest.
#[derive(Debug, Clone)]
pub struct AddonObject {
    /// The manifest on the host it is applied from.
    pub file: PathBuf,
    /// 1-based document number in `file`.
    pub document: usize,
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    /// sha256 of the rendered document (canonical JSON, without the hash annotation).
    pub hash: String,
    /// What is sent: the document with [`HASH_ANNOTATION`] set to `hash`.
    pub body: Value,
}

impl AddonObject {
    /// API group (`apps`), empty for the core group.
    pub fn group(&self) -> &str {
        self.api_version.rsplit_once('/').map_or("", |(g, _)| g)
    }

    pub fn version(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map_or(self.api_version.as_str(), |(_, v)| v)
    }

    pub fn key(&self) -> ObjectKey {
        (
            self.group().to_string(),
            self.kind.clone(),
            self.namespace.clone(),
            self.name.clone(),
        )
    }

    pub fn stage(&self) -> Stage {
        match (self.group(), self.kind.as_str()) {
            ("apiextensions.k8s.io", "CustomResourceDefinition") => Stage::Crds,
            ("", "Namespace") => Stage::Namespaces,
            _ => Stage::Rest,
        }
    }

    /// `Deployment kube-system/coredns`, `Namespace monitoring`.
    pub fn id(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }

    /// The id plus where the object comes from, for error messages.
    pub fn describe(&self) -> String {
        format!(
            "{} (document {} of {})",
            self.id(),
            self.document,
            self.file.display()
        )
    }

    /// The type as kubectl takes it: `Deployment.v1.apps`, or the bare kind for the core group.
    pub fn kubectl_type(&self) -> String {
        match self.group() {
            "" => self.kind.clone(),
            g => format!("{}.{}.{g}", self.kind, self.version()),
        }
    }

    /// `deployment`, `daemonset` or `statefulset` when `kubectl rollout status` applies.
    pub fn rollout_type(&self) -> Option<&'static str> {
        match (self.group(), self.kind.as_str()) {
            ("apps", "Deployment") => Some("deployment"),
            ("apps", "DaemonSet") => Some("daemonset"),
            ("apps", "StatefulSet") => Some("statefulset"),
            _ => None,
        }
    }
}

fn text_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

/// One document as an object, or what is wrong with it.
fn object(file: &Path, document: usize, mut doc: Value) -> Result<AddonObject, String> {
    let at = || format!("{}: document {document}", file.display());
    if !doc.is_object() {
        return Err(format!("{}: not a mapping", at()));
    }
    let mut missing: Vec<&str> = Vec::new();
    let api_version = text_at(&doc, &["apiVersion"])
        .unwrap_or_default()
        .to_string();
    let kind = text_at(&doc, &["kind"]).unwrap_or_default().to_string();
    let name = text_at(&doc, &["metadata", "name"])
        .unwrap_or_default()
        .to_string();
    for (field, value) in [
        ("apiVersion", &api_version),
        ("kind", &kind),
        ("metadata.name", &name),
    ] {
        if value.is_empty() {
            missing.push(field);
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "{}{} has no {}: fix the manifest's template and run ferry install again",
            at(),
            if kind.is_empty() {
                String::new()
            } else {
                format!(" ({kind})")
            },
            missing.join(", ")
        ));
    }
    let namespace = match doc.pointer("/metadata/namespace") {
        None | Some(Value::Null) => None,
        Some(Value::String(ns)) if !ns.is_empty() => Some(ns.clone()),
        Some(other) => return Err(format!("{}: metadata.namespace is {other}", at())),
    };
    if let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut) {
        if let Some(Value::Object(a)) = meta.get_mut("annotations") {
            a.remove(HASH_ANNOTATION);
            if a.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    let hash = content_hash(&doc);
    let mut body = doc;
    let meta = body["metadata"]
        .as_object_mut()
        .ok_or_else(|| format!("{}: metadata is not a mapping", at()))?;
    let annotations = meta
        .entry("annotations")
        .or_insert_with(|| Value::Object(Default::default()));
    match annotations {
        Value::Object(a) => {
            a.insert(HASH_ANNOTATION.into(), Value::String(hash.clone()));
        }
        _ => return Err(format!("{}: metadata.annotations is not a mapping", at())),
    }
    Ok(AddonObject {
        file: file.to_path_buf(),
        document,
        api_version,
        kind,
        namespace,
        name,
        hash,
        body,
    })
}

/// Every object of one manifest, in document order (empty documents skipped).
pub fn parse(file: &Path, text: &str) -> Result<Vec<AddonObject>, String> {
    let mut out = Vec::new();
    for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let v = Value::deserialize(doc).map_err(|e| {
            format!(
                "{}: document {}: not valid YAML: {e}",
                file.display(),
                i + 1
            )
        })?;
        if !v.is_null() {
            out.push(object(file, i + 1, v)?);
        }
    }
    Ok(out)
}

/// `objects` in apply order: CRDs, Namespaces, the rest, each keeping the
/// given (file, document) order. Two documents for one object are refused.
pub fn ordered(mut objects: Vec<AddonObject>) -> Result<Vec<AddonObject>, String> {
    let mut seen: BTreeMap<ObjectKey, String> = BTreeMap::new();
    for o in &objects {
        if let Some(first) = seen.insert(o.key(), o.describe()) {
            return Err(format!(
                "{} is defined twice: {first} and {}; keep one",
                o.id(),
                o.describe()
            ));
        }
    }
    objects.sort_by_key(AddonObject::stage);
    Ok(objects)
}

/// sha256 of `v` as JSON with object keys sorted at every level.
pub fn content_hash(v: &Value) -> String {
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    write(&m[k], out);
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut s = String::new();
    write(v, &mut s);
    hex::encode(Sha256::digest(s.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: ns1}\n---\n\
                     apiVersion: v1\nkind: Namespace\nmetadata: {name: ns1}\n---\n\
                     apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: xs.example.com}\n";

    #[test]
    fn objects_are_ordered_crds_namespaces_rest() {
        let objs = ordered(parse(Path::new("/m.yaml"), M).unwrap()).unwrap();
        let ids: Vec<String> = objs.iter().map(AddonObject::id).collect();
        assert_eq!(
            ids,
            [
                "CustomResourceDefinition xs.example.com",
                "Namespace ns1",
                "Deployment ns1/d"
            ]
        );
        assert_eq!(objs[2].kubectl_type(), "Deployment.v1.apps");
        assert_eq!(objs[1].kubectl_type(), "Namespace");
        assert_eq!(objs[2].rollout_type(), Some("deployment"));
        assert_eq!(
            objs[2].body["metadata"]["annotations"][HASH_ANNOTATION],
            objs[2].hash.as_str()
        );
    }

    #[test]
    fn hash_ignores_key_order_and_its_own_annotation() {
        let a = parse(
            Path::new("a"),
            "kind: ConfigMap\napiVersion: v1\nmetadata: {name: c}\ndata: {x: '1', y: '2'}\n",
        )
        .unwrap();
        let b = parse(
            Path::new("b"),
            "apiVersion: v1\nkind: ConfigMap\ndata: {y: '2', x: '1'}\nmetadata:\n  name: c\n  annotations: {ferry.io/content-hash: old}\n",
        )
        .unwrap();
        assert_eq!(a[0].hash, b[0].hash);
        let c = parse(
            Path::new("c"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {x: '1', y: '3'}\n",
        )
        .unwrap();
        assert_ne!(a[0].hash, c[0].hash);
    }

    #[test]
    fn incomplete_and_duplicate_documents_are_refused_by_name() {
        let e = parse(
            Path::new("/f.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata: {}\n",
        )
        .unwrap_err();
        assert!(
            e.contains("/f.yaml: document 1 (Service) has no metadata.name"),
            "{e}"
        );
        let e = parse(
            Path::new("/f.yaml"),
            "apiVersion: v1\nkind: A\nmetadata: {name: a}\n---\napiVersion: v1\nmetadata: {name: x}\n",
        )
            .unwrap_err();
        assert!(e.contains("document 2 has no kind"), "{e}");
        assert!(parse(Path::new("/f.yaml"), "kind: [").is_err());
        let twice = format!("{M}---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: ns1}}\n");
        let e = ordered(parse(Path::new("/m.yaml"), &twice).unwrap()).unwrap_err();
        assert!(e.contains("Namespace ns1 is defined twice"), "{e}");
    }
}
