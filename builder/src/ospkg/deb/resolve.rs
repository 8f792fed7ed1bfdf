//! The dependency closure apt would install, over Pre-Depends and Depends:
//! a relation already satisfied by a chosen package (or a provider of it)
//! needs nothing; otherwise its first alternative that some package can
//! satisfy wins, as apt's resolver prefers. A real package beats a virtual
//! one's providers, and the highest allowed version wins. Conflicts and
//! Breaks are not considered: the sets hold a distribution's own packages.

use super::packages::DebPackage;
use super::relation::{Alternative, Relation};
use std::collections::{BTreeMap, HashMap, VecDeque};

pub struct Universe {
    pub pkgs: Vec<DebPackage>,
    by_name: HashMap<String, Vec<usize>>,
    providers: HashMap<String, Vec<usize>>,
}

/// A chosen package and why.
#[derive(Debug, Clone)]
pub struct Chosen {
    pub index: usize,
    pub reason: String,
}

impl Universe {
    pub fn new(pkgs: Vec<DebPackage>) -> Universe {
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        let mut providers: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, p) in pkgs.iter().enumerate() {
            by_name.entry(p.name.clone()).or_default().push(i);
            for prov in &p.provides {
                providers.entry(prov.name.clone()).or_default().push(i);
            }
        }
        Universe {
            pkgs,
            by_name,
            providers,
        }
    }

    /// The packages to carry: the closure of `wanted` minus the closure of
    /// the minimal base (`base` plus every Essential or required package).
    pub fn closure(&self, wanted: &[String], base: &[String]) -> Result<Vec<Chosen>, String> {
        let mut roots: Vec<String> = base.to_vec();
        roots.extend(
            self.pkgs
                .iter()
                .filter(|p| p.essential)
                .map(|p| p.name.clone()),
        );
        roots.sort();
        roots.dedup();
        let mut chosen = Selection::default();
        self.resolve(&roots, "the minimal base", &mut chosen)
            .map_err(|e| format!("{e} (resolving the declared minimal base)"))?;
        let base_count = chosen.order.len();
        self.resolve(wanted, "requested", &mut chosen)?;
        Ok(chosen.order.split_off(base_count))
    }

    fn resolve(&self, roots: &[String], why: &str, sel: &mut Selection) -> Result<(), String> {
        let mut queue: VecDeque<(Alternative, String)> = roots
            .iter()
            .map(|n| {
                (
                    Alternative {
                        name: n.clone(),
                        constraint: None,
                    },
                    why.to_string(),
                )
            })
            .collect();
        while let Some((alt, reason)) = queue.pop_front() {
            if self.satisfied(std::slice::from_ref(&alt), sel) {
                continue;
            }
            let i = self
                .candidate(&alt)
                .ok_or_else(|| format!("{alt} ({reason}) is in no repository of the source"))?;
            self.choose(i, reason, sel, &mut queue)?;
        }
        Ok(())
    }

    fn choose(
        &self,
        i: usize,
        reason: String,
        sel: &mut Selection,
        queue: &mut VecDeque<(Alternative, String)>,
    ) -> Result<(), String> {
        let p = &self.pkgs[i];
        if let Some(&other) = sel.by_name.get(&p.name) {
            return Err(format!(
                "{} and {} are both needed ({reason}); a set holds one version of a package",
                self.pkgs[other].id(),
                p.id()
            ));
        }
        sel.by_name.insert(p.name.clone(), i);
        sel.order.push(Chosen { index: i, reason });
        for rel in &p.depends {
            if self.satisfied(rel, sel) {
                continue;
            }
            let alt = rel
                .iter()
                .find(|a| self.candidate(a).is_some())
                .ok_or_else(|| {
                    format!(
                        "{} depends on {}, which no package of the source satisfies",
                        p.id(),
                        show(rel)
                    )
                })?;
            queue.push_back((alt.clone(), format!("{} depends on {}", p.name, show(rel))));
        }
        Ok(())
    }

    fn satisfied(&self, rel: &[Alternative], sel: &Selection) -> bool {
        rel.iter().any(|alt| {
            let real = sel
                .by_name
                .get(&alt.name)
                .is_some_and(|&i| alt.allows(&self.pkgs[i].version));
            let provided = self.providers.get(&alt.name).is_some_and(|ps| {
                ps.iter().any(|&i| {
                    sel.by_name.get(&self.pkgs[i].name) == Some(&i) && self.provides(i, alt)
                })
            });
            real || provided
        })
    }

    /// The highest allowed version of a real package, else the first (by
    /// name) provider of a virtual one.
    fn candidate(&self, alt: &Alternative) -> Option<usize> {
        let real = self
            .by_name
            .get(&alt.name)
            .into_iter()
            .flatten()
            .filter(|&&i| alt.allows(&self.pkgs[i].version))
            .max_by(|&&a, &&b| self.pkgs[a].version.cmp(&self.pkgs[b].version));
        if let Some(&i) = real {
            return Some(i);
        }
        let mut providers: Vec<usize> = self
            .providers
            .get(&alt.name)
            .into_iter()
            .flatten()
            .copied()
            .filter(|&i| self.provides(i, alt))
            .collect();
        providers.sort_by(|&a, &b| {
            let (pa, pb) = (&self.pkgs[a], &self.pkgs[b]);
            pa.name.cmp(&pb.name).then(pb.version.cmp(&pa.version))
        });
        providers.first().copied()
    }

    /// Debian policy: an unversioned Provides satisfies only unversioned
    /// dependencies; a versioned one is checked like a real version.
    fn provides(&self, i: usize, alt: &Alternative) -> bool {
        self.pkgs[i].provides.iter().any(|p| {
            p.name == alt.name
                && match (&alt.constraint, &p.constraint) {
                    (None, _) => true,
                    (Some(_), Some((_, v))) => alt.allows(v),
                    (Some(_), None) => false,
                }
        })
    }
}

