use super::index::{package_path, write, IndexFiles};
use super::testdata::{package, universe, PRIMARY};
use super::{primary, repomd, RpmError, RpmPackage};
use sha2::{Digest, Sha256};
use std::io::Read;

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn written(packages: &[RpmPackage]) -> IndexFiles {
    let refs: Vec<&RpmPackage> = packages.iter().collect();
    write(&refs, "Packages/", 1_700_000_000).unwrap()
}

#[test]
fn primary_holds_the_upstream_elements_with_only_location_rewritten() {
    let upstream = primary::parse(PRIMARY.as_bytes()).unwrap();
    let files = written(&upstream);
    let open = String::from_utf8(gunzip(&files.primary.bytes)).unwrap();
    let want = PRIMARY
        .replace(
            "<location href=\"Packages/c/chrony-4.5-1.el9.x86_64.rpm\"/>",
            "<location href=\"Packages/chrony-4.5-1.el9.x86_64.rpm\"/>",
        )
        .replace(
            "<location xml:base=\"https://mirror.example/el9/\" href=\"noarch/ferry-test-app-1.0^git2-1.noarch.rpm\"/>",
            "<location href=\"Packages/ferry-test-app-1.0^git2-1.noarch.rpm\"/>",
        );
    assert_ne!(want, PRIMARY);
    // The root and layout are createrepo_c's, so the whole file compares.
    assert_eq!(open, want);

    let read_back = primary::parse(open.as_bytes()).unwrap();
    for (old, new) in upstream.iter().zip(&read_back) {
        assert_eq!(new.location_href, package_path(old, "Packages"));
        assert_eq!(new.location_base, None);
        assert_eq!(
            (&new.name, &new.evr, &new.sha256, &new.requires),
            (&old.name, &old.evr, &old.sha256, &old.requires)
        );
    }
}

#[test]
fn repomd_points_at_primary_with_its_digests() {
    let files = written(&primary::parse(PRIMARY.as_bytes()).unwrap());
    assert_eq!(files.repomd.path, "repodata/repomd.xml");
    assert_eq!(files.repomd.sha256, sha256(&files.repomd.bytes));
    assert_eq!(files.primary.sha256, sha256(&files.primary.bytes));
    assert_eq!(
        files.primary.path,
        format!("repodata/{}-primary.xml.gz", files.primary.sha256)
    );
    let md = repomd::parse(&files.repomd.bytes).unwrap();
    assert_eq!(md.revision.as_deref(), Some("1700000000"));
    let open = gunzip(&files.primary.bytes);
    assert_eq!(md.primary.location_href, files.primary.path);
    assert_eq!(md.primary.sha256, files.primary.sha256);
    assert_eq!(md.primary.size, Some(files.primary.bytes.len() as u64));
    assert_eq!(md.primary.open_sha256, Some(sha256(&open)));
    assert_eq!(md.primary.open_size, Some(open.len() as u64));
    let text = String::from_utf8(files.repomd.bytes).unwrap();
    assert!(text.contains("<timestamp>1700000000</timestamp>"), "{text}");
}

#[test]
fn equal_inputs_give_equal_bytes_whatever_their_order() {
    let mut packages = primary::parse(PRIMARY.as_bytes()).unwrap();
    let a = written(&packages);
    packages.reverse();
    assert_eq!(written(&packages), a);
}

#[test]
fn package_paths_and_file_name_clashes() {
    let packages = universe(&[
        package("a", "1-1", "noarch", &[], &[], &[]),
        package("a", "1-1", "noarch", &[], &[], &[]),
    ]);
    assert_eq!(
        package_path(&packages[0], "Packages/"),
        "Packages/a-1-1.noarch.rpm"
    );
    assert_eq!(
        package_path(&packages[0], "Packages"),
        "Packages/a-1-1.noarch.rpm"
    );
    assert_eq!(package_path(&packages[0], ""), "a-1-1.noarch.rpm");
    let err = write(&[&packages[0], &packages[1]], "Packages", 0).unwrap_err();
    assert_eq!(
        err,
        RpmError::Index("two packages share the file name a-1-1.noarch.rpm".into())
    );
}

#[test]
fn a_location_written_with_an_end_tag_is_rewritten_too() {
    let element = package("a", "1-1", "noarch", &[], &[], &[]).replace(
        "<location href=\"Packages/a-1-1.noarch.rpm\"/>",
        "<location href=\"x/a-1-1.noarch.rpm\" xml:base=\"https://m/\"></location>",
    );
    let packages = universe(&[element]);
    let files = written(&packages);
    let open = String::from_utf8(gunzip(&files.primary.bytes)).unwrap();
    assert!(
        open.contains("<location href=\"Packages/a-1-1.noarch.rpm\"></location>"),
        "{open}"
    );
    assert_eq!(
        primary::parse(open.as_bytes()).unwrap()[0].location_href,
        "Packages/a-1-1.noarch.rpm"
    );
}
