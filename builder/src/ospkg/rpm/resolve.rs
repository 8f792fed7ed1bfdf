//! The packages to carry: the closure of the wanted packages over Requires,
//! less the closure of the declared base (assumed installed).
//!
//! Greedy and breadth first, requirements in metadata order. A requirement
//! already met by a chosen or base package adds nothing. Otherwise, among the
//! packages that meet it: one whose name is not chosen yet in another
//! version, then one named as required, then the highest EVR, then by name.
//! One version per name: when a requirement can only be met by another
//! version of a chosen name, that requirement is pinned on the name and the
//! whole resolution starts again, every choice of the name now taking the
//! highest EVR that meets all its pins. Each restart adds a pin, so it ends.
//! A base package may be carried in another version (an upgrade at install
//! time) when a wanted package needs it; that base version then stops counting.

use super::package::{Dep, RpmPackage};
use super::rich::{self, Rich};
use super::universe::{provides, Universe};
use super::RpmError;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Closure<'a> {
    /// The packages to carry, sorted by name.
    pub packages: Vec<Pick<'a>>,
    /// The closure of the base, assumed installed, sorted by name.
    pub base: Vec<&'a RpmPackage>,
    /// Wanted names the base already holds, so not carried.
    pub wanted_in_base: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pick<'a> {
    pub package: &'a RpmPackage,
    /// The first requirement that pulled the package in.
    pub reason: Reason,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    Wanted,
    Required {
        /// The requiring package, `name-evr.arch`.
        by: String,
        /// The requirement as written, e.g. `libfoo >= 1.3`.
        requires: String,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Wanted => f.write_str("wanted"),
            Reason::Required { by, requires } => write!(f, "{by} requires {requires}"),
        }
    }
}

/// Resolves `wanted` over the packages of `universe` whose arch is in
/// `arches`, taking `base` (and its closure) as installed.
pub fn closure<'a>(
    universe: &'a [RpmPackage],
    arches: &[&str],
    wanted: &[&str],
    base: &[&str],
) -> Result<Closure<'a>, RpmError> {
    let u = Universe::new(universe, arches);
    let mut pins = Pins::new();
    loop {
        match attempt(&u, &pins, wanted, base) {
            Ok(closure) => return Ok(closure),
            Err(Stop::Fail(e)) => return Err(e),
            Err(Stop::Restart(restart)) => {
                let (name, pin) = *restart;
                let list = pins.entry(name.clone()).or_default();
                if list.iter().any(|p| p.dep == pin.dep) {
                    // Unreachable while pins are honoured; never loop.
                    return Err(no_version(&name, list, Some(&pin)));
                }
                list.push(pin);
            }
        }
    }
}

/// Requirements that every version chosen for a name must meet.
type Pins = BTreeMap<String, Vec<Pin>>;

#[derive(Clone, Debug)]
struct Pin {
    dep: Dep,
    /// `<requirement>, required by <nevra>`, for the error message.
    text: String,
}

enum Stop {
    /// Pin this requirement on this name and start again.
    Restart(Box<(String, Pin)>),
    Fail(RpmError),
}

impl From<RpmError> for Stop {
    fn from(e: RpmError) -> Self {
        Stop::Fail(e)
    }
}

fn no_version(name: &str, pins: &[Pin], extra: Option<&Pin>) -> RpmError {
    RpmError::NoVersion {
        name: name.to_string(),
        constraints: pins.iter().chain(extra).map(|p| p.text.clone()).collect(),
    }
}

fn attempt<'a>(
    u: &Universe<'a>,
    pins: &Pins,
    wanted: &[&str],
    base: &[&str],
) -> Result<Closure<'a>, Stop> {
    let mut run = Run::new(u, pins, None);
    run.roots(base, "base")?;
    run.drain()?;
    let installed = run.chosen;
    let mut run = Run::new(u, pins, Some(&installed));
    run.roots(wanted, "wanted")?;
    run.drain()?;
    let mut packages: Vec<_> = run
        .chosen
        .order
        .into_iter()
        .map(|(i, reason)| Pick {
            package: u.packages[i],
            reason,
        })
        .collect();
    packages.sort_by(|a, b| by_name(a.package, b.package));
    let mut base: Vec<_> = installed
        .order
        .iter()
        .map(|&(i, _)| u.packages[i])
        .collect();
    base.sort_by(|a, b| by_name(a, b));
    Ok(Closure {
        packages,
        base,
        wanted_in_base: run.in_base,
    })
}

fn by_name(a: &RpmPackage, b: &RpmPackage) -> std::cmp::Ordering {
    a.name.cmp(&b.name).then_with(|| a.arch.cmp(&b.arch))
}

/// The packages one run has chosen.
#[derive(Default)]
struct Chosen {
    by_name: HashMap<String, usize>,
    order: Vec<(usize, Reason)>,
}

impl Chosen {
    fn has(&self, i: usize, u: &Universe) -> bool {
        self.by_name.get(&u.packages[i].name) == Some(&i)
    }
}

/// One closure: of the base (no `installed`) or of the wanted packages.
struct Run<'r, 'a> {
    u: &'r Universe<'a>,
    pins: &'r Pins,
    installed: Option<&'r Chosen>,
    chosen: Chosen,
    queue: VecDeque<usize>,
    in_base: Vec<String>,
}

impl<'r, 'a> Run<'r, 'a> {
    fn new(u: &'r Universe<'a>, pins: &'r Pins, installed: Option<&'r Chosen>) -> Self {
        Run {
            u,
            pins,
            installed,
            chosen: Chosen::default(),
            queue: VecDeque::new(),
            in_base: Vec::new(),
        }
    }

