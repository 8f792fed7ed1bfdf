//! Release catalog: `bundles/catalog/<k8s-version>.toml` (format documented in
//! that file). Parsing validates everything up front, naming file and key.

use crate::embedded::{self, DataFile};
use crate::error::{Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Binary,
    Archive,
    Extract,
    /// A platform-independent release manifest (multi-document YAML).
    Manifest,
    /// A platform-independent Helm chart `.tgz`.
    Chart,
}

impl Kind {
    /// Manifests and charts: one file for every platform, under `manifests/`.
    pub fn platform_independent(self) -> bool {
        matches!(self, Kind::Manifest | Kind::Chart)
    }
}

/// Pin key of a platform-independent artifact (`sha256 = { any = "<hex>" }`).
pub const ANY_PLATFORM: &str = "any";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChecksumFormat {
    /// Only the hex digest.
    Bare,
    /// `<hex>  <file>` lines.
    Sha256sum,
    /// A Helm chart repository's `index.yaml`: the entry whose `urls` name the
    /// file gives its sha256 `digest`.
    HelmIndex,
    /// GitHub's release API document (`/repos/<o>/<r>/releases/tags/<tag>`):
    /// the asset named like the file gives `"digest": "sha256:<hex>"`.
    GithubAsset,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    pub name: String,
    pub version: String,
    pub kind: Kind,
    /// URL template for every platform.
    pub url: String,
    /// Per-platform URL templates that replace `url`.
    #[serde(default)]
    pub urls: BTreeMap<String, String>,
    pub checksum_url: String,
    pub checksum_format: ChecksumFormat,
    /// Name under bin/ for `binary` (default: `name`).
    #[serde(default)]
    pub binary_name: Option<String>,
    /// `extract`: bundle binary name -> member path template in the tarball.
    #[serde(default)]
    pub extract: BTreeMap<String, String>,
    /// Pinned upstream digests by platform (`any` for manifests and charts).
    #[serde(default)]
    pub sha256: BTreeMap<String, String>,
    /// Carried only when the profile has this addon (or CNI).
    #[serde(default)]
    pub addon: Option<String>,
    /// Manifests and charts: image repositories the artifact names that the
    /// profile's settings never render (closure lint skips them).
    #[serde(default)]
    pub skip_images: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub kubernetes: String,
    pub platforms: Vec<String>,
    pub components: Vec<Component>,
    /// Image key -> upstream reference.
    pub images: BTreeMap<String, String>,
    #[serde(skip)]
    pub origin: String,
}

/// One file to fetch for one platform, with templates expanded.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub component: String,
    pub version: String,
    pub kind: Kind,
    /// The platform, or `any` for manifests and charts.
    pub platform: String,
    pub url: String,
    /// Last path segment of `url`.
    pub file_name: String,
    pub checksum_url: String,
    pub checksum_format: ChecksumFormat,
    pub pinned: Option<String>,
    /// What goes into the bundle from this file.
    pub outputs: Vec<Output>,
    /// Image repositories the closure lint skips (manifests and charts).
    pub skip_images: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Output {
    /// Path inside the bundle.
    pub path: String,
    /// Tar member to take (extract only).
    pub member: Option<String>,
    pub mode: u32,
}

impl Catalog {
    /// Loads `<version>.toml` from `dir` when present there, else the built-in one.
    pub fn load(version: &str, dir: Option<&Path>) -> Result<Catalog> {
        let version = version.trim_start_matches('v');
        let file = embedded::load("catalog", embedded::CATALOGS, dir, version)?;
        let cat = Catalog::parse(&file)?;
        if cat.kubernetes != version {
            return Err(Error::data(
                &file.origin,
                "kubernetes",
                format!(
                    "is {:?} but the file is named for {version:?}",
                    cat.kubernetes
                ),
            ));
        }
        Ok(cat)
    }

    pub fn parse(file: &DataFile) -> Result<Catalog> {
        let mut cat: Catalog = toml::from_str(&file.text)
            .map_err(|e| Error::data(&file.origin, "(syntax)", e.to_string()))?;
        cat.origin = file.origin.clone();
        cat.validate()?;
        Ok(cat)
    }

    fn err(&self, key: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::data(&self.origin, key, reason)
    }

