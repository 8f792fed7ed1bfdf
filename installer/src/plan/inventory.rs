//! The kubeasz hosts file (Ansible INI inventory), with the file and line of
//! every value kept for error messages.
//!
//! Supported: `[group]` host lines with `key=value` variables (quoted or not),
//! `[group:vars]`, `[group:children]`, `#`/`;` comments (so commented-out hosts
//! are skipped), and kubeasz's dashed group names (`kube-master`, `ex-lb`).

use crate::plan::error::{Origin, PlanError, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub text: String,
    pub origin: Origin,
}

impl Value {
    /// True when the value holds Jinja that ferry does not evaluate.
    pub fn is_jinja(&self) -> bool {
        self.text.contains("{{") || self.text.contains("{%")
    }
}

/// A host as it appears in the inventory, with the variables of all its lines.
#[derive(Debug, Clone)]
pub struct InvHost {
    /// First token of its line (an IP or a name).
    pub host: String,
    /// Where the host first appears.
    pub origin: Origin,
    /// Variables written on the host's own lines (later lines win).
    pub vars: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub path: PathBuf,
    /// Hosts in order of first appearance.
    pub hosts: Vec<InvHost>,
    /// Group name (normalised: `-` -> `_`) -> host names, with the line of each membership.
    pub groups: BTreeMap<String, Vec<(String, Origin)>>,
    /// `[group:vars]`, including `all`.
    pub group_vars: BTreeMap<String, BTreeMap<String, Value>>,
    /// `[group:children]`: group -> child groups.
    pub children: BTreeMap<String, Vec<String>>,
    /// Where each `[group]` header is (first occurrence).
    pub group_lines: BTreeMap<String, Origin>,
}

enum Section {
    Hosts(String),
    Vars(String),
    Children(String),
}

/// kubeasz has used both `kube-master` and `kube_master`; treat them as one.
fn normalise_group(name: &str) -> String {
    name.trim().replace('-', "_")
}

/// A `[group]`, `[group:vars]` or `[group:children]` header.
fn parse_header(line: &str, origin: &Origin) -> Result<Section> {
    let Some(inner) = line.strip_prefix('[').and_then(|l| l.split(']').next()) else {
        return Err(PlanError::invalid(
            origin.clone(),
            format!("malformed section header `{line}`"),
        ));
    };
    if !line.contains(']') {
        return Err(PlanError::invalid(
            origin.clone(),
            format!("malformed section header `{line}`: missing `]`"),
        ));
    }
    Ok(match inner.split_once(':') {
        Some((g, "vars")) => Section::Vars(normalise_group(g)),
        Some((g, "children")) => Section::Children(normalise_group(g)),
        Some((_, other)) => {
            return Err(PlanError::invalid(
                origin.clone(),
                format!("unknown section kind `:{other}` (expected `:vars` or `:children`)"),
            ))
        }
        None => Section::Hosts(normalise_group(inner)),
    })
}

impl Inventory {
    /// Drops `hosts` (inventory names) from the hosts and every group.
    pub fn exclude(&mut self, hosts: &std::collections::BTreeSet<String>) {
        if hosts.is_empty() {
            return;
        }
        self.hosts.retain(|h| !hosts.contains(&h.host));
        for members in self.groups.values_mut() {
            members.retain(|(h, _)| !hosts.contains(h));
        }
    }

