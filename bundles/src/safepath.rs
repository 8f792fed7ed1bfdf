//! The path rule for content entries: relative, `/`-separated, no `.`/`..`
//! or empty components, no NUL or backslash. Applied to both the manifest's
//! paths and the tar's, so a sink can join them under its root safely.

/// Why a path is unsafe, or Ok.
pub fn check(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("empty path");
    }
    if path.starts_with('/') {
        return Err("absolute path");
    }
    if path.contains('\0') {
        return Err("path contains a NUL byte");
    }
    if path.contains('\\') {
        return Err("path contains a backslash");
    }
    for component in path.split('/') {
        match component {
            "" => return Err("path has an empty component (`//` or a trailing `/`)"),
            "." => return Err("path has a `.` component"),
            ".." => return Err("path has a `..` component"),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn accepts_plain_relative_paths() {
        for p in [
            "bundle.json",
            "bin/linux-amd64/kubelet",
            "images/blobs/sha256/ab",
            "a..b/c.",
            ".hidden",
        ] {
            assert_eq!(check(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn rejects_unsafe_paths() {
        let cases = [
            ("", "empty path"),
            ("/etc/passwd", "absolute path"),
            ("../x", "path has a `..` component"),
            ("a/../../x", "path has a `..` component"),
            ("a/..", "path has a `..` component"),
            ("./a", "path has a `.` component"),
            (
                "a//b",
                "path has an empty component (`//` or a trailing `/`)",
            ),
            ("a/", "path has an empty component (`//` or a trailing `/`)"),
            ("a\\..\\b", "path contains a backslash"),
            ("a\0b", "path contains a NUL byte"),
        ];
        for (p, why) in cases {
            assert_eq!(check(p), Err(why), "{p:?}");
        }
    }
}