    fn validate(&self) -> Result<()> {
        if self.platforms.is_empty() {
            return Err(self.err("platforms", "must list at least one platform"));
        }
        for p in &self.platforms {
            split_platform(p)
                .ok_or_else(|| self.err("platforms", format!("{p:?} is not <os>/<arch>")))?;
        }
        let mut names = std::collections::BTreeSet::new();
        let mut outputs = std::collections::BTreeSet::new();
        for (i, c) in self.components.iter().enumerate() {
            let key = |k: &str| format!("components[{i}] ({}).{k}", c.name);
            if c.name.is_empty()
                || !c
                    .name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
            {
                return Err(self.err(key("name"), "must be non-empty [A-Za-z0-9-_.]"));
            }
            if !names.insert(c.name.clone()) {
                return Err(self.err(key("name"), "duplicate component"));
            }
            self.validate_component(c, &key)?;
            // Expanding for every platform checks placeholders and URLs.
            for p in self.component_platforms(c) {
                for o in self.artifact(c, &p)?.outputs {
                    if !outputs.insert(o.path.clone()) {
                        return Err(self.err(
                            key("name"),
                            format!("bundle path {} produced twice", o.path),
                        ));
                    }
                }
            }
        }
        for (k, r) in &self.images {
            crate::mirror::split_reference(r).map_err(|e| self.err(format!("images.{k}"), e))?;
        }
        Ok(())
    }

    /// Pins, per-platform URLs and kind-specific fields of one component.
    fn validate_component(&self, c: &Component, key: &dyn Fn(&str) -> String) -> Result<()> {
        let independent = c.kind.platform_independent();
        for p in c.urls.keys().chain(c.sha256.keys()) {
            let ok = if independent {
                p == ANY_PLATFORM && c.urls.is_empty()
            } else {
                self.platforms.contains(p)
            };
            if !ok {
                let want = if independent {
                    "manifests and charts take one `url` and pin `sha256.any`".to_string()
                } else {
                    format!("platform {p:?} is not in `platforms`")
                };
                return Err(self.err(key("urls/sha256"), want));
            }
        }
        for (p, d) in &c.sha256 {
            if !is_hex64(d) {
                return Err(self.err(
                    key(&format!("sha256.\"{p}\"")),
                    "must be 64 lowercase hex digits",
                ));
            }
        }
        if c.kind == Kind::Extract && c.extract.is_empty() {
            return Err(self.err(
                key("extract"),
                "kind = \"extract\" needs at least one member",
            ));
        }
        if c.kind != Kind::Extract && !c.extract.is_empty() {
            return Err(self.err(key("extract"), "only for kind = \"extract\""));
        }
        if c.binary_name.is_some() && c.kind != Kind::Binary {
            return Err(self.err(key("binary_name"), "only for kind = \"binary\""));
        }
        if !c.skip_images.is_empty() && !independent {
            return Err(self.err(
                key("skip_images"),
                "only for kind = \"manifest\" or \"chart\"",
            ));
        }
        if c.addon.as_deref() == Some("") {
            return Err(self.err(key("addon"), "must name an addon"));
        }
        Ok(())
    }

    /// The platforms a component is expanded for: `any` once for manifests
    /// and charts, else every catalog platform.
    fn component_platforms(&self, c: &Component) -> Vec<String> {
        if c.kind.platform_independent() {
            vec![ANY_PLATFORM.to_string()]
        } else {
            self.platforms.clone()
        }
    }

    /// Every file to fetch for the given platforms (all must be in the catalog).
    /// `addons`: the profile's addon names and CNI; a component with `addon`
    /// is carried only when that addon is among them. Manifests and charts
    /// come once, for platform `any`.
    pub fn artifacts(
        &self,
        platforms: &[String],
        only: Option<&[String]>,
        addons: &[String],
    ) -> Result<Vec<Artifact>> {
        for p in platforms {
            if !self.platforms.contains(p) {
                return Err(Error::Usage(format!(
                    "platform {p} is not in catalog {} (it has {})",
                    self.origin,
                    self.platforms.join(", ")
                )));
            }
        }
        if let Some(only) = only {
            for n in only {
                if !self.components.iter().any(|c| &c.name == n) {
                    return Err(self.err(
                        "components",
                        format!("profile asks for {n:?}, which this catalog lacks"),
                    ));
                }
            }
        }
        let mut out = Vec::new();
        for c in &self.components {
            if only.is_some_and(|o| !o.contains(&c.name)) {
                continue;
            }
            if c.addon.as_ref().is_some_and(|a| !addons.contains(a)) {
                continue;
            }
            if c.kind.platform_independent() {
                out.push(self.artifact(c, ANY_PLATFORM)?);
                continue;
            }
            for p in platforms {
                out.push(self.artifact(c, p)?);
            }
        }
        Ok(out)
    }

