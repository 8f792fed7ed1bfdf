//! The images a carried manifest or chart references, for the closure lint:
//! every `image:` string in a release manifest's YAML documents; for a Helm
//! chart, every `repository`/`tag` pair (and `image:` string) in its
//! top-level `values.yaml`.

use crate::catalog::{Artifact, Kind};
use crate::error::{Error, Result};
use serde_norway::Value;
use std::io::Read;
use std::path::Path;

/// An image an artifact names, as written there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referenced {
    pub reference: String,
    /// From a chart's values: the chart may append a suffix to the repository
    /// (Cilium's operator renders `operator` + `-generic`).
    pub from_values: bool,
}

/// Images `art` (its file at `path`) references, minus its `skip_images`.
pub fn referenced(art: &Artifact, path: &Path) -> Result<Vec<Referenced>> {
    let bad = |reason: String| Error::Archive {
        archive: art.url.clone(),
        reason,
    };
    let mut out = Vec::new();
    match art.kind {
        Kind::Manifest => {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            for doc in serde_norway::Deserializer::from_str(&text) {
                let v = <Value as serde::Deserialize>::deserialize(doc)
                    .map_err(|e| bad(format!("not YAML: {e}")))?;
                walk(&v, false, &mut out);
            }
        }
        Kind::Chart => {
            let text = chart_values(path).map_err(bad)?;
            let v: Value = serde_norway::from_str(&text)
                .map_err(|e| bad(format!("values.yaml is not YAML: {e}")))?;
            walk(&v, true, &mut out);
        }
        _ => {}
    }
    out.retain(|r| {
        let repo = repository(&r.reference);
        !art.skip_images.iter().any(|s| s == repo)
    });
    out.sort_by(|a, b| a.reference.cmp(&b.reference));
    out.dedup();
    Ok(out)
}

/// `<chart>/values.yaml` of a chart `.tgz`.
fn chart_values(path: &Path) -> std::result::Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
    for entry in tar.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let name = entry.path().map_err(|e| e.to_string())?.into_owned();
        let parts: Vec<_> = name.components().collect();
        if parts.len() == 2 && name.ends_with("values.yaml") {
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(|e| format!("{}: {e}", name.display()))?;
            return Ok(text);
        }
    }
    Err("the chart has no <chart>/values.yaml".into())
}

fn walk(v: &Value, values: bool, out: &mut Vec<Referenced>) {
    match v {
        Value::Mapping(m) => {
            if values {
                if let Some(reference) = values_image(m) {
                    out.push(Referenced {
                        reference,
                        from_values: true,
                    });
                    for v in m.values() {
                        walk(v, values, out);
                    }
                    return;
                }
            }
            for (k, v) in m {
                if k.as_str() == Some("image") {
                    if let Some(r) = v.as_str().filter(|r| !r.is_empty()) {
                        out.push(Referenced {
                            reference: r.to_string(),
                            from_values: values,
                        });
                    }
                }
                walk(v, values, out);
            }
        }
        Value::Sequence(s) => s.iter().for_each(|v| walk(v, values, out)),
        Value::Tagged(t) => walk(&t.value, values, out),
        _ => {}
    }
}

/// An image block of a chart's values: `repository` + `tag` (Cilium), or
/// `image` + `tag`/`version` with an optional `registry` (tigera-operator:
/// `{registry: quay.io, image: tigera/operator, version: v1.32.7}`).
fn values_image(m: &serde_norway::Mapping) -> Option<String> {
    let s = |k: &str| m.get(k).and_then(scalar).filter(|v| !v.is_empty());
    let tag = s("tag").or_else(|| s("version"));
    if let (Some(repo), Some(tag)) = (s("repository"), tag.clone()) {
        return Some(format!("{repo}:{tag}"));
    }
    let (image, tag) = (s("image")?, tag?);
    Some(match s("registry") {
        Some(registry) => format!("{}/{image}:{tag}", registry.trim_end_matches('/')),
        None => format!("{image}:{tag}"),
    })
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `quay.io/cilium/cilium:v1.15.6@sha256:…` -> `quay.io/cilium/cilium`.
pub fn repository(reference: &str) -> &str {
    let no_digest = reference.split('@').next().unwrap_or(reference);
    match no_digest.rfind(':') {
        Some(i) if !no_digest[i..].contains('/') => &no_digest[..i],
        _ => no_digest,
    }
}

/// `…:v1.15.6@sha256:…` -> `v1.15.6` (empty when untagged).
pub fn tag(reference: &str) -> &str {
    let no_digest = reference.split('@').next().unwrap_or(reference);
    let repo = repository(reference);
    no_digest[repo.len()..].trim_start_matches(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_and_tag() {
        assert_eq!(repository("quay.io/a/b:v1@sha256:00"), "quay.io/a/b");
        assert_eq!(tag("quay.io/a/b:v1@sha256:00"), "v1");
        assert_eq!(repository("127.0.0.1:5000/a/b"), "127.0.0.1:5000/a/b");
        assert_eq!(tag("127.0.0.1:5000/a/b"), "");
        assert_eq!(
            repository("registry.k8s.io/pause:3.9"),
            "registry.k8s.io/pause"
        );
    }

    /// The references `walk` finds in a chart's values.yaml text.
    fn values_refs(text: &str) -> Vec<String> {
        let values: Value = serde_norway::from_str(text).expect("yaml");
        let mut out = Vec::new();
        walk(&values, true, &mut out);
        out.into_iter().map(|r| r.reference).collect()
    }

    #[test]
    fn manifest_images_and_values_pairs() {
        let text = "kind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n      - name: a\n        image: \"quay.io/x/a:v1\"\n      initContainers:\n      - image: quay.io/x/b:v2\n---\nkind: ConfigMap\ndata:\n  image: quay.io/x/a:v1\n";
        let mut out = Vec::new();
        for doc in serde_norway::Deserializer::from_str(text) {
            let v = <Value as serde::Deserialize>::deserialize(doc).expect("yaml");
            walk(&v, false, &mut out);
        }
        let refs: Vec<_> = out.iter().map(|r| r.reference.as_str()).collect();
        assert_eq!(refs, ["quay.io/x/a:v1", "quay.io/x/b:v2", "quay.io/x/a:v1"]);

        let refs = values_refs(
            "image:\n  repository: quay.io/cilium/cilium\n  tag: v1.15.6\n  useDigest: true\nhubble:\n  ui:\n    frontend:\n      image:\n        repository: quay.io/cilium/hubble-ui\n        tag: v0.13.0\n",
        );
        assert_eq!(
            refs,
            [
                "quay.io/cilium/cilium:v1.15.6",
                "quay.io/cilium/hubble-ui:v0.13.0"
            ]
        );
    }

    #[test]
    fn values_image_blocks_with_registry_and_version() {
        let refs = values_refs(
            "tigeraOperator:\n  image: tigera/operator\n  version: v1.32.7\n  registry: quay.io\ncalicoctl:\n  image: docker.io/calico/ctl\n  tag: v3.27.3\ninstallation:\n  enabled: true\n",
        );
        assert_eq!(
            refs,
            [
                "quay.io/tigera/operator:v1.32.7",
                "docker.io/calico/ctl:v3.27.3"
            ]
        );
    }
}
