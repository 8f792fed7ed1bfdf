//! The objects of the rendered addon manifests: split into documents at
//! `---` lines (as kubectl splits them), checked (apiVersion, kind,
//! metadata.name, no duplicates), given a content hash and put in dependency
//! order (CRDs, Namespaces, the rest; file and document order within each).
//!
//! A document is sent to kubectl as the text the plan rendered: kubectl reads
//! its YAML itself (YAML 1.1, where `defaultMode: 0400` is the number 256),
//! so ferry never re-encodes a value. ferry parses a document only to learn
//! what object it is.

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
    /// sha256 of the document's text as rendered.
    pub hash: String,
    /// The document's text, sent to kubectl as it is (plus the hash annotation).
    pub text: String,
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
fn object(file: &Path, document: usize, text: &str, doc: &Value) -> Result<AddonObject, String> {
    let at = || format!("{}: document {document}", file.display());
    if !doc.is_object() {
        return Err(format!("{}: not a mapping", at()));
    }
    let field = |path: &[&str]| text_at(doc, path).unwrap_or_default().to_string();
    let (api_version, kind) = (field(&["apiVersion"]), field(&["kind"]));
    let name = field(&["metadata", "name"]);
    let missing: Vec<&str> = [
        ("apiVersion", &api_version),
        ("kind", &kind),
        ("metadata.name", &name),
    ]
    .into_iter()
    .filter(|(_, v)| v.is_empty())
    .map(|(f, _)| f)
    .collect();
    if !missing.is_empty() {
        let kind = if kind.is_empty() {
            String::new()
        } else {
            format!(" ({kind})")
        };
        return Err(format!(
            "{}{kind} has no {}: fix the manifest's template and run ferry install again",
            at(),
            missing.join(", ")
        ));
    }
    let namespace = match doc.pointer("/metadata/namespace") {
        None | Some(Value::Null) => None,
        Some(Value::String(ns)) if !ns.is_empty() => Some(ns.clone()),
        Some(other) => return Err(format!("{}: metadata.namespace is {other}", at())),
    };
    Ok(AddonObject {
        file: file.to_path_buf(),
        document,
        api_version,
        kind,
        namespace,
        name,
        hash: hex::encode(Sha256::digest(text.as_bytes())),
        text: text.to_string(),
    })
}

/// The documents of a YAML stream, split at `---` lines as kubectl's reader does.
pub fn documents(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.split_inclusive('\n') {
        let l = line.trim_end();
        if l == "---" || l.starts_with("--- ") || l.starts_with("---\t") {
            docs.push(String::new());
        } else if let Some(d) = docs.last_mut() {
            d.push_str(line);
        }
    }
    docs
}

/// Every object of one manifest, in document order (empty documents skipped).
pub fn parse(file: &Path, text: &str) -> Result<Vec<AddonObject>, String> {
    let mut out = Vec::new();
    for (i, doc) in documents(text).iter().enumerate() {
        let v = Value::deserialize(serde_norway::Deserializer::from_str(doc)).map_err(|e| {
            format!(
                "{}: document {}: not valid YAML: {e}",
                file.display(),
                i + 1
            )
        })?;
        if !v.is_null() {
            out.push(object(file, i + 1, doc, &v)?);
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
        assert!(objs[2]
            .text
            .starts_with("apiVersion: apps/v1\nkind: Deployment\n"));
        assert_eq!(objs[0].document, 3);
    }

    #[test]
    fn documents_are_split_at_separator_lines_and_hashed_as_text() {
        let text = "# comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {mode: '0400', x: ---}\n--- \napiVersion: v1\nkind: ConfigMap\nmetadata: {name: d}\n";
        let objs = parse(Path::new("a"), text).unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!((objs[0].document, objs[1].document), (2, 3));
        assert!(objs[0].text.contains("'0400'"));
        let again = parse(Path::new("b"), text).unwrap();
        assert_eq!(objs[0].hash, again[0].hash);
        let changed = parse(Path::new("a"), &text.replace("x: ---", "x: y")).unwrap();
        assert_ne!(objs[0].hash, changed[0].hash);
        assert_eq!(objs[1].hash, changed[1].hash);
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
