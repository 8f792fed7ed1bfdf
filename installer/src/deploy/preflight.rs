//! Preflight: every check on every host, all problems reported together,
//! before anything is changed.

use crate::exec::Executor;
use crate::plan::{ClusterPlan, HostPlan, Role};
use ferry_bundles::BundleManifest;
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// Largest tolerated clock difference between the deploy host and a host.
pub const MAX_CLOCK_SKEW_SECS: f64 = 5.0;
/// Free space needed on `/` (binaries, images, etcd).
pub const MIN_FREE_KIB: u64 = 2 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub host: String,
    pub problem: String,
    /// Warnings are printed but do not stop the install.
    pub warning: bool,
}

/// Facts a host reported, used by the cross-host checks.
#[derive(Debug, Default, Clone)]
pub struct HostFacts {
    pub hostname: String,
    pub container: bool,
    /// Packages to install from the bundle's OS package set.
    pub packages: Option<super::packages::PackageWork>,
}

/// The shell script that reports a host's facts as `key=value` lines. It
/// needs only what Debian's minimal base has (no `ss`: listening sockets are
/// read from /proc/net and their process from /proc/*/fd).
pub fn facts_script(ports: &[u16], modules: &[String], packages: &[String]) -> String {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    let quote = |names: &[String]| -> Vec<String> {
        names.iter().map(|n| crate::exec::sh_quote(n)).collect()
    };
    let (modules, packages) = (quote(modules), quote(packages));
    format!(
        r#"echo "arch=$(uname -m)"
if [ -r /etc/os-release ]; then . /etc/os-release; echo "os=$ID $VERSION_ID"; else echo "os=unknown"; fi
if [ -d /run/systemd/system ]; then echo systemd=1; else echo systemd=0; fi
echo "time=$(date +%s.%N)"
echo "hostname=$(hostname)"
echo "container=$(systemd-detect-virt -c 2>/dev/null || true)"
echo "disk=$(df -Pk / | awk 'NR==2{{print $4}}')"
echo "swap=$(awk 'NR>1' /proc/swaps 2>/dev/null | wc -l)"
echo "capbnd=$(awk '/^CapBnd:/{{print $2}}' /proc/self/status)"
echo "kernel=$(uname -r)"
echo "cgroup=$(stat -fc %T /sys/fs/cgroup 2>/dev/null)"
echo "systemd_version=$(systemctl --version 2>/dev/null | awk 'NR==1{{print $2}}')"
for m in {modules}; do if [ -d /sys/module/$m ] || modprobe -n $m 2>/dev/null; then :; else echo "nomod=$m"; fi; done
for p in {ports}; do
  hex=$(printf ':%04X' "$p")
  inode=$(awk -v port="$hex" '$4 == "0A" && substr($2, length($2) - 4) == port {{ print $10; exit }}' /proc/net/tcp /proc/net/tcp6 2>/dev/null)
  [ -n "$inode" ] || continue
  pid=
  for fd in /proc/[0-9]*/fd/*; do
    if [ "$(readlink "$fd" 2>/dev/null)" = "socket:[$inode]" ]; then pid=${{fd#/proc/}}; pid=${{pid%%/*}}; break; fi
  done
  unit=$(grep -o '[^/]*\.service' /proc/$pid/cgroup 2>/dev/null | head -n1)
  echo "port=$p ${{unit:-unknown}}"
done
for p in {packages}; do
  if command -v dpkg-query >/dev/null 2>&1; then
    [ "$(dpkg-query -W -f='${{db:Status-Status}}' "$p" 2>/dev/null)" = installed ] && echo "installed=$p"
  elif command -v rpm >/dev/null 2>&1; then
    rpm -q "$p" >/dev/null 2>&1 && echo "installed=$p"
  fi
done
true
"#,
        modules = modules.join(" "),
        ports = ports.join(" "),
        packages = packages.join(" ")
    )
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn deb_arch(uname_m: &str) -> &str {
    match uname_m {
        "x86_64" => "amd64",
        "aarch64" | "arm64" => "arm64",
        "armv7l" => "arm",
        "ppc64le" => "ppc64le",
        "s390x" => "s390x",
        other => other,
    }
}

/// Ports a host must have free (or held by the unit ferry runs there).
pub fn ports_for(plan: &ClusterPlan, host: &HostPlan) -> Vec<u16> {
    let mut ports = Vec::new();
    if host.has(Role::Etcd) {
        ports.extend([2379, 2380]);
    }
    if host.has(Role::Master) {
        ports.extend([6443, 10257, 10259]);
    }
    if host.has(Role::Master) || host.has(Role::Node) {
        ports.extend([10250, 10256]);
        // The node's local apiserver balancer on 127.0.0.1.
        ports.extend(endpoint_port(&plan.node_apiserver_endpoint));
    }
    if host.has(Role::Registry) {
        for m in &plan.registry_mirrors {
            if let Some((ip, port)) = m.rsplit_once(':') {
                if ip == host.address {
                    ports.extend(port.parse::<u16>());
                }
            }
        }
    }
    if host.has(Role::ExLb) {
        if let Some(port) = endpoint_port(&plan.apiserver_endpoint) {
            if !host.has(Role::Master) || port != 6443 {
                ports.push(port);
            }
        }
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The port of an `https://host:port` endpoint.
fn endpoint_port(endpoint: &str) -> Option<u16> {
    endpoint
        .rsplit_once(':')
        .and_then(|(_, p)| p.trim_end_matches('/').parse::<u16>().ok())
}

/// Kernel modules the host's baseline loads (the plan's data, never its text).
pub fn modules_for(host: &HostPlan) -> Vec<String> {
    host.kernel_modules.clone()
}

/// What the facts script printed: `key=value` lines, a key may repeat.
struct Reported<'a>(BTreeMap<&'a str, Vec<&'a str>>);

impl<'a> Reported<'a> {
    fn parse(text: &'a str) -> Self {
        let mut kv: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for line in text.lines() {
            if let Some((k, v)) = line.split_once('=') {
                kv.entry(k).or_default().push(v);
            }
        }
        Reported(kv)
    }

    /// The first value of a key; empty when the script did not print it.
    fn one(&self, k: &str) -> &'a str {
        self.0.get(k).and_then(|v| v.first().copied()).unwrap_or("")
    }

    /// Every value of a repeated key, in the order printed.
    fn all(&self, k: &str) -> Vec<&'a str> {
        self.0.get(k).cloned().unwrap_or_default()
    }
}

/// Problems of one group of checks: (text, warning), in the order found.
type Problems = Vec<(String, bool)>;

/// Checks one host; returns its findings and facts.
pub async fn check_host(
    plan: &ClusterPlan,
    host: &HostPlan,
    bundle: &BundleManifest,
    exec: &Executor,
) -> (Vec<Finding>, HostFacts) {
    let finding = |(problem, warning): (String, bool)| Finding {
        host: host.name.clone(),
        problem,
        warning,
    };
    let ports = ports_for(plan, host);
    let modules = modules_for(host);
    let before = now();
    let packages = super::packages::query_names(bundle);
    let identity = super::identity::planned(host);
    let script = facts_script(&ports, &modules, &packages) + &super::identity::script(&identity);
    let text = match exec.check(&script).await {
        Ok(t) => t,
        Err(e) => {
            let cannot = finding((format!("cannot collect facts: {e}"), false));
            return (vec![cannot], HostFacts::default());
        }
    };
    let local = (before + now()) / 2.0;
    let kv = Reported::parse(&text);
    let (package_problems, package_work) = super::packages::check(
        bundle,
        &|unit| host.services.iter().any(|s| s.unit == unit),
        kv.one("os"),
        deb_arch(kv.one("arch")),
        &kv.all("installed"),
    );
    let facts = HostFacts {
        hostname: kv.one("hostname").to_string(),
        container: !kv.one("container").is_empty() && kv.one("container") != "none",
        packages: package_work,
    };
    let mut problems = platform_problems(host, &bundle.platforms, &kv);
    problems.extend(package_problems.into_iter().map(|p| (p, false)));
    problems.extend(resource_problems(&kv, local));
    problems.extend(kernel_problems(plan, host, &kv, facts.container));
    problems.extend(os_version_problems(&plan.cni, &kv));
    problems.extend(port_problems(host, &kv));
    if !plan.new_cluster {
        let found = super::identity::problems(&plan.cluster_dir, &identity, &kv.all("identity"));
        problems.extend(found.into_iter().map(|p| (p, false)));
    }
    (problems.into_iter().map(finding).collect(), facts)
}

/// The architecture (the plan's, and in the bundle), systemd, and an OS
/// ferry has been tried on.
fn platform_problems(host: &HostPlan, platforms: &[String], kv: &Reported) -> Problems {
    let mut out = Vec::new();
    let arch = deb_arch(kv.one("arch"));
    if arch != host.arch {
        out.push((
            format!(
                "architecture is {arch} ({}) but the inventory/plan says {}",
                kv.one("arch"),
                host.arch
            ),
            false,
        ));
    }
    if !platforms.iter().any(|p| p == &format!("linux/{arch}")) {
        out.push((
            format!("architecture {arch} is not in the bundle (it has {}): build a bundle with --platform linux/{arch}", platforms.join(", ")),
            false,
        ));
    }
    if kv.one("systemd") != "1" {
        out.push((
            format!(
                "not running systemd (OS {}): ferry installs systemd units",
                kv.one("os")
            ),
            false,
        ));
    }
    let os = kv.one("os");
    let known = [
        "debian",
        "ubuntu",
        "rhel",
        "rocky",
        "almalinux",
        "centos",
        "ol",
        "openEuler",
        "kylin",
        "anolis",
        "sles",
        "opensuse-leap",
        "fedora",
    ];
    if !known
        .iter()
        .any(|k| os.split_whitespace().next() == Some(k))
    {
        out.push((
            format!("operating system {os:?} has not been tried with ferry"),
            true,
        ));
    }
    out
}

/// The clock against the deploy host's (`local`), free space on `/`, and swap.
fn resource_problems(kv: &Reported, local: f64) -> Problems {
    let mut out = Vec::new();
    match kv.one("time").parse::<f64>() {
        Ok(t) if (t - local).abs() > MAX_CLOCK_SKEW_SECS => out.push((
            format!("clock differs from the deploy host by {:.1}s (limit {MAX_CLOCK_SKEW_SECS}s): fix time sync (chrony) first; TLS and etcd need it", t - local),
            false,
        )),
        Ok(_) => {}
        Err(_) => out.push((format!("cannot read the clock: {:?}", kv.one("time")), false)),
    }
    match kv.one("disk").parse::<u64>() {
        Ok(k) if k < MIN_FREE_KIB => out.push((
            format!(
                "only {} MiB free on / (need {} MiB)",
                k / 1024,
                MIN_FREE_KIB / 1024
            ),
            false,
        )),
        Ok(_) => {}
        Err(_) => out.push(("cannot read free disk space on /".into(), false)),
    }
    if kv.one("swap").parse::<u64>().unwrap_or(0) > 0 {
        out.push((
            "swap is on: the OS baseline turns it off (kubelet needs that)".into(),
            true,
        ));
    }
    out
}

/// Kernel modules the plan loads (only a warning in a container, whose
/// modules are the host's), and lowering OOM scores.
fn kernel_problems(
    plan: &ClusterPlan,
    host: &HostPlan,
    kv: &Reported,
    container: bool,
) -> Problems {
    let mut out = Vec::new();
    for m in kv.all("nomod") {
        if container {
            out.push((format!("kernel module {m} is not loaded; in a container the host kernel's modules apply"), true));
        } else {
            out.push((format!("kernel module {m} is neither loaded nor available (modprobe -n {m} fails): install the kernel's modules package"), false));
        }
    }
    if let Some(p) = oom_score_problem(plan, host, kv.one("capbnd")) {
        out.push((p, false));
    }
    out
}

/// The oldest kernel the guide supports, and the oldest Cilium's datapath needs.
const MIN_KERNEL: (u32, u32) = (5, 4);
const MIN_KERNEL_CILIUM: (u32, u32) = (5, 10);
/// The oldest systemd of the supported distributions (Rocky Linux 8).
const MIN_SYSTEMD: u32 = 239;

/// The kernel's (major, minor) from `uname -r` (`6.1.0-18-amd64` -> (6, 1)).
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The kernel against the guide's minimum (higher with Cilium), cgroup v2,
/// and systemd's version.
fn os_version_problems(cni: &str, kv: &Reported) -> Problems {
    let mut out = Vec::new();
    let (need, why) = match cni {
        "cilium" => (MIN_KERNEL_CILIUM, "with Cilium"),
        _ => (MIN_KERNEL, "for Kubernetes nodes"),
    };
    match kernel_version(kv.one("kernel")) {
        Some(v) if v < need => out.push((
            format!(
                "kernel {} is older than {}.{}, the guide's minimum {why}: upgrade the kernel",
                kv.one("kernel"),
                need.0,
                need.1
            ),
            false,
        )),
        Some(_) => {}
        None => out.push((
            format!("cannot read the kernel version: {:?}", kv.one("kernel")),
            false,
        )),
    }
    if kv.one("cgroup") != "cgroup2fs" {
        out.push((
            format!(
                "cgroup v1 (/sys/fs/cgroup is {}): Kubernetes keeps cgroup v1 in maintenance only from 1.31 and the guide's hosts run cgroup v2; boot with systemd.unified_cgroup_hierarchy=1",
                if kv.one("cgroup").is_empty() { "unreadable" } else { kv.one("cgroup") }
            ),
            true,
        ));
    }
    match kv.one("systemd_version").parse::<u32>() {
        Ok(v) if v < MIN_SYSTEMD => out.push((
            format!("systemd {v} is older than {MIN_SYSTEMD}: ferry's units need a newer systemd"),
            false,
        )),
        Ok(_) => {}
        Err(_) if kv.one("systemd") != "1" => {} // reported as "not running systemd"
        Err(_) => out.push((
            format!(
                "cannot read systemd's version: {:?}",
                kv.one("systemd_version")
            ),
            false,
        )),
    }
    out
}

/// Ports the host needs that a unit other than ferry's holds.
fn port_problems(host: &HostPlan, kv: &Reported) -> Problems {
    let ours: Vec<&str> = host.services.iter().map(|s| s.unit.as_str()).collect();
    let mut out = Vec::new();
    for p in kv.all("port") {
        let (port, unit) = p.split_once(' ').unwrap_or((p, "unknown"));
        if !ours.contains(&unit) {
            out.push((
                format!("port {port} is already in use by {unit}: stop it or free the port"),
                false,
            ));
        }
    }
    out
}

/// CAP_SYS_RESOURCE, which lowering a process's OOM score below its parent's needs.
const CAP_SYS_RESOURCE: u32 = 24;

/// containerd's CRI gives pod sandboxes an OOM score of -998; a host without
/// CAP_SYS_RESOURCE (a container such as LXC) cannot set it, and every pod
/// then fails to start with a runc error that does not say why.
fn oom_score_problem(plan: &ClusterPlan, host: &HostPlan, capbnd: &str) -> Option<String> {
    let runs_containerd = host.services.iter().any(|s| s.unit == "containerd.service");
    if !runs_containerd || plan.restrict_oom_score_adj {
        return None;
    }
    let caps = u64::from_str_radix(capbnd.trim(), 16).ok()?;
    (caps & (1 << CAP_SYS_RESOURCE) == 0).then(|| {
        "cannot lower OOM scores (no CAP_SYS_RESOURCE, as in a container): containerd could not \
         start any pod sandbox; set CONTAINERD_RESTRICT_OOM_SCORE_ADJ: true in config.yml"
            .to_owned()
    })
}

/// Cross-host checks: node names must be unique (the kubelet registers by hostname).
pub fn check_unique_hostnames(facts: &[(String, HostFacts)]) -> Vec<Finding> {
    let mut seen: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (host, f) in facts {
        if !f.hostname.is_empty() {
            seen.entry(f.hostname.as_str())
                .or_default()
                .push(host.as_str());
        }
    }
    seen.into_iter()
        .filter(|(_, hosts)| hosts.len() > 1)
        .flat_map(|(name, hosts)| {
            let all = hosts.join(", ");
            hosts.into_iter().map(move |h| Finding {
                host: h.to_string(),
                problem: format!(
                    "hostname {name:?} is shared by {all}: give every host its own hostname"
                ),
                warning: false,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_hostnames_are_reported_on_every_host_having_them() {
        let f = |n: &str| HostFacts {
            hostname: n.into(),
            ..HostFacts::default()
        };
        let facts = vec![
            ("a".into(), f("x")),
            ("b".into(), f("y")),
            ("c".into(), f("x")),
        ];
        let found = check_unique_hostnames(&facts);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].host, "a");
        assert_eq!(found[1].host, "c");
        assert!(found[0].problem.contains("a, c"));
    }

    use crate::plan::{PlannedService, SshTarget, Step};
    use std::path::PathBuf;

    /// What `facts_script` prints on this machine, run with `sh`.
    fn real_report(ports: &[u16], modules: &[String]) -> String {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(facts_script(ports, modules, &[]))
            .output()
            .expect("run sh");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).expect("UTF-8 facts")
    }

    /// `report` with each `(key, value)` as its `key=value` line instead.
    fn set(report: &str, facts: &[(&str, &str)]) -> String {
        let mut out = String::new();
        for line in report.lines() {
            let key = line.split_once('=').map_or(line, |(k, _)| k);
            match facts.iter().find(|(k, _)| *k == key) {
                Some((k, v)) => out += &format!("{k}={v}\n"),
                None => out += &format!("{line}\n"),
            }
        }
        for (k, _) in facts {
            let printed = report.lines().any(|l| l.starts_with(&format!("{k}=")));
            assert!(printed, "facts_script prints no {k}=:\n{report}");
        }
        out
    }

    /// This machine's real report, with the facts a test machine may lack
    /// (it may be a container without systemd, on cgroup v1, ...) healthy.
    fn healthy() -> String {
        set(
            &real_report(&[], &[]),
            &[
                ("os", "debian 12"),
                ("systemd", "1"),
                ("container", "none"),
                ("disk", "104857600"),
                ("swap", "0"),
                ("capbnd", "000001ffffffffff"),
                ("kernel", "6.1.0-18-amd64"),
                ("cgroup", "cgroup2fs"),
                ("systemd_version", "252"),
            ],
        )
    }

    /// An etcd member, master and node running containerd, etcd and kubelet,
    /// of this machine's architecture, in a Calico cluster.
    fn plan() -> ClusterPlan {
        let arch = deb_arch(Reported::parse(&healthy()).one("arch")).to_owned();
        let service = |unit: &str, step| PlannedService {
            unit: unit.into(),
            step,
            enable: true,
        };
        let host = HostPlan {
            name: "h1".into(),
            inventory_host: "10.0.0.11".into(),
            address: "10.0.0.11".into(),
            ssh: SshTarget {
                host: "10.0.0.11".into(),
                port: 22,
                user: "root".into(),
                identity_file: None,
                become_root: false,
            },
            arch,
            roles: [Role::Etcd, Role::Master, Role::Node].into_iter().collect(),
            pool: None,
            files: Vec::new(),
            archives: Vec::new(),
            services: vec![
                service("containerd.service", Step::Containerd),
                service("etcd.service", Step::Etcd),
                service("kubelet.service", Step::Nodes),
            ],
            kernel_modules: vec!["overlay".into(), "br_netfilter".into()],
            sysctls: Vec::new(),
        };
        ClusterPlan {
            cluster_name: "c1".into(),
            cni: "calico".into(),
            cluster_dir: PathBuf::from("/etc/ferry/clusters/c1"),
            kubernetes: "1.29.6".into(),
            bundle_name: "prod".into(),
            registry_mirrors: Vec::new(),
            vip: None,
            apiserver_endpoint: "https://10.0.0.11:6443".into(),
            node_apiserver_endpoint: "https://127.0.0.1:6444".into(),
            apiserver_port: 6443,
            etcd_endpoints: vec!["https://10.0.0.11:2379".into()],
            bin_dir: PathBuf::from("/opt/kube/bin"),
            restrict_oom_score_adj: false,
            admin_kubeconfig: PathBuf::from("/etc/ferry/clusters/c1/admin.kubeconfig"),
            hosts: vec![host],
            new_cluster: false,
            etcd_members: Default::default(),
            data_dirs: Default::default(),
        }
    }

    /// Every per-host check of [`check_host`] on `report` (the packages'
    /// and identity checks have their own tests), against the deploy host's
    /// clock `local` and a bundle of the plan's architecture.
    fn problems_at(plan: &ClusterPlan, report: &str, local: f64) -> Problems {
        let (host, kv) = (&plan.hosts[0], Reported::parse(report));
        let container = !kv.one("container").is_empty() && kv.one("container") != "none";
        let platforms = [format!("linux/{}", host.arch)];
        let mut out = platform_problems(host, &platforms, &kv);
        out.extend(resource_problems(&kv, local));
        out.extend(kernel_problems(plan, host, &kv, container));
        out.extend(os_version_problems(&plan.cni, &kv));
        out.extend(port_problems(host, &kv));
        out
    }

    /// [`problems_at`] with the deploy host's clock equal to the report's.
    fn problems(plan: &ClusterPlan, report: &str) -> Problems {
        let time = Reported::parse(report).one("time").parse().unwrap_or(0.0);
        problems_at(plan, report, time)
    }

    fn error(text: &str) -> Problems {
        vec![(text.to_owned(), false)]
    }

    fn warning(text: &str) -> Problems {
        vec![(text.to_owned(), true)]
    }

    #[test]
    fn a_healthy_report_has_no_problem() {
        let report = healthy();
        assert_eq!(problems(&plan(), &report), Problems::new(), "{report}");
        // Against the real clock too: the report was made just now.
        assert_eq!(problems_at(&plan(), &report, now()), Problems::new());
    }

    #[test]
    fn clock_skew_beyond_the_limit_is_an_error() {
        let (plan, report) = (plan(), healthy());
        let t: f64 = Reported::parse(&report).one("time").parse().unwrap();
        let skew = "fix time sync (chrony) first; TLS and etcd need it";
        assert_eq!(
            problems_at(&plan, &report, t - 30.0),
            error(&format!(
                "clock differs from the deploy host by 30.0s (limit 5s): {skew}"
            ))
        );
        assert_eq!(
            problems_at(&plan, &report, t + 7.5),
            error(&format!(
                "clock differs from the deploy host by -7.5s (limit 5s): {skew}"
            ))
        );
        assert_eq!(problems_at(&plan, &report, t + 4.5), Problems::new());
        let report = set(&report, &[("time", "%s.%N")]);
        assert_eq!(
            problems(&plan, &report),
            error("cannot read the clock: \"%s.%N\"")
        );
    }

    #[test]
    fn too_little_disk_is_an_error() {
        let report = set(&healthy(), &[("disk", "1048576")]);
        assert_eq!(
            problems(&plan(), &report),
            error("only 1024 MiB free on / (need 2048 MiB)")
        );
        let report = set(&healthy(), &[("disk", "")]);
        assert_eq!(
            problems(&plan(), &report),
            error("cannot read free disk space on /")
        );
    }

    #[test]
    fn swap_on_is_a_warning() {
        let report = set(&healthy(), &[("swap", "1")]);
        assert_eq!(
            problems(&plan(), &report),
            warning("swap is on: the OS baseline turns it off (kubelet needs that)")
        );
    }

    #[test]
    fn an_os_not_tried_is_a_warning() {
        let report = set(&healthy(), &[("os", "gentoo 2.15")]);
        assert_eq!(
            problems(&plan(), &report),
            warning("operating system \"gentoo 2.15\" has not been tried with ferry")
        );
    }

    #[test]
    fn no_systemd_is_an_error() {
        let report = set(&healthy(), &[("systemd", "0"), ("systemd_version", "")]);
        assert_eq!(
            problems(&plan(), &report),
            error("not running systemd (OS debian 12): ferry installs systemd units")
        );
    }

    #[test]
    fn an_architecture_other_than_the_plans_is_an_error() {
        let mut plan = plan();
        plan.hosts[0].arch = "arm64".into();
        let report = set(&healthy(), &[("arch", "x86_64")]);
        let (host, kv) = (&plan.hosts[0], Reported::parse(&report));
        let both = ["linux/amd64".to_owned(), "linux/arm64".to_owned()];
        assert_eq!(
            platform_problems(host, &both, &kv),
            error("architecture is amd64 (x86_64) but the inventory/plan says arm64")
        );
    }

    #[test]
    fn an_architecture_the_bundle_lacks_is_an_error() {
        let mut plan = plan();
        plan.hosts[0].arch = "arm64".into();
        let report = set(&healthy(), &[("arch", "aarch64")]);
        let kv = Reported::parse(&report);
        assert_eq!(
            platform_problems(&plan.hosts[0], &["linux/amd64".to_owned()], &kv),
            error("architecture arm64 is not in the bundle (it has linux/amd64): build a bundle with --platform linux/arm64")
        );
    }

    #[test]
    fn a_missing_kernel_module_is_reported_for_real() {
        // A module this machine has (loaded or built in), and one nobody has.
        let present = std::fs::read_dir("/sys/module")
            .expect("/sys/module")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .next()
            .expect("a module in /sys/module");
        let modules = [present, "ferry_no_such_module".to_owned()];
        let real = real_report(&[], &modules);
        assert!(real.contains("\nnomod=ferry_no_such_module\n"), "{real}");
        assert!(!real.contains(&format!("nomod={}\n", modules[0])), "{real}");
        let nomod: Vec<&str> = real.lines().filter(|l| l.starts_with("nomod=")).collect();
        let report = healthy() + &nomod.join("\n") + "\n";
        assert_eq!(
            problems(&plan(), &report),
            error("kernel module ferry_no_such_module is neither loaded nor available (modprobe -n ferry_no_such_module fails): install the kernel's modules package")
        );
        // In a container the host kernel's modules apply: a warning.
        let report = set(&report, &[("container", "lxc")]);
        assert_eq!(
            problems(&plan(), &report),
            warning("kernel module ferry_no_such_module is not loaded; in a container the host kernel's modules apply")
        );
    }

    #[test]
    fn no_cap_sys_resource_with_containerd_is_an_error_unless_restricted() {
        // CapBnd without bit 24 (CAP_SYS_RESOURCE), as in a Docker or LXC container.
        let report = set(&healthy(), &[("capbnd", "000001fffeffffff")]);
        let mut plan = plan();
        let found = problems(&plan, &report);
        let [(text, false)] = &found[..] else {
            panic!("{found:?}");
        };
        assert!(
            text.starts_with("cannot lower OOM scores (no CAP_SYS_RESOURCE")
                && text.ends_with("set CONTAINERD_RESTRICT_OOM_SCORE_ADJ: true in config.yml"),
            "{text}"
        );
        plan.restrict_oom_score_adj = true;
        assert_eq!(problems(&plan, &report), Problems::new());
    }

    #[test]
    fn a_kernel_below_the_minimum_is_an_error() {
        let mut plan = plan();
        let report = set(&healthy(), &[("kernel", "4.18.0-513.el8.x86_64")]);
        assert_eq!(
            problems(&plan, &report),
            error("kernel 4.18.0-513.el8.x86_64 is older than 5.4, the guide's minimum for Kubernetes nodes: upgrade the kernel")
        );
        // Cilium needs 5.10; Calico nodes 5.4.
        let report = set(&healthy(), &[("kernel", "5.4.0-150-generic")]);
        assert_eq!(problems(&plan, &report), Problems::new());
        plan.cni = "cilium".into();
        assert_eq!(
            problems(&plan, &report),
            error("kernel 5.4.0-150-generic is older than 5.10, the guide's minimum with Cilium: upgrade the kernel")
        );
        let report = set(&healthy(), &[("kernel", "")]);
        assert_eq!(
            problems(&plan, &report),
            error("cannot read the kernel version: \"\"")
        );
    }

    #[test]
    fn cgroup_v1_is_a_warning() {
        let report = set(&healthy(), &[("cgroup", "tmpfs")]);
        let found = problems(&plan(), &report);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0]
                .0
                .starts_with("cgroup v1 (/sys/fs/cgroup is tmpfs): ")
                && found[0].1,
            "{found:?}"
        );
    }

    #[test]
    fn an_old_systemd_is_an_error() {
        let report = set(&healthy(), &[("systemd_version", "219")]);
        assert_eq!(
            problems(&plan(), &report),
            error("systemd 219 is older than 239: ferry's units need a newer systemd")
        );
        let report = set(&healthy(), &[("systemd_version", "")]);
        assert_eq!(
            problems(&plan(), &report),
            error("cannot read systemd's version: \"\"")
        );
    }

    /// The unit this process runs in, as the facts script finds it.
    fn own_unit() -> String {
        let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        cgroup
            .split(['/', '\n'])
            .find(|part| part.ends_with(".service"))
            .unwrap_or("unknown")
            .to_owned()
    }

    #[test]
    fn a_port_in_use_is_reported_for_real_with_its_unit() {
        // A listener this test holds on a port of the host's list.
        let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = held.local_addr().expect("address").port();
        let real = real_report(&[port], &[]);
        let unit = own_unit();
        assert!(real.contains(&format!("\nport={port} {unit}\n")), "{real}");
        let line = real.lines().find(|l| l.starts_with("port=")).unwrap();
        let report = format!("{}{line}\n", healthy());
        assert_eq!(
            problems(&plan(), &report),
            error(&format!(
                "port {port} is already in use by {unit}: stop it or free the port"
            ))
        );
        drop(held);
    }

    #[test]
    fn a_port_held_by_the_hosts_own_unit_is_no_problem() {
        let report = healthy() + "port=2379 etcd.service\n";
        assert_eq!(problems(&plan(), &report), Problems::new());
        let report = healthy() + "port=2379 docker.service\n";
        assert_eq!(
            problems(&plan(), &report),
            error("port 2379 is already in use by docker.service: stop it or free the port")
        );
    }

    #[test]
    fn arch_names_follow_debian() {
        assert_eq!(deb_arch("x86_64"), "amd64");
        assert_eq!(deb_arch("aarch64"), "arm64");
    }
}
