//! An rpm package set: each repository's `repomd.xml` (its detached
//! signature checked against the archive keys), its `primary.xml` (checked
//! against the signed hash), the closure of the requested packages (rpm's
//! pure functions), every `.rpm` (checked against primary) and the set's own
//! index plus the archive keys, which dnf checks the packages' signatures with.

use super::rpm::{self, RpmPackage};
use super::signed::Keyring;
use super::source::OsSource;
use super::{decompress, fetch_all, Download, SetFiles, SetPackage};
use crate::error::{Error, Result};
use crate::fetch::{Ctx, Expect};
use crate::mirror::Mirrors;

pub async fn build_set(
    ctx: &Ctx,
    mirrors: &Mirrors,
    src: &OsSource,
    keys: &Keyring,
    platform: &str,
    wanted: &[String],
) -> Result<SetFiles> {
    let arch = src.arch(platform)?;
    let err = |reason: String| Error::OsPackages {
        set: format!("{} ({arch})", src.name),
        reason,
    };
    let mut universe = Vec::new();
    for (_, repo) in src.repos_for(platform) {
        let url = repo.url.replace("{arch}", arch);
        universe.extend(repo_packages(ctx, mirrors, src, keys, &url).await?);
    }
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    let base: Vec<&str> = src.base.packages.iter().map(String::as_str).collect();
    let closure = rpm::resolve::closure(&universe, &[arch, "noarch"], &wanted, &base)
        .map_err(|e| err(e.to_string()))?;
    let downloads = closure.packages.iter().map(|pick| {
        let p = pick.package;
        let base = p.location_base.as_deref().unwrap_or_default();
        Download {
            label: format!("{} {}", src.name, p.file_name()),
            upstream: format!("{base}/{}", p.location_href),
            sha256: p.sha256.clone(),
            from: format!("the primary.xml of {base}"),
        }
    });
    fetch_all(ctx, mirrors, downloads).await?;
    let picked: Vec<&RpmPackage> = closure.packages.iter().map(|p| p.package).collect();
    let index = rpm::index::write(&picked, "Packages", 0).map_err(|e| err(e.to_string()))?;
    Ok(SetFiles {
        packages: closure
            .packages
            .iter()
            .map(|pick| SetPackage {
                name: pick.package.name.clone(),
                version: pick.package.evr.to_string(),
                arch: pick.package.arch.clone(),
                path: rpm::index::package_path(pick.package, "Packages"),
                sha256: pick.package.sha256.clone(),
                size: pick.package.size,
                reason: pick.reason.to_string(),
            })
            .collect(),
        index: vec![
            (index.repomd.path, index.repomd.bytes),
            (index.primary.path, index.primary.bytes),
            (
                "keys/archive.asc".into(),
                src.key_texts.join("\n").into_bytes(),
            ),
        ],
    })
}

/// One repository's packages, from its verified metadata; each package's
/// `location_base` is the repository it came from.
async fn repo_packages(
    ctx: &Ctx,
    mirrors: &Mirrors,
    src: &OsSource,
    keys: &Keyring,
    url: &str,
) -> Result<Vec<RpmPackage>> {
    let err = |reason: String| Error::OsPackages {
        set: src.name.clone(),
        reason,
    };
    let repomd_url = format!("{url}/repodata/repomd.xml");
    let asc_url = format!("{repomd_url}.asc");
    let repomd = ctx
        .fresh_bytes(&repomd_url, &mirrors.map_url(&repomd_url), 4 << 20)
        .await?;
    let asc = ctx
        .fresh_bytes(&asc_url, &mirrors.map_url(&asc_url), 64 << 10)
        .await?;
    keys.verify_detached(&repomd, &String::from_utf8_lossy(&asc))
        .map_err(|e| err(format!("{repomd_url}: {e}")))?;
    let md = rpm::repomd::parse(&repomd).map_err(|e| err(format!("{repomd_url}: {e}")))?;
    let primary_url = format!("{url}/{}", md.primary.location_href);
    let label = format!("{} {}", src.name, md.primary.location_href);
    ctx.file(
        &label,
        &primary_url,
        &mirrors.map_url(&primary_url),
        Expect {
            sha256: &md.primary.sha256,
            from: &repomd_url,
        },
    )
    .await?;
    let text = decompress(
        &ctx.cache.blob_path(&md.primary.sha256),
        &md.primary.location_href,
    )
    .map_err(|e| err(format!("{primary_url}: {e}")))?;
    let mut pkgs = rpm::primary::parse(std::io::Cursor::new(text.as_bytes()))
        .map_err(|e| err(format!("{primary_url}: {e}")))?;
    for p in &mut pkgs {
        if p.location_base.is_none() {
            p.location_base = Some(url.to_string());
        }
    }
    Ok(pkgs)
}
