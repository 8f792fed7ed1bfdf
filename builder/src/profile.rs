//! Profiles (`bundles/profiles/<name>.toml`): which components and images a
//! bundle carries and the CNI/addon choices. Images are catalog keys.

use crate::catalog::Catalog;
use crate::embedded::{self, DataFile};
use crate::error::{Error, Result};
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Catalog image key of the pod sandbox (pause) image.
    pub sandbox_image: String,
    pub cni: String,
    #[serde(default)]
    pub kube_proxy_mode: Option<String>,
    /// `"all"` or a list of catalog component names.
    #[serde(default = "all_components")]
    pub components: Components,
    #[serde(default)]
    pub addons: Vec<Addon>,
    /// OS sources (bundles/catalog/os/<name>.toml) to carry packages for;
    /// `ferry bundle build --os` overrides the list.
    #[serde(default)]
    pub os: Vec<String>,
    /// The OS packages the install steps use, by their Debian names (an OS
    /// source maps names its distribution spells differently).
    #[serde(default)]
    pub os_packages: Vec<String>,
    #[serde(skip)]
    pub origin: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Components {
    All(String),
    List(Vec<String>),
}

fn all_components() -> Components {
    Components::All("all".into())
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Addon {
    pub name: String,
    #[serde(default)]
    pub images: Vec<String>,
    /// Addon settings, carried for the installer.
    #[serde(default)]
    pub options: toml::Table,
}

/// An image the profile needs, with the reason (for closure-lint messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeededImage {
    pub key: String,
    pub reference: String,
    pub needed_by: String,
}

impl Profile {
    /// `name_or_path`: a built-in profile name, a name in `dir`, or a path to a .toml file.
    pub fn load(name_or_path: &str, dir: Option<&Path>) -> Result<Profile> {
        let file = if name_or_path.ends_with(".toml") || name_or_path.contains('/') {
            let text =
                std::fs::read_to_string(name_or_path).map_err(|e| Error::io(name_or_path, e))?;
            DataFile {
                origin: name_or_path.to_string(),
                text,
            }
        } else {
            embedded::load("profiles", embedded::PROFILES, dir, name_or_path)?
        };
        Profile::parse(&file)
    }

    pub fn parse(file: &DataFile) -> Result<Profile> {
        let mut p: Profile = toml::from_str(&file.text)
            .map_err(|e| Error::data(&file.origin, "(syntax)", e.to_string()))?;
        p.origin = file.origin.clone();
        if let Components::All(s) = &p.components {
            if s != "all" {
                return Err(Error::data(
                    &p.origin,
                    "components",
                    format!("must be \"all\" or a list, not {s:?}"),
                ));
            }
        }
        for (i, a) in p.addons.iter().enumerate() {
            if p.addons[..i].iter().any(|b| b.name == a.name) {
                return Err(Error::data(
                    &p.origin,
                    format!("addons[{i}].name"),
                    format!("duplicate addon {:?}", a.name),
                ));
            }
        }
        Ok(p)
    }

    /// Component names to carry, or None for every catalog component.
    pub fn component_filter(&self) -> Option<&[String]> {
        match &self.components {
            Components::All(_) => None,
            Components::List(l) => Some(l),
        }
    }

    /// Every image the profile needs (sandbox image first, then addons),
    /// resolved against the catalog; an unknown key names profile, key and catalog.
    pub fn needed_images(&self, catalog: &Catalog) -> Result<Vec<NeededImage>> {
        let mut out: Vec<NeededImage> = Vec::new();
        let mut add = |key: &str, field: String, needed_by: String| -> Result<()> {
            let reference = catalog.image(key).ok_or_else(|| {
                Error::data(
                    &self.origin,
                    field,
                    format!(
                        "image {key:?} is not in catalog {} (known: {})",
                        catalog.origin,
                        known(catalog)
                    ),
                )
            })?;
            if !out.iter().any(|n| n.reference == reference) {
                out.push(NeededImage {
                    key: key.to_string(),
                    reference: reference.to_string(),
                    needed_by,
                });
            }
            Ok(())
        };
        add(
            &self.sandbox_image,
            "sandbox_image".into(),
            "sandbox image".into(),
        )?;
        for (i, a) in self.addons.iter().enumerate() {
            for (j, k) in a.images.iter().enumerate() {
                add(
                    k,
                    format!("addons[{i}].images[{j}]"),
                    format!("addon {}", a.name),
                )?;
            }
        }
        Ok(out)
    }
}

fn known(catalog: &Catalog) -> String {
    catalog
        .images
        .keys()
        .cloned()
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prod_profile_needs_the_guide_images() {
        let cat = Catalog::load("1.29.6", None).expect("catalog");
        let p = Profile::load("prod", None).expect("prod profile");
        assert_eq!(p.cni, "cilium");
        let refs: Vec<_> = p
            .needed_images(&cat)
            .expect("images")
            .into_iter()
            .map(|n| n.reference)
            .collect();
        assert_eq!(refs[0], "registry.k8s.io/pause:3.9");
        for r in [
            "registry.k8s.io/coredns/coredns:v1.11.1",
            "registry.k8s.io/dns/k8s-dns-node-cache:1.22.28",
            "registry.k8s.io/metrics-server/metrics-server:v0.7.1",
            "quay.io/cilium/cilium:v1.15.6",
            "quay.io/cilium/operator-generic:v1.15.6",
            "quay.io/cilium/hubble-relay:v1.15.6",
            "quay.io/jetstack/cert-manager-controller:v1.14.5",
            "quay.io/jetstack/cert-manager-webhook:v1.14.5",
            "quay.io/jetstack/cert-manager-cainjector:v1.14.5",
            "quay.io/tigera/operator:v1.32.7",
            "docker.io/calico/node:v3.27.3",
            "docker.io/calico/cni:v3.27.3",
            "docker.io/calico/kube-controllers:v3.27.3",
            "docker.io/calico/typha:v3.27.3",
            "docker.io/calico/pod2daemon-flexvol:v3.27.3",
            "docker.io/calico/csi:v3.27.3",
            "docker.io/calico/node-driver-registrar:v3.27.3",
        ] {
            assert!(refs.iter().any(|x| x == r), "prod lacks {r}");
        }
        assert_eq!(refs.len(), 18);
    }

    #[test]
    fn unknown_image_key_names_profile_field_and_catalog() {
        let cat = Catalog::load("1.29.6", None).expect("catalog");
        let p = Profile::parse(&DataFile {
            origin: "p.toml".into(),
            text: "name='p'\nsandbox_image='pause'\ncni='cilium'\n[[addons]]\nname='x'\nimages=['nope']\n".into(),
        })
        .expect("parse");
        let err = p.needed_images(&cat).unwrap_err().to_string();
        assert!(
            err.starts_with("p.toml: addons[0].images[0]: image \"nope\" is not in catalog"),
            "{err}"
        );
    }
}
