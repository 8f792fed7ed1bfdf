//! rpm's version ordering and its rule for when a provide meets a require.
//! The segment comparison (rpmvercmp, with `~` and `^`) comes from the
//! `rpm-version` crate, the one the `rpm` crate uses.

use super::package::{Evr, Flags};
use std::cmp::Ordering;

/// rpmvercmp: one version (or release) string against another.
pub fn vercmp(a: &str, b: &str) -> Ordering {
    rpm_version::Evr::new("", a, "").cmp(&rpm_version::Evr::new("", b, ""))
}

/// Full `epoch:version-release` order; a missing epoch is 0.
pub fn compare(a: &Evr, b: &Evr) -> Ordering {
    let a = rpm_version::Evr::new(a.epoch.as_str(), &a.version, &a.release);
    let b = rpm_version::Evr::new(b.epoch.as_str(), &b.version, &b.release);
    a.cmp(&b)
}

/// Whether two dependency ranges on the same name overlap, which is how rpm
/// decides that a provide satisfies a require (rpmdsCompare/rpmverOverlap).
/// `None` is an unversioned entry, and overlaps everything: an unversioned
/// provide satisfies a versioned require.
pub fn overlaps(a: Option<(Flags, &Evr)>, b: Option<(Flags, &Evr)>) -> bool {
    let (Some((fa, ea)), Some((fb, eb))) = (a, b) else {
        return true;
    };
    if is_empty(ea) || is_empty(eb) {
        return true;
    }
    let sense = match range_sense(ea, fa, eb, fb) {
        Some(sense) => sense,
        None => return true,
    };
    match sense {
        Ordering::Less => fa.greater() || fb.less(),
        Ordering::Greater => fa.less() || fb.greater(),
        Ordering::Equal => {
            (fa.equal() && fb.equal()) || (fa.less() && fb.less()) || (fa.greater() && fb.greater())
        }
    }
}

fn is_empty(evr: &Evr) -> bool {
    evr.epoch.is_empty() && evr.version.is_empty() && evr.release.is_empty()
}

