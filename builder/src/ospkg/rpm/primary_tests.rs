use super::package::{Dep, Evr, Flags};
use super::primary::parse;
use super::testdata::PRIMARY;
use super::RpmError;
use std::io::{BufReader, Write};

/// The text of each `<package>` element of `xml`, as written.
fn elements(xml: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<package type=") {
        let end = rest[start..].find("</package>").unwrap() + start + "</package>".len();
        out.push(&rest[start..end]);
        rest = &rest[end..];
    }
    out
}

#[test]
fn reads_createrepo_c_packages() {
    let packages = parse(PRIMARY.as_bytes()).unwrap();
    assert_eq!(packages.len(), 2);
    let chrony = &packages[0];
    assert_eq!(chrony.nevra(), "chrony-4.5-1.el9.x86_64");
    assert_eq!(chrony.evr, Evr::new("0", "4.5", "1.el9"));
    assert_eq!(
        chrony.sha256,
        "8f2c1e0d8bc0e4a5b1c5d5f1f3a9c2e4b6d8f0a1c3e5f7a9b1d3f5a7c9e1f3a5"
    );
    assert_eq!(chrony.size, 330013);
    assert_eq!(
        chrony.location_href,
        "Packages/c/chrony-4.5-1.el9.x86_64.rpm"
    );
    assert_eq!(chrony.file_name(), "chrony-4.5-1.el9.x86_64.rpm");
    assert_eq!(chrony.location_base, None);
    let names = |deps: &[Dep]| deps.iter().map(|d| d.name.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&chrony.provides),
        [
            "chrony",
            "chrony(x86-64)",
            "config(chrony)",
            "group(chrony)"
        ]
    );
    // Conflicts and obsoletes are not requires.
    assert_eq!(
        names(&chrony.requires),
        [
            "/bin/sh",
            "libc.so.6(GLIBC_2.34)(64bit)",
            "libgnutls.so.30()(64bit)",
            "shadow-utils",
            "systemd"
        ]
    );
    assert!(chrony.requires[0].pre && !chrony.requires[1].pre);
    assert_eq!(
        chrony.requires[4].constraint,
        Some((Flags::Ge, Evr::new("0", "252", "")))
    );
    assert_eq!(chrony.requires[4].to_string(), "systemd >= 252");
    assert_eq!(
        chrony.files,
        [
            "/etc/chrony.conf",
            "/etc/chrony.keys",
            "/etc/sysconfig",
            "/usr/bin/chronyc",
            "/usr/sbin/chronyd"
        ]
    );
}

#[test]
fn reads_epochs_bases_and_escaped_rich_dependencies() {
    let app = &parse(PRIMARY.as_bytes()).unwrap()[1];
    assert_eq!(app.nevra(), "ferry-test-app-1:1.0^git2-1.noarch");
    assert_eq!(
        app.location_base.as_deref(),
        Some("https://mirror.example/el9/")
    );
    assert_eq!(
        app.requires[0].name,
        "(ferry-test-libfoo >= 1.0 or ferry-test-tools)"
    );
    assert!(app.requires[0].is_rich() && app.requires[0].constraint.is_none());
}

#[test]
fn keeps_each_package_element_byte_for_byte() {
    let want = elements(PRIMARY);
    // A tiny buffer makes elements straddle many refills.
    for capacity in [1, 7, 64, 8192] {
        let got = parse(BufReader::with_capacity(capacity, PRIMARY.as_bytes())).unwrap();
        let got: Vec<_> = got
            .iter()
            .map(|p| std::str::from_utf8(&p.xml).unwrap())
            .collect();
        assert_eq!(got, want, "buffer capacity {capacity}");
    }
}

#[test]
fn streams_from_a_gzip_decoder() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(PRIMARY.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let reader = BufReader::new(flate2::read::GzDecoder::new(gz.as_slice()));
    let packages = parse(reader).unwrap();
    assert_eq!(packages[1].xml, elements(PRIMARY)[1].as_bytes());
}

#[test]
fn a_package_digest_other_than_sha256_is_an_error_naming_it() {
    let xml = PRIMARY.replacen("type=\"sha256\" pkgid", "type=\"sha\" pkgid", 1);
    assert_eq!(
        parse(xml.as_bytes()).unwrap_err(),
        RpmError::ChecksumType {
            file: "primary.xml",
            what: "package chrony-4.5-1.el9.x86_64".into(),
            kind: "sha".into()
        }
    );
}

#[test]
fn malformed_or_short_metadata_is_an_error() {
    let cases = [
        (
            PRIMARY.replacen("packages=\"2\"", "packages=\"3\"", 1),
            "but 2 <package> elements",
        ),
        (
            PRIMARY[..PRIMARY.rfind("<format>").unwrap()].to_string(),
            "package #2 is cut short",
        ),
        (
            PRIMARY[..PRIMARY.rfind("</metadata>").unwrap()].to_string(),
            "ends before </metadata>",
        ),
        (
            PRIMARY.replacen("  <arch>x86_64</arch>\n", "", 1),
            "package #1 has no <arch>",
        ),
        (
            PRIMARY.replacen("metadata/rpm\"", "metadata/rpm2\"", 1),
            "must declare",
        ),
        (
            PRIMARY.replacen("<metadata ", "<metadata xmlns:x=\"urn:x\" ", 1),
            "unexpected namespace",
        ),
        (PRIMARY.replacen("</name>", "</nome>", 1), "at byte"),
        ("<foo/>".to_string(), "no <metadata> root"),
    ];
    for (xml, want) in cases {
        let err = parse(xml.as_bytes()).unwrap_err().to_string();
        assert!(
            err.starts_with("primary.xml: ") && err.contains(want),
            "{want:?} not in {err:?}"
        );
    }
}
