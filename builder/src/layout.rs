//! The bundle's one OCI image layout (`images/`): oci-layout, index.json
//! naming each image by its full upstream reference, and blobs/sha256/<hex>
//! (every blob once, however many images share it). Blob files point into the
//! cache; nothing is copied.

use crate::binaries::ContentFile;
use crate::cache::Cache;
use crate::error::Result;
use crate::images::PulledImage;
use ferry_bundles::manifest::IMAGES_DIR;
use serde_json::json;
use std::collections::BTreeMap;

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Content files of the layout, keyed by bundle path.
pub fn layout_files(
    cache: &Cache,
    images: &[PulledImage],
) -> Result<BTreeMap<String, ContentFile>> {
    let mut files = BTreeMap::new();
    let mut sorted: Vec<&PulledImage> = images.iter().collect();
    sorted.sort_by(|a, b| a.reference.cmp(&b.reference));

    let mut add_blob = |digest: &str| {
        let hex = digest.trim_start_matches("sha256:").to_string();
        let path = format!("{IMAGES_DIR}/blobs/sha256/{hex}");
        files.entry(path.clone()).or_insert_with(|| ContentFile {
            size: cache.blob_size(&hex).unwrap_or(0),
            source: cache.blob_path(&hex),
            path,
            sha256: hex,
            mode: 0o644,
        });
    };
    let mut entries = Vec::new();
    for img in &sorted {
        add_blob(&img.digest);
        for p in img.per_platform.values() {
            add_blob(&p.manifest);
            for b in &p.blobs {
                add_blob(b);
            }
        }
        entries.push(json!({
            "mediaType": img.media_type,
            "digest": img.digest,
            "size": img.size,
            "annotations": { CONTAINERD_NAME: img.reference, REF_NAME: img.reference },
        }));
        if let Some(sig) = &img.signature {
            add_blob(&sig.digest);
            for b in &sig.blobs {
                add_blob(b);
            }
            entries.push(json!({
                "mediaType": sig.media_type,
                "digest": sig.digest,
                "size": sig.size,
                "annotations": { REF_NAME: sig.reference },
            }));
        }
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE,
        "manifests": entries,
    });
    let mut index_bytes = serde_json::to_vec_pretty(&index).unwrap_or_default();
    index_bytes.push(b'\n');
    for (name, bytes) in [
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
        ("index.json", index_bytes),
    ] {
        let hex = cache.put_bytes(&bytes)?;
        let path = format!("{IMAGES_DIR}/{name}");
        files.insert(
            path.clone(),
            ContentFile {
                path,
                source: cache.blob_path(&hex),
                sha256: hex,
                size: bytes.len() as u64,
                mode: 0o644,
            },
        );
    }
    Ok(files)
}
