use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct BuildArgs {
    /// Kubernetes version from the release catalog, e.g. 1.29.6.
    #[arg(long = "k8s")]
    pub kubernetes: String,
    /// Profile: a built-in name (prod) or a path to a profile .toml.
    #[arg(long, default_value = "prod")]
    pub profile: String,
    /// Platforms to carry (default: every platform of the catalog).
    #[arg(long = "platform", value_delimiter = ',')]
    pub platforms: Vec<String>,
    /// OS package sets to carry, by OS source name (bundles/catalog/os), e.g.
    /// debian-12,ubuntu-22.04,rocky-9 (default: the profile's list; `none`
    /// carries none). Each source's repositories are reached through --mirror.
    #[arg(long = "os", value_delimiter = ',', value_name = "NAME,...")]
    pub os: Vec<String>,
    /// Route an upstream to a mirror: FROM=TO. FROM is a URL prefix
    /// (https://dl.k8s.io=http://nexus.corp/dl) or a registry host
    /// (registry.k8s.io=harbor.corp/k8s; TO with http:// for a plain-HTTP registry).
    #[arg(long = "mirror", value_name = "FROM=TO")]
    pub mirrors: Vec<String>,
    /// minisign secret key to sign bundle.json with (`ferry bundle keygen`).
    #[arg(long, value_name = "KEY")]
    pub sign_key: Option<PathBuf>,
    /// Write an unsigned bundle (installers refuse it unless told otherwise).
    #[arg(long, conflicts_with = "sign_key")]
    pub unsigned: bool,
    /// Split the output into parts of at most SIZE bytes (e.g. 4G, 700MiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub split: Option<u64>,
    /// Download cache (default ~/.cache/ferry).
    #[arg(long, env = "FERRY_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Directory whose <version>.toml catalogs and profiles/<name>.toml override the built-in ones.
    #[arg(long)]
    pub catalog_dir: Option<PathBuf>,
    /// Concurrent downloads.
    #[arg(long, default_value_t = 6)]
    pub concurrency: usize,
    /// Carry a ferry executable for a platform as bin/<os>-<arch>/ferry
    /// (PLATFORM=PATH; its ELF machine must match). Registry hosts of that
    /// platform then run it; without one the installer uses its own ferry.
    #[arg(long = "ferry-binary", value_name = "PLATFORM=PATH")]
    pub ferry_binaries: Vec<String>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Plain progress lines even on a terminal.
    #[arg(long)]
    pub plain: bool,
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

pub fn run(args: BuildArgs) -> anyhow::Result<()> {
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) if !s.trim().is_empty() => Some(
            s.trim()
                .parse::<i64>()
                .with_context(|| format!("SOURCE_DATE_EPOCH={s:?} is not a number of seconds"))?,
        ),
        _ => None,
    };
    let opts = ferry_builder::BuildOptions {
        kubernetes: args.kubernetes,
        profile: args.profile,
        platforms: (!args.platforms.is_empty()).then_some(args.platforms),
        os: (!args.os.is_empty()).then_some(args.os),
        mirrors: args.mirrors,
        sign_key: args.sign_key,
        unsigned: args.unsigned,
        split: args.split,
        cache_dir: args
            .cache_dir
            .unwrap_or_else(ferry_builder::Cache::default_dir),
        catalog_dir: args.catalog_dir,
        output: args.output,
        concurrency: args.concurrency,
        builder_version: env!("CARGO_PKG_VERSION").to_string(),
        source_date_epoch,
        plain: args.plain || args.json,
        ferry_binaries: args.ferry_binaries,
    };
    let report = ferry_builder::build(&opts).context("bundle build failed")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let outs: Vec<String> = report
            .outputs
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        eprintln!(
            "built and verified {} ({}): {} files ({} components, {} images) for {}, {} content, {} compressed; \
             downloaded {} in {} transfers, {} from cache; bundle.json sha256 {}; {:.1}s{}",
            outs.join(", "),
            if report.signed { "signed" } else { "UNSIGNED" },
            report.files,
            report.components,
            report.images,
            report.platforms.join(", "),
            human(report.content_bytes),
            human(report.compressed_bytes),
            human(report.downloaded_bytes),
            report.downloads,
            report.cache_hits,
            report.manifest_sha256,
            report.seconds,
            if report.signed { "" } else { " -- installers refuse unsigned bundles unless told otherwise" },
        );
    }
    Ok(())
}

fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `4G`, `700MiB`, `1.5g`, `1048576`: binary multiples (K = 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 4G or 700MiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use K, M, G, T)")),
    };
    let bytes = (num * mult as f64) as u64;
    if bytes == 0 {
        return Err(format!("{s:?}: size must be positive"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::parse_size("4G"), Ok(4 << 30));
        assert_eq!(super::parse_size("700MiB"), Ok(700 << 20));
        assert_eq!(super::parse_size("1.5k"), Ok(1536));
        assert_eq!(super::parse_size("123"), Ok(123));
        assert!(super::parse_size("0").is_err());
        assert!(super::parse_size("4X").is_err());
    }
}
