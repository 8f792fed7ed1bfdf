//! The closure check: every image and binary a rendered file references must
//! be in the bundle for the architecture of the host(s) that will use it.

use crate::images::bundle_has_image;
use crate::plan::error::{PlanError, Result};
use crate::plan::model::{FileContent, HostPlan, Role};
use ferry_bundles::BundleManifest;
use std::collections::BTreeSet;
use std::path::Path;

/// Image references written in a rendered file (`image: X`, `sandbox_image = "X"`).
pub fn referenced_images(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let t = line.trim_start().trim_start_matches("- ");
        let value = if let Some(v) = t.strip_prefix("image:") {
            v
        } else if let Some(v) = t.strip_prefix("sandbox_image =") {
            v
        } else {
            continue;
        };
        let v = value.trim().trim_matches(['"', '\'']).trim();
        if !v.is_empty() {
            out.push(v.to_string());
        }
    }
    out
}

/// The executable of each `ExecStart=` line of a unit.
pub fn exec_paths(unit: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.strip_prefix("ExecStart="))
        .filter_map(|l| {
            l.trim_start_matches(['-', '@', '+', '!'])
                .split_whitespace()
                .next()
        })
        .map(str::to_string)
        .collect()
}

/// Check every host; `missing` holds what rendering already found absent.
pub fn check(
    hosts: &[HostPlan],
    bundle: &BundleManifest,
    bin_dir: &str,
    mut missing: Vec<String>,
) -> Result<()> {
    // Addons run on every node: their images must exist for every node architecture.
    let node_platforms: BTreeSet<String> = hosts
        .iter()
        .filter(|h| h.has(Role::Node))
        .map(|h| format!("linux/{}", h.arch))
        .collect();
    for h in hosts {
        let own = format!("linux/{}", h.arch);
        for f in &h.files {
            let FileContent::Inline(bytes) = &f.content else {
                continue;
            };
            if f.secret {
                continue;
            }
            let Ok(text) = std::str::from_utf8(bytes) else {
                continue;
            };
            let platforms: Vec<&String> = if f.path.starts_with(crate::plan::render::ADDONS_DIR) {
                node_platforms.iter().collect()
            } else {
                vec![&own]
            };
            for image in referenced_images(text) {
                for p in &platforms {
                    if let Err(reason) = bundle_has_image(bundle, &image, p) {
                        missing.push(format!("host {}: {}: {reason}", h.name, f.path.display()));
                    }
                }
            }
            if f.path.extension().is_some_and(|e| e == "service") {
                for exe in exec_paths(text) {
                    let p = Path::new(&exe);
                    let planned = h.files.iter().any(|x| x.path == p)
                        || h.archives
                            .iter()
                            .any(|a| p.parent() == Some(a.dest_dir.as_path()));
                    if p.starts_with(bin_dir) && !planned {
                        missing.push(format!(
                            "host {}: {} runs {exe}, which the plan does not put on the host (not in the bundle for linux/{})",
                            h.name,
                            f.path.display(),
                            h.arch
                        ));
                    }
                }
            }
        }
    }
    missing.sort();
    missing.dedup();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(PlanError::Closure(missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_images_and_execs() {
        let y = "containers:\n- name: a\n  image: r.io/a:1@sha256:00\n  - image: \"b:2\"\nsandbox_image = \"r/pause:3.9\"\n";
        assert_eq!(
            referenced_images(y),
            vec!["r.io/a:1@sha256:00", "b:2", "r/pause:3.9"]
        );
        assert_eq!(
            exec_paths(
                "[Service]\nExecStart=/opt/kube/bin/etcd \\\n  --x\nExecStartPre=-/sbin/modprobe\n"
            ),
            vec!["/opt/kube/bin/etcd"]
        );
    }
}
