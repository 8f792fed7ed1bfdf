use super::resolve::{closure, Closure, Reason};
use super::testdata::{package, universe};
use super::{RpmError, RpmPackage};

const ARCHES: &[&str] = &["x86_64", "noarch"];

fn nevras(c: &Closure) -> Vec<String> {
    c.packages.iter().map(|p| p.package.nevra()).collect()
}

fn required(by: &str, requires: &str) -> Reason {
    Reason::Required {
        by: by.into(),
        requires: requires.into(),
    }
}

fn repo() -> Vec<RpmPackage> {
    universe(&[
        package(
            "ferry-test-app",
            "1.0-1",
            "noarch",
            &[],
            &[
                "ferry-test-libfoo >= 1.3",
                "ferry-test-virtual",
                "/usr/bin/ferry-test-tool",
                "libc.so.6(GLIBC_2.34)(64bit)",
                "rpmlib(PayloadIsZstd) <= 5.4.18-1",
                "ferry-test-app",
            ],
            &[],
        ),
        package("ferry-test-libfoo", "1.2-1", "noarch", &[], &[], &[]),
        package("ferry-test-libfoo", "1.4-1", "noarch", &[], &[], &[]),
        package("ferry-test-libfoo", "1.5~rc1-1", "i686", &[], &[], &[]),
        package(
            "ferry-test-tools",
            "2.0-1",
            "x86_64",
            &["ferry-test-virtual = 2.0"],
            &[],
            &["/usr/bin/ferry-test-tool"],
        ),
        package(
            "glibc",
            "2.34-100.el9",
            "x86_64",
            &["libc.so.6(GLIBC_2.34)(64bit)"],
            &[],
            &[],
        ),
        package(
            "bash",
            "5.1.8-9.el9",
            "x86_64",
            &["/bin/sh"],
            &["libc.so.6(GLIBC_2.34)(64bit)"],
            &["/usr/bin/bash"],
        ),
    ])
}

#[test]
fn carries_the_closure_less_the_base() {
    let repo = repo();
    let c = closure(&repo, ARCHES, &["ferry-test-app", "bash"], &["bash"]).unwrap();
    assert_eq!(
        nevras(&c),
        [
            "ferry-test-app-1.0-1.noarch",
            "ferry-test-libfoo-1.4-1.noarch",
            "ferry-test-tools-2.0-1.x86_64"
        ]
    );
    let app = "ferry-test-app-1.0-1.noarch";
    let reasons: Vec<_> = c.packages.iter().map(|p| p.reason.clone()).collect();
    assert_eq!(
        reasons,
        [
            Reason::Wanted,
            required(app, "ferry-test-libfoo >= 1.3"),
            required(app, "ferry-test-virtual")
        ]
    );
    assert_eq!(
        reasons[1].to_string(),
        "ferry-test-app-1.0-1.noarch requires ferry-test-libfoo >= 1.3"
    );
    let base: Vec<_> = c.base.iter().map(|p| p.nevra()).collect();
    assert_eq!(
        base,
        ["bash-5.1.8-9.el9.x86_64", "glibc-2.34-100.el9.x86_64"]
    );
    assert_eq!(c.wanted_in_base, ["bash"]);
}

