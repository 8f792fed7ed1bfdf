//! bundle.json, schema v1: the contract between builder and installer.
//!
//! Field order in these structs is the key order on disk (serde keeps
//! declaration order), so the JSON is stable byte for byte.

use serde::{Deserialize, Serialize};

pub const SCHEMA_VERSION: u32 = 1;
pub const MANIFEST_PATH: &str = "bundle.json";
pub const SIGNATURE_PATH: &str = "bundle.json.minisig";
/// Directory of the single OCI image layout inside a bundle.
pub const IMAGES_DIR: &str = "images";
/// Largest bundle.json ferry reads or writes. A manifest lists every file
/// with its sha256 (about 200 bytes each), so this is room for some 300,000
/// files, while a hostile one cannot make a reader allocate more.
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;
/// Largest bundle.json.minisig ferry reads (a real one is under 1 KiB).
pub const MAX_SIGNATURE_BYTES: u64 = 64 << 10;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleManifest {
    pub schema: u32,
    pub name: String,
    /// RFC 3339, UTC; from SOURCE_DATE_EPOCH when set.
    pub created: String,
    /// ferry version that wrote the bundle.
    pub builder: String,
    /// Kubernetes version, without a leading `v` (`1.29.6`).
    pub kubernetes: String,
    /// `linux/amd64`, `linux/arm64`, sorted.
    pub platforms: Vec<String>,
    pub components: Vec<Component>,
    pub images: Vec<ImageRecord>,
    /// Every content entry, sorted by path.
    pub files: Vec<FileEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<BaseRef>,
    /// OS package sets, one per distribution and platform, sorted by name
    /// then platform. Added within schema 1 as an optional field: bundles
    /// without sets are unchanged; an older ferry refuses one with sets by
    /// naming this field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub os_packages: Vec<OsPackageSet>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OsFormat {
    Deb,
    Rpm,
}

