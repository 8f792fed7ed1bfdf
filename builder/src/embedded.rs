//! Catalogs and profiles compiled into the binary (see build.rs), with an
//! optional directory that overrides them file by file.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

/// A data file's text and the name to show in errors.
pub struct DataFile {
    pub origin: String,
    pub text: String,
}

/// Looks up `<name>.toml` in `dir` (when given) and then in the embedded set.
pub fn load(
    kind: &str,
    embedded: &[(&str, &str)],
    dir: Option<&Path>,
    name: &str,
) -> Result<DataFile> {
    if let Some(dir) = dir {
        let path: PathBuf = dir.join(format!("{name}.toml"));
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            return Ok(DataFile {
                origin: path.display().to_string(),
                text,
            });
        }
    }
    if let Some((_, text)) = embedded.iter().find(|(n, _)| *n == name) {
        let origin = format!("bundles/{kind}/{name}.toml (built in)");
        return Ok(DataFile {
            origin,
            text: text.to_string(),
        });
    }
    let mut known: Vec<String> = embedded.iter().map(|(n, _)| n.to_string()).collect();
    if let Some(dir) = dir {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "toml") {
                    if let Some(s) = p.file_stem() {
                        known.push(s.to_string_lossy().into_owned());
                    }
                }
            }
        }
    }
    known.sort();
    known.dedup();
    Err(Error::Usage(format!(
        "no {kind} named {name:?}{}; known: {}",
        dir.map(|d| format!(" in {} or built in", d.display()))
            .unwrap_or_default(),
        known.join(", ")
    )))
}
