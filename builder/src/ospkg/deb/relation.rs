//! Relationship fields (Depends, Pre-Depends, Provides): `a (>= 1) | b:any
//! [amd64], c`. A relation is a list of alternatives; architecture
//! restrictions are applied here, so what remains holds for one architecture.

use debversion::Version;
use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alternative {
    pub name: String,
    pub constraint: Option<(Op, Version)>,
}

impl Alternative {
    pub fn allows(&self, v: &Version) -> bool {
        let Some((op, want)) = &self.constraint else {
            return true;
        };
        let ord = v.cmp(want);
        match op {
            Op::Lt => ord == Ordering::Less,
            Op::Le => ord != Ordering::Greater,
            Op::Eq => ord == Ordering::Equal,
            Op::Ge => ord != Ordering::Less,
            Op::Gt => ord == Ordering::Greater,
        }
    }
}

impl std::fmt::Display for Alternative {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)?;
        if let Some((op, v)) = &self.constraint {
            let op = match op {
                Op::Lt => "<<",
                Op::Le => "<=",
                Op::Eq => "=",
                Op::Ge => ">=",
                Op::Gt => ">>",
            };
            write!(f, " ({op} {v})")?;
        }
        Ok(())
    }
}

/// One relation: any alternative satisfies it.
pub type Relation = Vec<Alternative>;

/// Parses a relationship field for `arch`. Alternatives restricted away from
/// `arch` are dropped; a relation left with none is dropped.
pub fn parse(field: &str, arch: &str) -> Result<Vec<Relation>, String> {
    let mut out = Vec::new();
    for rel in field.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        let mut alts = Vec::new();
        for alt in rel.split('|') {
            if let Some(a) = alternative(alt.trim(), arch)? {
                alts.push(a);
            }
        }
        if !alts.is_empty() {
            out.push(alts);
        }
    }
    Ok(out)
}

fn alternative(text: &str, arch: &str) -> Result<Option<Alternative>, String> {
    let bad = || format!("relation {text:?} is malformed");
    let (head, archs) = match text.split_once('[') {
        Some((h, rest)) => (h, Some(rest.split_once(']').ok_or_else(bad)?.0)),
        None => (text, None),
    };
    if let Some(list) = archs {
        if !arch_matches(list, arch) {
            return Ok(None);
        }
    }
    // Build profiles (`<!nocheck>`) follow everything else.
    let head = match head.rfind(')') {
        Some(close) => &head[..=close],
        None => head.split('<').next().unwrap_or_default(),
    }
    .trim();
    let (name, constraint) = match head.split_once('(') {
        Some((n, c)) => (
            n.trim(),
            Some(constraint(c.trim_end().strip_suffix(')').ok_or_else(bad)?).ok_or_else(bad)?),
        ),
        None => (head, None),
    };
    // `:any` and `:native` qualify Multi-Arch resolution; one architecture
    // plus `all` is what a bundle set holds, so the bare name is what counts.
    let name = name.split(':').next().unwrap_or_default();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok(Some(Alternative {
        name: name.to_string(),
        constraint,
    }))
}

fn constraint(text: &str) -> Option<(Op, Version)> {
    let text = text.trim();
    let (op, rest) = [
        ("<<", Op::Lt),
        ("<=", Op::Le),
        (">=", Op::Ge),
        (">>", Op::Gt),
        ("=", Op::Eq),
        ("<", Op::Le),
        (">", Op::Ge),
    ]
    .iter()
    .find_map(|(s, op)| text.strip_prefix(s).map(|r| (*op, r)))?;
    Some((op, rest.trim().parse().ok()?))
}

/// `[amd64 arm64]` lists the architectures; `[!amd64]` those excluded.
fn arch_matches(list: &str, arch: &str) -> bool {
    let items: Vec<&str> = list.split_whitespace().collect();
    if items.iter().all(|i| i.starts_with('!')) {
        !items.iter().any(|i| &i[1..] == arch)
    } else {
        items.contains(&arch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn alternatives_versions_and_qualifiers() {
        let rels = parse("libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0, python3:any, foo [!amd64], bar [amd64]", "amd64").unwrap();
        assert_eq!(rels.len(), 4);
        assert_eq!(rels[0][0].name, "libc6");
        assert!(rels[0][0].allows(&v("2.36-9")) && !rels[0][0].allows(&v("2.31-13")));
        assert_eq!(rels[1].len(), 2);
        assert_eq!(rels[1][1].to_string(), "debconf-2.0");
        assert_eq!(rels[2][0].name, "python3");
        assert_eq!(rels[3][0].name, "bar");
    }

    #[test]
    fn operators_follow_debian_ordering() {
        let r = &parse(
            "a (<< 1.0~rc1), b (= 1:2.0-1), c (>> 1.0) <!nocheck>, d (<= 2)",
            "arm64",
        )
        .unwrap();
        assert!(r[3][0].allows(&v("2")) && !r[3][0].allows(&v("2.1")));
        assert!(r[0][0].allows(&v("1.0~beta")) && !r[0][0].allows(&v("1.0")));
        assert!(r[1][0].allows(&v("1:2.0-1")) && !r[1][0].allows(&v("2.0-1")));
        assert!(r[2][0].allows(&v("1.0+b1")) && !r[2][0].allows(&v("1.0")));
    }

    #[test]
    fn malformed_relations_are_errors() {
        assert!(parse("a (>= 1", "amd64").is_err());
        assert!(parse("a (~ 1)", "amd64").is_err());
        assert!(parse("a b", "amd64").is_err());
    }
}
