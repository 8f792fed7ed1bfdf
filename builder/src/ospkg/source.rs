//! OS sources: `bundles/catalog/os/<name>.toml` (format documented in
//! bundles/catalog/os/debian-12.toml) and the archive keys next to them.

use crate::embedded::{self, DataFile};
use crate::error::{Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Deb,
    Rpm,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OsRelease {
    pub id: String,
    pub version_id: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repo {
    /// deb: the archive root (`https://deb.debian.org/debian`); rpm: the
    /// repository root, `{arch}` replaced by the distribution's arch.
    pub url: String,
    /// deb only.
    #[serde(default)]
    pub suite: Option<String>,
    /// deb only.
    #[serde(default)]
    pub components: Vec<String>,
    /// The platforms this repository serves (Ubuntu's ports archive holds
    /// arm64); empty: every platform.
    #[serde(default)]
    pub platforms: Vec<String>,
}

impl Repo {
    pub fn serves(&self, platform: &str) -> bool {
        self.platforms.is_empty() || self.platforms.iter().any(|p| p == platform)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Base {
    #[serde(default)]
    pub packages: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OsSource {
    pub name: String,
    pub format: Format,
    pub os_release: OsRelease,
    pub keys: Vec<String>,
    pub repos: Vec<Repo>,
    pub arches: BTreeMap<String, String>,
    #[serde(default)]
    pub base: Base,
    #[serde(default)]
    pub names: BTreeMap<String, String>,
    #[serde(skip)]
    pub origin: String,
    /// The armored text of each key, in `keys` order.
    #[serde(skip)]
    pub key_texts: Vec<String>,
}

impl OsSource {
    /// `<dir>/os/<name>.toml` when present (keys beside it), else built in.
    pub fn load(name: &str, catalog_dir: Option<&Path>) -> Result<OsSource> {
        let os_dir = catalog_dir.map(|d| d.join("os"));
        let file = embedded::load("catalog/os", embedded::OS_SOURCES, os_dir.as_deref(), name)?;
        let mut src = OsSource::parse(&file)?;
        let local = os_dir
            .as_deref()
            .filter(|d| d.join(format!("{name}.toml")).exists());
        for key in src.keys.clone() {
            src.key_texts.push(key_text(&src.origin, &key, local)?);
        }
        Ok(src)
    }

    pub fn parse(file: &DataFile) -> Result<OsSource> {
        let mut s: OsSource = toml::from_str(&file.text)
            .map_err(|e| Error::data(&file.origin, "(syntax)", e.to_string()))?;
        s.origin = file.origin.clone();
        let bad = |key: &str, reason: String| Err(Error::data(&s.origin, key, reason));
        if s.keys.is_empty() {
            return bad("keys", "name at least one archive key".into());
        }
        if s.repos.is_empty() {
            return bad("repos", "name at least one repository".into());
        }
        for (i, r) in s.repos.iter().enumerate() {
            let deb_fields = r.suite.is_some() && !r.components.is_empty();
            match s.format {
                Format::Deb if !deb_fields => {
                    return bad(
                        &format!("repos[{i}]"),
                        "a deb repository needs suite and components".into(),
                    )
                }
                Format::Rpm if r.suite.is_some() || !r.components.is_empty() => {
                    return bad(
                        &format!("repos[{i}]"),
                        "an rpm repository has only url".into(),
                    )
                }
                _ => {}
            }
        }
        Ok(s)
    }

    /// The distribution's name for a profile package name.
    pub fn package_name<'a>(&'a self, name: &'a str) -> &'a str {
        self.names.get(name).map(String::as_str).unwrap_or(name)
    }

    /// The repositories that serve `platform`.
    pub fn repos_for<'a>(
        &'a self,
        platform: &'a str,
    ) -> impl Iterator<Item = (usize, &'a Repo)> + 'a {
        self.repos
            .iter()
            .enumerate()
            .filter(move |(_, r)| r.serves(platform))
    }

    /// The distribution's architecture name for a platform.
    pub fn arch(&self, platform: &str) -> Result<&str> {
        self.arches
            .get(platform)
            .map(String::as_str)
            .ok_or_else(|| {
                Error::data(
                    &self.origin,
                    "arches",
                    format!(
                        "no architecture for platform {platform} (known: {})",
                        self.arches.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                )
            })
    }
}

fn key_text(origin: &str, key: &str, local: Option<&Path>) -> Result<String> {
    if key.contains('/') || !key.ends_with(".asc") {
        return Err(Error::data(
            origin,
            "keys",
            format!("{key:?}: name an .asc file beside the source"),
        ));
    }
    if let Some(dir) = local {
        let path = dir.join(key);
        return std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e));
    }
    embedded::OS_KEYS
        .iter()
        .find(|(n, _)| *n == key)
        .map(|(_, t)| t.to_string())
        .ok_or_else(|| Error::data(origin, "keys", format!("{key}: no such key file")))
}
