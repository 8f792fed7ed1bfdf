//! Metadata as createrepo_c writes it, for the unit tests.

use super::{primary, RpmPackage};
use sha2::{Digest, Sha256};

/// The head of a repomd.xml written by createrepo_c 0.17.
pub const REPOMD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<repomd xmlns="http://linux.duke.edu/metadata/repo" xmlns:rpm="http://linux.duke.edu/metadata/rpm">
  <revision>1796228939</revision>
  <data type="primary">
    <checksum type="sha256">0b2ed33a64bb92a761c83ccff5005c4888b19575cc77a592beaf58d679690f3e</checksum>
    <open-checksum type="sha256">97a2e94042211cd05edc491dba080bd113083c75106293ce89e69e63bc813f51</open-checksum>
    <location href="repodata/0b2ed33a64bb92a761c83ccff5005c4888b19575cc77a592beaf58d679690f3e-primary.xml.gz"/>
    <timestamp>1796228939</timestamp>
    <size>640</size>
    <open-size>1371</open-size>
  </data>
  <data type="filelists">
    <checksum type="sha256">639334d6f703edf05ef43aa1ce790d4881381be182e3d7fe4ef2e166638fb0d8</checksum>
    <open-checksum type="sha256">73b6468db024954ba3a0860a19522548f6e89256033dffea47a55287666f22d9</open-checksum>
    <location href="repodata/639334d6f703edf05ef43aa1ce790d4881381be182e3d7fe4ef2e166638fb0d8-filelists.xml.gz"/>
    <timestamp>1796228939</timestamp>
    <size>252</size>
    <open-size>337</open-size>
  </data>
  <data type="primary_db">
    <checksum type="sha256">2bce3b623ae24ab1c0560434784499b901a135edc0b48b4bc7fa71750daf9ffb</checksum>
    <open-checksum type="sha256">d0a537d1164cb53a4cfa4ade6f927606076199e148aa8ca901bfefa08c161a63</open-checksum>
    <location href="repodata/2bce3b623ae24ab1c0560434784499b901a135edc0b48b4bc7fa71750daf9ffb-primary.sqlite.bz2"/>
    <timestamp>1796228939</timestamp>
    <size>1878</size>
    <open-size>106496</open-size>
    <database_version>10</database_version>
  </data>
</repomd>
"#;

/// Two packages in createrepo_c's layout: an arch package with soname,
/// file, pre and versioned requires, and a noarch one with a rich require.
pub const PRIMARY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="2">
<package type="rpm">
  <name>chrony</name>
  <arch>x86_64</arch>
  <version epoch="0" ver="4.5" rel="1.el9"/>
  <checksum type="sha256" pkgid="YES">8F2C1E0D8BC0E4A5B1C5D5F1F3A9C2E4B6D8F0A1C3E5F7A9B1D3F5A7C9E1F3A5</checksum>
  <summary>An NTP client/server</summary>
  <description>A client/server for the Network Time Protocol, this program keeps your
computer&apos;s clock accurate. &lt;chronyd&gt; &amp; chronyc &#169;</description>
  <packager>Rocky Linux Build System (Peridot) &lt;releng@rockylinux.org&gt;</packager>
  <url>https://chrony-project.org</url>
  <time file="1700000000" build="1699999999"/>
  <size package="330013" installed="665338" archive="678604"/>
  <location href="Packages/c/chrony-4.5-1.el9.x86_64.rpm"/>
  <format>
    <rpm:license>GPL-2.0-only</rpm:license>
    <rpm:vendor>Rocky Enterprise Software Foundation</rpm:vendor>
    <rpm:group>Unspecified</rpm:group>
    <rpm:buildhost>pb-1234</rpm:buildhost>
    <rpm:sourcerpm>chrony-4.5-1.el9.src.rpm</rpm:sourcerpm>
    <rpm:header-range start="4504" end="27961"/>
    <rpm:provides>
      <rpm:entry name="chrony" flags="EQ" epoch="0" ver="4.5" rel="1.el9"/>
      <rpm:entry name="chrony(x86-64)" flags="EQ" epoch="0" ver="4.5" rel="1.el9"/>
      <rpm:entry name="config(chrony)" flags="EQ" epoch="0" ver="4.5" rel="1.el9"/>
      <rpm:entry name="group(chrony)"/>
    </rpm:provides>
    <rpm:requires>
      <rpm:entry name="/bin/sh" pre="1"/>
      <rpm:entry name="libc.so.6(GLIBC_2.34)(64bit)"/>
      <rpm:entry name="libgnutls.so.30()(64bit)"/>
      <rpm:entry name="shadow-utils" pre="1"/>
      <rpm:entry name="systemd" flags="GE" epoch="0" ver="252"/>
    </rpm:requires>
    <rpm:conflicts>
      <rpm:entry name="systemd" flags="LT" epoch="0" ver="200"/>
    </rpm:conflicts>
    <rpm:obsoletes>
      <rpm:entry name="ntp" flags="LT" epoch="0" ver="4.2.8"/>
    </rpm:obsoletes>
    <file>/etc/chrony.conf</file>
    <file>/etc/chrony.keys</file>
    <file type="dir">/etc/sysconfig</file>
    <file>/usr/bin/chronyc</file>
    <file>/usr/sbin/chronyd</file>
  </format>