    fn artifact(&self, c: &Component, platform: &str) -> Result<Artifact> {
        let idx = self
            .components
            .iter()
            .position(|x| x.name == c.name)
            .unwrap_or(0);
        let key = |k: &str| format!("components[{idx}] ({}).{k}", c.name);
        let vars: Vec<(&str, &str)> = if platform == ANY_PLATFORM {
            // No {os}/{arch}: one file serves every platform.
            vec![("version", c.version.as_str())]
        } else {
            let (os, arch) = split_platform(platform)
                .ok_or_else(|| self.err("platforms", platform.to_string()))?;
            vec![("version", c.version.as_str()), ("os", os), ("arch", arch)]
        };
        let tmpl = c.urls.get(platform).unwrap_or(&c.url);
        let url = expand(tmpl, &vars).map_err(|e| self.err(key("url"), e))?;
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(self.err(key("url"), format!("{url:?} is not an http(s) URL")));
        }
        let file_name = url.rsplit('/').next().unwrap_or_default().to_string();
        if file_name.is_empty() {
            return Err(self.err(key("url"), format!("{url:?} does not end in a file name")));
        }
        let mut cvars = vars.to_vec();
        cvars.push(("url", url.as_str()));
        let checksum_url =
            expand(&c.checksum_url, &cvars).map_err(|e| self.err(key("checksum_url"), e))?;
        let dir = ferry_bundles::manifest::platform_dir(platform);
        let outputs = match c.kind {
            Kind::Binary => vec![Output {
                path: format!("bin/{dir}/{}", c.binary_name.as_deref().unwrap_or(&c.name)),
                member: None,
                mode: 0o755,
            }],
            Kind::Archive => vec![Output {
                path: format!("archives/{dir}/{file_name}"),
                member: None,
                mode: 0o644,
            }],
            Kind::Manifest | Kind::Chart => vec![Output {
                path: format!("manifests/{}/{file_name}", c.name),
                member: None,
                mode: 0o644,
            }],
            Kind::Extract => c
                .extract
                .iter()
                .map(|(name, member)| {
                    let member = expand(member, &vars)
                        .map_err(|e| self.err(key(&format!("extract.{name}")), e))?;
                    Ok(Output {
                        path: format!("bin/{dir}/{name}"),
                        member: Some(member),
                        mode: 0o755,
                    })
                })
                .collect::<Result<Vec<_>>>()?,
        };
        Ok(Artifact {
            component: c.name.clone(),
            version: c.version.clone(),
            kind: c.kind,
            platform: platform.to_string(),
            url,
            file_name,
            checksum_url,
            checksum_format: c.checksum_format,
            pinned: c.sha256.get(platform).cloned(),
            outputs,
            skip_images: c.skip_images.clone(),
        })
    }

    /// The upstream reference for an image key.
    pub fn image(&self, key: &str) -> Option<&str> {
        self.images.get(key).map(String::as_str)
    }
}

pub fn split_platform(p: &str) -> Option<(&str, &str)> {
    let (os, arch) = p.split_once('/')?;
    let ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric());
    (ok(os) && ok(arch)).then_some((os, arch))
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

