//! kubeasz's config.yml keys that ferry refuses or honours only in part, each
//! with the reason, and the value forms kubeasz writes (Go durations).

use crate::plan::config::Config;
use crate::plan::error::{Origin, Problem};

/// The kubeasz keys ferry refuses, each with the reason; warnings for those
/// it honours only in part.
pub fn check(cfg: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut refuse = |origin: &Origin, message: &str| {
        problems.push(Problem {
            origin: origin.clone(),
            message: message.to_string(),
        })
    };
    if cfg.change_ca.value {
        refuse(&cfg.change_ca.origin, "CHANGE_CA: true asks to replace the CA; ferry never replaces a CA during a plan (every kubeconfig, Secret and node certificate depends on it); set it to false");
    }
    if !cfg.dns_install.value {
        refuse(&cfg.dns_install.origin, "dns_install: ferry always deploys CoreDNS (every kubelet's clusterDNS points at it); set it to \"yes\"");
    }
    if cfg.containerd_config_dir.value.trim_end_matches('/') != "/etc/containerd" {
        refuse(&cfg.containerd_config_dir.origin, "CONTAINERD_CONFIG_DIR: ferry writes containerd's configuration to /etc/containerd, where containerd and crictl look for it; set /etc/containerd or remove the key");
    }
    if cfg.containerd_service_name.value != "containerd.service" {
        refuse(&cfg.containerd_service_name.origin, "CONTAINERD_SERVICE_NAME: ferry installs containerd as containerd.service (kubelet's unit requires it by that name); set containerd.service or remove the key");
    }
    for dir in [&cfg.containerd_root_dir, &cfg.containerd_state_dir] {
        if !safe_absolute_path(&dir.value) {
            refuse(&dir.origin, "containerd's root and state directories must be absolute paths of letters, digits, '/', '.', '_' or '-', without '..'");
        }
    }
    if cfg.enable_mirror_registry.value {
        tracing::warn!("{}: ENABLE_MIRROR_REGISTRY: true adds kubeasz's public registry mirrors, which a disconnected site cannot reach; ferry adds none and serves every image from its own mirror", cfg.enable_mirror_registry.origin);
    }
    if !cfg.enable_cluster_audit.value {
        tracing::warn!("{}: ENABLE_CLUSTER_AUDIT: false is not honoured: ferry keeps the apiserver's audit log on, as the production profile requires", cfg.enable_cluster_audit.origin);
    }
    if cfg.enable_setting_hostname.value {
        tracing::warn!("{}: ENABLE_SETTING_HOSTNAME: ferry does not change the hosts' hostnames; each kubelet registers with its node name (K8S_NODENAME) through --hostname-override", cfg.enable_setting_hostname.origin);
    }
    problems
}

/// An absolute path ferry may write into a unit or a TOML file.
pub fn safe_absolute_path(p: &str) -> bool {
    p.starts_with('/')
        && !p.split('/').any(|part| part == "..")
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
}

/// A Go duration of whole hours, minutes or seconds (`876000h`, `8760h30m`), in days.
pub fn duration_days(text: &str) -> Result<i64, String> {
    let mut seconds: i64 = 0;
    let mut number = String::new();
    for ch in text.trim().chars() {
        if ch.is_ascii_digit() {
            number.push(ch);
            continue;
        }
        let unit = match ch {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(format!("unit `{ch}` is not h, m or s")),
        };
        let n: i64 = number
            .parse()
            .map_err(|_| format!("`{ch}` has no number before it"))?;
        seconds = n
            .checked_mul(unit)
            .and_then(|x| seconds.checked_add(x))
            .ok_or("too large")?;
        number.clear();
    }
    if !number.is_empty() || seconds == 0 {
        return Err("write hours like 876000h".into());
    }
    let days = seconds / 86_400;
    // X.509 cannot say anything after 9999-12-31; stay well inside it.
    if !(1..=365 * 1000).contains(&days) {
        return Err("must be between one day and 1000 years".into());
    }
    Ok(days)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_in_days() {
        assert_eq!(duration_days("876000h"), Ok(36500));
        assert_eq!(duration_days("438000h"), Ok(18250));
        assert_eq!(duration_days("48h30m"), Ok(2));
        assert!(duration_days("10y").unwrap_err().contains("unit `y`"));
        assert!(duration_days("100").is_err());
        assert!(duration_days("1h").is_err());
    }

    #[test]
    fn safe_paths() {
        assert!(safe_absolute_path("/data/containerd"));
        assert!(!safe_absolute_path("data"));
        assert!(!safe_absolute_path("/var/../etc"));
        assert!(!safe_absolute_path("/var/lib/x\"\nroot = \"/"));
    }
}