    pub fn load(path: &Path) -> Result<Inventory> {
        let text = std::fs::read_to_string(path).map_err(|e| PlanError::io(path, e))?;
        Inventory::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Inventory> {
        let mut inv = Inventory {
            path: path.to_path_buf(),
            ..Default::default()
        };
        let mut section = Section::Hosts("ungrouped".to_string());
        for (idx, raw) in text.lines().enumerate() {
            let line_no = idx + 1;
            let origin = Origin::new(path, line_no);
            if let Some(c) = raw.chars().find(|c| c.is_control() && *c != '\t') {
                return Err(PlanError::invalid(origin, control_character(c)));
            }
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with('[') {
                section = parse_header(line, &origin)?;
                if let Section::Hosts(g) = &section {
                    inv.groups.entry(g.clone()).or_default();
                    inv.group_lines.entry(g.clone()).or_insert(origin);
                }
                continue;
            }
            match &section {
                Section::Vars(group) => inv.vars_line(group, line, origin)?,
                Section::Children(group) => inv.children_line(group, line, origin)?,
                Section::Hosts(group) => inv.host_line(group, line, origin)?,
            }
        }
        Ok(inv)
    }

    /// `key=value` in `[group:vars]`; the value loses one level of quotes.
    fn vars_line(&mut self, group: &str, line: &str, origin: Origin) -> Result<()> {
        let (k, v) = split_assignment(line).ok_or_else(|| {
            PlanError::invalid(
                origin.clone(),
                format!("expected `key=value` in [{group}:vars], found `{line}`"),
            )
        })?;
        let value = unquote(v.trim()).map_err(|m| PlanError::invalid(origin.clone(), m))?;
        self.group_vars
            .entry(group.to_string())
            .or_default()
            .insert(
                k.trim().to_string(),
                Value {
                    text: value,
                    origin,
                },
            );
        Ok(())
    }

    /// A child group's name in `[group:children]`.
    fn children_line(&mut self, group: &str, line: &str, origin: Origin) -> Result<()> {
        let child = tokenize(line).map_err(|m| PlanError::invalid(origin, m))?;
        if let Some(c) = child.first() {
            self.children
                .entry(group.to_string())
                .or_default()
                .push(normalise_group(c));
        }
        Ok(())
    }

    /// A host and its `key=value` variables in `[group]`: the host is added
    /// (or its variables merged) and made a member of the group.
    fn host_line(&mut self, group: &str, line: &str, origin: Origin) -> Result<()> {
        let tokens = tokenize(line).map_err(|m| PlanError::invalid(origin.clone(), m))?;
        let Some((host, rest)) = tokens.split_first() else {
            return Ok(());
        };
        if host.contains('[') && host.contains(':') {
            return Err(PlanError::invalid(
                origin,
                format!(
                    "host ranges like `{host}` are not supported; list each host on its own line"
                ),
            ));
        }
        let mut vars = BTreeMap::new();
        for tok in rest {
            let (k, v) = tok.split_once('=').ok_or_else(|| {
                PlanError::invalid(
                    origin.clone(),
                    format!("expected `key=value` after host `{host}`, found `{tok}`"),
                )
            })?;
            vars.insert(
                k.to_string(),
                Value {
                    text: v.to_string(),
                    origin: origin.clone(),
                },
            );
        }
        match self.hosts.iter_mut().find(|h| h.host == *host) {
            Some(h) => h.vars.extend(vars),
            None => self.hosts.push(InvHost {
                host: host.clone(),
                origin: origin.clone(),
                vars,
            }),
        }
        if group != "all" && group != "ungrouped" {
            let members = self.groups.entry(group.to_string()).or_default();
            if !members.iter().any(|(h, _)| h == host) {
                members.push((host.clone(), origin));
            }
        }
        Ok(())
    }

    pub fn host(&self, name: &str) -> Option<&InvHost> {
        self.hosts.iter().find(|h| h.host == name)
    }

    /// Hosts of a group (children included), in the order written.
    pub fn group(&self, name: &str) -> Vec<(String, Origin)> {
        let mut out: Vec<(String, Origin)> = Vec::new();
        let mut stack = vec![name.to_string()];
        let mut seen = Vec::new();
        while let Some(g) = stack.pop() {
            if seen.contains(&g) {
                continue;
            }
            seen.push(g.clone());
            for (h, o) in self.groups.get(&g).into_iter().flatten() {
                if !out.iter().any(|(x, _)| x == h) {
                    out.push((h.clone(), o.clone()));
                }
            }
            if let Some(kids) = self.children.get(&g) {
                stack.extend(kids.iter().rev().cloned());
            }
        }
        out
    }

    /// Groups a host belongs to (directly or through children), `all` last.
    pub(crate) fn groups_of(&self, host: &str) -> Vec<String> {
        let mut gs: Vec<String> = self
            .groups
            .keys()
            .filter(|g| self.group(g).iter().any(|(h, _)| h == host))
            .cloned()
            .collect();
        gs.push("all".to_string());
        gs
    }

    /// A host variable with Ansible's precedence: the host's own lines, then
    /// its groups' `:vars`, then `[all:vars]`. Empty values count as unset.
    pub fn host_var(&self, host: &str, key: &str) -> Option<&Value> {
        if let Some(v) = self.host(host).and_then(|h| h.vars.get(key)) {
            return Some(v).filter(|v| !v.text.is_empty());
        }
        for g in self.groups_of(host) {
            if let Some(v) = self.group_vars.get(&g).and_then(|vars| vars.get(key)) {
                return Some(v).filter(|v| !v.text.is_empty());
            }
        }
        None
    }

    /// An `[all:vars]` value (empty counts as unset).
    pub fn all_var(&self, key: &str) -> Option<&Value> {
        self.group_vars
            .get("all")
            .and_then(|v| v.get(key))
            .filter(|v| !v.text.is_empty())
    }
}

fn split_assignment(line: &str) -> Option<(&str, &str)> {
    let (k, v) = line.split_once('=')?;
    let k = k.trim();
    (!k.is_empty() && !k.contains(char::is_whitespace)).then_some((k, v))
}

/// Remove one level of matching quotes from a `[*:vars]` value.
/// Values reach unit files, configs and shell commands as root: no control
/// character may ride along (a newline would start a new line there).
pub fn control_character(c: char) -> String {
    format!(
        "control character U+{:04X} is not allowed; values reach unit files, configs and shell commands",
        c as u32
    )
}

fn unquote(v: &str) -> std::result::Result<String, String> {
    let toks = tokenize(v)?;
    if toks.len() == 1 && (v.starts_with('"') || v.starts_with('\'')) {
        return Ok(toks.into_iter().next().unwrap_or_default());
    }
    // An unquoted value: keep it as written, minus a trailing comment.
    let v = match v.find(" #") {
        Some(i) => v[..i].trim_end(),
        None => v,
    };
    Ok(v.to_string())
}

/// Split a host line into tokens the way Ansible's INI loader does (shell-like
/// quoting; `k='a b'` is one token `k=a b`; a token starting with `#` ends the line).
fn tokenize(line: &str) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_tok = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) if c == '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            Some(_) => cur.push(c),
            None => match c {
                '"' | '\'' => {
                    quote = Some(c);
                    in_tok = true;
                }
                '#' | ';' if !in_tok => break,
                c if c.is_whitespace() => {
                    if in_tok {
                        out.push(std::mem::take(&mut cur));
                        in_tok = false;
                    }
                }
                c => {
                    cur.push(c);
                    in_tok = true;
                }
            },
        }
    }
    if let Some(q) = quote {
        return Err(format!("unterminated {q} quote"));
    }
    if in_tok {
        out.push(cur);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_refused_naming_the_line() {
        for bad in [
            "k8s_nodename=a\u{1b}[2Jb",
            "ansible_user=root\rx",
            "x=\u{0}",
        ] {
            let text = format!("[kube_master]\n192.168.1.1\n192.168.1.2 {bad}\n");
            let err = Inventory::parse(Path::new("hosts"), &text)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("hosts:3") && err.contains("control character"),
                "{err}"
            );
        }
        assert!(Inventory::parse(Path::new("hosts"), "[all]\r\n1.2.3.4\tip=1.2.3.4\r\n").is_ok());
    }

    #[test]
    fn tokenizes_quotes_and_comments() {
        assert_eq!(
            tokenize("192.168.1.1 k8s_nodename='master 01' a=\"b\" # c=d").unwrap(),
            vec!["192.168.1.1", "k8s_nodename=master 01", "a=b"]
        );
        assert!(tokenize("h a='x").is_err());
    }

    #[test]
    fn precedence_and_lines() {
        let text = "[all]\nh1 ip=10.0.0.1\n[etcd]\nh1 NODE_NAME=e1\n#h2\n[kube-master]\nh1\n[kube_master:vars]\nx=\"g\"\n[all:vars]\nx=a\nansible_user='admin'\n";
        let inv = Inventory::parse(Path::new("hosts"), text).unwrap();
        assert_eq!(inv.hosts.len(), 1);
        assert_eq!(inv.host_var("h1", "NODE_NAME").unwrap().origin.line, 4);
        assert_eq!(inv.host_var("h1", "x").unwrap().text, "g");
        assert_eq!(inv.host_var("h1", "ansible_user").unwrap().text, "admin");
        assert_eq!(inv.group("kube_master").len(), 1);
    }

    #[test]
    fn kubeasz_dashed_groups_and_quoted_vars() {
        // The older kubeasz layout: dashed group names, NODE_NAME on etcd, quoted [all:vars].
        let text = "[etcd]\n192.168.122.100 NODE_NAME=etcd1\n[kube-master]\n192.168.122.100\n[kube-node]\n192.168.122.105\n[harbor]\n192.168.122.188 HARBOR_DOMAIN=\"harbor.deepmap.lo\" NEW_INSTALL=yes\n[ex-lb]\n192.168.122.200 LB_ROLE=backup EX_APISERVER_VIP=192.168.122.250 EX_APISERVER_PORT=8443\n[all:vars]\nCONTAINER_RUNTIME=\"docker\"\nCLUSTER_DNS_DOMAIN=\"cluster.local.\"\n";
        let inv = Inventory::parse(Path::new("hosts.multi-node"), text).unwrap();
        assert_eq!(inv.group("kube_master").len(), 1);
        assert_eq!(inv.group("ex_lb")[0].1.line, 10);
        assert_eq!(
            inv.host_var("192.168.122.100", "NODE_NAME").unwrap().text,
            "etcd1"
        );
        assert_eq!(
            inv.host_var("192.168.122.188", "HARBOR_DOMAIN")
                .unwrap()
                .text,
            "harbor.deepmap.lo"
        );
        assert_eq!(
            inv.host_var("192.168.122.200", "EX_APISERVER_PORT")
                .unwrap()
                .text,
            "8443"
        );
        assert_eq!(inv.all_var("CONTAINER_RUNTIME").unwrap().text, "docker");
        assert_eq!(inv.all_var("CLUSTER_DNS_DOMAIN").unwrap().origin.line, 13);
    }
}
