//! Arbitrary text as a kubeasz inventory (`hosts`) and as `config.yml`, the
//! two files `ferry plan` reads from a cluster directory. config.yml is read
//! with no variables and with those of kubeasz's example inventory, so its
//! Jinja is evaluated against real names.

#![no_main]

use ferry_installer::plan::config::Config;
use ferry_installer::plan::inventory::Inventory;
use ferry_installer::plan::jinja::Scope;
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::OnceLock;

const EXAMPLE_HOSTS: &str = include_str!("../../tests/fixtures/kubeasz/3.6.3/hosts.multi-node");

fn example_scope() -> &'static Scope {
    static SCOPE: OnceLock<Scope> = OnceLock::new();
    SCOPE.get_or_init(|| {
        let inv = Inventory::parse(Path::new("hosts"), EXAMPLE_HOSTS).expect("example parses");
        Scope::from_inventory(&inv)
    })
}

fn inventory(text: &str) {
    let Ok(inv) = Inventory::parse(Path::new("hosts"), text) else {
        return;
    };
    for g in inv.groups.keys() {
        let _ = inv.group(g);
    }
    let scope = Scope::from_inventory(&inv);
    // Host lookups are linear in the hosts: a few are enough to cover them.
    for h in inv.hosts.iter().take(4) {
        let _ = scope.for_host(&inv, &h.host);
        let _ = inv.host_var(&h.host, "ansible_ssh_port");
    }
    let _ = inv.all_var("CLUSTER_NAME");
}

fuzz_target!(|data: &[u8]| {
    // Both files are read as UTF-8 text; anything else is refused before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    inventory(text);
    let path = Path::new("config.yml");
    let _ = Config::parse(path, text, &Scope::default());
    let _ = Config::parse(path, text, example_scope());
});
