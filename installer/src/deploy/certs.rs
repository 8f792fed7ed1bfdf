//! `ferry certs check`: every certificate ferry placed on every host (the
//! `.pem` certificates and the client certificates inside kubeconfigs), as
//! the host holds it: subject, issuer, expiry, days left, and whether it is
//! the cluster dir's. Only certificates are read from the hosts, never a
//! key (a kubeconfig's `client-certificate-data` line alone is read).

use super::{connect, DeployOptions};
use crate::exec::{fan_out, sh_quote, Executor};
use crate::plan::{ClusterPlan, FileContent, HostPlan};
use serde::Serialize;
use std::fmt::Write as _;

/// A certificate with fewer days left than this needs renewal.
pub const WARN_DAYS: i64 = 30;

#[derive(Debug, Clone, Serialize)]
pub struct CertRow {
    pub host: String,
    pub path: String,
    pub subject: String,
    pub issuer: String,
    /// RFC 3339, UTC.
    pub not_after: String,
    pub days_left: i64,
    /// The host's copy is the certificate the cluster dir plans for it.
    pub matches_cluster_dir: bool,
    /// Why the row could not be read (an unreachable host, a missing file).
    pub problem: Option<String>,
}

impl CertRow {
    pub fn needs_renewal(&self) -> bool {
        self.problem.is_some() || !self.matches_cluster_dir || self.days_left < WARN_DAYS
    }
}

/// A planned file holding a certificate: its path, whether it is a
/// kubeconfig, and the certificate the plan puts there (DER).
struct Planned {
    path: String,
    kubeconfig: bool,
    der: Vec<u8>,
}

pub async fn check(plan: &ClusterPlan, opts: &DeployOptions) -> Vec<CertRow> {
    let rows = fan_out(plan.hosts.iter().collect(), opts.forks, |h: &HostPlan| {
        host_rows(h, opts)
    })
    .await;
    rows.into_iter().flatten().collect()
}

async fn host_rows(host: &HostPlan, opts: &DeployOptions) -> Vec<CertRow> {
    let planned = planned_certs(host);
    let run = connect(host, opts).await;
    let Some(exec) = run.exec.as_ref() else {
        let why = format!("not reachable: {}", run.error.unwrap_or_default());
        return planned
            .iter()
            .map(|p| unread(host, &p.path, &why))
            .collect();
    };
    let read = read_certs(exec, &planned).await;
    let rows = planned
        .iter()
        .map(|p| match read.iter().find(|(path, _)| *path == p.path) {
            Some((_, Ok(pem))) => row(host, p, pem),
            Some((_, Err(e))) => unread(host, &p.path, e),
            None => unread(host, &p.path, "not read"),
        })
        .collect();
    if let Some(Executor::Ssh(s)) = run.exec {
        s.close().await;
    }
    rows
}

fn unread(host: &HostPlan, path: &str, why: &str) -> CertRow {
    CertRow {
        host: host.name.clone(),
        path: path.to_owned(),
        subject: String::new(),
        issuer: String::new(),
        not_after: String::new(),
        days_left: 0,
        matches_cluster_dir: false,
        problem: Some(why.to_owned()),
    }
}

/// The certificates the plan places on `host`.
fn planned_certs(host: &HostPlan) -> Vec<Planned> {
    host.files
        .iter()
        .filter_map(|f| {
            let FileContent::Inline(bytes) = &f.content else {
                return None;
            };
            let text = std::str::from_utf8(bytes).ok()?;
            let path = f.path.to_string_lossy().into_owned();
            if text.starts_with("-----BEGIN CERTIFICATE-----") {
                return Some(Planned {
                    path,
                    kubeconfig: false,
                    der: first_der(bytes)?,
                });
            }
            let data = kubeconfig_cert(text)?;
            Some(Planned {
                path,
                kubeconfig: true,
                der: first_der(&data)?,
            })
        })
        .collect()
}

/// The PEM of a kubeconfig's `client-certificate-data`.
fn kubeconfig_cert(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("client-certificate-data:"))?;
    base64::engine::general_purpose::STANDARD
        .decode(line.trim())
        .ok()
}

