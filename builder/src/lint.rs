//! Closure lint: before anything is written, every image the profile needs
//! (sandbox image, addon images) and every image a carried manifest or chart
//! references is in the bundle for every platform, with its index,
//! per-platform manifest, config and layers all present.

use crate::addon_images::{self, Referenced};
use crate::binaries::ContentFile;
use crate::catalog::Artifact;
use crate::error::{Error, Result};
use crate::images::PulledImage;
use crate::profile::NeededImage;
use ferry_bundles::manifest::IMAGES_DIR;
use std::collections::BTreeMap;

pub fn check(
    needed: &[NeededImage],
    platforms: &[String],
    images: &[PulledImage],
    files: &BTreeMap<String, ContentFile>,
) -> Result<()> {
    let mut problems = Vec::new();
    let blob_ok = |digest: &str| {
        let path = format!(
            "{IMAGES_DIR}/blobs/sha256/{}",
            digest.trim_start_matches("sha256:")
        );
        files
            .get(&path)
            .is_some_and(|f| f.source.is_file() && f.size > 0)
    };
    for n in needed {
        let Some(img) = images.iter().find(|i| i.reference == n.reference) else {
            problems.push(format!(
                "{} (needed by {}) is not in the bundle; add its catalog key to the profile's addon images",
                n.reference, n.needed_by
            ));
            continue;
        };
        if !blob_ok(&img.digest) {
            problems.push(format!("{}: index {} missing", n.reference, img.digest));
        }
        for p in platforms {
            match img.per_platform.get(p) {
                None => problems.push(format!(
                    "{} (needed by {}) has no {p} image",
                    n.reference, n.needed_by
                )),
                Some(pi) => {
                    for d in std::iter::once(&pi.manifest).chain(pi.blobs.iter()) {
                        if !blob_ok(d) {
                            problems.push(format!("{} {p}: blob {d} missing", n.reference));
                        }
                    }
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Closure(problems.join("; ")))
    }
}

/// The images every carried manifest and chart references, each as the
/// bundle image it resolves to (or as written, when the bundle lacks it).
pub fn artifact_needs(
    artifacts: &[Artifact],
    files: &BTreeMap<String, ContentFile>,
    images: &[PulledImage],
) -> Result<Vec<NeededImage>> {
    let mut out = Vec::new();
    for art in artifacts.iter().filter(|a| a.kind.platform_independent()) {
        let Some(file) = art.outputs.first().and_then(|o| files.get(&o.path)) else {
            continue;
        };
        let needed_by = format!("{} ({})", file.path, art.url);
        for r in addon_images::referenced(art, &file.source)? {
            out.push(NeededImage {
                key: String::new(),
                reference: resolve(&r, images).unwrap_or(r.reference),
                needed_by: needed_by.clone(),
            });
        }
    }
    Ok(out)
}

/// The carried image `r` names: the same repository and tag (a digest in `r`
/// must be the carried index digest); for chart values also a suffixed
/// repository (`operator` -> `operator-generic`).
fn resolve(r: &Referenced, images: &[PulledImage]) -> Option<String> {
    let (repo, tag) = (
        addon_images::repository(&r.reference),
        addon_images::tag(&r.reference),
    );
    let digest = r.reference.split_once('@').map(|(_, d)| d);
    let same = |p: &PulledImage| {
        let (prepo, ptag) = (
            addon_images::repository(&p.reference),
            addon_images::tag(&p.reference),
        );
        let repo_ok = prepo == repo
            || (r.from_values
                && prepo
                    .strip_prefix(repo)
                    .is_some_and(|rest| rest.starts_with('-') && !rest[1..].contains('/')));
        repo_ok && ptag == tag && digest.is_none_or(|d| d == p.digest)
    };
    images.iter().find(|p| same(p)).map(|p| p.reference.clone())
}