/// Replaces `{name}` placeholders; an unknown or unclosed one is an error.
fn expand(tmpl: &str, vars: &[(&str, &str)]) -> std::result::Result<String, String> {
    let mut out = String::new();
    let mut rest = tmpl;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed '{{' in {tmpl:?}"))?;
        let name = &after[..end];
        let value = vars
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("unknown placeholder {{{name}}} in {tmpl:?}"))?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Catalog> {
        Catalog::parse(&DataFile {
            origin: "test.toml".into(),
            text: text.into(),
        })
    }

    #[test]
    fn builtin_catalog_expands_every_component_for_both_platforms() {
        let cat = Catalog::load("1.29.6", None).expect("built-in catalog");
        let plats = vec!["linux/amd64".to_string(), "linux/arm64".to_string()];
        let addons = ["cilium", "cert-manager", "metrics-server"].map(String::from);
        let arts = cat.artifacts(&plats, None, &addons).expect("artifacts");
        assert_eq!(arts.len(), 12 * 2 + 4);
        let etcd = arts
            .iter()
            .find(|a| a.component == "etcd" && a.platform == "linux/arm64")
            .expect("etcd");
        assert_eq!(
            etcd.url,
            "https://github.com/etcd-io/etcd/releases/download/v3.5.12/etcd-v3.5.12-linux-arm64.tar.gz"
        );
        assert_eq!(
            etcd.checksum_url,
            "https://github.com/etcd-io/etcd/releases/download/v3.5.12/SHA256SUMS"
        );
        let paths: Vec<_> = etcd.outputs.iter().map(|o| o.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "bin/linux-arm64/etcd",
                "bin/linux-arm64/etcdctl",
                "bin/linux-arm64/etcdutl"
            ]
        );
        assert_eq!(
            etcd.outputs[0].member.as_deref(),
            Some("etcd-v3.5.12-linux-arm64/etcd")
        );
        let kubelet = arts
            .iter()
            .find(|a| a.component == "kubelet" && a.platform == "linux/amd64")
            .expect("kubelet");
        assert_eq!(
            kubelet.checksum_url,
            "https://dl.k8s.io/release/v1.29.6/bin/linux/amd64/kubelet.sha256"
        );
        let runc = arts
            .iter()
            .find(|a| a.component == "runc" && a.platform == "linux/arm64")
            .expect("runc");
        assert_eq!(runc.outputs[0].path, "bin/linux-arm64/runc");
        assert_eq!(runc.file_name, "runc.arm64");
        let cni = arts
            .iter()
            .find(|a| a.component == "cni-plugins" && a.platform == "linux/amd64")
            .expect("cni");
        assert_eq!(
            cni.outputs[0].path,
            "archives/linux-amd64/cni-plugins-linux-amd64-v1.4.0.tgz"
        );
        assert_eq!(cat.image("pause"), Some("registry.k8s.io/pause:3.9"));
        let chart = arts
            .iter()
            .find(|a| a.component == "cilium")
            .expect("chart");
        assert_eq!(chart.kind, Kind::Chart);
        assert_eq!(chart.platform, ANY_PLATFORM);
        assert_eq!(chart.url, "https://helm.cilium.io/cilium-1.15.6.tgz");
        assert_eq!(chart.checksum_url, "https://helm.cilium.io/index.yaml");
        assert_eq!(chart.outputs[0].path, "manifests/cilium/cilium-1.15.6.tgz");
        let cm = arts
            .iter()
            .find(|a| a.component == "cert-manager")
            .expect("cm");
        assert_eq!(
            cm.checksum_url,
            "https://api.github.com/repos/cert-manager/cert-manager/releases/tags/v1.14.5"
        );
        assert_eq!(
            cm.outputs[0].path,
            "manifests/cert-manager/cert-manager.yaml"
        );
        // Without the addons only the always-carried CRDs remain.
        let bare = cat.artifacts(&plats, None, &[]).expect("artifacts");
        let names: Vec<_> = bare
            .iter()
            .filter(|a| a.kind.platform_independent())
            .map(|a| a.component.as_str())
            .collect();
        assert_eq!(names, ["prometheus-operator-crds"]);
    }

    #[test]
    fn unknown_version_names_the_known_ones() {
        let err = Catalog::load("1.99.0", None).unwrap_err().to_string();
        assert!(err.contains("1.99.0") && err.contains("1.29.6"), "{err}");
    }

    #[test]
    fn errors_name_file_and_key() {
        let base = r#"
kubernetes = "1.0.0"
platforms = ["linux/amd64"]
[images]
[[components]]
name = "x"
version = "1"
kind = "binary"
url = "https://example.invalid/{version}/{bogus}/x"
checksum_url = "{url}.sha256"
checksum_format = "bare"
"#;
        let err = parse(base).unwrap_err().to_string();
        assert!(
            err.starts_with("test.toml: components[0] (x).url: unknown placeholder {bogus}"),
            "{err}"
        );

        let err = parse(
            &base
                .replace("{bogus}/", "")
                .replace("kind = \"binary\"", "kind = \"blob\""),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("test.toml: (syntax):") && err.contains("blob"),
            "{err}"
        );

        let err = parse(&format!(
            "{}\n[components.sha256]\n\"linux/amd64\" = \"abc\"\n",
            base.replace("{bogus}/", "")
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("components[0] (x).sha256.\"linux/amd64\""),
            "{err}"
        );

        // A manifest is one file for every platform: no {arch}, pins under `any`.
        let manifest = base
            .replace("{bogus}/", "")
            .replace("kind = \"binary\"", "kind = \"manifest\"");
        let err = parse(&manifest.replace("/x\"", "/{arch}/x\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown placeholder {arch}"), "{err}");
        let err = parse(&format!(
            "{manifest}\n[components.sha256]\n\"linux/amd64\" = \"{}\"\n",
            "a".repeat(64)
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("sha256.any"), "{err}");
        parse(&format!(
            "{manifest}\n[components.sha256]\nany = \"{}\"\n",
            "a".repeat(64)
        ))
        .expect("pinned manifest");
    }
}
