//! Binaries and archives: checksum file -> expected digest (and pin check) ->
//! cached download -> (for `extract`) the wanted tar members, streamed.

use crate::cache::{Cache, CommitError};
use crate::catalog::{Artifact, Kind};
use crate::checksum::expected_sha256;
use crate::error::{Error, Result};
use crate::fetch::{Ctx, Expect};
use crate::mirror::Mirrors;
use ferry_bundles::{Component, ComponentKind};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

/// A content file ready for the bundle.
#[derive(Debug, Clone)]
pub struct ContentFile {
    pub path: String,
    pub source: PathBuf,
    pub sha256: String,
    pub size: u64,
    pub mode: u32,
}

pub async fn fetch_artifact(
    ctx: &Ctx,
    mirrors: &Mirrors,
    catalog_origin: &str,
    art: &Artifact,
) -> Result<(Vec<ContentFile>, Vec<Component>)> {
    let label = format!("{} {} ({})", art.component, art.file_name, art.platform);
    let (listed, checksum_source) = expected_digest(ctx, mirrors, catalog_origin, art).await?;
    let url = mirrors.map_url(&art.url);
    ctx.file(
        &label,
        &art.url,
        &url,
        Expect {
            sha256: &listed,
            from: &checksum_source,
        },
    )
    .await?;

    let record = |name: &str, kind: ComponentKind, path: &str| Component {
        name: name.to_string(),
        version: art.version.clone(),
        kind,
        platform: (!art.kind.platform_independent()).then(|| art.platform.clone()),
        path: path.to_string(),
        source: art.url.clone(),
        sha256: listed.clone(),
        checksum_source: checksum_source.clone(),
    };

    let mut files: Vec<ContentFile> = Vec::new();
    let mut comps = Vec::new();
    match art.kind {
        Kind::Binary | Kind::Archive | Kind::Manifest | Kind::Chart => {
            let o = &art.outputs[0];
            let size = ctx.cache.blob_size(&listed).unwrap_or(0);
            files.push(ContentFile {
                path: o.path.clone(),
                source: ctx.cache.blob_path(&listed),
                sha256: listed.clone(),
                size,
                mode: o.mode,
            });
            let kind = match art.kind {
                Kind::Binary => ComponentKind::Binary,
                Kind::Manifest => ComponentKind::Manifest,
                Kind::Chart => ComponentKind::Chart,
                _ => ComponentKind::Archive,
            };
            let name = o.path.rsplit('/').next().unwrap_or(&art.component);
            let name = if art.kind == Kind::Binary {
                name
            } else {
                art.component.as_str()
            };
            comps.push(record(name, kind, &o.path));
        }
        Kind::Extract => {
            let members: Vec<String> = art
                .outputs
                .iter()
                .filter_map(|o| o.member.clone())
                .collect();
            let cache = ctx.cache.clone();
            let (hex, archive) = (listed.clone(), art.url.clone());
            let found =
                tokio::task::spawn_blocking(move || extract(&cache, &hex, &archive, &members))
                    .await
                    .map_err(|e| Error::Usage(format!("internal: {e}")))??;
            for o in &art.outputs {
                let member = o.member.as_deref().unwrap_or_default();
                let (sha, size) = found.get(member).cloned().ok_or_else(|| Error::Archive {
                    archive: art.url.clone(),
                    reason: format!("member {member} missing"),
                })?;
                files.push(ContentFile {
                    path: o.path.clone(),
                    source: ctx.cache.blob_path(&sha),
                    sha256: sha,
                    size,
                    mode: o.mode,
                });
                let name = o.path.rsplit('/').next().unwrap_or(&art.component);
                comps.push(record(name, ComponentKind::Binary, &o.path));
            }
        }
    }
    // Never carry another architecture's executable.
    for f in files.iter().filter(|f| f.mode & 0o111 != 0) {
        let what = format!("{} ({}, from {})", f.path, art.platform, art.url);
        crate::selfbin::check_if_elf(&f.source, &art.platform, &what)?;
    }
    Ok((files, comps))
}

