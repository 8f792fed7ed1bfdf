//! The data read from `primary.xml`: packages and their dependencies.

use std::fmt;

/// `[epoch:]version[-release]`; an empty field is one that was not written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Evr {
    pub epoch: String,
    pub version: String,
    pub release: String,
}

impl Evr {
    pub fn new(epoch: &str, version: &str, release: &str) -> Self {
        Evr {
            epoch: epoch.to_string(),
            version: version.to_string(),
            release: release.to_string(),
        }
    }

    /// Splits `[epoch:]version[-release]` the way rpm does: the epoch is a
    /// leading run of digits before `:`, the release follows the last `-`.
    pub fn parse(s: &str) -> Self {
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        let (epoch, rest) = match s.as_bytes().get(digits) {
            Some(b':') => (&s[..digits], &s[digits + 1..]),
            _ => ("", s),
        };
        let (version, release) = rest.rsplit_once('-').unwrap_or((rest, ""));
        Evr::new(epoch, version, release)
    }
}

/// Written as rpm prints it: the epoch only when it is not 0.
impl fmt::Display for Evr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.epoch.is_empty() && self.epoch != "0" {
            write!(f, "{}:", self.epoch)?;
        }
        f.write_str(&self.version)?;
        if !self.release.is_empty() {
            write!(f, "-{}", self.release)?;
        }
        Ok(())
    }
}

/// The comparison of a versioned dependency (`flags` in primary.xml).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flags {
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
}

impl Flags {
    /// From primary.xml's `flags` attribute (`EQ`, `LT`, ...).
    pub fn from_attr(s: &str) -> Option<Self> {
        Some(match s {
            "LT" => Flags::Lt,
            "LE" => Flags::Le,
            "EQ" => Flags::Eq,
            "GE" => Flags::Ge,
            "GT" => Flags::Gt,
            _ => return None,
        })
    }

    /// From the operator of a rich dependency (`>=`, `=`, ...).
    pub fn from_symbol(s: &str) -> Option<Self> {
        Some(match s {
            "<" => Flags::Lt,
            "<=" => Flags::Le,
            "=" | "==" => Flags::Eq,
            ">=" => Flags::Ge,
            ">" => Flags::Gt,
            _ => return None,
        })
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Flags::Lt => "<",
            Flags::Le => "<=",
            Flags::Eq => "=",
            Flags::Ge => ">=",
            Flags::Gt => ">",
        }
    }

    pub(crate) fn less(self) -> bool {
        matches!(self, Flags::Lt | Flags::Le)
    }

    pub(crate) fn greater(self) -> bool {
        matches!(self, Flags::Gt | Flags::Ge)
    }

    pub(crate) fn equal(self) -> bool {
        matches!(self, Flags::Le | Flags::Eq | Flags::Ge)
    }
}

/// One `rpm:entry` of provides or requires, or one simple term of a rich
/// dependency. A rich dependency keeps its whole text, parentheses included,
/// in `name` (as primary.xml writes it).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Dep {
    pub name: String,
    pub constraint: Option<(Flags, Evr)>,
    /// `pre="1"`: needed by a scriptlet; for the closure just a require.
    pub pre: bool,
}

impl Dep {
    /// A dependency on any version of `name`.
    pub fn any(name: &str) -> Self {
        Dep {
            name: name.to_string(),
            constraint: None,
            pre: false,
        }
    }

    pub fn versioned(name: &str, flags: Flags, evr: Evr) -> Self {
        Dep {
            name: name.to_string(),
            constraint: Some((flags, evr)),
            pre: false,
        }
    }

    /// The version range, borrowed; `None` for an unversioned entry.
    pub fn range(&self) -> Option<(Flags, &Evr)> {
        self.constraint.as_ref().map(|(flags, evr)| (*flags, evr))
    }

    pub fn is_rich(&self) -> bool {
        self.name.starts_with('(')
    }
}

/// As the spec file writes it, e.g. `ferry-test-libfoo >= 1.3`.
impl fmt::Display for Dep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some((flags, evr)) = &self.constraint {
            write!(f, " {} {evr}", flags.symbol())?;
        }
        Ok(())
    }
}

/// One `<package type="rpm">` of primary.xml.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpmPackage {
    pub name: String,
    pub arch: String,
    pub evr: Evr,
    /// sha256 of the .rpm file, lowercase hex (the pkgid).
    pub sha256: String,
    /// Size of the .rpm file in bytes (`<size package=..>`).
    pub size: u64,
    /// `<location href>`: the .rpm's path relative to the repository root.
    pub location_href: String,
    /// `<location xml:base>`: set when the .rpm lives under another URL.
    pub location_base: Option<String>,
    pub provides: Vec<Dep>,
    pub requires: Vec<Dep>,
    /// The `<file>` entries (primary lists only /etc, bin and sbin paths).
    pub files: Vec<String>,
    /// The `<package>` element exactly as upstream wrote it.
    pub xml: Vec<u8>,
}

impl RpmPackage {
    /// `name-[epoch:]version-release.arch`, as rpm and dnf print it.
    pub fn nevra(&self) -> String {
        format!("{}-{}.{}", self.name, self.evr, self.arch)
    }

    /// The .rpm's file name: the last segment of its location.
    pub fn file_name(&self) -> &str {
        self.location_href.rsplit('/').next().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evr_parse_splits_like_rpm() {
        assert_eq!(Evr::parse("1:2.0-3.el9"), Evr::new("1", "2.0", "3.el9"));
        assert_eq!(Evr::parse("2.0"), Evr::new("", "2.0", ""));
        assert_eq!(Evr::parse("1.2-3-4"), Evr::new("", "1.2-3", "4"));
        assert_eq!(Evr::parse("a:1"), Evr::new("", "a:1", ""));
    }

    #[test]
    fn display_hides_epoch_zero() {
        let dep = Dep::versioned("libfoo", Flags::Ge, Evr::new("0", "1.3", ""));
        assert_eq!(dep.to_string(), "libfoo >= 1.3");
        assert_eq!(Evr::new("2", "1.0", "1").to_string(), "2:1.0-1");
    }
}
