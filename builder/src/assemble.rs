//! bundle.json from what was fetched: deterministic (sorted everything,
//! `created` from SOURCE_DATE_EPOCH when set).

use crate::binaries::ContentFile;
use crate::error::{Error, Result};
use crate::images::PulledImage;
use ferry_bundles::manifest::SCHEMA_VERSION;
use ferry_bundles::{BundleManifest, Component, FileEntry, ImageRecord, SignatureRecord};
use std::collections::BTreeMap;

pub struct Inputs<'a> {
    pub name: &'a str,
    pub created_epoch: i64,
    pub builder: &'a str,
    pub kubernetes: &'a str,
    pub platforms: &'a [String],
    pub components: Vec<Component>,
    pub images: &'a [PulledImage],
    pub files: &'a BTreeMap<String, ContentFile>,
    pub os_packages: Vec<ferry_bundles::manifest::OsPackageSet>,
}

pub fn manifest(i: Inputs<'_>) -> Result<BundleManifest> {
    let created = time::OffsetDateTime::from_unix_timestamp(i.created_epoch)
        .map_err(|e| Error::Usage(format!("SOURCE_DATE_EPOCH {}: {e}", i.created_epoch)))?
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| Error::Usage(format!("created time: {e}")))?;
    let mut platforms = i.platforms.to_vec();
    platforms.sort();
    platforms.dedup();
    let mut components = i.components;
    components.sort_by(|a, b| a.path.cmp(&b.path));
    let mut images: Vec<ImageRecord> = i
        .images
        .iter()
        .map(|p| ImageRecord {
            reference: p.reference.clone(),
            digest: p.digest.clone(),
            media_type: p.media_type.clone(),
            platforms: p.platforms.clone(),
            left_out: p.left_out.clone(),
            signature: p.signature.as_ref().map(|s| SignatureRecord {
                reference: s.reference.clone(),
                digest: s.digest.clone(),
            }),
        })
        .collect();
    images.sort_by(|a, b| a.reference.cmp(&b.reference));
    // BTreeMap keys are already sorted by path.
    let files = i
        .files
        .values()
        .map(|f| FileEntry {
            path: f.path.clone(),
            size: f.size,
            sha256: f.sha256.clone(),
            mode: f.mode,
            in_base: false,
        })
        .collect();
    Ok(BundleManifest {
        schema: SCHEMA_VERSION,
        name: i.name.to_string(),
        created,
        builder: i.builder.to_string(),
        kubernetes: i.kubernetes.to_string(),
        platforms,
        components,
        images,
        files,
        base: None,
        os_packages: i.os_packages,
    })
}

/// `prod.tar.zst` -> `prod`.
pub fn bundle_name(output: &std::path::Path) -> String {
    let file = output
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bundle".into());
    file.strip_suffix(".tar.zst").unwrap_or(&file).to_string()
}
