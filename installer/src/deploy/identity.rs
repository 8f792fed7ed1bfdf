//! Preflight's identity check: the cluster CA, the service-account key and
//! the Secrets encryption keys a host already holds must be the cluster dir's.
//! An empty or different cluster dir (or a changed CLUSTER_NAME) would
//! otherwise replace them on a running cluster: every certificate and token
//! would stop verifying and every Secret would become unreadable. Replacing
//! them is asked for with `--new-cluster`.
//!
//! Hosts report digests only, never key material: a CA or public key file's
//! sha256, and the sha256 of each `secret:` value in the encryption config.

use crate::plan::{FileContent, HostPlan};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::Path;

/// What a file gives a cluster its identity by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The cluster CA certificate: the whole file.
    Ca,
    /// The service-account public key: the whole file.
    ServiceAccountKey,
    /// The encryption config: each `secret:` value.
    EncryptionKeys,
}

/// One identity file of a host's plan and the digests it is planned with.
#[derive(Debug, Clone)]
pub struct IdentityFile {
    kind: Kind,
    path: String,
    planned: BTreeSet<String>,
}

/// The identity files a host's plan writes.
pub fn planned(host: &HostPlan) -> Vec<IdentityFile> {
    host.files
        .iter()
        .filter_map(|f| {
            let FileContent::Inline(bytes) = &f.content else {
                return None;
            };
            let kind = kind_of(&f.path)?;
            Some(IdentityFile {
                kind,
                path: f.path.to_string_lossy().into_owned(),
                planned: digests(kind, bytes),
            })
        })
        .collect()
}