    fn roots(&mut self, names: &[&str], list: &'static str) -> Result<(), Stop> {
        for &name in names {
            if self.installed.is_some_and(|b| b.by_name.contains_key(name)) {
                self.in_base.push(name.to_string());
                continue;
            }
            if self.chosen.by_name.contains_key(name) {
                continue;
            }
            let all = self.u.named(name);
            if all.is_empty() {
                let name = name.to_string();
                return Err(RpmError::UnknownPackage { list, name }.into());
            }
            let best = self.best(all, None)?;
            self.add(best, Reason::Wanted);
        }
        Ok(())
    }

    fn drain(&mut self) -> Result<(), Stop> {
        while let Some(i) = self.queue.pop_front() {
            let p = self.u.packages[i];
            for dep in &p.requires {
                if dep.name.starts_with("rpmlib(") {
                    continue; // met by rpm itself
                }
                if !dep.is_rich() {
                    self.simple(i, dep, None)?;
                    continue;
                }
                let tree = rich::parse(&dep.name).map_err(|reason| RpmError::RichDependency {
                    package: p.nevra(),
                    dependency: dep.to_string(),
                    reason,
                })?;
                self.rich(i, dep, &tree)?;
            }
        }
        Ok(())
    }

    /// A simple requirement of package `from`; `whole` is the rich
    /// dependency it is part of, if any.
    fn simple(&mut self, from: usize, dep: &Dep, whole: Option<&Dep>) -> Result<(), Stop> {
        let candidates = self.u.providers(dep);
        if candidates.iter().any(|&i| self.installed_or_chosen(i)) {
            return Ok(());
        }
        let by = self.u.packages[from].nevra();
        let requires = match whole {
            Some(whole) => format!("{dep} (in {whole})"),
            None => dep.to_string(),
        };
        if candidates.is_empty() {
            return Err(RpmError::Unsatisfied {
                package: by,
                requires,
            }
            .into());
        }
        let pin = Pin {
            dep: dep.clone(),
            text: format!("{requires}, required by {by}"),
        };
        let best = self.best(candidates, Some(&pin))?;
        let name = &self.u.packages[best].name;
        if self.chosen.by_name.contains_key(name) {
            return Err(Stop::Restart(Box::new((name.clone(), pin))));
        }
        self.add(best, Reason::Required { by, requires });
        Ok(())
    }

    fn rich(&mut self, from: usize, whole: &Dep, tree: &Rich) -> Result<(), Stop> {
        match tree {
            Rich::Dep(dep) => self.simple(from, dep, Some(whole)),
            Rich::And(parts) => parts
                .iter()
                .try_for_each(|part| self.rich(from, whole, part)),
            Rich::Or(parts) => {
                if parts.iter().any(|part| self.holds(part, true)) {
                    return Ok(());
                }
                match parts.iter().find(|part| self.holds(part, false)) {
                    Some(part) => self.rich(from, whole, part),
                    None => Err(RpmError::Unsatisfied {
                        package: self.u.packages[from].nevra(),
                        requires: whole.to_string(),
                    }
                    .into()),
                }
            }
        }
    }

    /// Whether a rich term is met by chosen or base packages (`now`), or
    /// could be met by some package at all.
    fn holds(&self, tree: &Rich, now: bool) -> bool {
        match tree {
            Rich::Dep(dep) => {
                let mut candidates = self.u.providers(dep).into_iter();
                if now {
                    candidates.any(|i| self.installed_or_chosen(i))
                } else {
                    candidates.next().is_some()
                }
            }
            Rich::And(parts) => parts.iter().all(|part| self.holds(part, now)),
            Rich::Or(parts) => parts.iter().any(|part| self.holds(part, now)),
        }
    }

    fn installed_or_chosen(&self, i: usize) -> bool {
        if self.chosen.has(i, self.u) {
            return true;
        }
        let name = &self.u.packages[i].name;
        self.installed.is_some_and(|b| b.has(i, self.u)) && !self.chosen.by_name.contains_key(name)
    }

    /// The preferred candidate that meets the pins of its name.
    fn best(&self, mut candidates: Vec<usize>, pin: Option<&Pin>) -> Result<usize, Stop> {
        let u = self.u;
        let wanted_name = pin.map(|p| p.dep.name.as_str());
        let key = |i: usize| {
            let name = u.packages[i].name.as_str();
            (
                self.chosen.by_name.contains_key(name),
                Some(name) != wanted_name,
            )
        };
        candidates.sort_by(|&a, &b| key(a).cmp(&key(b)).then_with(|| u.better(a, b)));
        let first = candidates[0];
        let meets_pins = |&i: &usize| {
            let pins = self
                .pins
                .get(&u.packages[i].name)
                .map(Vec::as_slice)
                .unwrap_or_default();
            pins.iter().all(|p| provides(u.packages[i], &p.dep))
        };
        candidates.into_iter().find(meets_pins).ok_or_else(|| {
            let name = &u.packages[first].name;
            let pins = self.pins.get(name).map(Vec::as_slice).unwrap_or_default();
            Stop::Fail(no_version(name, pins, pin))
        })
    }

    fn add(&mut self, i: usize, reason: Reason) {
        self.chosen
            .by_name
            .insert(self.u.packages[i].name.clone(), i);
        self.chosen.order.push((i, reason));
        self.queue.push_back(i);
    }
}
