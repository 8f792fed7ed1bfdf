//! Closure lint: before anything is written, every image the profile needs
//! (sandbox image, addon images) is in the bundle for every platform, with its
//! index, per-platform manifest, config and layers all present.

use crate::binaries::ContentFile;
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
                "{} (needed by {}) is not in the bundle",
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
