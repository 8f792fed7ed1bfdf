//! OS package sets (`--os`): for each distribution and platform, the closure
//! of the profile's OS packages resolved against the distribution's signed
//! repository metadata, minus its minimal base, fetched and verified, with
//! a repository index the distribution's own tool reads, under
//! `os/<name>/<arch>/`.

mod deb;
pub mod rpm;
mod rpm_set;
mod signed;
pub mod source;

use crate::binaries::ContentFile;
use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::fetch::Ctx;
use crate::mirror::Mirrors;
use ferry_bundles::manifest::{OsFormat, OsPackage, OsPackageSet, RequestedPackage};
use futures::{StreamExt, TryStreamExt};
use source::{Format, OsSource};
use std::io::Read;
use std::path::Path;

/// One set as fetched: its packages (in the cache) and its index files.
pub struct SetFiles {
    pub packages: Vec<SetPackage>,
    /// (path below the set's dir, bytes).
    pub index: Vec<(String, Vec<u8>)>,
}

pub struct SetPackage {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// Below the set's dir.
    pub path: String,
    pub sha256: String,
    pub size: u64,
    pub reason: String,
}

/// A package to fetch into the cache, checked against the digest its
/// (signed) index gives.
pub struct Download {
    pub label: String,
    pub upstream: String,
    pub sha256: String,
    /// The index the digest comes from, for errors.
    pub from: String,
}

/// Fetches every download through the mirrors, 16 at a time.
pub async fn fetch_all(
    ctx: &Ctx,
    mirrors: &Mirrors,
    downloads: impl Iterator<Item = Download>,
) -> Result<()> {
    futures::stream::iter(downloads)
        .map(|d| async move {
            let expect = crate::fetch::Expect {
                sha256: &d.sha256,
                from: &d.from,
            };
            ctx.file(&d.label, &d.upstream, &mirrors.map_url(&d.upstream), expect)
                .await
        })
        .buffer_unordered(16)
        .try_collect::<Vec<u64>>()
        .await?;
    Ok(())
}

/// What a build carries: sources by name, the platforms, the profile's package names.
pub struct Request<'a> {
    pub sources: &'a [OsSource],
    pub platforms: &'a [String],
    pub packages: &'a [String],
}

/// Builds every set; returns the content files and the manifest records.
pub async fn carry(
    ctx: &Ctx,
    mirrors: &Mirrors,
    req: Request<'_>,
) -> Result<(Vec<ContentFile>, Vec<OsPackageSet>)> {
    let mut files = Vec::new();
    let mut sets = Vec::new();
    for src in req.sources {
        let keys = signed::Keyring::parse(&src.keys, &src.key_texts)
            .map_err(|e| Error::data(&src.origin, "keys", e))?;
        let requested: Vec<RequestedPackage> = req
            .packages
            .iter()
            .map(|n| RequestedPackage {
                name: n.clone(),
                package: src.package_name(n).to_string(),
            })
            .collect();
        let wanted: Vec<String> = requested.iter().map(|r| r.package.clone()).collect();
        let releases = deb::Releases::default();
        for platform in req.platforms {
            let arch = src.arch(platform)?;
            let set = match src.format {
                Format::Deb => {
                    deb::build_set(ctx, mirrors, src, &keys, platform, &wanted, &releases).await?
                }
                Format::Rpm => {
                    rpm_set::build_set(ctx, mirrors, src, &keys, platform, &wanted).await?
                }
            };
            let dir = format!("os/{}/{arch}", src.name);
            files.extend(content_files(&ctx.cache, &dir, &set)?);
            ctx.progress.line(format!(
                "{}: {} packages for {platform} ({})",
                src.name,
                set.packages.len(),
                crate::fetch::human(set.packages.iter().map(|p| p.size).sum())
            ));
            sets.push(record(src, platform, arch, dir, requested.clone(), set));
        }
    }
    sets.sort_by(|a, b| (&a.name, &a.platform).cmp(&(&b.name, &b.platform)));
    Ok((files, sets))
}

