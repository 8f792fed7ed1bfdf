//! Embeds every release catalog and profile (bundles/catalog/*.toml,
//! bundles/profiles/*.toml) and every distribution's package source and
//! archive keys (bundles/catalog/os/*.toml, *.asc), so adding a release is a
//! data-only change.

use std::fmt::Write;
use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bundles");
    let mut out = String::new();
    for (konst, dir, ext) in [
        ("CATALOGS", "catalog", "toml"),
        ("PROFILES", "profiles", "toml"),
        ("OS_SOURCES", "catalog/os", "toml"),
        ("OS_KEYS", "catalog/os", "asc"),
    ] {
        let dir = root.join(dir);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == ext))
            .collect();
        files.sort();
        writeln!(out, "pub const {konst}: &[(&str, &str)] = &[").unwrap();
        for f in files {
            println!("cargo:rerun-if-changed={}", f.display());
            let stem = match ext {
                "toml" => f.file_stem().unwrap().to_string_lossy().to_string(),
                _ => f.file_name().unwrap().to_string_lossy().to_string(),
            };
            let path = f.canonicalize().unwrap();
            writeln!(
                out,
                "    ({stem:?}, include_str!({:?})),",
                path.display().to_string()
            )
            .unwrap();
        }
        writeln!(out, "];").unwrap();
    }
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("embedded.rs");
    std::fs::write(dest, out).unwrap();
}
