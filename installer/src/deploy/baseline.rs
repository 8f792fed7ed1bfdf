//! OS baseline actions after its files are placed: kernel modules, sysctl,
//! swap. In a container (a test host) only the network namespace's own
//! settings (net.*) are applied: everything else belongs to the machine's
//! kernel, so it is skipped and logged, never forced.

use super::HostRun;
use crate::exec::sh_quote;
use crate::plan::{FileContent, Step};

/// `key = value` pairs of the plan's sysctl.d files.
pub fn sysctl_pairs(run: &HostRun) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for f in run.plan.files_for(Step::Baseline) {
        if !f.path.starts_with("/etc/sysctl.d") {
            continue;
        }
        if let FileContent::Inline(b) = &f.content {
            for line in String::from_utf8_lossy(b).lines() {
                let l = line.trim();
                if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
                    continue;
                }
                if let Some((k, v)) = l.split_once('=') {
                    pairs.push((
                        k.trim().trim_start_matches('-').to_string(),
                        v.trim().to_string(),
                    ));
                }
            }
        }
    }
    pairs
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
    for (k, v) in pairs {
        if container && !k.starts_with("net.") {
            log.line(&format!(
                "baseline: skipped sysctl {k} (not per network namespace)"
            ));
            continue;
        }
        let path = format!("/proc/sys/{}", k.replace('.', "/"));
        // Write only when different, and tolerate keys this kernel does not have.
        let script = format!(
            "p={p}; if [ ! -e \"$p\" ]; then echo missing; elif [ \"$(cat \"$p\" | tr -s '[:space:]' ' ' | sed 's/ $//')\" = {v} ]; then echo same; else sysctl -q -w {kv} && echo set; fi",
            p = sh_quote(&path),
            v = sh_quote(&v.split_whitespace().collect::<Vec<_>>().join(" ")),
            kv = sh_quote(&format!("{k}={v}")),
        );
        let out = exec.run(&script).await.map_err(|e| e.to_string())?;
        if !out.success() {
            if container {
                log.line(&format!(
                    "baseline: sysctl {k} not settable here: {}",
                    out.stderr.trim()
                ));
                continue;
            }
            return Err(format!("sysctl {k}={v} failed: {}", out.stderr.trim()));
        }
        if out.stdout.trim() == "missing" {
            log.line(&format!("baseline: this kernel has no sysctl {k}; skipped"));
        }
    }
    Ok(())
}
