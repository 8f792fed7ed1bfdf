//! Addons: the objects of the manifests the plan placed (every
//! `/etc/ferry/addons/*.yaml`) are applied from the first master with the
//! bundle's kubectl and the admin kubeconfig, once the apiserver behind the
//! kubeconfig's endpoint answers /readyz:
//!
//! 1. CustomResourceDefinitions, then their `Established` condition;
//! 2. Namespaces;
//! 3. everything else, in file and document order;
//! 4. read back: the cluster must hold every object with its content hash;
//! 5. every Deployment, DaemonSet and StatefulSet must roll out.
//!
//! Each of the first three stages is one read-back and one apply of the
//! objects whose hash differs.
//!
//! Applies are server-side (`--field-manager=ferry --force-conflicts`). Each
//! object carries the sha256 of its rendered form in the annotation
//! `ferry.io/content-hash`; an object whose annotation in the cluster already
//! matches is not applied again. The record lives on the objects themselves,
//! so a re-run from another deploy host (or after the cluster dir was lost)
//! still applies nothing when nothing changed, and an object deleted or
//! replaced in the cluster is applied again. The waits run on every run:
//! unchanged objects that never rolled out still fail the step.

mod kubectl;
pub(crate) mod objects;

pub use kubectl::{Bounds, FIELD_MANAGER, TIMEOUT_ENV};
use objects::ObjectKey;
pub use objects::{AddonObject, Stage, HASH_ANNOTATION};

use super::HostRun;
use crate::plan::{ClusterPlan, FileContent, HostPlan, Step};
use kubectl::Kubectl;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Every object of the host's addon manifests, in apply order.
pub fn planned_objects(host: &HostPlan) -> Result<Vec<AddonObject>, String> {
    let mut all = Vec::new();
    for f in host.files_for(Step::Addons) {
        if !matches!(
            f.path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            continue;
        }
        let FileContent::Inline(bytes) = &f.content else {
            return Err(format!(
                "{}: {}: addon manifests are rendered by ferry plan, not taken from the bundle",
                host.name,
                f.path.display()
            ));
        };
        let text = std::str::from_utf8(bytes)
            .map_err(|e| format!("{}: {}: not UTF-8: {e}", host.name, f.path.display()))?;
        all.extend(objects::parse(&f.path, text).map_err(|e| format!("{}: {e}", host.name))?);
    }
    objects::ordered(all).map_err(|e| format!("{}: {e}", host.name))
}

/// The admin kubeconfig the plan places on `host`, and the server it names.
pub(super) fn admin_kubeconfig(
    plan: &ClusterPlan,
    host: &HostPlan,
) -> Result<(PathBuf, String), String> {
    let f = host
        .files
        .iter()
        .find(|f| {
            let p = f.path.to_string_lossy();
            p.ends_with("/admin.kubeconfig") || p.ends_with("/admin.conf")
        })
        .ok_or_else(|| {
            format!(
                "{}: the plan places no admin kubeconfig on this host, so addons cannot be applied from it; it must be a master",
                host.name
            )
        })?;
    let server = match &f.content {
        FileContent::Inline(b) => String::from_utf8_lossy(b).lines().find_map(|l| {
            l.trim()
                .strip_prefix("server:")
                .map(|s| s.trim().to_string())
        }),
        _ => None,
    };
    Ok((
        f.path.clone(),
        server.unwrap_or_else(|| plan.apiserver_endpoint.clone()),
    ))
}

/// Applies what differs in one stage; returns how many objects were applied.
async fn apply_stage(
    k: &Kubectl<'_>,
    stage: Stage,
    objs: &[&AddonObject],
) -> Result<usize, String> {
    if objs.is_empty() {
        return Ok(0);
    }
    let current = k.hashes(objs, stage.as_str()).await?;
    let differ = differing(objs, &current);
    if let Err(e) = k.apply_all(&differ, stage.as_str()).await {
        return Err(not_applied(k, &differ, stage, e).await);
    }
    if stage == Stage::Crds {
        k.established(objs).await?;
    }
    Ok(differ.len())
}

/// A failed apply's error, naming the objects the cluster still does not
/// hold as rendered (read back; kubectl applies the others of a batch).
async fn not_applied(k: &Kubectl<'_>, objs: &[&AddonObject], stage: Stage, e: String) -> String {
    let current = match k.hashes(objs, stage.as_str()).await {
        Ok(c) => c,
        Err(read) => {
            return format!("{e}; reading back which objects were applied failed too: {read}")
        }
    };
    let missing: Vec<String> = differing(objs, &current)
        .iter()
        .map(|o| o.describe())
        .collect();
    format!("{e}; not applied: {}", missing.join(", "))
}

