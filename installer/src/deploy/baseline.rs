//! OS baseline actions after its files are placed: kernel modules, sysctl,
//! swap. In a container (a test host) only the network namespace's own
//! settings (net.*) are applied: everything else belongs to the machine's
//! kernel, so it is skipped and logged, never forced.

use super::HostRun;
use crate::exec::sh_quote;

/// The host's sysctls (the plan's data, never its text).
pub fn sysctl_pairs(run: &HostRun) -> Vec<(String, String)> {
    run.plan.sysctls.clone()
}

/// Where the kernel shows sysctl `key`.
pub(super) fn sysctl_path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

pub async fn apply(run: &mut HostRun) -> Result<(), String> {
    let modules = super::preflight::modules_for(&run.plan);
    let pairs = sysctl_pairs(run);
    let exec = run.exec()?;
    let container = exec
        .run("systemd-detect-virt -c")
        .await
        .map(|o| o.success() && o.stdout.trim() != "none")
        .unwrap_or(false);
    let log = exec.log();
    if container {
        log.line("baseline: running in a container: kernel modules, swap and non-net sysctls belong to the machine and are skipped");
    } else {
        for m in &modules {
            exec.check(&format!("modprobe {}", sh_quote(m)))
                .await
                .map_err(|e| e.to_string())?;
        }
        exec.check(
            "swapoff -a && sed -i -E 's@^([^#].*[[:space:]]swap[[:space:]].*)$@# \\1@' /etc/fstab",
        )
        .await
        .map_err(|e| e.to_string())?;
    }
    // One script: write each key only when it differs, tolerate keys this kernel lacks.
    let mut script = String::new();
    let mut any = false;
    for (k, v) in pairs {
        if container && !k.starts_with("net.") {
            log.line(&format!(
                "baseline: skipped sysctl {k} (not per network namespace)"
            ));
            continue;
        }
        any = true;
        let path = sysctl_path(&k);
        script.push_str(&format!(
            "p={p}; if [ ! -e \"$p\" ]; then echo {missing}; elif [ \"$(tr -s '[:space:]' ' ' < \"$p\" | sed 's/ $//')\" != {v} ]; then sysctl -q -w {kv} && echo {set} || echo {failed}; fi\n",
            p = sh_quote(&path),
            missing = sh_quote(&format!("missing {k}")),
            set = sh_quote(&format!("set {k}")),
            failed = sh_quote(&format!("failed {k}")),
            v = sh_quote(&v.split_whitespace().collect::<Vec<_>>().join(" ")),
            kv = sh_quote(&format!("{k}={v}")),
        ));
    }
    if any {
        let out = exec.check(&script).await.map_err(|e| e.to_string())?;
        for line in out.lines() {
            if let Some(k) = line.strip_prefix("failed ") {
                if !container {
                    return Err(format!("sysctl {k} could not be set (see the log)"));
                }
                log.line(&format!("baseline: sysctl {k} not settable here"));
            } else if let Some(k) = line.strip_prefix("missing ") {
                log.line(&format!("baseline: this kernel has no sysctl {k}; skipped"));
            }
        }
    }
    Ok(())
}
