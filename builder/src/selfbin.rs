//! `--ferry-binary PLATFORM=PATH`: carry ferry itself as `bin/<os>-<arch>/ferry`
//! (registry hosts run it to serve the mirror). The file's ELF machine must
//! match the platform, so an arm64 bundle never carries an amd64 ferry.

use crate::binaries::ContentFile;
use crate::error::{Error, Result};
use ferry_bundles::{Component, ComponentKind};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// `linux/amd64=/path/to/ferry`.
pub fn parse(arg: &str) -> Result<(String, PathBuf)> {
    let (p, path) = arg.split_once('=').ok_or_else(|| {
        Error::Usage(format!(
            "--ferry-binary {arg:?}: expected PLATFORM=PATH, e.g. linux/arm64=./ferry-arm64"
        ))
    })?;
    crate::catalog::split_platform(p)
        .ok_or_else(|| Error::Usage(format!("--ferry-binary {arg:?}: {p:?} is not <os>/<arch>")))?;
    Ok((p.to_string(), PathBuf::from(path)))
}

/// ELF e_machine for a Linux architecture name.
fn elf_machine(arch: &str) -> Option<u16> {
    match arch {
        "amd64" => Some(62),
        "arm64" => Some(183),
        "arm" => Some(40),
        "386" => Some(3),
        "ppc64le" => Some(21),
        "s390x" => Some(22),
        "riscv64" => Some(243),
        _ => None,
    }
}

/// Refuses a file that is not an ELF executable for `platform`.
pub fn check_elf(path: &Path, platform: &str) -> Result<()> {
    let mut head = [0u8; 20];
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    f.read_exact(&mut head).map_err(|e| Error::io(path, e))?;
    let bad = |why: String| {
        Error::Usage(format!(
            "{}: {why}; refusing to carry it as ferry for {platform}",
            path.display()
        ))
    };
    if &head[..4] != b"\x7fELF" {
        return Err(bad("not an ELF executable".into()));
    }
    let machine = if head[5] == 2 {
        u16::from_be_bytes([head[18], head[19]])
    } else {
        u16::from_le_bytes([head[18], head[19]])
    };
    let arch = platform.split('/').nth(1).unwrap_or_default();
    match elf_machine(arch) {
        Some(m) if m == machine => Ok(()),
        Some(m) => Err(bad(format!(
            "ELF machine {machine}, but {platform} needs {m}"
        ))),
        None => Err(bad(format!("no known ELF machine for {arch}"))),
    }
}

/// For catalog binaries: an ELF file must be for `platform` (scripts, such as
/// the test stand-ins, pass). `what` names the file for the error.
pub fn check_if_elf(path: &Path, platform: &str, what: &str) -> Result<()> {
    let mut head = [0u8; 20];
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    if f.read_exact(&mut head).is_err() || &head[..4] != b"\x7fELF" {
        return Ok(());
    }
    check_elf(path, platform).map_err(|_| {
        let machine = if head[5] == 2 {
            u16::from_be_bytes([head[18], head[19]])
        } else {
            u16::from_le_bytes([head[18], head[19]])
        };
        Error::Usage(format!(
            "{what}: the file is an ELF executable for machine {machine}, not {platform}; \
             the upstream or mirror serves the wrong architecture"
        ))
    })
}

pub fn content(platform: &str, path: &Path, version: &str) -> Result<(ContentFile, Component)> {
    check_elf(path, platform)?;
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    let size = std::io::copy(&mut f, &mut h).map_err(|e| Error::io(path, e))?;
    let sha = hex::encode(h.finalize());
    let bundle_path = format!(
        "bin/{}/ferry",
        ferry_bundles::manifest::platform_dir(platform)
    );
    let comp = Component {
        name: "ferry".into(),
        version: version.to_string(),
        kind: ComponentKind::Binary,
        platform: Some(platform.to_string()),
        path: bundle_path.clone(),
        source: format!(
            "file://{}",
            path.canonicalize()
                .unwrap_or_else(|_| path.to_path_buf())
                .display()
        ),
        sha256: sha.clone(),
        checksum_source: "computed at build time".into(),
    };
    Ok((
        ContentFile {
            path: bundle_path,
            source: path.to_path_buf(),
            sha256: sha,
            size,
            mode: 0o755,
        },
        comp,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_machine_must_match_the_platform() {
        let me = std::env::current_exe().expect("exe");
        check_elf(&me, "linux/amd64").expect("this test runs on amd64");
        let err = check_elf(&me, "linux/arm64").unwrap_err().to_string();
        assert!(
            err.contains("linux/arm64") && err.contains("ELF machine 62"),
            "{err}"
        );
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("build.rs");
        assert!(check_elf(&script, "linux/amd64")
            .unwrap_err()
            .to_string()
            .contains("not an ELF"));
        assert!(parse("linux/arm64").is_err());
        assert_eq!(parse("linux/arm64=/x").expect("ok").0, "linux/arm64");
    }
}