/// A distribution's packages for one platform, with a repository index its
/// own tool reads, under `dir` (`os/<name>/<arch>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OsPackageSet {
    /// The OS source's name (`debian-12`).
    pub name: String,
    pub format: OsFormat,
    /// `/etc/os-release` ID and VERSION_ID (the major version for rpm
    /// distributions) of the hosts this set serves.
    pub os_id: String,
    pub version_id: String,
    pub platform: String,
    /// The distribution's architecture name (`amd64`, `x86_64`).
    pub arch: String,
    pub dir: String,
    /// What the profile asked for: its name and this distribution's.
    pub requested: Vec<RequestedPackage>,
    /// Every package carried, sorted by name.
    pub packages: Vec<OsPackage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestedPackage {
    pub name: String,
    pub package: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OsPackage {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// Below the set's `dir`.
    pub path: String,
    /// Why the closure holds it (`requested`, `haproxy depends on ...`).
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentKind {
    /// A single executable, stored under `bin/linux-<arch>/<name>`.
    Binary,
    /// An upstream archive kept whole, under `archives/linux-<arch>/<file>`.
    Archive,
    /// An upstream release manifest (multi-document YAML), under
    /// `manifests/<name>/<file>`; platform-independent.
    Manifest,
    /// An upstream Helm chart `.tgz`, under `manifests/<name>/<file>`;
    /// platform-independent. Added within schema 1: a new value, no new field.
    Chart,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    pub name: String,
    pub version: String,
    pub kind: ComponentKind,
    /// `linux/amd64`; absent for platform-independent files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Path of the file inside the bundle.
    pub path: String,
    /// Upstream URL (before any mirror mapping).
    pub source: String,
    /// Upstream sha256, hex.
    pub sha256: String,
    /// Where the upstream checksum came from: the checksum file URL (a
    /// `.sha256` file, a SHA256SUMS listing, a Helm repository `index.yaml`, a
    /// GitHub release API document), with ` (pinned in catalog)` when pinned.
    pub checksum_source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRecord {
    /// Original reference, `registry.k8s.io/pause:3.9`.
    pub reference: String,
    /// Digest of the manifest or index as published upstream, `sha256:<hex>`.
    pub digest: String,
    /// Media type of that manifest or index.
    pub media_type: String,
    /// Platforms kept, sorted.
    pub platforms: Vec<String>,
    /// Entries of the upstream index the bundle does not carry, and why. The
    /// index itself is kept byte for byte, so these still appear in it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<LeftOut>,
    /// The image's cosign signature, carried beside it under its upstream tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureRecord>,
}

/// An upstream index entry that is not in the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeftOut {
    pub digest: String,
    /// `windows/amd64 10.0.17763.5458`, `linux/arm/v7`, `unknown/unknown`.
    pub platform: String,
    pub reason: LeftOutReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeftOutReason {
    /// A platform the bundle was not built for.
    PlatformNotRequested,
    /// A buildkit attestation manifest (SBOM, provenance).
    Attestation,
    /// An image whose layers are non-distributable (served by another host).
    ForeignLayers,
}

impl LeftOutReason {
    pub fn describe(self) -> &'static str {
        match self {
            LeftOutReason::PlatformNotRequested => "platform not requested",
            LeftOutReason::Attestation => "attestation",
            LeftOutReason::ForeignLayers => "foreign layers",
        }
    }
}

/// A cosign signature manifest (`sha256-<hex>.sig` tag) carried with an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureRecord {
    /// Full reference of the tag: `quay.io/cilium/cilium:sha256-<hex>.sig`.
    pub reference: String,
    pub digest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    /// Hex sha256 of the content.
    pub sha256: String,
    /// Unix permission bits (0o644, 0o755).
    pub mode: u32,
    /// Deltas only: the file lives in the base bundle and is not in this tar.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_base: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseRef {
    pub name: String,
    /// sha256 of the base bundle's bundle.json bytes, hex.
    pub manifest_sha256: String,
}

impl BundleManifest {
    /// Canonical bytes of bundle.json: pretty JSON with a trailing newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("manifest serializes");
        out.push(b'\n');
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Reads and parses a bundle.json file (an unpacked bundle's), refusing
    /// one over `MAX_MANIFEST_BYTES` before reading it whole. Does not check
    /// any signature.
    pub fn load(path: &std::path::Path) -> crate::Result<Self> {
        let bytes = crate::bounded::read_file(path, MAX_MANIFEST_BYTES, MANIFEST_PATH)?;
        Self::from_bytes(&bytes).map_err(|e| {
            crate::Error::verification(
                path.display().to_string(),
                format!("not a valid bundle.json: {e}"),
            )
        })
    }

    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files
            .binary_search_by(|f| f.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.files[i])
    }

    /// Total bytes of content carried in this bundle's tar (excludes `in_base`).
    /// Saturates: `bundle inspect` shows an unverified manifest, whose sizes
    /// may add up past u64 (a plain sum panics or wraps).
    pub fn content_bytes(&self) -> u64 {
        self.files
            .iter()
            .filter(|f| !f.in_base)
            .fold(0u64, |sum, f| sum.saturating_add(f.size))
    }
}

/// `linux/arm64` -> `linux-arm64`, the directory name used under `bin/` and `archives/`.
pub fn platform_dir(platform: &str) -> String {
    platform.replace('/', "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_independent_chart_and_manifest_components_round_trip() {
        for (kind, text) in [
            (ComponentKind::Chart, "chart"),
            (ComponentKind::Manifest, "manifest"),
        ] {
            let c = Component {
                name: "cilium".into(),
                version: "1.15.6".into(),
                kind,
                platform: None,
                path: "manifests/cilium/cilium-1.15.6.tgz".into(),
                source: "https://helm.cilium.io/cilium-1.15.6.tgz".into(),
                sha256: "0".repeat(64),
                checksum_source: "https://helm.cilium.io/index.yaml".into(),
            };
            let json = serde_json::to_string(&c).expect("serialize");
            assert!(json.contains(&format!("\"kind\":\"{text}\"")), "{json}");
            assert!(!json.contains("platform"), "{json}");
            let back: Component = serde_json::from_str(&json).expect("parse");
            assert_eq!(back, c);
        }
        let bad = r#"{"name":"x","version":"1","kind":"helm","path":"p","source":"s","sha256":"h","checksum_source":"c"}"#;
        assert!(serde_json::from_str::<Component>(bad).is_err());
    }
}