fn content_files(cache: &Cache, dir: &str, set: &SetFiles) -> Result<Vec<ContentFile>> {
    let mut out: Vec<ContentFile> = set
        .packages
        .iter()
        .map(|p| ContentFile {
            path: format!("{dir}/{}", p.path),
            source: cache.blob_path(&p.sha256),
            sha256: p.sha256.clone(),
            size: p.size,
            mode: 0o644,
        })
        .collect();
    for (name, bytes) in &set.index {
        let hex = cache.put_bytes(bytes)?;
        out.push(ContentFile {
            path: format!("{dir}/{name}"),
            source: cache.blob_path(&hex),
            sha256: hex,
            size: bytes.len() as u64,
            mode: 0o644,
        });
    }
    Ok(out)
}

fn record(
    src: &OsSource,
    platform: &str,
    arch: &str,
    dir: String,
    requested: Vec<RequestedPackage>,
    set: SetFiles,
) -> OsPackageSet {
    OsPackageSet {
        name: src.name.clone(),
        format: match src.format {
            Format::Deb => OsFormat::Deb,
            Format::Rpm => OsFormat::Rpm,
        },
        os_id: src.os_release.id.clone(),
        version_id: src.os_release.version_id.clone(),
        platform: platform.to_string(),
        arch: arch.to_string(),
        dir,
        requested,
        packages: set
            .packages
            .into_iter()
            .map(|p| OsPackage {
                name: p.name,
                version: p.version,
                arch: p.arch,
                path: p.path,
                reason: p.reason,
            })
            .collect(),
    }
}

/// The text of a (possibly `.xz`, `.gz` or `.zst`) index file, at most 1 GiB.
pub fn decompress(path: &Path, name: &str) -> std::result::Result<String, String> {
    const LIMIT: u64 = 1 << 30;
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let reader: Box<dyn Read> = if name.ends_with(".xz") {
        Box::new(liblzma::read::XzDecoder::new(f))
    } else if name.ends_with(".gz") {
        Box::new(flate2::read::GzDecoder::new(f))
    } else if name.ends_with(".zst") {
        Box::new(
            zstd::stream::read::Decoder::new(f).map_err(|e| format!("cannot decompress: {e}"))?,
        )
    } else {
        Box::new(f)
    };
    let mut text = String::new();
    let n = reader
        .take(LIMIT + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot decompress: {e}"))?;
    if n as u64 > LIMIT {
        return Err(format!("larger than {LIMIT} bytes uncompressed"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn every_built_in_source_loads_with_its_keys() {
        for (name, _) in crate::embedded::OS_SOURCES {
            let src = OsSource::load(name, None).unwrap_or_else(|e| panic!("{name}: {e}"));
            let keys = signed::Keyring::parse(&src.keys, &src.key_texts)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(keys.fingerprints().len(), src.keys.len(), "{name}");
            for platform in ["linux/amd64", "linux/arm64"] {
                src.arch(platform).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(
                    src.repos_for(platform).count() > 0,
                    "{name}: no repository for {platform}"
                );
            }
        }
    }

    #[test]
    fn indexes_decompress_by_suffix() {
        let dir = tempfile::tempdir().unwrap();
        let text = "Package: a\n";
        let gz = dir.path().join("gz");
        let mut w = flate2::write::GzEncoder::new(
            std::fs::File::create(&gz).unwrap(),
            flate2::Compression::fast(),
        );
        w.write_all(text.as_bytes()).unwrap();
        w.finish().unwrap();
        let zst = dir.path().join("zst");
        std::fs::write(&zst, zstd::encode_all(text.as_bytes(), 3).unwrap()).unwrap();
        assert_eq!(decompress(&gz, "Packages.gz").unwrap(), text);
        assert_eq!(decompress(&zst, "primary.xml.zst").unwrap(), text);
        assert!(decompress(&gz, "Packages.xz").is_err());
    }
}
