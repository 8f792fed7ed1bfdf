//! Addons from the upstream release artifacts the bundle carries: charts are
//! rendered with the bundle's own helm (`helm template`, offline), release
//! manifests are taken as published. Both come out as manifest text that the
//! plan writes under the addons directory.
//!
//! The files are read from the directory the bundle was unpacked (or
//! extracted) to; both verified every file against bundle.json on the way.

use crate::plan::error::{PlanError, Result};
use ferry_bundles::{BundleManifest, Component, ComponentKind};
use serde_json::Value as Json;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long `helm template` may take before the plan gives up on it.
const HELM_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the bundle's files are: bundle paths resolve under `root`.
#[derive(Debug, Clone)]
pub struct Artifacts {
    root: PathBuf,
}

fn addon_error(addon: &str, reason: impl Into<String>) -> PlanError {
    PlanError::Addon {
        addon: addon.to_string(),
        reason: reason.into(),
    }
}

impl Artifacts {
    pub fn new(root: impl Into<PathBuf>) -> Artifacts {
        Artifacts { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The carried chart or manifest `name` and its file.
    pub fn component<'b>(
        &self,
        bundle: &'b BundleManifest,
        name: &str,
    ) -> Result<(&'b Component, PathBuf)> {
        let c = bundle
            .components
            .iter()
            .find(|c| {
                c.name == name && matches!(c.kind, ComponentKind::Chart | ComponentKind::Manifest)
            })
            .ok_or_else(|| PlanError::Bundle {
                bundle: bundle.name.clone(),
                reason: format!(
                    "it carries no {name} release artifact, which the config needs; build the bundle with a profile that has it (`ferry bundle inspect` lists what it carries)"
                ),
            })?;
        Ok((c, self.file(bundle, c)?))
    }

    /// Where `c`'s file is; an error naming it when it is not there.
    fn file(&self, bundle: &BundleManifest, c: &Component) -> Result<PathBuf> {
        let path = self.root.join(&c.path);
        if !path.is_file() {
            return Err(PlanError::Bundle {
                bundle: bundle.name.clone(),
                reason: format!(
                    "{} ({} {}) is not in {}: give the bundle file, or the directory it was unpacked to (a bare bundle.json carries no files)",
                    c.path,
                    c.name,
                    c.version,
                    self.root.display()
                ),
            });
        }
        Ok(path)
    }

    /// The text of the carried release manifest `name`.
    pub fn manifest(&self, bundle: &BundleManifest, name: &str) -> Result<(Component, String)> {
        let (c, path) = self.component(bundle, name)?;
        let text = std::fs::read_to_string(&path).map_err(|e| PlanError::io(&path, e))?;
        Ok((c.clone(), text))
    }

    /// The bundle's helm for the machine ferry runs on.
    fn helm(&self, bundle: &BundleManifest) -> Result<PathBuf> {
        let platform = format!("linux/{}", crate::images::deploy_arch());
        let c = bundle
            .components
            .iter()
            .find(|c| c.name == "helm" && c.platform.as_deref() == Some(platform.as_str()))
            .ok_or_else(|| PlanError::Bundle {
                bundle: bundle.name.clone(),
                reason: format!("it carries no helm for {platform}, which renders the addon charts; build it with that platform"),
            })?;
        self.file(bundle, c)
    }

    /// `helm template RELEASE CHART --namespace NS --include-crds` with
    /// `values`, offline. The values file (it may hold private keys) lives
    /// in a private temporary directory that is removed afterwards.
    pub fn helm_template(
        &self,
        bundle: &BundleManifest,
        chart: &str,
        release: &str,
        namespace: &str,
        values: &Json,
    ) -> Result<(Component, String)> {
        let (c, chart_path) = self.component(bundle, chart)?;
        if c.kind != ComponentKind::Chart {
            return Err(addon_error(
                chart,
                format!("{} is a release manifest, not a chart", c.path),
            ));
        }
        let helm = self.helm(bundle)?;
        let tmp = tempfile::tempdir().map_err(|e| PlanError::io(std::env::temp_dir(), e))?;
        let values_path = tmp.path().join("values.json");
        let bytes = serde_json::to_vec_pretty(values).expect("JSON values serialize");
        crate::plan::pki::write_if_changed(&values_path, &bytes, true)?;
        let mut cmd = Command::new(&helm);
        cmd.arg("template")
            .arg(release)
            .arg(&chart_path)
            .args(["--namespace", namespace, "--include-crds"])
            .arg(format!("--kube-version=v{}", bundle.kubernetes))
            .arg("--values")
            .arg(&values_path)
            // helm must not read the operator's own helm config or repositories.
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", tmp.path())
            .env("HELM_CACHE_HOME", tmp.path().join("cache"))
            .env("HELM_CONFIG_HOME", tmp.path().join("config"))
            .env("HELM_DATA_HOME", tmp.path().join("data"));
        let out = run_bounded(cmd, tmp.path(), HELM_TIMEOUT).map_err(|reason| {
            addon_error(
                chart,
                format!(
                    "`{} template {release} {}` {reason}",
                    helm.display(),
                    chart_path.display()
                ),
            )
        })?;
        Ok((c.clone(), out))
    }
}

/// Runs `cmd` with stdout and stderr in files under `dir`, killing it after
/// `limit`. Ok(stdout) when it exits 0.
fn run_bounded(
    mut cmd: Command,
    dir: &Path,
    limit: Duration,
) -> std::result::Result<String, String> {
    let open = |name: &str| {
        std::fs::File::create(dir.join(name)).map_err(|e| format!("could not start: {e}"))
    };
    cmd.stdin(Stdio::null())
        .stdout(open("stdout")?)
        .stderr(open("stderr")?);
    let mut child = cmd.spawn().map_err(|e| format!("could not start: {e}"))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("did not finish within {} s", limit.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("could not be waited for: {e}")),
        }
    };
    let read = |name: &str| {
        let mut s = String::new();
        std::fs::File::open(dir.join(name))
            .and_then(|mut f| f.read_to_string(&mut s))
            .map(|_| s)
    };
    if !status.success() {
        let err = read("stderr").unwrap_or_default();
        return Err(format!("failed ({status}): {}", err.trim()));
    }
    read("stdout").map_err(|e| format!("wrote output that is not UTF-8 text: {e}"))
}

