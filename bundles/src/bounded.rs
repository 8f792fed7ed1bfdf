//! Reading the small files that travel with a bundle (parts.json, an
//! unpacked bundle.json) without trusting their size: a file over its limit
//! is refused before more than `limit + 1` bytes are read or allocated.

use crate::{Error, Result};
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// The whole of `path`, or a verification error naming it when it holds more
/// than `limit` bytes. `kind` names the file's role in the error (`parts.json`).
pub fn read_file(path: &Path, limit: u64, kind: &str) -> Result<Vec<u8>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let too_big = |size: String| {
        Error::verification(
            path.display().to_string(),
            format!(
                "{size} is too large for a {kind} (at most {limit} bytes); \
                 check that the path names a {kind} made by ferry, or copy it again"
            ),
        )
    };
    // A regular file is refused by its length without reading it; the
    // bounded read covers files that grow meanwhile or have no length.
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len > limit {
        return Err(too_big(format!("{len} bytes")));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(too_big(format!("more than {limit} bytes")));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_over_the_limit_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.parts.json");
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(read_file(&path, 10, "parts.json").unwrap(), b"0123456789");
        let err = read_file(&path, 9, "parts.json").unwrap_err();
        let text = err.to_string();
        assert!(err.is_verification(), "{text}");
        assert!(
            text.contains("x.parts.json") && text.contains("10 bytes"),
            "{text}"
        );
        assert!(text.contains("at most 9 bytes"), "{text}");
    }

    #[test]
    fn a_missing_file_is_an_io_error_naming_it() {
        let err = read_file(Path::new("/nonexistent/y.json"), 10, "parts.json").unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/y.json"), "{err}");
    }
}
