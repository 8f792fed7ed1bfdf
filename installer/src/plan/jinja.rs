//! kubeasz writes some values as Jinja that Ansible evaluates against the
//! inventory (`K8S_NODENAME`, `CONTEXT_NAME`, `cluster_dir`,
//! `IP_AUTODETECTION_METHOD`, `INSECURE_REG`...). ferry evaluates them with the
//! same variables in scope: `[all:vars]`, `groups`, config.yml's own scalars
//! and, per host, `inventory_hostname` and the host's variables. As kubeasz
//! passes config.yml as extra vars (`-e @config.yml`), its values win over
//! the inventory's. Undefined names are errors, never empty strings.

use crate::plan::inventory::Inventory;
use minijinja::{Environment, UndefinedBehavior, Value};
use std::collections::BTreeMap;

/// Ansible templates a value again while it still holds Jinja (a variable
/// whose value is itself a template); this bounds that.
const MAX_PASSES: usize = 8;
/// Work one evaluation may do (minijinja fuel: about one per instruction or
/// per 64 bytes made). kubeasz's values need a few hundred; this stops a
/// value like nested `range(100000)` loops before it hangs the plan or fills
/// memory (about 6 MB at most).
const FUEL: u64 = 100_000;

/// True when `text` holds a Jinja expression or statement.
pub fn is_jinja(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

/// The variables a value is evaluated with.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// The inventory's variables, in Ansible's order (later wins).
    vars: BTreeMap<String, Value>,
    /// config.yml's scalars: extra vars, above every inventory variable.
    extra: BTreeMap<String, Value>,
}

impl Scope {
    /// `[all:vars]` (empty values included, as Ansible has them) and `groups`.
    pub fn from_inventory(inv: &Inventory) -> Scope {
        let mut vars: BTreeMap<String, Value> = BTreeMap::new();
        for (k, v) in inv.group_vars.get("all").into_iter().flatten() {
            vars.insert(k.clone(), Value::from(v.text.clone()));
        }
        let members = |hosts: Vec<String>| Value::from(hosts);
        let mut groups: BTreeMap<String, Value> = inv
            .groups
            .keys()
            .map(|g| {
                let hosts = inv.group(g).into_iter().map(|(h, _)| h).collect();
                (g.clone(), members(hosts))
            })
            .collect();
        let all = inv.hosts.iter().map(|h| h.host.clone()).collect();
        groups.insert("all".into(), members(all));
        vars.insert("groups".into(), Value::from(groups));
        Scope {
            vars,
            extra: BTreeMap::new(),
        }
    }

    /// Adds config.yml's top-level scalars, which win over the inventory's.
    pub fn with_config(mut self, scalars: &BTreeMap<String, String>) -> Scope {
        for (k, v) in scalars {
            self.extra.insert(k.clone(), Value::from(v.clone()));
        }
        self
    }

    /// This scope plus a host's group and host variables and `inventory_hostname`.
    pub fn for_host(&self, inv: &Inventory, host: &str) -> Scope {
        let mut vars = self.vars.clone();
        for g in inv.groups_of(host).iter().rev() {
            for (k, v) in inv.group_vars.get(g).into_iter().flatten() {
                vars.insert(k.clone(), Value::from(v.text.clone()));
            }
        }
        for (k, v) in inv.host(host).map(|h| &h.vars).into_iter().flatten() {
            vars.insert(k.clone(), Value::from(v.text.clone()));
        }
        vars.insert("inventory_hostname".into(), Value::from(host));
        Scope {
            vars,
            extra: self.extra.clone(),
        }
    }

    /// Evaluate `text`; the error says what could not be evaluated.
    pub fn eval(&self, text: &str) -> Result<String, String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(FUEL));
        let mut context = self.vars.clone();
        context.extend(self.extra.clone());
        let mut out = text.to_string();
        for _ in 0..MAX_PASSES {
            if !is_jinja(&out) {
                return Ok(out.trim().to_string());
            }
            out = env
                .render_str(&out, &context)
                .map_err(|e| jinja_error(&e))?;
        }
        Err(format!(
            "still holds Jinja after {MAX_PASSES} evaluations (does a variable refer to itself?)"
        ))
    }
}

/// minijinja's message without its template-name decoration.
fn jinja_error(e: &minijinja::Error) -> String {
    let detail = e.detail().map(|d| format!(": {d}")).unwrap_or_default();
    format!("{}{detail}", e.kind())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const HOSTS: &str = "[kube_master]\n192.168.1.1 k8s_nodename='Master_01'\n192.168.1.2\n[all:vars]\nbase_dir=\"/etc/kubeasz\"\nk8s_nodename=''\n";

    #[test]
    fn kubeasz_forms_evaluate() {
        let inv = Inventory::parse(Path::new("hosts"), HOSTS).unwrap();
        let config: BTreeMap<String, String> = [
            ("CLUSTER_NAME", "c1"),
            ("HARBOR_DOMAIN", "harbor.local"),
            ("HARBOR_TLS_PORT", "8443"),
            (
                "HARBOR_REGISTRY",
                "{{ HARBOR_DOMAIN }}:{{ HARBOR_TLS_PORT }}",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let scope = Scope::from_inventory(&inv).with_config(&config);
        assert_eq!(
            scope.eval("context-{{ CLUSTER_NAME }}").unwrap(),
            "context-c1"
        );
        assert_eq!(
            scope.eval("{{ base_dir }}/clusters/c1").unwrap(),
            "/etc/kubeasz/clusters/c1"
        );
        assert_eq!(
            scope
                .eval("can-reach={{ groups['kube_master'][0] }}")
                .unwrap(),
            "can-reach=192.168.1.1"
        );
        assert_eq!(
            scope.eval("https://{{ HARBOR_REGISTRY }}").unwrap(),
            "https://harbor.local:8443"
        );
        let name = "{%- if k8s_nodename != '' -%} {{ k8s_nodename|replace('_', '-')|lower }} {%- else -%} k8s-{{ inventory_hostname|replace('.', '-') }} {%- endif -%}";
        assert_eq!(
            scope.for_host(&inv, "192.168.1.1").eval(name).unwrap(),
            "master-01"
        );
        assert_eq!(
            scope.for_host(&inv, "192.168.1.2").eval(name).unwrap(),
            "k8s-192-168-1-2"
        );
    }

    #[test]
    fn config_values_win_over_the_inventory_as_extra_vars_do() {
        let inv = Inventory::parse(Path::new("hosts"), HOSTS).unwrap();
        let config: BTreeMap<String, String> =
            [("base_dir".to_string(), "/opt/kz".to_string())].into();
        let scope = Scope::from_inventory(&inv).with_config(&config);
        assert_eq!(scope.eval("{{ base_dir }}").unwrap(), "/opt/kz");
        let host = scope.for_host(&inv, "192.168.1.1");
        assert_eq!(host.eval("{{ base_dir }}").unwrap(), "/opt/kz");
    }

    #[test]
    fn undefined_and_self_reference_are_errors() {
        let inv = Inventory::parse(Path::new("hosts"), HOSTS).unwrap();
        let scope = Scope::from_inventory(&inv);
        let err = scope.eval("{{ HARBOR_DOMAIN }}").unwrap_err();
        assert!(err.contains("undefined"), "{err}");
        let looping: BTreeMap<String, String> = [("A".to_string(), "{{ A }}".to_string())].into();
        let err = scope.with_config(&looping).eval("{{ A }}").unwrap_err();
        assert!(err.contains("refer to itself"), "{err}");
    }
}