</package>
<package type="rpm">
  <name>ferry-test-app</name>
  <arch>noarch</arch>
  <version epoch="1" ver="1.0^git2" rel="1"/>
  <checksum type="sha256" pkgid="YES">3805223bf3f99c7b3aa53752c7654b733aca2fa1a9c98407882e76081e3c0db5</checksum>
  <summary>test app &amp; friends</summary>
  <description>test</description>
  <packager></packager>
  <url></url>
  <time file="1796228939" build="1796228939"/>
  <size package="6250" installed="4" archive="268"/>
  <location xml:base="https://mirror.example/el9/" href="noarch/ferry-test-app-1.0^git2-1.noarch.rpm"/>
  <format>
    <rpm:license>Apache-2.0</rpm:license>
    <rpm:vendor></rpm:vendor>
    <rpm:group>Unspecified</rpm:group>
    <rpm:buildhost>vm</rpm:buildhost>
    <rpm:sourcerpm>ferry-test-app-1.0^git2-1.src.rpm</rpm:sourcerpm>
    <rpm:header-range start="4504" end="6141"/>
    <rpm:provides>
      <rpm:entry name="ferry-test-app" flags="EQ" epoch="1" ver="1.0^git2" rel="1"/>
    </rpm:provides>
    <rpm:requires>
      <rpm:entry name="(ferry-test-libfoo &gt;= 1.0 or ferry-test-tools)"/>
      <rpm:entry name="/usr/bin/ferry-test-tool"/>
      <rpm:entry name="ferry-test-libfoo" flags="GE" epoch="0" ver="1.3"/>
    </rpm:requires>
  </format>
</package>
</metadata>
"#;

/// One `<package>` as createrepo_c writes it. `evr` is `[e:]v-r`; each dep
/// is `name` or `name op [e:]v[-r]`.
pub fn package(
    name: &str,
    evr: &str,
    arch: &str,
    provides: &[&str],
    requires: &[&str],
    files: &[&str],
) -> String {
    let (e, v, r) = split_evr(evr);
    let sha = hex::encode(Sha256::digest(format!("{name}-{evr}.{arch}")));
    let self_provide = format!("{name} = {evr}");
    let provides: Vec<&str> = std::iter::once(self_provide.as_str())
        .chain(provides.iter().copied())
        .collect();
    let files: String = files
        .iter()
        .map(|f| format!("    <file>{f}</file>\n"))
        .collect();
    format!(
        r#"<package type="rpm">
  <name>{name}</name>
  <arch>{arch}</arch>
  <version epoch="{e}" ver="{v}" rel="{r}"/>
  <checksum type="sha256" pkgid="YES">{sha}</checksum>
  <summary>{name}</summary>
  <description>{name}</description>
  <packager></packager>
  <url></url>
  <time file="1700000000" build="1700000000"/>
  <size package="1000" installed="2000" archive="2500"/>
  <location href="Packages/{name}-{v}-{r}.{arch}.rpm"/>
  <format>
    <rpm:license>MIT</rpm:license>
    <rpm:sourcerpm>{name}-{v}-{r}.src.rpm</rpm:sourcerpm>
    <rpm:header-range start="4504" end="6000"/>
    <rpm:provides>
{}    </rpm:provides>
    <rpm:requires>
{}    </rpm:requires>
{files}  </format>
</package>
"#,
        entries(&provides),
        entries(requires),
    )
}

fn split_evr(evr: &str) -> (&str, &str, &str) {
    let (e, vr) = evr.split_once(':').unwrap_or(("0", evr));
    let (v, r) = vr.rsplit_once('-').unwrap_or((vr, ""));
    (e, v, r)
}

fn entries(deps: &[&str]) -> String {
    let mut out = String::new();
    for dep in deps {
        let words: Vec<&str> = dep.split_whitespace().collect();
        let escaped = quick_xml::escape::escape(*dep);
        match words[..] {
            _ if dep.starts_with('(') => out += &format!("      <rpm:entry name=\"{escaped}\"/>\n"),
            [name] => out += &format!("      <rpm:entry name=\"{name}\"/>\n"),
            [name, op, evr] => {
                let flags = match op {
                    "<" => "LT",
                    "<=" => "LE",
                    "=" => "EQ",
                    ">=" => "GE",
                    _ => "GT",
                };
                let (e, v, r) = split_evr(evr);
                let rel = if r.is_empty() {
                    String::new()
                } else {
                    format!(" rel=\"{r}\"")
                };
                out += &format!("      <rpm:entry name=\"{name}\" flags=\"{flags}\" epoch=\"{e}\" ver=\"{v}\"{rel}/>\n");
            }
            _ => panic!("bad dep {dep:?}"),
        }
    }
    out
}

/// A primary.xml of these `<package>` elements.
pub fn primary_of(packages: &[String]) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<metadata xmlns=\"http://linux.duke.edu/metadata/common\" \
         xmlns:rpm=\"http://linux.duke.edu/metadata/rpm\" packages=\"{}\">\n{}</metadata>\n",
        packages.len(),
        packages.concat()
    )
}

/// Parsed packages of these `<package>` elements.
pub fn universe(packages: &[String]) -> Vec<RpmPackage> {
    primary::parse(primary_of(packages).as_bytes()).expect("test primary.xml parses")
}
