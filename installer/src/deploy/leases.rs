//! A restarted master is back only when the cluster's controller-manager and
//! scheduler have leaders again: each one's Lease in kube-system is held and
//! renewed after the restart (two reads that differ, so a holder is alive;
//! no clocks compared). A lease its holder did not release on shutdown is
//! taken over once it expires, so this can take one lease duration.

use super::addons::admin_kubeconfig;
use crate::exec::{sh_quote, Executor};
use crate::plan::{ClusterPlan, HostPlan};
use serde_json::Value;
use std::time::{Duration, Instant};

/// The leader-election leases of the control plane's components.
const LEASES: [&str; 2] = ["kube-controller-manager", "kube-scheduler"];

/// Longer than a lease duration (15s) plus a retry period (2s), several times.
const LEASE_TIMEOUT: Duration = Duration::from_secs(90);

/// One kubectl read may take this long.
const READ_LIMIT: Duration = Duration::from_secs(20);

/// Waits until every lease in [`LEASES`] is held and renewed, read with the
/// bundle's kubectl and the admin kubeconfig on `host` (a master).
pub(super) async fn wait_held(
    plan: &ClusterPlan,
    host: &HostPlan,
    exec: &Executor,
) -> Result<(), String> {
    let (kubeconfig, _) = admin_kubeconfig(plan, host)?;
    let kubectl = format!(
        "{} --kubeconfig={} -n kube-system get lease",
        sh_quote(&plan.bin_dir.join("kubectl").to_string_lossy()),
        sh_quote(&kubeconfig.to_string_lossy())
    );
    for lease in LEASES {
        wait_renewed(exec, &kubectl, lease).await.map_err(|last| {
            format!(
                "{}: no {lease} holds its Lease kube-system/{lease} within {}s of the restart ({last}); check {lease} on the masters (journalctl -u {lease})",
                host.name,
                LEASE_TIMEOUT.as_secs()
            )
        })?;
    }
    Ok(())
}

/// Ok once two reads of `lease` show a holder and differ; else what was last seen.
async fn wait_renewed(exec: &Executor, kubectl: &str, lease: &str) -> Result<(), String> {
    let deadline = Instant::now() + LEASE_TIMEOUT;
    let mut first: Option<Holder> = None;
    loop {
        let last = match read(exec, kubectl, lease).await {
            Ok(Some(now)) => match &first {
                Some(before) if *before != now => return Ok(()),
                Some(_) => format!("held by {}, not renewed", now.identity),
                None => {
                    let seen = format!("held by {}", now.identity);
                    first = Some(now);
                    seen
                }
            },
            Ok(None) => "held by nobody".into(),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Holder {
    identity: String,
    renewed: String,
}

/// The lease's holder and renew time; None when nobody holds it.
async fn read(exec: &Executor, kubectl: &str, lease: &str) -> Result<Option<Holder>, String> {
    let out = exec
        .run_within(
            &format!("{kubectl} {} -o json 2>&1", sh_quote(lease)),
            None,
            READ_LIMIT,
        )
        .await
        .map_err(|e| e.to_string())?;
    if !out.success() {
        return Err(out.stdout.trim().to_owned());
    }
    holder(&out.stdout)
}

fn holder(json: &str) -> Result<Option<Holder>, String> {
    let lease: Value = serde_json::from_str(json).map_err(|e| format!("not a Lease: {e}"))?;
    let spec = &lease["spec"];
    let text = |k: &str| spec[k].as_str().unwrap_or_default().to_owned();
    let identity = text("holderIdentity");
    if identity.is_empty() {
        return Ok(None);
    }
    Ok(Some(Holder {
        identity,
        renewed: text("renewTime"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_lease_has_no_holder_and_a_renewal_differs() {
        let at = |id: &str, t: &str| {
            format!(r#"{{"kind":"Lease","spec":{{"holderIdentity":"{id}","renewTime":"{t}"}}}}"#)
        };
        assert_eq!(holder(&at("", "2026-12-03T07:00:00.000000Z")), Ok(None));
        let a = holder(&at("m1_x", "2026-12-03T07:00:00.000000Z")).unwrap();
        let b = holder(&at("m1_x", "2026-12-03T07:00:02.000000Z")).unwrap();
        assert!(a.is_some() && a != b);
        assert!(holder("error: the server doesn't have a resource type").is_err());
    }
}
