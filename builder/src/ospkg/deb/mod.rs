//! A deb package set: each repository's `InRelease` (checked against the
//! archive keys), its `Packages` indexes (checked against the signed
//! hashes), the closure of the requested packages, and every `.deb` (checked
//! against the index) plus the set's own flat repository index.

mod control;
mod index;
mod packages;
mod relation;
mod release;
mod resolve;

use super::signed::Keyring;
use super::source::OsSource;
use super::{decompress, fetch_all, Download, SetFiles, SetPackage};
use crate::error::{Error, Result};
use crate::fetch::{Ctx, Expect};
use crate::mirror::Mirrors;
use packages::DebPackage;
use std::collections::HashMap;
use std::sync::Arc;

/// The packages to carry for one platform, fetched into the cache.
pub async fn build_set(
    ctx: &Ctx,
    mirrors: &Mirrors,
    src: &OsSource,
    keys: &Keyring,
    platform: &str,
    wanted: &[String],
    releases: &Releases,
) -> Result<SetFiles> {
    let arch = src.arch(platform)?;
    let err = |reason: String| Error::OsPackages {
        set: format!("{} ({arch})", src.name),
        reason,
    };
    let mut pkgs = Vec::new();
    for (i, _) in src.repos_for(platform) {
        pkgs.extend(repo_packages(ctx, mirrors, src, keys, i, arch, releases).await?);
    }
    let universe = resolve::Universe::new(pkgs);
    let chosen = universe.closure(wanted, &src.base.packages).map_err(err)?;
    let mut chosen: Vec<(&DebPackage, String)> = chosen
        .into_iter()
        .map(|c| (&universe.pkgs[c.index], c.reason))
        .collect();
    chosen.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let downloads = chosen.iter().map(|(p, _)| Download {
        label: format!(
            "{} {}",
            src.name,
            p.filename.rsplit('/').next().unwrap_or_default()
        ),
        upstream: format!("{}/{}", src.repos[p.repo].url, p.filename),
        sha256: p.sha256.clone(),
        from: format!("the Packages index of {}", src.repos[p.repo].url),
    });
    fetch_all(ctx, mirrors, downloads).await?;
    let refs: Vec<&DebPackage> = chosen.iter().map(|(p, _)| *p).collect();
    let packages_text = index::packages(&refs);
    let release_text = index::release(&src.name, arch, &packages_text);
    Ok(SetFiles {
        packages: chosen
            .iter()
            .map(|(p, reason)| SetPackage {
                name: p.name.clone(),
                version: p.version.to_string(),
                arch: p.arch.clone(),
                path: index::pool_path(&p.filename),
                sha256: p.sha256.clone(),
                size: p.size,
                reason: reason.clone(),
            })
            .collect(),
        index: vec![
            ("Packages".into(), packages_text.into_bytes()),
            ("Release".into(), release_text.into_bytes()),
        ],
    })
}

/// One repository's packages for `arch`, from its verified indexes.
/// Each repository's verified `Release`, fetched once per build however many
/// platforms read it.
#[derive(Default)]
pub struct Releases(tokio::sync::Mutex<HashMap<usize, Arc<release::Release>>>);

/// The repository's `InRelease`, its signature checked against the source's
/// keys, and its suite and validity.
async fn signed_release(
    ctx: &Ctx,
    mirrors: &Mirrors,
    src: &OsSource,
    keys: &Keyring,
    repo_index: usize,
    releases: &Releases,
) -> Result<Arc<release::Release>> {
    let mut known = releases.0.lock().await;
    if let Some(rel) = known.get(&repo_index) {
        return Ok(rel.clone());
    }
    let repo = &src.repos[repo_index];
    let suite = repo.suite.as_deref().unwrap_or_default();
    let inrelease = format!("{}/dists/{suite}/InRelease", repo.url);
    let err = |reason: String| Error::OsPackages {
        set: src.name.clone(),
        reason,
    };
    let bytes = ctx
        .fresh_bytes(&inrelease, &mirrors.map_url(&inrelease), 16 << 20)
        .await?;
    let text = String::from_utf8(bytes).map_err(|_| err(format!("{inrelease}: not UTF-8 text")))?;
    let signed = keys
        .verify_clearsigned(&text)
        .map_err(|e| err(format!("{inrelease}: {e}")))?;
    let rel = release::Release::parse(&signed).map_err(|e| err(format!("{inrelease}: {e}")))?;
    if !rel.is_suite(suite) {
        return Err(err(format!(
            "{inrelease} is signed for suite {:?} (codename {:?}), not {suite}; the mirror serves another suite",
            rel.suite, rel.codename
        )));
    }
    if let Some(until) = &rel.valid_until {
        if expired(until)? {
            return Err(err(format!("{inrelease} was valid until {until}: the mirror serves stale metadata; refresh the mirror")));
        }
    }
    let rel = Arc::new(rel);
    known.insert(repo_index, rel.clone());
    Ok(rel)
}

/// One repository's packages for `arch`, from its verified indexes.
async fn repo_packages(
    ctx: &Ctx,
    mirrors: &Mirrors,
    src: &OsSource,
    keys: &Keyring,
    repo_index: usize,
    arch: &str,
    releases: &Releases,
) -> Result<Vec<DebPackage>> {
    let rel = signed_release(ctx, mirrors, src, keys, repo_index, releases).await?;
    let repo = &src.repos[repo_index];
    let suite = repo.suite.as_deref().unwrap_or_default();
    let dists = format!("{}/dists/{suite}", repo.url);
    let inrelease = format!("{dists}/InRelease");
    let err = |reason: String| Error::OsPackages {
        set: src.name.clone(),
        reason,
    };
    if !rel.architectures.iter().any(|a| a == arch) {
        return Err(err(format!(
            "{inrelease} lists no architecture {arch} (it has {})",
            rel.architectures.join(" ")
        )));
    }
    let mut out = Vec::new();
    for component in &repo.components {
        let (path, (hex, _)) = rel.packages_index(component, arch).ok_or_else(|| {
            err(format!(
                "{inrelease} lists no Packages index for {component}/binary-{arch}"
            ))
        })?;
        let upstream = format!("{dists}/{path}");
        let label = format!("{} {suite}/{path}", src.name);
        let from = inrelease.clone();
        ctx.file(
            &label,
            &upstream,
            &mirrors.map_url(&upstream),
            Expect {
                sha256: hex,
                from: &from,
            },
        )
        .await?;
        let text = decompress(&ctx.cache.blob_path(hex), &path)
            .map_err(|e| err(format!("{upstream}: {e}")))?;
        out.extend(
            packages::parse(&text, arch, repo_index)
                .map_err(|e| err(format!("{upstream}: {e}")))?,
        );
    }
    Ok(out)
}

/// `Valid-Until` (RFC 2822, Debian writes `UTC` for the zone) is in the past.
fn expired(until: &str) -> Result<bool> {
    let normalized = until.trim().replace(" UTC", " +0000");
    let t =
        time::OffsetDateTime::parse(&normalized, &time::format_description::well_known::Rfc2822)
            .map_err(|e| Error::Usage(format!("Valid-Until {until:?}: {e}")))?;
    Ok(t < time::OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    #[test]
    fn valid_until_is_read_as_debian_writes_it() {
        assert!(super::expired("Sat, 09 Dec 2023 08:21:32 UTC").unwrap());
        assert!(!super::expired("Wed, 09 Dec 2099 08:21:32 UTC").unwrap());
        assert!(super::expired("yesterday").is_err());
    }
}