#[test]
fn an_unmet_require_names_the_package_and_the_require() {
    let mut repo = repo();
    repo.retain(|p| p.nevra() != "ferry-test-libfoo-1.4-1.noarch");
    let err = closure(&repo, ARCHES, &["ferry-test-app"], &["bash"]).unwrap_err();
    assert_eq!(
        err,
        RpmError::Unsatisfied {
            package: "ferry-test-app-1.0-1.noarch".into(),
            requires: "ferry-test-libfoo >= 1.3".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "ferry-test-app-1.0-1.noarch requires ferry-test-libfoo >= 1.3, which nothing provides"
    );
}

#[test]
fn an_unknown_or_other_arch_name_is_an_error_naming_it() {
    let repo = repo();
    let err = closure(&repo, ARCHES, &["ferry-test-nope"], &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "wanted package \"ferry-test-nope\" is in no repository package of the allowed arches"
    );
    let only_i686 = universe(&[package("lib32", "1-1", "i686", &[], &[], &[])]);
    let err = closure(&only_i686, ARCHES, &[], &["lib32"]).unwrap_err();
    assert_eq!(
        err,
        RpmError::UnknownPackage {
            list: "base",
            name: "lib32".into()
        }
    );
}

#[test]
fn prefers_the_provider_named_as_required_then_the_highest_evr_then_the_name() {
    let repo = universe(&[
        package(
            "app",
            "1-1",
            "noarch",
            &[],
            &["python3", "webserver", "mta"],
            &[],
        ),
        package("python3", "3.9.18-1", "x86_64", &[], &[], &[]),
        package(
            "python3.11",
            "3.11.5-1",
            "x86_64",
            &["python3 = 3.11.5-1"],
            &[],
            &[],
        ),
        package("nginx", "1:1.20.1-14", "x86_64", &["webserver"], &[], &[]),
        package("httpd", "2.4.57-5", "x86_64", &["webserver"], &[], &[]),
        package("sendmail", "1.0-1", "x86_64", &["mta"], &[], &[]),
        package("postfix", "1.0-1", "x86_64", &["mta"], &[], &[]),
    ]);
    let c = closure(&repo, ARCHES, &["app"], &[]).unwrap();
    // nginx's epoch 1 beats httpd's higher version.
    assert_eq!(
        nevras(&c),
        [
            "app-1-1.noarch",
            "nginx-1:1.20.1-14.x86_64",
            "postfix-1.0-1.x86_64",
            "python3-3.9.18-1.x86_64"
        ]
    );
}

#[test]
fn a_require_met_by_the_base_or_a_chosen_package_adds_nothing() {
    let repo = universe(&[
        package(
            "app",
            "1-1",
            "noarch",
            &[],
            &["libssl.so.3()(64bit)", "helper"],
            &[],
        ),
        package(
            "helper",
            "1-1",
            "noarch",
            &[],
            &["libcrypto.so.3()(64bit)", "app"],
            &[],
        ),
        package(
            "openssl-libs",
            "1:3.0.7-1",
            "x86_64",
            &["libssl.so.3()(64bit)"],
            &[],
            &[],
        ),
        package(
            "compat-ssl",
            "9-1",
            "x86_64",
            &["libssl.so.3()(64bit)", "libcrypto.so.3()(64bit)"],
            &[],
            &[],
        ),
        package(
            "openssl-crypto",
            "1:3.0.7-1",
            "x86_64",
            &["libcrypto.so.3()(64bit)"],
            &[],
            &[],
        ),
        package("core", "1-1", "noarch", &[], &["openssl-libs"], &[]),
    ]);
    let c = closure(&repo, ARCHES, &["app"], &["core"]).unwrap();
    // libssl comes from the base; helper's libcrypto picks the highest EVR.
    assert_eq!(
        nevras(&c),
        [
            "app-1-1.noarch",
            "helper-1-1.noarch",
            "openssl-crypto-1:3.0.7-1.x86_64"
        ]
    );
}

#[test]
fn rich_dependencies_and_or_nest() {
    let repo = universe(&[
        package(
            "app",
            "1-1",
            "noarch",
            &[],
            &["(a or b)", "(c and (d >= 2 or e))", "(b or f)"],
            &[],
        ),
        package("a", "1-1", "noarch", &[], &[], &[]),
        package("b", "1-1", "noarch", &[], &[], &[]),
        package("c", "1-1", "noarch", &[], &[], &[]),
        package("d", "1-1", "noarch", &[], &[], &[]),
        package("e", "1-1", "noarch", &[], &[], &[]),
        package("f", "1-1", "noarch", &[], &[], &["/usr/bin/f"]),
    ]);
    let c = closure(&repo, ARCHES, &["app"], &[]).unwrap();
    let names: Vec<_> = c.packages.iter().map(|p| p.package.name.as_str()).collect();
    // d is too old, so e; neither b nor f is chosen, so the first: b.
    assert_eq!(names, ["a", "app", "b", "c", "e"]);
    let e = c.packages.iter().find(|p| p.package.name == "e").unwrap();
    assert_eq!(
        e.reason,
        required("app-1-1.noarch", "e (in (c and (d >= 2 or e)))")
    );
}

#[test]
fn unsupported_rich_operators_are_an_error_naming_package_and_dependency() {
    let repo = universe(&[
        package(
            "chrony",
            "4.5-1",
            "x86_64",
            &[],
            &["(timedatex if systemd)"],
            &[],
        ),
        package("systemd", "252-1", "x86_64", &[], &[], &[]),
    ]);
    let err = closure(&repo, ARCHES, &["chrony"], &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "chrony-4.5-1.x86_64 requires (timedatex if systemd): the `if` operator is not supported (only `and` and `or`)"
    );
    let repo = universe(&[package("x", "1-1", "noarch", &[], &["(y or z)"], &[])]);
    let err = closure(&repo, ARCHES, &["x"], &[]).unwrap_err();
    assert_eq!(
        err,
        RpmError::Unsatisfied {
            package: "x-1-1.noarch".into(),
            requires: "(y or z)".into()
        }
    );
}

#[test]
fn one_version_per_name_meeting_every_constraint_seen() {
    let lib = |v: &str| {
        package(
            "lib",
            &format!("{v}-1"),
            "x86_64",
            &["libl.so.1()(64bit)"],
            &[],
            &[],
        )
    };
    let mut packages = vec![
        package(
            "app",
            "1-1",
            "noarch",
            &[],
            &["libl.so.1()(64bit)", "helper"],
            &[],
        ),
        package("helper", "1-1", "noarch", &[], &["lib < 3"], &[]),
        lib("1.0"),
        lib("2.0"),
        lib("3.0"),
    ];
    let repo = universe(&packages);
    let c = closure(&repo, ARCHES, &["app"], &[]).unwrap();
    assert_eq!(
        nevras(&c),
        ["app-1-1.noarch", "helper-1-1.noarch", "lib-2.0-1.x86_64"]
    );
    assert_eq!(
        c.packages[2].reason,
        required("app-1-1.noarch", "libl.so.1()(64bit)")
    );

    packages.push(package("other", "1-1", "noarch", &[], &["lib >= 3"], &[]));
    let repo = universe(&packages);
    let err = closure(&repo, ARCHES, &["app", "other"], &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no version of lib satisfies all of: lib < 3, required by helper-1-1.noarch; \
         lib >= 3, required by other-1-1.noarch"
    );
}

#[test]
fn arch_order_breaks_ties_and_cycles_end() {
    let repo = universe(&[
        package("a", "1-1", "noarch", &[], &["b"], &[]),
        package("b", "1-1", "noarch", &[], &["a", "c"], &[]),
        package("c", "1-1", "noarch", &[], &[], &[]),
        package("c", "1-1", "x86_64", &[], &[], &[]),
    ]);
    let c = closure(&repo, ARCHES, &["a"], &[]).unwrap();
    assert_eq!(nevras(&c), ["a-1-1.noarch", "b-1-1.noarch", "c-1-1.x86_64"]);
}
