//! Addons: the manifests the plan placed are applied with the bundle's kubectl
//! once an apiserver answers. A kubectl that is a test stand-in (it says so in
//! its version) cannot apply anything: the manifests are then only validated
//! (every document has apiVersion and kind) and recorded as placed.

use super::HostRun;
use crate::exec::sh_quote;
use crate::plan::{ClusterPlan, FileContent, Step};
use serde::Deserialize;

/// Checks that every YAML document in `text` has `apiVersion` and `kind`.
pub fn validate_manifest(name: &str, text: &str) -> Result<usize, String> {
    let mut n = 0;
    for doc in serde_norway::Deserializer::from_str(text) {
        let v = serde_norway::Value::deserialize(doc)
            .map_err(|e| format!("{name}: not valid YAML: {e}"))?;
        if v.is_null() {
            continue;
        }
        for key in ["apiVersion", "kind"] {
            if v.get(key).and_then(|x| x.as_str()).is_none() {
                return Err(format!("{name}: document {} has no {key}", n + 1));
            }
        }
        n += 1;
    }
    Ok(n)
}

/// Applies (or with a stand-in kubectl, validates) the addons on `run`'s host. Returns a note.
pub async fn apply(plan: &ClusterPlan, run: &mut HostRun) -> Result<String, String> {
    let manifests: Vec<_> = run
        .plan
        .files_for(Step::Addons)
        .filter(|f| {
            matches!(
                f.path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            )
        })
        .cloned()
        .collect();
    if manifests.is_empty() {
        return Ok("no addon manifests in the plan".into());
    }
    let mut docs = 0;
    for f in &manifests {
        if let FileContent::Inline(b) = &f.content {
            docs += validate_manifest(&f.path.display().to_string(), &String::from_utf8_lossy(b))?;
        }
    }
    let kubectl = plan.bin_dir.join("kubectl");
    let exec = run.exec()?;
    let version = exec
        .run(&format!(
            "timeout 10 {} version --client 2>&1",
            sh_quote(&kubectl.to_string_lossy())
        ))
        .await
        .map_err(|e| e.to_string())?;
    if version.stdout.contains("stand-in") || version.code == 124 {
        let note = format!(
            "addons: {} manifests ({docs} objects) placed and validated on {}, not applied: kubectl there is a test stand-in",
            manifests.len(),
            run.plan.name
        );
        exec.log().line(&note);
        return Ok(note);
    }
    let kubeconfig = run
        .plan
        .files
        .iter()
        .find(|f| {
            let p = f.path.to_string_lossy();
            p.ends_with("admin.kubeconfig")
                || p.ends_with("/.kube/config")
                || p.ends_with("admin.conf")
        })
        .map(|f| f.path.clone())
        .ok_or_else(|| {
            format!(
                "{}: no admin kubeconfig in the plan for applying addons",
                run.plan.name
            )
        })?;
    let k = format!(
        "{} --kubeconfig {}",
        sh_quote(&kubectl.to_string_lossy()),
        sh_quote(&kubeconfig.to_string_lossy())
    );
    exec.check(&format!("for i in $(seq 1 60); do {k} get --raw /readyz >/dev/null 2>&1 && exit 0; sleep 2; done; echo 'apiserver did not answer /readyz' >&2; exit 1"))
        .await
        .map_err(|e| e.to_string())?;
    let files: Vec<String> = manifests
        .iter()
        .map(|f| format!("-f {}", sh_quote(&f.path.to_string_lossy())))
        .collect();
    exec.check(&format!("{k} apply {}", files.join(" ")))
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "addons: {} manifests applied from {}",
        manifests.len(),
        run.plan.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_need_api_version_and_kind() {
        assert_eq!(
            validate_manifest(
                "a",
                "apiVersion: v1\nkind: Namespace\n---\napiVersion: v1\nkind: Service\n"
            ),
            Ok(2)
        );
        assert!(validate_manifest("b", "apiVersion: v1\nmetadata: {}\n")
            .unwrap_err()
            .contains("no kind"));
        assert!(validate_manifest("c", "kind: [").is_err());
    }
}
