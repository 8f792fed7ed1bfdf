use anyhow::Context;
use clap::Args;
use ferry_bundles::{BundleManifest, BundleSource};
use ferry_installer::plan::{build_plan, ClusterPlan, FileContent, PlanOptions};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct PlanArgs {
    /// kubeasz hosts file (Ansible INI inventory).
    #[arg(long)]
    pub inventory: PathBuf,
    /// kubeasz config.yml.
    #[arg(long)]
    pub config: PathBuf,
    /// The bundle (`.tar.zst`, `.parts.json`, first part), or its bundle.json.
    #[arg(long)]
    pub bundle: PathBuf,
    /// Write every host's rendered files under OUT/hosts/<name>/ and the plan as OUT/plan.json.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// PKI, kubeconfigs and secrets [default: /etc/ferry/clusters/<CLUSTER_NAME>].
    #[arg(long)]
    pub cluster_dir: Option<PathBuf>,
    /// Renew every leaf certificate (the CAs are kept).
    #[arg(long)]
    pub rotate: bool,
    /// Print the plan as JSON instead of the summary (file contents are summarised, never printed).
    #[arg(long)]
    pub json: bool,
}

/// bundle.json from a bundle file, or a bare bundle.json (for review before the bundle arrives).
pub fn load_manifest(path: &Path) -> anyhow::Result<BundleManifest> {
    if path.extension().is_some_and(|e| e == "json")
        && !path.to_string_lossy().ends_with(".parts.json")
    {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        return BundleManifest::from_bytes(&bytes)
            .with_context(|| format!("{}: not a bundle.json", path.display()));
    }
    let source = BundleSource::open(path)?;
    Ok(ferry_bundles::read_manifest(&source)?.manifest)
}

pub fn run(args: PlanArgs) -> anyhow::Result<()> {
    let bundle = load_manifest(&args.bundle)?;
    let plan = build_plan(
        &args.inventory,
        &args.config,
        &bundle,
        args.cluster_dir.as_deref(),
        &PlanOptions {
            rotate: args.rotate,
        },
    )?;
    if let Some(out) = &args.out {
        write_tree(&plan, out)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{}", summary(&plan, args.out.as_deref()));
    }
    Ok(())
}

/// Inline files go to OUT/hosts/<name>/<absolute path> with their planned mode;
/// files copied from the bundle are listed in OUT/plan.json.
fn write_tree(plan: &ClusterPlan, out: &Path) -> anyhow::Result<()> {
    for h in &plan.hosts {
        let root = out.join("hosts").join(&h.name);
        for f in &h.files {
            let FileContent::Inline(bytes) = &f.content else {
                continue;
            };
            let rel = f.path.strip_prefix("/").unwrap_or(&f.path);
            ferry_installer::pki::write_if_changed(&root.join(rel), bytes, f.secret)?;
        }
    }
    let mut json = serde_json::to_vec_pretty(plan)?;
    json.push(b'\n');
    ferry_installer::pki::write_if_changed(&out.join("plan.json"), &json, false)?;
    Ok(())
}

fn summary(plan: &ClusterPlan, out: Option<&Path>) -> String {
    let mut s = format!(
        "cluster {} (Kubernetes {}, bundle {})\n  apiserver {}  registry mirror(s) {}\n  cluster dir {}\n",
        plan.cluster_name,
        plan.kubernetes,
        plan.bundle_name,
        plan.apiserver_endpoint,
        plan.registry_mirrors.join(", "),
        plan.cluster_dir.display()
    );
    s.push_str(&format!(
        "{:<12} {:<15} {:<6} {:<32} {:>5} {:>8}  services\n",
        "host", "address", "arch", "roles", "files", "archives"
    ));
    for h in &plan.hosts {
        let roles: Vec<&str> = h.roles.iter().map(|r| r.as_str()).collect();
        let units: Vec<&str> = h
            .services
            .iter()
            .filter(|u| u.enable)
            .map(|u| u.unit.trim_end_matches(".service"))
            .collect();
        s.push_str(&format!(
            "{:<12} {:<15} {:<6} {:<32} {:>5} {:>8}  {}\n",
            h.name,
            h.address,
            h.arch,
            roles.join(","),
            h.files.len(),
            h.archives.len(),
            units.join(" ")
        ));
    }
    if let Some(out) = out {
        s.push_str(&format!(
            "wrote {} host trees and plan.json to {}\n",
            plan.hosts.len(),
            out.display()
        ));
    }
    s
}
