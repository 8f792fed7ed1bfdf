//! The packages of the allowed arches, indexed by what they provide.

use super::evr::{compare, overlaps};
use super::package::{Dep, Flags, RpmPackage};
use std::cmp::Ordering;
use std::collections::HashMap;

pub(super) struct Universe<'a> {
    pub(super) packages: Vec<&'a RpmPackage>,
    arches: Vec<String>,
    /// Names, provides and files, each to the packages that carry it.
    index: HashMap<&'a str, Vec<usize>>,
}

impl<'a> Universe<'a> {
    pub(super) fn new(all: &'a [RpmPackage], arches: &[&str]) -> Self {
        let packages: Vec<_> = all
            .iter()
            .filter(|p| arches.contains(&p.arch.as_str()))
            .collect();
        let mut index: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, p) in packages.iter().enumerate() {
            let names = std::iter::once(p.name.as_str())
                .chain(p.provides.iter().map(|d| d.name.as_str()))
                .chain(p.files.iter().map(String::as_str));
            for name in names {
                let list = index.entry(name).or_default();
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
        Universe {
            packages,
            arches: arches.iter().map(|a| a.to_string()).collect(),
            index,
        }
    }

    /// The packages that satisfy a simple (not rich) dependency.
    pub(super) fn providers(&self, dep: &Dep) -> Vec<usize> {
        let candidates = self
            .index
            .get(dep.name.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        candidates
            .iter()
            .copied()
            .filter(|&i| provides(self.packages[i], dep))
            .collect()
    }

    /// The packages called `name`.
    pub(super) fn named(&self, name: &str) -> Vec<usize> {
        let candidates = self.index.get(name).map(Vec::as_slice).unwrap_or_default();
        candidates
            .iter()
            .copied()
            .filter(|&i| self.packages[i].name == name)
            .collect()
    }

    /// Orders candidates best first: higher EVR, then name, then the
    /// earlier arch in the allowed list.
    pub(super) fn better(&self, a: usize, b: usize) -> Ordering {
        let (pa, pb) = (self.packages[a], self.packages[b]);
        let arch = |p: &RpmPackage| self.arches.iter().position(|x| *x == p.arch);
        compare(&pb.evr, &pa.evr)
            .then_with(|| pa.name.cmp(&pb.name))
            .then_with(|| arch(pa).cmp(&arch(pb)))
    }
}

/// Whether one package satisfies a simple dependency: through its name (rpm
/// packages provide `name = epoch:version-release`), a provide, or a file.
pub(super) fn provides(p: &RpmPackage, dep: &Dep) -> bool {
    let wanted = dep.range();
    if p.name == dep.name && overlaps(Some((Flags::Eq, &p.evr)), wanted) {
        return true;
    }
    let provided = p
        .provides
        .iter()
        .any(|d| d.name == dep.name && overlaps(d.range(), wanted));
    provided || (dep.name.starts_with('/') && p.files.contains(&dep.name))
}
