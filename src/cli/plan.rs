use super::trust::TrustArgs;
use anyhow::Context;
use clap::Args;
use ferry_bundles::{BundleManifest, BundleSource};
use ferry_installer::plan::addon_artifacts::Artifacts;
use ferry_installer::plan::pools::Pool;
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
    /// The bundle (`.tar.zst`, `.parts.json`, first part), or an unpacked
    /// bundle (`<data-dir>/bundles/<name>` or the bundle.json in it). A bundle
    /// file is verified first: the addons are rendered from its artifacts.
    #[arg(long)]
    pub bundle: PathBuf,
    #[command(flatten)]
    pub trust: TrustArgs,
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

/// The bundle to plan with: its manifest and where its files are.
struct PlanBundle {
    manifest: BundleManifest,
    artifacts: Artifacts,
    /// Holds the files extracted from a bundle file while the plan runs.
    _extracted: Option<tempfile::TempDir>,
}

/// bundle.json from a bundle file, a bundle.json, or an unpacked bundle's directory.
pub fn load_manifest(path: &Path) -> anyhow::Result<BundleManifest> {
    let json = if path.is_dir() {
        Some(path.join(ferry_bundles::manifest::MANIFEST_PATH))
    } else if is_bundle_json(path) {
        Some(path.to_path_buf())
    } else {
        None
    };
    if let Some(json) = json {
        return Ok(BundleManifest::load(&json)?);
    }
    let source = BundleSource::open(path)?;
    Ok(ferry_bundles::read_manifest(&source)?.manifest)
}

/// A bundle.json (not a split bundle's `.parts.json`).
fn is_bundle_json(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "json")
        && !path.to_string_lossy().ends_with(".parts.json")
}

/// An unpacked bundle (its directory or the bundle.json in it) is used in
/// place; a bundle file is verified and its addon artifacts and helm are
/// extracted to a private temporary directory.
fn open_bundle(path: &Path, trust: &TrustArgs) -> anyhow::Result<PlanBundle> {
    let manifest = load_manifest(path)?;
    if path.is_dir() {
        return Ok(PlanBundle {
            manifest,
            artifacts: Artifacts::new(path),
            _extracted: None,
        });
    }
    if is_bundle_json(path) {
        let dir = path.parent().unwrap_or(Path::new("."));
        return Ok(PlanBundle {
            manifest,
            artifacts: Artifacts::new(dir),
            _extracted: None,
        });
    }
    let src = BundleSource::open(path)?;
    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    let helm = format!("bin/linux-{}/helm", ferry_installer::images::deploy_arch());
    let mut sink = ArtifactSink {
        root: tmp.path().to_path_buf(),
        helm,
    };
    ferry_bundles::verify_and_extract(&src, &trust.resolve(&src)?, &mut sink)
        .with_context(|| format!("verifying {}", src.display()))?;
    Ok(PlanBundle {
        manifest,
        artifacts: Artifacts::new(tmp.path()),
        _extracted: Some(tmp),
    })
}

/// Keeps the entries the plan reads (release artifacts, helm); drains the rest.
struct ArtifactSink {
    root: PathBuf,
    helm: String,
}

impl ferry_bundles::EntrySink for ArtifactSink {
    fn file(
        &mut self,
        entry: &ferry_bundles::FileEntry,
        content: &mut dyn std::io::Read,
    ) -> ferry_bundles::Result<()> {
        let wanted = entry.path.starts_with("manifests/") || entry.path == self.helm;
        if !wanted {
            return ferry_bundles::NullSink.file(entry, content);
        }
        let dest = self.root.join(&entry.path);
        let io = |e| ferry_bundles::Error::io(dest.display().to_string(), e);
        std::fs::create_dir_all(dest.parent().unwrap_or(&self.root)).map_err(io)?;
        let mut f = std::fs::File::create(&dest).map_err(io)?;
        std::io::copy(content, &mut f).map_err(io)?;
        if entry.path == self.helm {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
        }
        Ok(())
    }
}

pub fn run(args: PlanArgs) -> anyhow::Result<()> {
    let bundle = open_bundle(&args.bundle, &args.trust)?;
    let plan = build_plan(
        &args.inventory,
        &args.config,
        &bundle.manifest,
        args.cluster_dir.as_deref(),
        &PlanOptions {
            rotate: args.rotate,
            artifacts: Some(bundle.artifacts.clone()),
            read_only: false,
            new_cluster: false,
            allow_even_etcd: false,
            exclude_hosts: Default::default(),
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
            ferry_installer::plan::pki::write_if_changed(&root.join(rel), bytes, f.secret)?;
        }
    }
    let mut json = serde_json::to_vec_pretty(plan)?;
    json.push(b'\n');
    ferry_installer::plan::pki::write_if_changed(&out.join("plan.json"), &json, false)?;
    Ok(())
}

/// One line per node pool: its purpose and its hosts.
fn pools(plan: &ClusterPlan) -> String {
    let mut s = String::new();
    for pool in Pool::ALL {
        let hosts: Vec<&str> = plan
            .hosts
            .iter()
            .filter(|h| h.pool == Some(pool))
            .map(|h| h.name.as_str())
            .collect();
        if !hosts.is_empty() {
            s.push_str(&format!(
                "  pool {pool} ({}): {}\n",
                pool.purpose(),
                hosts.join(" ")
            ));
        }
    }
    s
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
        "  nodes reach the apiservers through their local balancer {}\n",
        plan.node_apiserver_endpoint
    ));
    s.push_str(&pools(plan));
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