fn first_der(pem: &[u8]) -> Option<Vec<u8>> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    Some(p.contents)
}

/// Reads every planned certificate on the host in one command: each file's
/// PEM (a kubeconfig's client certificate only), or why not.
async fn read_certs(
    exec: &Executor,
    planned: &[Planned],
) -> Vec<(String, Result<Vec<u8>, String>)> {
    if planned.is_empty() {
        return Vec::new();
    }
    let mut script = String::new();
    for p in planned {
        let q = sh_quote(&p.path);
        let _ = write!(script, "echo '==ferry== {}'; ", p.path.replace('\'', ""));
        if p.kubeconfig {
            let _ = write!(
                script,
                "if [ -r {q} ]; then sed -n 's/^ *client-certificate-data: *//p' {q} | head -n 1 | base64 -d 2>/dev/null || echo '==unreadable=='; else echo '==missing=='; fi; "
            );
        } else {
            let _ = write!(script, "cat -- {q} 2>/dev/null || echo '==missing=='; ");
        }
    }
    let out = match exec.run(&script).await {
        Ok(o) => o.stdout,
        Err(e) => {
            let why = e.to_string();
            return planned
                .iter()
                .map(|p| (p.path.clone(), Err(why.clone())))
                .collect();
        }
    };
    let mut read: Vec<(String, Result<Vec<u8>, String>)> = Vec::new();
    for line in out.lines() {
        if let Some(path) = line.strip_prefix("==ferry== ") {
            read.push((path.to_owned(), Ok(Vec::new())));
            continue;
        }
        let Some((_, Ok(buf))) = read.last_mut() else {
            continue;
        };
        match line {
            "==missing==" => read.last_mut().unwrap().1 = Err("missing on the host".into()),
            "==unreadable==" => {
                read.last_mut().unwrap().1 = Err("its client certificate is unreadable".into())
            }
            _ => {
                buf.extend_from_slice(line.as_bytes());
                buf.push(b'\n');
            }
        }
    }
    read
}

fn row(host: &HostPlan, planned: &Planned, pem: &[u8]) -> CertRow {
    let Some(der) = first_der(pem) else {
        return unread(host, &planned.path, "not a PEM certificate");
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
        return unread(host, &planned.path, "not an X.509 certificate");
    };
    let not_after = cert.validity().not_after.to_datetime();
    let now = time::OffsetDateTime::now_utc();
    CertRow {
        host: host.name.clone(),
        path: planned.path.clone(),
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_after: not_after
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        days_left: (not_after - now).whole_days(),
        matches_cluster_dir: der == planned.der,
        problem: None,
    }
}

/// One line per certificate, hosts in plan order.
pub fn table(rows: &[CertRow]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:10} {:58} {:>5} {:20} {:8} SUBJECT / ISSUER",
        "HOST", "PATH", "DAYS", "EXPIRES", "COPY"
    );
    for r in rows {
        if let Some(p) = &r.problem {
            let _ = writeln!(s, "{:10} {:58} {:>5} {p}", r.host, r.path, "-");
            continue;
        }
        let flag = if r.days_left < WARN_DAYS {
            " RENEW"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "{:10} {:58} {:>5} {:20} {:8} {} / {}{flag}",
            r.host,
            r.path,
            r.days_left,
            r.not_after,
            if r.matches_cluster_dir {
                "same"
            } else {
                "DIFFERS"
            },
            r.subject,
            r.issuer
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kubeconfigs_client_certificate_is_found() {
        use base64::Engine;
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let data = base64::engine::general_purpose::STANDARD.encode(pem);
        let kc = format!("users:\n- name: admin\n  user:\n    client-certificate-data: {data}\n    client-key-data: c2VjcmV0\n");
        assert_eq!(kubeconfig_cert(&kc).unwrap(), pem.as_bytes());
        assert!(kubeconfig_cert("apiVersion: v1\n").is_none());
    }
}