/// The objects of `objs` the cluster does not hold with their content hash
/// (`current`, as read back): missing, or carrying another hash.
fn differing<'a>(
    objs: &[&'a AddonObject],
    current: &BTreeMap<ObjectKey, String>,
) -> Vec<&'a AddonObject> {
    objs.iter()
        .filter(|o| current.get(&o.key()) != Some(&o.hash))
        .copied()
        .collect()
}

/// Every object must be in the cluster with the hash ferry applied.
async fn verify(k: &Kubectl<'_>, host: &str, objs: &[&AddonObject]) -> Result<(), String> {
    let current = k.hashes(objs, "addon objects").await?;
    let wrong: Vec<String> = differing(objs, &current)
        .iter()
        .map(|o| match current.get(&o.key()) {
            None => format!("{} is missing", o.describe()),
            Some(h) => format!(
                "{} carries content hash {h:?}, not {}",
                o.describe(),
                o.hash
            ),
        })
        .collect();
    if wrong.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{host}: after applying, the cluster does not hold what was applied: {}; check the apiserver and run ferry install again",
        wrong.join("; ")
    ))
}

/// What the addons step did: a note for the report and how many objects it applied.
pub struct Applied {
    pub note: String,
    pub objects: usize,
}

/// kubectl on `run`'s host with the admin kubeconfig, once the apiserver it
/// names answers /readyz.
async fn ready_client<'a>(
    plan: &ClusterPlan,
    run: &'a HostRun,
    objects: usize,
) -> Result<Kubectl<'a>, String> {
    let (kubeconfig, endpoint) = admin_kubeconfig(plan, &run.plan)?;
    let exec = run.exec()?;
    let k = Kubectl::new(
        exec,
        &plan.bin_dir.join("kubectl"),
        &kubeconfig,
        Bounds::from_env()?,
    );
    exec.log().line(&format!(
        "addons: {objects} objects; waiting for /readyz of {endpoint}"
    ));
    k.wait_ready(&endpoint).await?;
    Ok(k)
}

/// On a run where every host was unchanged: whether the cluster holds every
/// addon object with its content hash, read back in one kubectl call. The
/// note when it does (nothing to apply); None when something must be applied.
pub async fn in_place(plan: &ClusterPlan, run: &HostRun) -> Result<Option<String>, String> {
    let objects = planned_objects(&run.plan)?;
    if objects.is_empty() {
        return Ok(Some(format!(
            "addons: the plan places no addon manifests on {}",
            run.plan.name
        )));
    }
    let k = ready_client(plan, run, objects.len()).await?;
    let all: Vec<&AddonObject> = objects.iter().collect();
    let current = k.hashes(&all, "addon objects").await?;
    let differ = differing(&all, &current).len();
    let exec = run.exec()?;
    if differ > 0 {
        exec.log().line(&format!(
            "addons: {differ} of {} objects are missing or changed in the cluster: applying",
            all.len()
        ));
        return Ok(None);
    }
    let note = format!(
        "addons: all {} objects are in the cluster with their content hash (read back from {}), nothing applied; every host is unchanged, so rollouts were not waited for (--verify-hosts waits for them)",
        all.len(),
        run.plan.name
    );
    exec.log().line(&note);
    Ok(Some(note))
}

/// Applies the addons from `run`'s host.
pub async fn apply(plan: &ClusterPlan, run: &mut HostRun) -> Result<Applied, String> {
    let objects = planned_objects(&run.plan)?;
    if objects.is_empty() {
        return Ok(Applied {
            note: format!(
                "addons: the plan places no addon manifests on {}",
                run.plan.name
            ),
            objects: 0,
        });
    }
    let k = ready_client(plan, run, objects.len()).await?;
    let exec = run.exec()?;
    let mut applied = 0;
    for stage in Stage::ALL {
        let objs: Vec<&AddonObject> = objects.iter().filter(|o| o.stage() == stage).collect();
        let n = apply_stage(&k, stage, &objs).await?;
        exec.log().line(&format!(
            "addons: {}: {n} applied, {} unchanged",
            stage.as_str(),
            objs.len() - n
        ));
        applied += n;
    }
    let all: Vec<&AddonObject> = objects.iter().collect();
    verify(&k, &run.plan.name, &all).await?;
    let mut rollouts = 0;
    for o in &objects {
        if let Some(kind) = o.rollout_type() {
            k.rollout(o, kind).await?;
            rollouts += 1;
        }
    }
    let note = format!(
        "addons: {applied} of {} objects applied server-side from {} ({} unchanged), {rollouts} rollouts complete",
        objects.len(),
        run.plan.name,
        objects.len() - applied
    );
    exec.log().line(&note);
    Ok(Applied {
        note,
        objects: applied,
    })
}
