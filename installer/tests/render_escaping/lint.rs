//! Every `{{ ... }}` of every template ends in the escaping filter of its
//! output format, applied to the whole expression, where the format allows
//! it; or it is a value typed in Rust as a number (or built only from typed
//! values), listed in [`BARE`] with the reason.

use ferry_installer::plan::render::TEMPLATES;
use std::collections::BTreeSet;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Format {
    /// systemd units and drop-ins.
    Unit,
    /// YAML, JSON and TOML.
    Data,
    /// haproxy, keepalived, chrony, sysctl, modules-load: no quoting relied on.
    Conf,
}

fn format_of(name: &str) -> Format {
    if name.starts_with("systemd/") {
        Format::Unit
    } else if name.ends_with(".yaml") || name.ends_with(".toml") || name == "kubernetes/kubeconfig"
    {
        Format::Data
    } else {
        Format::Conf
    }
}

/// Expressions written as they are, and why nothing in them needs escaping.
const BARE: &[(&str, &str)] = &[
    ("lb.maxconn", "u32: EX_LB_MAXCONN, or LOCAL_LB_MAXCONN (render/access.rs)"),
    ("lb.nofile", "u64 from open_files_for (render/access.rs)"),
    ("lb.port", "u16: Cluster::lb_port, or LOCAL_LB_PORT"),
    ("lb.router_id", "u32 from router_id (render/access.rs)"),
    ("lb.priority", "an integer from lb_ctx (render/access.rs)"),
    ("cluster.apiserver_port", "u16: Cluster::apiserver_port"),
    ("dns.replicas", "the integer 2 of templates_ctx (render/addon_manifests.rs)"),
    ("kubelet.max_pods", "u32: MAX_PODS"),
    (
        "dns.bind | join(\" \")",
        "Ipv4Addr values (templates_ctx), inside the Corefile, which has no quoting",
    ),
    (
        "server",
        "kubeconfig: https://<Ipv4Addr>:<u16> (Cluster::apiserver_endpoint); readers of the kubeconfig take it as text",
    ),
    ("ca_data", "kubeconfig: base64 of a certificate"),
    ("cert_data", "kubeconfig: base64 of a certificate"),
    ("key_data", "kubeconfig: base64 of a key"),
];

/// One `{{ ... }}` and where it stands.
struct Site<'a> {
    template: &'a str,
    line: &'a str,
    expr: &'a str,
    /// The line's text before `{{` and after `}}`.
    before: &'a str,
    after: &'a str,
}

impl Site<'_> {
    fn fail(&self, why: &str) -> String {
        format!(
            "{}: {{{{ {} }}}} {why}\n  in: {}",
            self.template, self.expr, self.line
        )
    }
}

/// The characters of `expr` outside strings and parentheses.
fn top_level(expr: &str) -> Vec<(usize, char)> {
    let (mut depth, mut quote) = (0usize, None);
    let mut out = Vec::new();
    for (i, c) in expr.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '(' | '[') => depth += 1,
            (None, ')' | ']') => depth = depth.saturating_sub(1),
            (None, c) if depth == 0 => out.push((i, c)),
            _ => {}
        }
    }
    out
}

/// The last filter applied to the whole expression, if any.
fn final_filter(expr: &str) -> Option<&str> {
    let top = top_level(expr);
    let (bar, _) = top.iter().rev().find(|(_, c)| *c == '|')?;
    let head: String = top
        .iter()
        .filter(|(i, _)| i < bar)
        .map(|(_, c)| *c)
        .collect();
    let operator = head.contains(['~', '+', '-', '*', '/', '%'])
        || head
            .split(|c: char| !c.is_alphanumeric() && c != '_')
            .any(|w| ["if", "else", "and", "or", "not", "in", "is"].contains(&w));
    let name = expr[bar + 1..].trim();
    let plain = name.chars().all(|c| c.is_ascii_lowercase() || c == '_');
    (!operator && plain).then_some(name)
}

/// Whether a line sits inside a YAML block scalar (`key: |`), by indentation.
struct BlockScalar {
    indent: Option<usize>,
}

impl BlockScalar {
    fn inside(&mut self, line: &str) -> bool {
        let indent = line.len() - line.trim_start().len();
        if let Some(i) = self.indent {
            if line.trim().is_empty() || indent > i {
                return true;
            }
            self.indent = None;
        }
        let t = line.trim_end();
        if t.ends_with(": |") || t.ends_with(": |-") || t.ends_with(": >") {
            self.indent = Some(indent);
        }
        false
    }
}

fn check_unit(s: &Site, filter: &str, in_exec: bool) -> Result<(), String> {
    let whole_word = s.after.is_empty() || s.after.starts_with(char::is_whitespace);
    let ok = match filter {
        "comment" => s.before.trim_start().starts_with('#'),
        // Free text: a description, or a timer's calendar event (typed as
        // one: Kind::Calendar; systemd expands no specifiers there).
        "systemd_text" => s.before.starts_with("Description=") || s.before == "OnCalendar=",
        "systemd_env" => s.before == "Environment=" && whole_word,
        "systemd_path" => s.before.starts_with("WorkingDirectory=") && whole_word,
        "systemd_exec" => {
            s.before.starts_with("Exec")
                && s.before.ends_with('=')
                && !s.before.contains(' ')
                && whole_word
        }
        "systemd_arg" => in_exec && s.before.ends_with(char::is_whitespace) && whole_word,
        _ => false,
    };
    ok.then_some(())
        .ok_or_else(|| s.fail(&format!("is not a place for `{filter}`")))
}

