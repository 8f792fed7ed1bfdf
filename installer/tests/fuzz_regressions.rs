//! Inputs from the kubeasz_files fuzz target (fuzz/fuzz_targets/) that hung
//! or would fill memory, each with the behaviour it must have now.

use ferry_installer::plan::config::Config;
use ferry_installer::plan::jinja::Scope;
use std::path::Path;

/// config.yml values whose Jinja never finishes (10^10 loop turns) or makes
/// gigabytes of output: each is refused naming the key, instead of hanging
/// the plan or exhausting memory.
#[test]
fn config_jinja_that_loops_or_grows_without_bound_is_refused_naming_the_key() {
    for (key, value) in [
        (
            "CLUSTER_NAME",
            "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}",
        ),
        (
            "CONTEXT_NAME",
            "{% for a in range(100000) %}{{ 'x' * 100000 }}{% endfor %}",
        ),
    ] {
        let text = format!("{key}: \"{value}\"\n");
        let err = Config::parse(Path::new("config.yml"), &text, &Scope::default())
            .expect_err("an unbounded value is refused")
            .to_string();
        assert!(err.contains(key), "{err}");
        assert!(err.contains("fuel"), "{err}");
        assert!(err.contains("write the value itself"), "{err}");
    }
}

/// kubeasz's own Jinja still evaluates within the budget.
#[test]
fn kubeasz_config_values_still_evaluate() {
    let text = "CLUSTER_NAME: \"c1\"\nCONTEXT_NAME: \"context-{{ CLUSTER_NAME }}\"\n";
    Config::parse(Path::new("config.yml"), text, &Scope::default()).expect("evaluates");
}