/// The digest the file must have and where it came from: the upstream
/// checksum source, checked against a catalog pin when there is one. A cached
/// checksum source that does not list the file (a Helm index older than the
/// chart version) is fetched again once.
async fn expected_digest(
    ctx: &Ctx,
    mirrors: &Mirrors,
    catalog_origin: &str,
    art: &Artifact,
) -> Result<(String, String)> {
    let mirrored = mirrors.map_url(&art.checksum_url);
    let parse =
        |text: &str| expected_sha256(art.checksum_format, text, &art.file_name, &art.checksum_url);
    let text = ctx.checksum_text(&art.checksum_url, &mirrored).await?;
    let listed = match parse(&text) {
        Ok(hex) => Ok(hex),
        Err(_) => parse(
            &ctx.refetch_checksum_text(&art.checksum_url, &mirrored)
                .await?,
        ),
    };
    let listed = match (listed, &art.pinned) {
        (Ok(hex), _) => hex,
        // Listed without a digest: the pin alone vouches for the file.
        (Err(Error::NoUpstreamDigest { .. }), Some(pin)) => {
            return Ok((
                pin.clone(),
                format!(
                    "{catalog_origin} (pinned; {} lists no digest)",
                    art.checksum_url
                ),
            ))
        }
        (Err(e), _) => return Err(e),
    };
    match &art.pinned {
        Some(pin) if pin != &listed => Err(Error::PinMismatch {
            file: format!("{} ({})", art.file_name, art.url),
            catalog: catalog_origin.to_string(),
            pinned: pin.clone(),
            checksum_url: art.checksum_url.clone(),
            listed,
        }),
        Some(_) => Ok((listed, format!("{} (pinned in catalog)", art.checksum_url))),
        None => Ok((listed, art.checksum_url.clone())),
    }
}

/// Takes `members` out of the cached .tar.gz `tar_hex` into the cache, streaming.
/// Remembers the result in `extracted/<hex>.json`, so a second build skips it.
fn extract(
    cache: &Cache,
    tar_hex: &str,
    archive: &str,
    members: &[String],
) -> Result<BTreeMap<String, (String, u64)>> {
    let index_path = cache.extracted_index(tar_hex);
    if let Ok(bytes) = std::fs::read(&index_path) {
        if let Ok(map) = serde_json::from_slice::<BTreeMap<String, (String, u64)>>(&bytes) {
            let complete = members.iter().all(|m| {
                map.get(m)
                    .is_some_and(|(sha, size)| cache.blob_size(sha) == Some(*size))
            });
            if complete {
                return Ok(map);
            }
        }
    }
    let path = cache.blob_path(tar_hex);
    let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
    let bad = |reason: String| Error::Archive {
        archive: archive.to_string(),
        reason,
    };
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
    let mut found = BTreeMap::new();
    for entry in tar.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let name = entry
            .path()
            .map_err(|e| bad(e.to_string()))?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        if !members.contains(&name) {
            continue;
        }
        if !entry.header().entry_type().is_file() {
            return Err(bad(format!("member {name} is not a regular file")));
        }
        let mut w = cache.writer()?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| bad(format!("{name}: {e}")))?;
            if n == 0 {
                break;
            }
            w.write(&buf[..n])?;
        }
        let (sha, size) = w.commit(cache, None).map_err(|e| match e {
            CommitError::Io(e) => *e,
            CommitError::Mismatch { .. } => bad("internal digest error".into()),
        })?;
        found.insert(name, (sha, size));
        if found.len() == members.len() {
            break;
        }
    }
    if let Some(m) = members.iter().find(|m| !found.contains_key(*m)) {
        return Err(bad(format!(
            "has no member {m}; check `extract` in the catalog"
        )));
    }
    let json = serde_json::to_vec(&found).map_err(|e| bad(e.to_string()))?;
    cache.put_meta(&index_path, &json)?;
    Ok(found)
}
