//! etcdctl run on an etcd member, over TLS with the etcd CA and the client
//! certificate the plan places on that member.

use crate::exec::{sh_quote, Executor};
use crate::plan::{ClusterPlan, HostPlan};
use std::path::PathBuf;
use std::time::Duration;

/// How long a member may take to answer healthy after it (re)started.
pub const HEALTHY_TIMEOUT: Duration = Duration::from_secs(90);

/// An etcdctl command line on one member, up to its subcommand.
pub struct Etcdctl {
    prefix: String,
}

fn find_file<'a>(host: &'a HostPlan, suffixes: &[&str]) -> Option<&'a PathBuf> {
    suffixes.iter().find_map(|s| {
        host.files
            .iter()
            .find(|f| f.path.to_string_lossy().ends_with(s))
            .map(|f| &f.path)
    })
}

/// `https://<address>:<client port>` of `host`'s member.
pub fn client_endpoint(plan: &ClusterPlan, host: &HostPlan) -> String {
    plan.etcd_endpoints
        .iter()
        .find(|e| e.contains(&format!("//{}:", host.address)))
        .cloned()
        .unwrap_or_else(|| format!("https://{}:2379", host.address))
}

impl Etcdctl {
    /// etcdctl on `host`, talking to `endpoints`.
    pub fn on(
        plan: &ClusterPlan,
        host: &HostPlan,
        endpoints: &[String],
    ) -> Result<Etcdctl, String> {
        let ca = find_file(host, &["etcd/ca.pem"]);
        let cert = find_file(
            host,
            &[
                "etcd/healthcheck-client.pem",
                "etcd/client.pem",
                "etcd/peer.pem",
            ],
        );
        let (Some(ca), Some(cert)) = (ca, cert) else {
            return Err(format!(
                "{}: the plan has no etcd CA or client certificate for this host",
                host.name
            ));
        };
        let key = cert.to_string_lossy().replace(".pem", "-key.pem");
        let prefix = format!(
            "ETCDCTL_API=3 {etcdctl} --endpoints={endpoints} --cacert={ca} --cert={cert} --key={key} --command-timeout=5s",
            etcdctl = sh_quote(&plan.bin_dir.join("etcdctl").to_string_lossy()),
            endpoints = sh_quote(&endpoints.join(",")),
            ca = sh_quote(&ca.to_string_lossy()),
            cert = sh_quote(&cert.to_string_lossy()),
            key = sh_quote(&key),
        );
        Ok(Etcdctl { prefix })
    }

    /// The command for `args` (each quoted).
    pub fn command(&self, args: &[&str]) -> String {
        let args: Vec<String> = args.iter().map(|a| sh_quote(a)).collect();
        format!("{} {}", self.prefix, args.join(" "))
    }

    /// A script for a membership change (`member add`, `member remove`):
    /// etcd refuses one while a member has been connected for less than its
    /// health interval (5 s) after a join or restart ("unhealthy cluster"),
    /// so that answer is retried for up to 90 s; any other is printed.
    pub fn reconfig_script(&self, args: &[&str]) -> String {
        format!(
            "for i in $(seq 1 90); do out=$({cmd} 2>&1) && exit 0; case \"$out\" in *'unhealthy cluster'*) sleep 1;; *) break;; esac; done; echo \"$out\"; exit 1",
            cmd = self.command(args)
        )
    }

    /// A script that waits until the endpoints answer healthy, printing
    /// etcdctl's last answer when they do not within [`HEALTHY_TIMEOUT`].
    pub fn wait_healthy_script(&self) -> String {
        let polls = HEALTHY_TIMEOUT.as_secs() * 2;
        format!(
            "for i in $(seq 1 {polls}); do out=$({cmd} 2>&1) && exit 0; sleep 0.5; done; echo \"not healthy after {secs}s: $out\"; exit 1",
            cmd = self.command(&["endpoint", "health"]),
            secs = HEALTHY_TIMEOUT.as_secs()
        )
    }
}

/// A shell function, `snapshot_tool`, for etcd's offline snapshot commands
/// (`snapshot status`, `snapshot restore`): the bundle's etcdutl, which etcd
/// 3.5 ships for them (its `etcdctl snapshot status|restore` is deprecated),
/// else etcdctl on a host whose bundle carries no etcdutl.
pub fn snapshot_tool(plan: &ClusterPlan) -> String {
    let bin = |b: &str| sh_quote(&plan.bin_dir.join(b).to_string_lossy());
    format!(
        "snapshot_tool() {{ if [ -x {utl} ]; then {utl} \"$@\"; else ETCDCTL_API=3 {ctl} \"$@\"; fi; }}\n",
        utl = bin("etcdutl"),
        ctl = bin("etcdctl"),
    )
}

/// Waits until `host`'s own member answers healthy (run on `host`).
pub async fn wait_member_healthy(
    plan: &ClusterPlan,
    host: &HostPlan,
    exec: &Executor,
) -> Result<(), String> {
    let ctl = Etcdctl::on(plan, host, &[client_endpoint(plan, host)])?;
    let out = exec
        .run(&ctl.wait_healthy_script())
        .await
        .map_err(|e| e.to_string())?;
    if out.success() {
        Ok(())
    } else {
        Err(format!(
            "etcd member on {} is not healthy: {}",
            host.name,
            out.stdout.trim()
        ))
    }
}