/// The documents of `text` that are Secrets, and the rest (both as YAML
/// streams). A chart renders its Secrets with the rest; the plan writes them
/// to a file of their own that only root can read.
pub fn split_secrets(text: &str) -> (String, String) {
    let (mut secrets, mut rest) = (String::new(), String::new());
    for doc in crate::deploy::addons::objects::documents(text) {
        if doc.trim().is_empty() {
            continue;
        }
        let kind = serde_norway::from_str::<serde_norway::Value>(&doc)
            .ok()
            .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_string));
        let out = if kind.as_deref() == Some("Secret") {
            &mut secrets
        } else {
            &mut rest
        };
        out.push_str("---\n");
        out.push_str(&doc);
        if !doc.ends_with('\n') {
            out.push('\n');
        }
    }
    (secrets, rest)
}

/// The documents of `text` whose `metadata.name` is `name` (a release
/// manifest that carries more objects than ferry applies).
pub fn select(text: &str, kind: &str, name: &str) -> Option<String> {
    crate::deploy::addons::objects::documents(text)
        .into_iter()
        .find(|doc| {
            serde_norway::from_str::<serde_norway::Value>(doc)
                .ok()
                .is_some_and(|v| {
                    v.get("kind").and_then(|k| k.as_str()) == Some(kind)
                        && v.get("metadata")
                            .and_then(|m| m.get("name"))
                            .and_then(|n| n.as_str())
                            == Some(name)
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_split_off_and_documents_selected() {
        let text = "---\n# Source: c/templates/a.yaml\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n---\n# Source: c/templates/b.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: m\n---\n# Source: empty\n";
        let (secrets, rest) = split_secrets(text);
        assert!(secrets.contains("kind: Secret") && !secrets.contains("ConfigMap"));
        assert!(rest.contains("kind: ConfigMap") && !rest.contains("kind: Secret"));
        assert!(select(text, "ConfigMap", "m").is_some_and(|d| d.contains("name: m")));
        assert!(select(text, "ConfigMap", "s").is_none());
    }

    #[test]
    fn a_hung_command_is_killed_and_a_failing_one_reports_stderr() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut sleep = Command::new("sleep");
        sleep.arg("5");
        let err = run_bounded(sleep, dir.path(), Duration::from_millis(200)).expect_err("hangs");
        assert!(err.contains("did not finish"), "{err}");
        let mut fail = Command::new("sh");
        fail.args([
            "-c",
            "echo 'Error: missing hubble.tls.server.cert' >&2; exit 1",
        ]);
        let err = run_bounded(fail, dir.path(), Duration::from_secs(5)).expect_err("fails");
        assert!(err.contains("missing hubble.tls.server.cert"), "{err}");
    }
}