/// a against b; `None` when rpm calls it a match outright: the versions are
/// equal, only one side has a release, and the side without one says `=`.
fn range_sense(a: &Evr, fa: Flags, b: &Evr, fb: Flags) -> Option<Ordering> {
    // A missing epoch compares equal to any epoch unless the other is > 0.
    let positive = |e: &str| e.parse::<u64>().is_ok_and(|n| n > 0);
    let sense = if !a.epoch.is_empty() && !b.epoch.is_empty() {
        vercmp(&a.epoch, &b.epoch)
    } else if positive(&a.epoch) {
        Ordering::Greater
    } else if positive(&b.epoch) {
        Ordering::Less
    } else {
        Ordering::Equal
    };
    if sense != Ordering::Equal {
        return Some(sense);
    }
    let sense = vercmp(&a.version, &b.version);
    if sense != Ordering::Equal {
        return Some(sense);
    }
    match (a.release.is_empty(), b.release.is_empty()) {
        (false, false) => Some(vercmp(&a.release, &b.release)),
        (false, true) if fb.equal() => None,
        (true, false) if fa.equal() => None,
        _ => Some(Ordering::Equal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// rpm's own rpmvercmp test vectors (tests/rpmvercmp.at).
    const RPMVERCMP: &[(&str, &str, i8)] = &[
        ("1.0", "1.0", 0),
        ("1.0", "2.0", -1),
        ("2.0", "1.0", 1),
        ("2.0.1", "2.0.1", 0),
        ("2.0", "2.0.1", -1),
        ("2.0.1", "2.0", 1),
        ("2.0.1a", "2.0.1a", 0),
        ("2.0.1a", "2.0.1", 1),
        ("2.0.1", "2.0.1a", -1),
        ("5.5p1", "5.5p1", 0),
        ("5.5p1", "5.5p2", -1),
        ("5.5p2", "5.5p1", 1),
        ("5.5p10", "5.5p10", 0),
        ("5.5p1", "5.5p10", -1),
        ("5.5p10", "5.5p1", 1),
        ("10xyz", "10.1xyz", -1),
        ("10.1xyz", "10xyz", 1),
        ("xyz10", "xyz10", 0),
        ("xyz10", "xyz10.1", -1),
        ("xyz10.1", "xyz10", 1),
        ("xyz.4", "xyz.4", 0),
        ("xyz.4", "8", -1),
        ("8", "xyz.4", 1),
        ("xyz.4", "2", -1),
        ("2", "xyz.4", 1),
        ("5.5p2", "5.6p1", -1),
        ("5.6p1", "5.5p2", 1),
        ("5.6p1", "6.5p1", -1),
        ("6.5p1", "5.6p1", 1),
        ("6.0.rc1", "6.0", 1),
        ("6.0", "6.0.rc1", -1),
        ("10b2", "10a1", 1),
        ("10a2", "10b2", -1),
        ("1.0aa", "1.0aa", 0),
        ("1.0a", "1.0aa", -1),
        ("1.0aa", "1.0a", 1),
        ("10.0001", "10.0001", 0),
        ("10.0001", "10.1", 0),
        ("10.1", "10.0001", 0),
        ("10.0001", "10.0039", -1),
        ("10.0039", "10.0001", 1),
        ("4.999.9", "5.0", -1),
        ("5.0", "4.999.9", 1),
        ("20101121", "20101121", 0),
        ("20101121", "20101122", -1),
        ("20101122", "20101121", 1),
        ("2_0", "2_0", 0),
        ("2.0", "2_0", 0),
        ("2_0", "2.0", 0),
        ("a", "a", 0),
        ("a+", "a+", 0),
        ("a+", "a_", 0),
        ("a_", "a+", 0),
        ("+a", "+a", 0),
        ("+a", "_a", 0),
        ("_a", "+a", 0),
        ("+_", "+_", 0),
        ("_+", "+_", 0),
        ("_+", "_", 0),
        ("+", "_", 0),
        ("1.0~rc1", "1.0~rc1", 0),
        ("1.0~rc1", "1.0", -1),
        ("1.0", "1.0~rc1", 1),
        ("1.0~rc1", "1.0~rc2", -1),
        ("1.0~rc2", "1.0~rc1", 1),
        ("1.0~rc1~git123", "1.0~rc1~git123", 0),
        ("1.0~rc1~git123", "1.0~rc1", -1),
        ("1.0~rc1", "1.0~rc1~git123", 1),
        ("1.0^", "1.0^", 0),
        ("1.0^", "1.0", 1),
        ("1.0", "1.0^", -1),
        ("1.0^git1", "1.0^git1", 0),
        ("1.0^git1", "1.0", 1),
        ("1.0", "1.0^git1", -1),
        ("1.0^git1", "1.0^git2", -1),
        ("1.0^git2", "1.0^git1", 1),
        ("1.0^git1", "1.01", -1),
        ("1.01", "1.0^git1", 1),
        ("1.0^20160101", "1.0^20160101", 0),
        ("1.0^20160101", "1.0.1", -1),
        ("1.0.1", "1.0^20160101", 1),
        ("1.0^20160101^git1", "1.0^20160101^git1", 0),
        ("1.0^20160102", "1.0^20160101^git1", 1),
        ("1.0^20160101^git1", "1.0^20160102", -1),
        ("1.0~rc1^git1", "1.0~rc1^git1", 0),
        ("1.0~rc1^git1", "1.0~rc1", 1),
        ("1.0~rc1", "1.0~rc1^git1", -1),
        ("1.0^git1~pre", "1.0^git1~pre", 0),
        ("1.0^git1", "1.0^git1~pre", 1),
        ("1.0^git1~pre", "1.0^git1", -1),
        ("a", "1", -1),
        ("1.0", "1.0.1", -1),
    ];

    #[test]
    fn vercmp_matches_rpms_test_vectors() {
        for &(a, b, want) in RPMVERCMP {
            assert_eq!(vercmp(a, b), want.cmp(&0), "rpmvercmp({a:?}, {b:?})");
        }
    }

    #[test]
    fn compare_defaults_the_epoch_to_zero() {
        let e = Evr::new;
        assert_eq!(
            compare(&e("", "1.0", "1"), &e("0", "1.0", "1")),
            Ordering::Equal
        );
        assert_eq!(
            compare(&e("1", "1.0", "1"), &e("", "9.0", "1")),
            Ordering::Greater
        );
        assert_eq!(
            compare(&e("0", "1.0", "2"), &e("0", "1.0", "10")),
            Ordering::Less
        );
    }

    fn dep(flags: &str, evr: &str) -> Option<(Flags, Evr)> {
        Some((Flags::from_symbol(flags).unwrap(), Evr::parse(evr)))
    }

    #[test]
    fn overlap_follows_rpm() {
        let cases = [
            (dep("=", "0:1.4-1"), dep(">=", "0:1.3"), true),
            (dep("=", "0:1.2-1"), dep(">=", "0:1.3"), false),
            (None, dep(">=", "1.3"), true),
            (dep("=", "1.3-1"), None, true),
            (dep("=", "1.3-1"), dep("=", "1.3"), true),
            (dep("=", "1.3-1"), dep("=", "1.3-2"), false),
            // The side without a release says `=`: rpm calls it a match.
            (dep("=", "1.3"), dep("<", "1.3-2"), true),
            (dep("=", "1.0-1"), dep("<", "1.0-1"), false),
            (dep("=", "1.0-1"), dep("<=", "1.0-1"), true),
            (dep("=", "1.0-1"), dep(">", "0.9"), true),
            (dep("=", "1:1.0-1"), dep(">=", "2.0"), true),
            (dep("=", "0:1.0-1"), dep(">=", "1:0.5"), false),
            (dep("=", "1.0~rc1-1"), dep(">=", "1.0"), false),
            (dep(">=", "2.0"), dep("<", "3.0"), true),
            (dep("<", "2.0"), dep(">", "3.0"), false),
        ];
        for (a, b, want) in cases {
            let (ra, rb) = (
                a.as_ref().map(|(f, e)| (*f, e)),
                b.as_ref().map(|(f, e)| (*f, e)),
            );
            assert_eq!(overlaps(ra, rb), want, "{a:?} vs {b:?}");
        }
    }
}
