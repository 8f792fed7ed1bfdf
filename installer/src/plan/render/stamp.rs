//! Every unit names the sha256 of the executable it runs, in a comment:
//! a new binary (an upgrade) changes the unit, so the unit's own step
//! restarts it, one host at a time where that step rolls, and a run killed
//! after the binaries were placed still restarts it on the next run.

use crate::plan::closure::exec_paths;
use crate::plan::model::{FileContent, HostPlan};
use std::path::Path;

/// Appends `# ferry: runs <exe> sha256 <hex>` to each unit whose
/// executable is a bundle file or comes from an archive of the host.
pub(super) fn stamp_units(host: &mut HostPlan) {
    let stamps: Vec<(usize, String)> = host
        .files
        .iter()
        .enumerate()
        .filter(|(_, f)| f.path.starts_with(super::SYSTEMD_DIR))
        .filter_map(|(i, f)| {
            let FileContent::Inline(b) = &f.content else {
                return None;
            };
            let text = String::from_utf8_lossy(b);
            let lines: Vec<String> = exec_paths(&text)
                .iter()
                .map(|e| e.trim_matches('"').to_owned())
                .filter_map(|exe| {
                    digest_of(host, &exe).map(|d| format!("# ferry: runs {exe} sha256 {d}\n"))
                })
                .collect();
            (!lines.is_empty()).then(|| (i, lines.concat()))
        })
        .collect();
    for (i, stamp) in stamps {
        if let FileContent::Inline(b) = &mut host.files[i].content {
            b.extend_from_slice(stamp.as_bytes());
        }
    }
}

/// The sha256 of what `exe` is on `host`: the bundle file placed there, or
/// the archive unpacked into a directory above it.
fn digest_of(host: &HostPlan, exe: &str) -> Option<String> {
    let exe = Path::new(exe);
    host.files
        .iter()
        .find(|f| f.path == exe)
        .and_then(|f| match &f.content {
            FileContent::BundleFile { sha256, .. } => Some(sha256.clone()),
            _ => None,
        })
        .or_else(|| {
            host.archives
                .iter()
                .find(|a| exe.starts_with(&a.dest_dir))
                .map(|a| a.sha256.clone())
        })
}
