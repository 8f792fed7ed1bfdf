//! What a test host holds, to prove that ferry took away everything it
//! placed (`ferry node remove`, `ferry destroy`).

use super::rig::Rig;
use std::collections::BTreeSet;

/// Every file and symlink under the directories ferry writes to, on `host`.
pub fn file_list(rig: &Rig, host: &str) -> BTreeSet<String> {
    rig.sh(
        host,
        "find /etc /opt /usr/local /var/lib /srv -xdev \\( -type f -o -type l \\) 2>/dev/null | sort",
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

/// What the OS packages ferry installed from the bundle leave (they stay):
/// the package manager's and systemd's state, the rc.d links and files
/// their maintainer scripts write. Everything else a removed host has that
/// it did not have before the install was ferry's and must be gone.
pub const PACKAGE_STATE: [&str; 12] = [
    "/var/lib/dpkg/",
    "/var/lib/apt/",
    "/var/lib/systemd/",
    "/var/lib/ucf/",
    "/var/lib/python/",
    "/etc/python3/",
    "/etc/apparmor.d/local/",
    "/etc/ld.so.cache",
    // readline-common's postinst
    "/etc/inputrc",
    // haproxy's own unit bind-mounts /dev/log into its chroot; systemd
    // makes the mount point (on [ex_lb] hosts, where haproxy.service ran)
    "/var/lib/haproxy/dev/log",
    // chrony's postinst
    "/etc/chrony/chrony.keys",
    "/etc/rc",
];

/// What `host` has now that it did not have before the install, less what
/// the packages own (in dpkg's file lists, or as a link to a file they
/// list) or write. One script on the host checks every path: a `dpkg -S`
/// per path took minutes on a host that gained packages.
pub fn left_behind(rig: &Rig, host: &str, before: &BTreeSet<String>) -> Vec<String> {
    let now = file_list(rig, host);
    let candidates: Vec<&String> = now
        .difference(before)
        .filter(|p| !PACKAGE_STATE.iter().any(|s| p.starts_with(s)))
        .collect();
    if candidates.is_empty() {
        return Vec::new();
    }
    let list: Vec<&str> = candidates.iter().map(|p| p.as_str()).collect();
    let script = format!(
        "owned=$(mktemp); cat /var/lib/dpkg/info/*.list | sort -u >\"$owned\"\n\
         is_owned() {{ grep -qxF -- \"$1\" \"$owned\"; }}\n\
         while IFS= read -r p; do\n\
           is_owned \"$p\" && continue\n\
           if [ -L \"$p\" ]; then t=$(readlink -f \"$p\"); is_owned \"$t\" && continue; is_owned \"$(printf '%s' \"$t\" | sed 's,^/usr/lib/,/lib/,')\" && continue; fi\n\
           printf '%s\\n' \"$p\"\n\
         done <<'PATHS'\n{}\nPATHS\n\
         rm -f \"$owned\"\n",
        list.join("\n")
    );
    let out = rig.exec(host, &script);
    assert!(
        out.status.success(),
        "{host}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}
