//! A repository index for a set of packages: `repodata/repomd.xml` and one
//! gzip'd primary.xml holding the packages' upstream `<package>` elements,
//! byte for byte but for `<location>`. dnf needs nothing more (no filelists,
//! no other).

use super::primary::{COMMON_NS, RPM_NS};
use super::xml::xml_error;
use super::{RpmError, RpmPackage};
use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};
use quick_xml::escape::escape;
use quick_xml::events::Event;
use quick_xml::Reader;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::io::Write;

const REPO_NS: &str = "http://linux.duke.edu/metadata/repo";

/// One file of the index, its path relative to the repository root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexFile {
    pub path: String,
    pub bytes: Vec<u8>,
    /// sha256 of `bytes`, lowercase hex.
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexFiles {
    /// `repodata/repomd.xml`.
    pub repomd: IndexFile,
    /// `repodata/<sha256>-primary.xml.gz`.
    pub primary: IndexFile,
}

impl IndexFiles {
    /// Both files, repomd.xml first.
    pub fn files(&self) -> [&IndexFile; 2] {
        [&self.repomd, &self.primary]
    }
}

/// Where a package's .rpm goes in the written repository:
/// `<location_prefix>/<file name>`, e.g. `Packages/chrony-4.5-1.el9.x86_64.rpm`.
pub fn package_path(package: &RpmPackage, location_prefix: &str) -> String {
    let prefix = location_prefix.trim_end_matches('/');
    match prefix {
        "" => package.file_name().to_string(),
        _ => format!("{prefix}/{}", package.file_name()),
    }
}

/// The index of `packages`, each located at [`package_path`]. `timestamp`
/// (seconds since the epoch) is the revision and timestamp of the index, so
/// equal inputs give equal bytes.
pub fn write(
    packages: &[&RpmPackage],
    location_prefix: &str,
    timestamp: u64,
) -> Result<IndexFiles, RpmError> {
    let mut sorted = packages.to_vec();
    sorted.sort_by_key(|p| (p.name.as_str(), p.arch.as_str(), p.file_name()));
    let mut names = BTreeSet::new();
    if let Some(p) = sorted.iter().find(|p| !names.insert(p.file_name())) {
        return Err(RpmError::Index(format!(
            "two packages share the file name {}",
            p.file_name()
        )));
    }
    let open = primary_xml(&sorted, location_prefix)?;
    let gz = gzip(&open);
    let primary = IndexFile {
        path: format!("repodata/{}-primary.xml.gz", sha256(&gz)),
        sha256: sha256(&gz),
        bytes: gz,
    };
    let repomd = repomd_xml(&primary, &open, timestamp).into_bytes();
    let repomd = IndexFile {
        path: "repodata/repomd.xml".into(),
        sha256: sha256(&repomd),
        bytes: repomd,
    };
    Ok(IndexFiles { repomd, primary })
}

fn primary_xml(packages: &[&RpmPackage], location_prefix: &str) -> Result<Vec<u8>, RpmError> {
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<metadata xmlns=\"{COMMON_NS}\" \
         xmlns:rpm=\"{RPM_NS}\" packages=\"{}\">\n",
        packages.len()
    )
    .into_bytes();
    for p in packages {
        out.extend(relocated(p, &package_path(p, location_prefix))?);
        out.push(b'\n');
    }
    out.extend_from_slice(b"</metadata>\n");
    Ok(out)
}

/// The package's original element with its `<location>` tag replaced by
/// one pointing at `href` (and without any `xml:base`).
fn relocated(p: &RpmPackage, href: &str) -> Result<Vec<u8>, RpmError> {
    let bad = |reason: String| RpmError::Index(format!("{}: {reason}", p.nevra()));
    let mut reader = Reader::from_reader(p.xml.as_slice());
    let mut depth = 0;
    loop {
        let start = reader.buffer_position() as usize;
        let event = reader
            .read_event()
            .map_err(|e| xml_error("primary.xml", start as u64, e))?;
        let end = reader.buffer_position() as usize;
        let tag = match &event {
            Event::Empty(e) if depth == 1 && e.local_name().as_ref() == b"location" => "/>",
            Event::Start(e) if depth == 1 && e.local_name().as_ref() == b"location" => ">",
            Event::Start(_) => {
                depth += 1;
                continue;
            }
            Event::End(_) => {
                depth -= 1;
                continue;
            }
            Event::Eof => return Err(bad("its <package> element has no <location>".into())),
            _ => continue,
        };
        if p.xml.get(start) != Some(&b'<') {
            return Err(bad("cannot find where its <location> tag starts".into()));
        }
        let mut out = p.xml[..start].to_vec();
        out.extend_from_slice(format!("<location href=\"{}\"{tag}", escape(href)).as_bytes());
        out.extend_from_slice(&p.xml[end..]);
        return Ok(out);
    }
}

fn repomd_xml(primary: &IndexFile, open: &[u8], timestamp: u64) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<repomd xmlns="{REPO_NS}" xmlns:rpm="{RPM_NS}">
  <revision>{timestamp}</revision>
  <data type="primary">
    <checksum type="sha256">{checksum}</checksum>
    <open-checksum type="sha256">{open_checksum}</open-checksum>
    <location href="{href}"/>
    <timestamp>{timestamp}</timestamp>
    <size>{size}</size>
    <open-size>{open_size}</open-size>
  </data>
</repomd>
"#,
        checksum = primary.sha256,
        open_checksum = sha256(open),
        href = primary.path,
        size = primary.bytes.len(),
        open_size = open.len(),
    )
}

/// gzip with no name and a zero mtime: the same input gives the same bytes.
fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz: GzEncoder<Vec<u8>> = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::default());
    gz.write_all(bytes).expect("writing to memory");
    gz.finish().expect("writing to memory")
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
