//! Registry hosts serve the mirror from their own copy of the unpacked store:
//! `/var/lib/ferry/bundles/<name>/{bundle.json, images/{oci-layout,index.json}}`
//! and the bundle's image blobs in `/var/lib/ferry/blobs/sha256/`. Blobs are
//! content-addressed, so one already present with the right size is kept.

use super::{DeployContext, HostRun, REMOTE_DATA_DIR};
use crate::exec::{sh_quote, Source, Upload};
use crate::store::IMAGE_BLOB_PREFIX;
use std::path::Path;

pub async fn sync(ctx: &DeployContext, run: &mut HostRun) -> Result<(), String> {
    let remote = Path::new(REMOTE_DATA_DIR);
    let bundle_dir = ctx
        .store
        .bundle_dir(&ctx.bundle)
        .map_err(|e| e.to_string())?;
    let remote_bundle = remote.join("bundles").join(&ctx.bundle);
    let mut small = Vec::new();
    for rel in [
        "bundle.json",
        "bundle.json.minisig",
        "images/oci-layout",
        "images/index.json",
    ] {
        let local = bundle_dir.join(rel);
        if local.is_file() {
            small.push(Upload {
                path: remote_bundle.join(rel),
                mode: 0o644,
                source: Source::File(local),
                sha256: None,
            });
        }
    }
    let exec = run.exec()?;
    let mut changed = exec.put_files(&small).await.map_err(|e| e.to_string())?;

    // Blobs: list what the host has (name and size), send the rest.
    let blobs: Vec<_> = ctx
        .manifest
        .files
        .iter()
        .filter(|f| f.path.starts_with(IMAGE_BLOB_PREFIX))
        .collect();
    let remote_blobs = remote.join("blobs/sha256");
    let listing = exec
        .run(&format!(
            "cd {} 2>/dev/null && find . -maxdepth 1 -type f -printf '%f %s\\n'",
            sh_quote(&remote_blobs.to_string_lossy())
        ))
        .await
        .map_err(|e| e.to_string())?;
    let have: std::collections::HashMap<&str, u64> = listing
        .stdout
        .lines()
        .filter_map(|l| {
            l.split_once(' ')
                .and_then(|(n, s)| s.parse().ok().map(|s| (n, s)))
        })
        .collect();
    let mut missing = Vec::new();
    for b in blobs {
        let hex = &b.path[IMAGE_BLOB_PREFIX.len()..];
        if have.get(hex) == Some(&b.size) {
            continue;
        }
        let local = ctx
            .store
            .file_path(&ctx.bundle, &b.path)
            .map_err(|e| e.to_string())?;
        missing.push(Upload {
            path: remote_blobs.join(hex),
            mode: 0o644,
            source: Source::File(local),
            sha256: Some(b.sha256.clone()),
        });
    }
    if !missing.is_empty() {
        changed.extend(exec.put_files(&missing).await.map_err(|e| e.to_string())?);
    }
    exec.log().line(&format!(
        "registry store: {} files sent to {}",
        changed.len(),
        REMOTE_DATA_DIR
    ));
    run.step_changed |= !changed.is_empty();
    run.changed.extend(changed);
    Ok(())
}