fn check_data(s: &Site, filter: &str, in_block: bool) -> Result<(), String> {
    // `[host."..."]`: a quoted part of a TOML dotted key; YAML has no such thing.
    let key_part = s.template.ends_with(".toml") && s.before.ends_with('.');
    let ok = match filter {
        "comment" => s.before.trim_start().starts_with('#'),
        "conf_token" => in_block,
        "tojson" => {
            s.before.trim_start().starts_with('#')
                || (s.before.trim().is_empty()
                    || key_part
                    || s.before.ends_with([' ', '[', '{', ',']))
                    && (s.after.is_empty() || s.after.starts_with([',', ']', '}', ':']))
        }
        _ => false,
    };
    ok.then_some(())
        .ok_or_else(|| s.fail(&format!("is not a place for `{filter}`")))
}

fn check_conf(s: &Site, filter: &str) -> Result<(), String> {
    let ok = match filter {
        "comment" => s.before.trim_start().starts_with('#'),
        "conf_token" => true,
        _ => false,
    };
    ok.then_some(())
        .ok_or_else(|| s.fail(&format!("is not a place for `{filter}`")))
}

/// Checks one template; returns the [`BARE`] expressions it uses.
fn lint(template: &str, src: &str) -> Result<BTreeSet<&'static str>, Vec<String>> {
    let format = format_of(template);
    let (mut problems, mut bare) = (Vec::new(), BTreeSet::new());
    let mut block = BlockScalar { indent: None };
    let mut in_exec = false;
    for line in src.lines() {
        let in_block = block.inside(line);
        let starts_exec = line.starts_with("Exec");
        let mut rest = line;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            let Some(close) = rest[open..].find("}}") else {
                problems.push(format!("{template}: a {{{{ ... }}}} spans lines: {line}"));
                break;
            };
            let site = Site {
                template,
                line,
                expr: rest[open + 2..open + close].trim().trim_matches('-').trim(),
                before: &line[..offset + open],
                after: &rest[open + close + 2..],
            };
            if let Some((b, _)) = BARE.iter().find(|(b, _)| *b == site.expr) {
                bare.insert(*b);
            } else {
                let checked = match final_filter(site.expr) {
                    None => Err(site.fail("is neither escaped nor a typed value of BARE")),
                    Some(f) => match format {
                        Format::Unit => check_unit(&site, f, in_exec || starts_exec),
                        Format::Data => check_data(&site, f, in_block),
                        Format::Conf => check_conf(&site, f),
                    },
                };
                problems.extend(checked.err());
            }
            offset += open + close + 2;
            rest = &rest[open + close + 2..];
        }
        if !line.trim_start().starts_with("{%") {
            in_exec = (starts_exec || in_exec) && line.ends_with('\\');
        }
    }
    match problems.is_empty() {
        true => Ok(bare),
        false => Err(problems),
    }
}

#[test]
fn every_template_value_is_escaped_for_its_format() {
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for (name, src) in TEMPLATES {
        match lint(name, src) {
            Ok(b) => used.extend(b),
            Err(p) => problems.extend(p),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let unused: Vec<&str> = BARE
        .iter()
        .map(|(b, _)| *b)
        .filter(|b| !used.contains(b))
        .collect();
    assert!(
        unused.is_empty(),
        "BARE lists expressions no template has: {unused:?}"
    );
}

#[test]
fn the_lint_refuses_what_it_should() {
    let bad = [
        (
            "systemd/x.service",
            "ExecStart=/bin/x --a={{ v | systemd_arg }}",
        ),
        (
            "systemd/x.service",
            "ExecStart=/bin/x {{ \"--a=\" ~ v | systemd_arg }}",
        ),
        ("systemd/x.service", "Description={{ v | systemd_arg }}"),
        ("systemd/x.service", "ExecStart={{ v }}/x"),
        ("kubernetes/x.yaml", "path: {{ v | tojson }}/ca.pem"),
        ("kubernetes/x.yaml", "name: {{ v }}"),
        ("kubernetes/x.yaml", "name: {{ v | comment }}"),
        ("kubernetes/x.yaml", "name: a.{{ v | tojson }}"),
        ("lb/x.cfg", "server {{ v }} check"),
        ("lb/x.cfg", "server {{ v | tojson }} check"),
    ];
    for (name, src) in bad {
        assert!(lint(name, src).is_err(), "{name}: passed: {src}");
    }
    let good = [
        (
            "systemd/x.service",
            "ExecStart={{ b | systemd_exec }} \\\n  {{ (\"--a=\" ~ v) | systemd_arg }}",
        ),
        (
            "kubernetes/x.yaml",
            "path: {{ (v ~ \"/ca.pem\") | tojson }}",
        ),
        ("containerd/x.toml", "[host.{{ v | tojson }}]"),
        (
            "kubernetes/x.yaml",
            "data:\n  f: |\n    bind {{ v | conf_token }}",
        ),
    ];
    for (name, src) in good {
        assert_eq!(
            lint(name, src).map_err(|p| p.join("\n")),
            Ok(BTreeSet::new()),
            "{name}"
        );
    }
}
