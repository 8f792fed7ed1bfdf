//! End to end with the real tools: rpms built by rpmbuild, indexed by
//! createrepo_c, read and resolved here, re-indexed by `index::write`, and
//! installed from that index by dnf into a scratch root.

use super::index::{package_path, write};
use super::resolve::closure;
use super::{primary, repomd};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::BufReader;
use std::path::Path;
use std::process::Command;

const TOOLS: [&str; 3] = ["rpmbuild", "createrepo_c", "dnf"];

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A noarch package without automatic dependencies, owning `files`
/// (path, content).
fn build_rpm(top: &Path, name: &str, version: &str, tags: &[&str], files: &[(&str, &str)]) {
    let mut spec = format!(
        "Name: {name}\nVersion: {version}\nRelease: 1\nSummary: ferry test package\nLicense: MIT\n\
         BuildArch: noarch\nAutoReqProv: no\n{}\n%description\nferry test package\n%install\n",
        tags.join("\n")
    );
    for (path, content) in files {
        spec += &format!(
            "mkdir -p %{{buildroot}}$(dirname {path})\necho {content} > %{{buildroot}}{path}\n"
        );
    }
    spec += "%files\n";
    for (path, _) in files {
        spec += &format!("{path}\n");
    }
    let spec_path = top.join(format!("{name}-{version}.spec"));
    fs::write(&spec_path, spec).unwrap();
    run(Command::new("rpmbuild")
        .arg("-bb")
        .arg("--define")
        .arg(format!("_topdir {}", top.join("build").display()))
        .arg("--define")
        .arg(format!("_rpmdir {}", top.join("upstream").display()))
        .arg(&spec_path));
}

#[test]
fn dnf_installs_the_closure_from_the_written_index() {
    let missing: Vec<_> = TOOLS
        .into_iter()
        .filter(|t| Command::new(t).arg("--version").output().is_err())
        .collect();
    assert!(
        missing.is_empty(),
        "{} not found: `make deps` installs them (Debian packages rpm, createrepo-c, dnf)",
        missing.join(", ")
    );
    let tmp = tempfile::tempdir().unwrap();
    let top = tmp.path();
    let share = "/usr/share/ferry-test";
    build_rpm(
        top,
        "ferry-test-app",
        "1.0",
        &[
            "Requires: ferry-test-libfoo >= 1.3",
            "Requires: ferry-test-virtual",
            "Requires: /usr/bin/ferry-test-tool",
            "Requires: (ferry-test-libfoo or ferry-test-other)",
        ],
        &[(&format!("{share}/app"), "app")],
    );
    for v in ["1.2", "1.4"] {
        build_rpm(
            top,
            "ferry-test-libfoo",
            v,
            &[],
            &[(&format!("{share}/libfoo"), v)],
        );
    }
    build_rpm(
        top,
        "ferry-test-tools",
        "2.0",
        &["Provides: ferry-test-virtual = 2.0"],
        &[("/usr/bin/ferry-test-tool", "tool")],
    );
    let upstream = top.join("upstream");
    run(Command::new("createrepo_c").arg(&upstream));

    // Read upstream's index as the builder will.
    let md = repomd::parse(&fs::read(upstream.join("repodata/repomd.xml")).unwrap()).unwrap();
    let gz = fs::read(upstream.join(&md.primary.location_href)).unwrap();
    assert_eq!(hex::encode(Sha256::digest(&gz)), md.primary.sha256);
    let packages =
        primary::parse(BufReader::new(flate2::read::GzDecoder::new(gz.as_slice()))).unwrap();
    assert_eq!(packages.len(), 4);

    let c = closure(&packages, &["x86_64", "noarch"], &["ferry-test-app"], &[]).unwrap();
    let nevras: Vec<_> = c.packages.iter().map(|p| p.package.nevra()).collect();
    assert_eq!(
        nevras,
        [
            "ferry-test-app-1.0-1.noarch",
            "ferry-test-libfoo-1.4-1.noarch",
            "ferry-test-tools-2.0-1.noarch"
        ]
    );

    // The bundle's layout: the index plus the rpms under Packages/.
    let repo = top.join("repo");
    let chosen: Vec<_> = c.packages.iter().map(|p| p.package).collect();
    let index = write(&chosen, "Packages", 1_700_000_000).unwrap();
    for file in index.files() {
        fs::create_dir_all(repo.join(&file.path).parent().unwrap()).unwrap();
        fs::write(repo.join(&file.path), &file.bytes).unwrap();
    }
    for p in &chosen {
        let dest = repo.join(package_path(p, "Packages"));
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(upstream.join(&p.location_href), dest).unwrap();
    }

    let root = top.join("root");
    fs::create_dir(&root).unwrap();
    run(Command::new("dnf")
        .arg(format!("--installroot={}", root.display()))
        .arg("--setopt=reposdir=/dev/null")
        .arg(format!("--setopt=cachedir={}", top.join("cache").display()))
        .arg(format!("--repofrompath=t,file://{}", repo.display()))
        .args([
            "--releasever=9",
            "--nogpgcheck",
            "install",
            "-y",
            "ferry-test-app",
        ]));
    let read = |path: &str| {
        fs::read_to_string(root.join(path.trim_start_matches('/'))).unwrap_or_default()
    };
    assert_eq!(read(&format!("{share}/app")), "app\n");
    assert_eq!(read(&format!("{share}/libfoo")), "1.4\n");
    assert_eq!(read("/usr/bin/ferry-test-tool"), "tool\n");
}