#[derive(Default)]
struct Selection {
    by_name: BTreeMap<String, usize>,
    order: Vec<Chosen>,
}

fn show(rel: &Relation) -> String {
    rel.iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(" | ")
}

#[cfg(test)]
mod tests {
    use super::super::packages;
    use super::*;

    fn universe(text: &str) -> Universe {
        let full: String = text
            .split("\n\n")
            .map(|p| format!("{p}\nFilename: f\nSize: 1\nSHA256: {}\n", "0".repeat(64)))
            .collect::<Vec<_>>()
            .join("\n");
        Universe::new(packages::parse(&full, "amd64", 0).unwrap())
    }

    fn names(u: &Universe, c: &[Chosen]) -> Vec<String> {
        let mut v: Vec<String> = c
            .iter()
            .map(|c| format!("{} {}", u.pkgs[c.index].name, u.pkgs[c.index].version))
            .collect();
        v.sort();
        v
    }

    const REPO: &str = "Package: libc6\nVersion: 2.36-9\nArchitecture: amd64\nPriority: required\n\n\
Package: haproxy\nVersion: 2.6.12-1\nArchitecture: amd64\nPre-Depends: dpkg (>= 1.17.14)\nDepends: libc6 (>= 2.34), liblua (>= 5.3) | liblua-compat, adduser\n\n\
Package: dpkg\nVersion: 1.21.22\nArchitecture: amd64\nEssential: yes\n\n\
Package: liblua\nVersion: 5.3.6-1\nArchitecture: amd64\n\n\
Package: liblua\nVersion: 5.4.4-3\nArchitecture: amd64\n\n\
Package: liblua-compat\nVersion: 1\nArchitecture: amd64\n\n\
Package: adduser\nVersion: 3.134\nArchitecture: all\nDepends: passwd | login-utils\n\n\
Package: shadow-tools\nVersion: 1\nArchitecture: amd64\nProvides: login-utils\n\n\
Package: passwd\nVersion: 1:4.13\nArchitecture: amd64\n\n\
Package: keepalived\nVersion: 1:2.2.7\nArchitecture: amd64\nDepends: mail-transport-agent (>= 2), ipvs-tools\n\n\
Package: exim\nVersion: 4\nArchitecture: amd64\nProvides: mail-transport-agent\n\n\
Package: ipvsadm\nVersion: 1.31\nArchitecture: amd64\nProvides: ipvs-tools (= 1.31)";

    #[test]
    fn closure_minus_base_first_alternative_highest_version() {
        let u = universe(REPO);
        let set = u.closure(&["haproxy".into()], &["passwd".into()]).unwrap();
        assert_eq!(
            names(&u, &set),
            ["adduser 3.134", "haproxy 2.6.12-1", "liblua 5.4.4-3"]
        );
        let why = &set
            .iter()
            .find(|c| u.pkgs[c.index].name == "liblua")
            .unwrap()
            .reason;
        assert!(
            why.contains("haproxy depends on liblua (>= 5.3) | liblua-compat"),
            "{why}"
        );
    }

    #[test]
    fn virtual_packages_and_missing_dependencies() {
        let u = universe(REPO);
        let set = u.closure(&["adduser".into()], &[]).unwrap();
        assert_eq!(names(&u, &set), ["adduser 3.134", "passwd 1:4.13"]);
        let err = u.closure(&["keepalived".into()], &[]).unwrap_err();
        assert!(
            err.contains("keepalived 1:2.2.7 (amd64) depends on mail-transport-agent (>= 2)"),
            "{err}"
        );
        let err = u.closure(&["nosuch".into()], &[]).unwrap_err();
        assert!(err.contains("nosuch (requested)"), "{err}");
        let err = u
            .closure(&["haproxy".into()], &["nosuch-base".into()])
            .unwrap_err();
        assert!(err.contains("minimal base"), "{err}");
    }

    #[test]
    fn versioned_provides_satisfy_versioned_dependencies() {
        let u = universe(&format!(
            "{REPO}\n\nPackage: lb\nVersion: 1\nArchitecture: all\nDepends: ipvs-tools (>= 1.30)"
        ));
        let set = u.closure(&["lb".into()], &[]).unwrap();
        assert_eq!(names(&u, &set), ["ipvsadm 1.31", "lb 1"]);
    }
}
