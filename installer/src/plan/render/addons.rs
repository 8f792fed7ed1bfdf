//! The addon manifests, written on the first master, which applies them; and
//! the images they need that the bundle lacks.

use super::addon_manifests::{render_addons, RenderedAddon};
use super::{HostFiles, HostScope, RenderInput, Renderer, ADDONS_DIR};
use crate::images;
use crate::plan::error::Result;
use crate::plan::model::Step;
use std::collections::BTreeSet;
use std::path::Path;

pub(super) struct AddonsInput<'a> {
    pub scope: &'a HostScope<'a>,
    pub render: &'a RenderInput<'a>,
    /// `linux/<arch>` of every Kubernetes node.
    pub node_platforms: &'a BTreeSet<String>,
}

pub(super) fn render(h: &mut HostFiles, r: &Renderer, input: &AddonsInput) -> Result<()> {
    for a in render_addons(r, input.render)? {
        let path = Path::new(ADDONS_DIR).join(&a.name);
        check_images(h, input, &a, &path);
        if a.secret {
            h.secret(path, a.text.into_bytes(), Step::Addons)?;
        } else {
            h.text(path, a.text, Step::Addons)?;
        }
    }
    Ok(())
}

/// Notes the images an addon deploys that the bundle lacks for some node platform.
fn check_images(h: &mut HostFiles, input: &AddonsInput, a: &RenderedAddon, path: &Path) {
    let host = &input.scope.node.name;
    let bundle = input.render.bundle;
    for image in &a.implied_images {
        for p in input.node_platforms {
            if let Err(reason) = images::bundle_has_image(bundle, image, p) {
                h.missing(format!(
                    "host {host}: {} (its operator deploys {image}): {reason}",
                    path.display()
                ));
            }
        }
    }
    for short in &a.absent {
        h.missing(format!(
            "host {host}: {}: image {short} is not in bundle {} (no image named */{short})",
            path.display(),
            bundle.name
        ));
    }
}