fn kind_of(path: &std::path::Path) -> Option<Kind> {
    let name = path.file_name()?.to_str()?;
    let in_etcd_dir = path.parent().is_some_and(|p| p.ends_with("etcd"));
    match name {
        "ca.pem" if !in_etcd_dir => Some(Kind::Ca),
        "sa.pub" => Some(Kind::ServiceAccountKey),
        "encryption-config.yaml" => Some(Kind::EncryptionKeys),
        _ => None,
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A file's digests as the host script computes them.
fn digests(kind: Kind, bytes: &[u8]) -> BTreeSet<String> {
    match kind {
        Kind::Ca | Kind::ServiceAccountKey => BTreeSet::from([sha256_hex(bytes)]),
        Kind::EncryptionKeys => String::from_utf8_lossy(bytes)
            .lines()
            .filter_map(secret_value)
            .map(|s| sha256_hex(s.as_bytes()))
            .collect(),
    }
}

/// The value of a `secret:` line, unquoted (the script strips the same quotes).
fn secret_value(line: &str) -> Option<String> {
    let v = line.trim_start().strip_prefix("secret:")?.trim();
    Some(v.replace(['"', '\''], ""))
}

/// Shell lines printing `identity=<index> <sha256>` for each identity file
/// the host has; paths are quoted with the one quoting function.
pub fn script(files: &[IdentityFile]) -> String {
    let mut out = String::new();
    for (i, f) in files.iter().enumerate() {
        let path = crate::exec::sh_quote(&f.path);
        let line = match f.kind {
            Kind::Ca | Kind::ServiceAccountKey => format!(
                "if [ -f {path} ]; then echo \"identity={i} $(sha256sum < {path} | cut -c1-64)\"; fi\n"
            ),
            Kind::EncryptionKeys => format!(
                "if [ -f {path} ]; then sed -n 's/^[[:space:]]*secret:[[:space:]]*//p' {path} | tr -d \"\\\"'\" | while IFS= read -r s; do echo \"identity={i} $(printf %s \"$s\" | sha256sum | cut -c1-64)\"; done; fi\n"
            ),
        };
        out.push_str(&line);
    }
    out
}

/// The host's identity files that differ from the plan's, each with what
/// replacing it would break and what to do.
pub fn problems(cluster_dir: &Path, files: &[IdentityFile], reported: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let on_host: BTreeSet<&str> = reported
            .iter()
            .filter_map(|r| r.split_once(' '))
            .filter(|(idx, _)| idx.parse() == Ok(i))
            .map(|(_, digest)| digest.trim())
            .collect();
        let foreign: Vec<&str> = on_host
            .iter()
            .copied()
            .filter(|d| !f.planned.contains(*d))
            .collect();
        if foreign.is_empty() {
            continue;
        }
        let breaks = match f.kind {
            Kind::Ca => "another cluster CA: installing would replace the CA every certificate of the running cluster chains to",
            Kind::ServiceAccountKey => "another service-account key: installing would invalidate every ServiceAccount token",
            Kind::EncryptionKeys => "an encryption key the cluster dir does not have: Secrets encrypted with it would become unreadable",
        };
        out.push(format!(
            "{} holds {breaks} (sha256 {} on the host; cluster dir {}). Plan with the cluster dir this cluster was installed from (--cluster-dir), or pass --new-cluster to replace it",
            f.path,
            short(&foreign),
            cluster_dir.display(),
        ));
    }
    out
}

fn short(digests: &[&str]) -> String {
    digests
        .iter()
        .map(|d| format!("{}…", &d[..d.len().min(12)]))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn file(kind: Kind, path: &str, content: &str) -> IdentityFile {
        IdentityFile {
            kind,
            path: path.into(),
            planned: digests(kind, content.as_bytes()),
        }
    }

    /// The script's digests, run by sh over real files, match the plan's own
    /// for the same content, and differ for other content.
    #[test]
    fn host_digests_match_the_plans_for_the_same_files() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let enc = dir.path().join("encryption config.yaml");
        let planned_enc = "resources:\n  - providers:\n      - aescbc:\n          keys:\n            - name: key1\n              secret: \"c2VjcmV0MQ==\"\n";
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\nA\n").unwrap();
        std::fs::write(&enc, planned_enc.replace('"', "")).unwrap();
        let files = vec![
            file(
                Kind::Ca,
                ca.to_str().unwrap(),
                "-----BEGIN CERTIFICATE-----\nA\n",
            ),
            file(Kind::EncryptionKeys, enc.to_str().unwrap(), planned_enc),
        ];
        let run = |files: &[IdentityFile]| {
            let out = Command::new("sh")
                .arg("-c")
                .arg(script(files))
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        let out = run(&files);
        let reported: Vec<&str> = out
            .lines()
            .filter_map(|l| l.strip_prefix("identity="))
            .collect();
        assert_eq!(reported.len(), 2, "{out}");
        let plan = dir.path();
        assert!(problems(plan, &files, &reported).is_empty(), "{out}");

        // Another cluster's CA and an extra encryption key on the host.
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\nB\n").unwrap();
        std::fs::write(
            &enc,
            format!("{planned_enc}            - name: key0\n              secret: b2xk\n"),
        )
        .unwrap();
        let out = run(&files);
        let reported: Vec<&str> = out
            .lines()
            .filter_map(|l| l.strip_prefix("identity="))
            .collect();
        let found = problems(plan, &files, &reported);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].contains("another cluster CA") && found[0].contains("--new-cluster"),
            "{found:?}"
        );
        assert!(
            found[1].contains("Secrets encrypted with it would become unreadable"),
            "{found:?}"
        );
        assert!(
            !found
                .iter()
                .any(|p| p.contains("b2xk") || p.contains("c2VjcmV0")),
            "no key material: {found:?}"
        );
    }

    #[test]
    fn a_host_without_the_files_is_a_new_host() {
        let files = vec![file(Kind::Ca, "/nonexistent/ca.pem", "x")];
        let out = Command::new("sh")
            .arg("-c")
            .arg(script(&files))
            .output()
            .unwrap();
        assert!(out.stdout.is_empty());
        assert!(problems(Path::new("/c"), &files, &[]).is_empty());
    }

    #[test]
    fn etcd_ca_is_not_the_cluster_ca() {
        assert_eq!(kind_of("/etc/kubernetes/ssl/etcd/ca.pem".as_ref()), None);
        assert_eq!(
            kind_of("/etc/kubernetes/ssl/ca.pem".as_ref()),
            Some(Kind::Ca)
        );
    }
}
