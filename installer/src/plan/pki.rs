//! The cluster's PKI, kept in `<cluster dir>/pki/` on the deploy host.
//!
//! First run: creates three CAs (cluster, etcd, front-proxy), every leaf
//! certificate and the service-account key pair. Later runs reuse what exists
//! byte for byte; a leaf whose subject or SANs changed (a host was added) is
//! reissued with its key kept. `rotate` reissues every leaf, CAs untouched.
//! Private keys are written 0600.

use crate::plan::error::{PlanError, Result};
use crate::plan::model::Role;
use crate::plan::validate::{Cluster, San};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// Records the subject/SANs/usages each leaf was issued for.
const ISSUED_FILE: &str = "issued.json";

/// Hubble's server certificate (every agent), PKI base name.
pub const HUBBLE_SERVER: &str = "hubble/server";
/// hubble-relay's client certificate, PKI base name.
pub const HUBBLE_RELAY_CLIENT: &str = "hubble/relay-client";

/// Which CA signs a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ca {
    Cluster,
    Etcd,
    FrontProxy,
}

impl Ca {
    /// Base name of the CA's files (`ca`, `etcd/ca`, `front-proxy-ca`).
    pub fn name(self) -> &'static str {
        match self {
            Ca::Cluster => "ca",
            Ca::Etcd => "etcd/ca",
            Ca::FrontProxy => "front-proxy-ca",
        }
    }
}

/// A leaf certificate to issue: `<name>.pem` + `<name>-key.pem`.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    pub name: String,
    pub ca: Ca,
    pub cn: String,
    pub org: Option<String>,
    pub server: bool,
    pub client: bool,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl LeafSpec {
    fn client(name: &str, ca: Ca, cn: &str, org: Option<&str>) -> Self {
        LeafSpec {
            name: name.into(),
            ca,
            cn: cn.into(),
            org: org.map(Into::into),
            server: false,
            client: true,
            dns: vec![],
            ips: vec![],
        }
    }

    /// Canonical description; a change reissues the certificate.
    fn fingerprint(&self) -> String {
        let ips: Vec<String> = self.ips.iter().map(|i| i.to_string()).collect();
        format!(
            "ca={} cn={} o={} server={} client={} dns={} ip={}",
            self.ca.name(),
            self.cn,
            self.org.as_deref().unwrap_or(""),
            self.server,
            self.client,
            self.dns.join(","),
            ips.join(",")
        )
    }
}

/// The PKI files by relative name (`ca.pem`, `etcd/etcd-1-server.pem`, `sa.key`...).
#[derive(Clone)]
pub struct Pki {
    pub dir: PathBuf,
    pub files: BTreeMap<String, Vec<u8>>,
    /// This run created the CAs: the cluster dir held no PKI before.
    pub fresh: bool,
}

/// Names only: private keys never reach Debug output.
impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .field("files", &self.files.keys().collect::<Vec<_>>())
            .field("fresh", &self.fresh)
            .finish()
    }
}

impl Pki {
    pub fn get(&self, name: &str) -> Result<&[u8]> {
        self.files
            .get(name)
            .map(|v| v.as_slice())
            .ok_or_else(|| PlanError::Pki {
                name: name.into(),
                reason: format!("not found in {}", self.dir.display()),
            })
    }

    pub fn text(&self, name: &str) -> Result<String> {
        Ok(String::from_utf8_lossy(self.get(name)?).into_owned())
    }
}

fn pki_err(name: &str, e: impl std::fmt::Display) -> PlanError {
    PlanError::Pki {
        name: name.into(),
        reason: e.to_string(),
    }
}

/// Every leaf the cluster needs.
pub fn leaf_specs(cluster: &Cluster) -> Vec<LeafSpec> {
    let mut out = etcd_specs(cluster);
    out.push(apiserver_spec(cluster));
    out.extend(client_specs());
    out.extend(kubelet_specs(cluster));
    if cluster.config.cilium_enable_hubble.value {
        out.extend(hubble_specs(cluster));
    }
    out.extend(registry_spec(cluster));
    out
}

const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// Each etcd member's server and peer certificates, then etcd's two clients
/// (the apiserver and the health check).
fn etcd_specs(cluster: &Cluster) -> Vec<LeafSpec> {
    let mut out = Vec::new();
    for n in cluster.with_role(Role::Etcd) {
        let member = n.etcd_name.clone().unwrap_or(n.name.clone());
        let mut dns = vec![n.name.clone(), "localhost".to_string()];
        if member != n.name {
            dns.insert(1, member.clone());
        }
        let ips = vec![IpAddr::V4(n.ip), LOCALHOST];
        for (kind, client) in [("server", true), ("peer", true)] {
            out.push(LeafSpec {
                name: format!("etcd/{member}-{kind}"),
                ca: Ca::Etcd,
                cn: member.clone(),
                org: None,
                server: true,
                client,
                dns: dns.clone(),
                ips: ips.clone(),
            });
        }
    }
    out.push(LeafSpec::client(
        "etcd/apiserver-etcd-client",
        Ca::Etcd,
        "kube-apiserver-etcd-client",
        None,
    ));
    out.push(LeafSpec::client(
        "etcd/healthcheck-client",
        Ca::Etcd,
        "kube-etcd-healthcheck-client",
        None,
    ));
    out
}

/// The apiserver's serving certificate: the in-cluster names, the service
/// IP, the VIP, every master, then the extra SANs not already there.
fn apiserver_spec(cluster: &Cluster) -> LeafSpec {
    let mut dns = vec![
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
        format!("kubernetes.default.svc.{}", cluster.dns_domain),
        "localhost".to_string(),
    ];
    let mut ips = vec![IpAddr::V4(cluster.kubernetes_service_ip()), LOCALHOST];
    if let Some(vip) = cluster.vip {
        ips.push(IpAddr::V4(vip));
    }
    for m in cluster.with_role(Role::Master) {
        ips.push(IpAddr::V4(m.ip));
        dns.push(m.name.clone());
    }
    for san in &cluster.extra_sans {
        match san {
            San::Ip(ip) if !ips.contains(ip) => ips.push(*ip),
            San::Dns(d) if !dns.contains(d) => dns.push(d.clone()),
            _ => {}
        }
    }
    LeafSpec {
        name: "apiserver".into(),
        ca: Ca::Cluster,
        cn: "kube-apiserver".into(),
        org: None,
        server: true,
        client: false,
        dns,
        ips,
    }
}

/// The client certificate the balancers and ferry's gates read `/readyz` with.
pub const APISERVER_CHECK: &str = "apiserver-health-check";

/// The control plane's client certificates, the same for every cluster.
fn client_specs() -> Vec<LeafSpec> {
    [
        (
            "apiserver-kubelet-client",
            Ca::Cluster,
            "kube-apiserver-kubelet-client",
            Some("system:masters"),
        ),
        (
            "front-proxy-client",
            Ca::FrontProxy,
            "front-proxy-client",
            None,
        ),
        ("admin", Ca::Cluster, "admin", Some("system:masters")),
        (
            "kube-controller-manager",
            Ca::Cluster,
            "system:kube-controller-manager",
            None,
        ),
        ("kube-scheduler", Ca::Cluster, "system:kube-scheduler", None),
        ("kube-proxy", Ca::Cluster, "system:kube-proxy", None),
        // The balancers' health checks read /readyz with it: the apiservers
        // refuse anonymous requests, and any authenticated user may read
        // /readyz (system:public-info-viewer); it is granted nothing else.
        (
            APISERVER_CHECK,
            Ca::Cluster,
            "ferry:apiserver-health-check",
            None,
        ),
    ]
    .into_iter()
    .map(|(name, ca, cn, org)| LeafSpec::client(name, ca, cn, org))
    .collect()
}

/// Each node's kubelet client certificate and serving certificate.
fn kubelet_specs(cluster: &Cluster) -> Vec<LeafSpec> {
    let mut out = Vec::new();
    for n in cluster.with_role(Role::Node) {
        out.push(LeafSpec::client(
            &format!("kubelet/{}", n.name),
            Ca::Cluster,
            &format!("system:node:{}", n.name),
            Some("system:nodes"),
        ));
        out.push(LeafSpec {
            name: format!("kubelet/{}-server", n.name),
            ca: Ca::Cluster,
            cn: format!("system:node:{}", n.name),
            org: Some("system:nodes".into()),
            server: true,
            client: false,
            dns: vec![n.name.clone()],
            ips: vec![IpAddr::V4(n.ip)],
        });
    }
    out
}

/// The registry's serving certificate, for every registry host, when there is one.
fn registry_spec(cluster: &Cluster) -> Option<LeafSpec> {
    let registry: Vec<_> = cluster.with_role(Role::Registry).collect();
    if registry.is_empty() {
        return None;
    }
    Some(LeafSpec {
        name: "registry".into(),
        ca: Ca::Cluster,
        cn: "ferry-registry".into(),
        org: None,
        server: true,
        client: false,
        dns: registry
            .iter()
            .map(|n| n.name.clone())
            .chain(["localhost".to_string()])
            .collect(),
        ips: registry
            .iter()
            .map(|n| IpAddr::V4(n.ip))
            .chain([LOCALHOST])
            .collect(),
    })
}

/// Hubble's TLS leaves, as Cilium's Helm chart issues them: the server name
/// hubble-relay expects of every agent (`<node>.<cluster-name>.hubble-grpc.cilium.io`,
/// so a wildcard over the cluster name), and the relay's client certificate.
pub fn hubble_specs(cluster: &Cluster) -> Vec<LeafSpec> {
    let server = format!("*.{}.hubble-grpc.cilium.io", cluster.name);
    let client = "*.hubble-relay.cilium.io".to_string();
    vec![
        LeafSpec {
            name: HUBBLE_SERVER.into(),
            ca: Ca::Cluster,
            cn: server.clone(),
            org: None,
            server: true,
            client: false,
            dns: vec![server],
            ips: vec![],
        },
        LeafSpec {
            name: HUBBLE_RELAY_CLIENT.into(),
            ca: Ca::Cluster,
            cn: client.clone(),
            org: None,
            server: false,
            client: true,
            dns: vec![client],
            ips: vec![],
        },
    ]
}

/// Write `bytes` to `path` unless it already holds them; private files get
/// 0600. The temp file beside it has an exclusive, random name (O_EXCL) and
/// its mode set on the open file before a byte is written.
pub fn write_if_changed(path: &Path, bytes: &[u8], secret: bool) -> Result<()> {
    if std::fs::read(path).ok().as_deref() == Some(bytes) {
        return Ok(());
    }
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| PlanError::io(parent, e))?;
    let mode = if secret { 0o600 } else { 0o644 };
    let mut tmp = tempfile::Builder::new()
        .prefix(".ferry-")
        .tempfile_in(parent)
        .map_err(|e| PlanError::io(parent, e))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|_| tmp.write_all(bytes))
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| PlanError::io(tmp.path(), e))?;
    tmp.persist(path)
        .map_err(|e| PlanError::io(path, e.error))?;
    Ok(())
}

/// A private key another user could read is refused, naming the fix.
fn check_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| PlanError::io(path, e))?
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(pki_err(
            &path.display().to_string(),
            format!("private key has mode {mode:04o}, readable by others; run chmod 600 {} (and check who read it)", path.display()),
        ));
    }
    Ok(())
}

fn read_opt(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PlanError::io(path, e)),
    }
}

fn dn(cn: &str, org: Option<&str>) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    if let Some(o) = org {
        d.push(DnType::OrganizationName, o);
    }
    d.push(DnType::CommonName, cn);
    d
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(days);
}

/// Load or create a CA; returns (cert pem, key pem).
fn ensure_ca(dir: &Path, ca: Ca, cn: &str, cluster: &Cluster) -> Result<(String, String)> {
    let cert_path = dir.join(format!("{}.pem", ca.name()));
    let key_path = dir.join(format!("{}-key.pem", ca.name()));
    match (read_opt(&cert_path)?, read_opt(&key_path)?) {
        (Some(c), Some(k)) => {
            check_private(&key_path)?;
            return Ok((
                String::from_utf8_lossy(&c).into_owned(),
                String::from_utf8_lossy(&k).into_owned(),
            ));
        }
        (None, None) => {}
        (c, _) => {
            let (present, missing) = match c {
                Some(_) => (&cert_path, &key_path),
                None => (&key_path, &cert_path),
            };
            return Err(pki_err(
                ca.name(),
                format!(
                    "{} exists but {} does not: a CA needs both; restore the missing file from a backup (a new CA would stop every certificate the cluster trusts)",
                    present.display(),
                    missing.display()
                ),
            ));
        }
    }
    let key = KeyPair::generate().map_err(|e| pki_err(ca.name(), e))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(cn, Some("ferry"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, cluster.cert_lifetimes.ca_days);
    let cert = params
        .self_signed(&key)
        .map_err(|e| pki_err(ca.name(), e))?;
    let (c, k) = (cert.pem(), key.serialize_pem());
    write_if_changed(&key_path, k.as_bytes(), true)?;
    write_if_changed(&cert_path, c.as_bytes(), false)?;
    Ok((c, k))
}

/// The CAs' (cert pem, key pem) by CA base name.
type Cas = BTreeMap<&'static str, (String, String)>;

/// Create or reuse the whole PKI under `<cluster_dir>/pki`.
pub fn ensure(cluster: &Cluster, cluster_dir: &Path, rotate: bool) -> Result<Pki> {
    let dir = cluster_dir.join("pki");
    for sub in ["etcd", "hubble"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(|e| PlanError::io(&dir, e))?;
    }
    let fresh = !dir.join(format!("{}.pem", Ca::Cluster.name())).exists()
        && !dir.join(format!("{}-key.pem", Ca::Cluster.name())).exists();
    let cas = ensure_cas(&dir, cluster)?;
    let issued_path = dir.join(ISSUED_FILE);
    let mut issued = read_issued(&issued_path)?;
    for spec in leaf_specs(cluster) {
        ensure_leaf(&dir, &spec, &cas, &mut issued, rotate, cluster)?;
    }
    write_issued(&issued_path, &issued)?;
    ensure_sa_key(&dir, fresh)?;
    // Read everything back: the tree on disk is the truth.
    let files = read_tree(&dir)?;
    Ok(Pki { dir, files, fresh })
}

/// The PKI as an install left it, read without writing anything.
pub fn load(cluster_dir: &Path) -> Result<Pki> {
    let dir = cluster_dir.join("pki");
    if !dir.join(format!("{}.pem", Ca::Cluster.name())).exists() {
        return Err(pki_err(
            "pki",
            format!(
                "no PKI in {}: this reads what `ferry install` made; run it first, or name the --cluster-dir it used",
                dir.display()
            ),
        ));
    }
    let files = read_tree(&dir)?;
    Ok(Pki {
        dir,
        files,
        fresh: false,
    })
}

/// A key of `<cluster_dir>/secrets`, read without ever making one.
pub fn read_secret_key(cluster_dir: &Path, name: &str) -> Result<String> {
    let path = cluster_dir.join("secrets").join(name);
    match read_opt(&path)? {
        Some(b) => Ok(String::from_utf8_lossy(&b).trim().to_string()),
        None => Err(pki_err(
            name,
            format!("{} is missing; restore it from a backup", path.display()),
        )),
    }
}

/// The three CAs, each named after the cluster.
fn ensure_cas(dir: &Path, cluster: &Cluster) -> Result<Cas> {
    let mut cas = BTreeMap::new();
    for (ca, cn) in [
        (Ca::Cluster, "kubernetes-ca"),
        (Ca::Etcd, "etcd-ca"),
        (Ca::FrontProxy, "front-proxy-ca"),
    ] {
        cas.insert(
            ca.name(),
            ensure_ca(dir, ca, &format!("{}-{cn}", cluster.name), cluster)?,
        );
    }
    Ok(cas)
}

/// The issued-record file: leaf name -> fingerprint; none yet is empty.
fn read_issued(path: &Path) -> Result<BTreeMap<String, String>> {
    Ok(match read_opt(path)? {
        Some(b) => serde_json::from_slice(&b).map_err(|e| pki_err(ISSUED_FILE, e))?,
        None => BTreeMap::new(),
    })
}

fn write_issued(path: &Path, issued: &BTreeMap<String, String>) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(issued).map_err(|e| pki_err(ISSUED_FILE, e))?;
    bytes.push(b'\n');
    write_if_changed(path, &bytes, false)
}

/// Issue one leaf unless it is fresh (cert and key on disk, issued for the
/// same fingerprint, no rotation); an existing key is kept.
fn ensure_leaf(
    dir: &Path,
    spec: &LeafSpec,
    cas: &Cas,
    issued: &mut BTreeMap<String, String>,
    rotate: bool,
    cluster: &Cluster,
) -> Result<()> {
    let cert_path = dir.join(format!("{}.pem", spec.name));
    let key_path = dir.join(format!("{}-key.pem", spec.name));
    let existing_key = read_opt(&key_path)?;
    let fresh = !rotate
        && read_opt(&cert_path)?.is_some()
        && existing_key.is_some()
        && issued.get(&spec.name) == Some(&spec.fingerprint());
    if fresh {
        return Ok(());
    }
    let key = match &existing_key {
        Some(k) => {
            KeyPair::from_pem(&String::from_utf8_lossy(k)).map_err(|e| pki_err(&spec.name, e))?
        }
        None => KeyPair::generate().map_err(|e| pki_err(&spec.name, e))?,
    };
    let issuer = ca_issuer(cas, spec.ca)?;
    let mut params = leaf_params(spec)?;
    validity(&mut params, cluster.cert_lifetimes.leaf_days);
    // A certificate cannot outlive its CA: CERT_EXPIRY stops at the CA's end.
    params.not_after = params.not_after.min(ca_not_after(cas, spec.ca)?);
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| pki_err(&spec.name, e))?;
    if existing_key.is_none() {
        write_if_changed(&key_path, key.serialize_pem().as_bytes(), true)?;
    }
    write_if_changed(&cert_path, cert.pem().as_bytes(), false)?;
    issued.insert(spec.name.clone(), spec.fingerprint());
    Ok(())
}

/// The CA that signs a leaf, from its pem files.
fn ca_issuer(cas: &Cas, ca: Ca) -> Result<Issuer<'static, KeyPair>> {
    let (ca_cert, ca_key) = &cas[ca.name()];
    let ca_key = KeyPair::from_pem(ca_key).map_err(|e| pki_err(ca.name(), e))?;
    Issuer::from_ca_cert_pem(ca_cert, ca_key).map_err(|e| pki_err(ca.name(), e))
}

/// When the CA's certificate expires.
fn ca_not_after(cas: &Cas, ca: Ca) -> Result<OffsetDateTime> {
    let (ca_cert, _) = &cas[ca.name()];
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(ca_cert.as_bytes()).map_err(|e| pki_err(ca.name(), e))?;
    let cert = pem.parse_x509().map_err(|e| pki_err(ca.name(), e))?;
    Ok(cert.validity().not_after.to_datetime())
}

/// Copies `<cluster_dir>/pki` (keys keep their 0600) to
/// `<cluster_dir>/pki.<suffix>`, a directory only root reads; returns it.
pub fn keep_copy(cluster_dir: &Path, suffix: &str) -> Result<PathBuf> {
    let from = cluster_dir.join("pki");
    let to = cluster_dir.join(format!("pki.{suffix}"));
    if to.exists() {
        return Err(pki_err(
            "pki",
            format!("{} exists already; move it away first", to.display()),
        ));
    }
    std::fs::create_dir(&to).map_err(|e| PlanError::io(&to, e))?;
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| PlanError::io(&to, e))?;
    for (rel, _) in read_tree(&from)? {
        let dest = to.join(&rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| PlanError::io(parent, e))?;
        }
        // fs::copy keeps the mode, so keys stay 0600.
        std::fs::copy(from.join(&rel), &dest).map_err(|e| PlanError::io(&dest, e))?;
    }
    Ok(to)
}

/// A leaf's subject, usages and SANs (validity is set by the caller).
fn leaf_params(spec: &LeafSpec) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(&spec.cn, spec.org.as_deref());
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    if spec.server {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    if spec.client {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    for d in &spec.dns {
        let name = d
            .clone()
            .try_into()
            .map_err(|e| pki_err(&spec.name, format!("SAN {d}: {e}")))?;
        params.subject_alt_names.push(SanType::DnsName(name));
    }
    for ip in &spec.ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// The service-account signing key pair (`sa.key`, `sa.pub`); the key is
/// kept once made, and made only for a new PKI (a new one would invalidate
/// every service account token of a running cluster).
fn ensure_sa_key(dir: &Path, fresh: bool) -> Result<()> {
    let sa_key_path = dir.join("sa.key");
    let sa_pub_path = dir.join("sa.pub");
    let sa_key = match read_opt(&sa_key_path)? {
        Some(k) => {
            check_private(&sa_key_path)?;
            KeyPair::from_pem(&String::from_utf8_lossy(&k)).map_err(|e| pki_err("sa.key", e))?
        }
        None if !fresh && sa_pub_path.exists() => {
            return Err(pki_err(
                "sa.key",
                format!(
                    "{} is missing but {} exists: restore the key from a backup (a new one would invalidate every service account token)",
                    sa_key_path.display(),
                    sa_pub_path.display()
                ),
            ))
        }
        None => {
            let k = KeyPair::generate().map_err(|e| pki_err("sa.key", e))?;
            write_if_changed(&sa_key_path, k.serialize_pem().as_bytes(), true)?;
            k
        }
    };
    write_if_changed(&sa_pub_path, sa_key.public_key_pem().as_bytes(), false)
}

/// Every file under `dir` by relative name, in file-name order.
fn read_tree(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.map_err(|e| pki_err(&dir.display().to_string(), e))?;
        if entry.file_type().is_file() {
            let rel = entry
                .path()
                .strip_prefix(dir)
                .map_err(|e| pki_err("pki", e))?;
            let bytes = std::fs::read(entry.path()).map_err(|e| PlanError::io(entry.path(), e))?;
            files.insert(rel.to_string_lossy().into_owned(), bytes);
        }
    }
    Ok(files)
}

/// A random 32-byte key kept in `<cluster_dir>/secrets/<name>` (0600),
/// base64. It is made only with a new PKI (`fresh`): a cluster dir that
/// already holds a PKI but lost the key must get it back, since a new one
/// would leave every encrypted Secret unreadable.
pub fn ensure_secret_key(cluster_dir: &Path, name: &str, fresh: bool) -> Result<String> {
    use base64::Engine;
    let path = cluster_dir.join("secrets").join(name);
    if let Some(b) = read_opt(&path)? {
        check_private(&path)?;
        return Ok(String::from_utf8_lossy(&b).trim().to_string());
    }
    if !fresh {
        return Err(pki_err(
            name,
            format!(
                "{} is missing but {} holds the cluster's PKI: restore the key from a backup; a new one would leave every encrypted Secret unreadable",
                path.display(),
                cluster_dir.join("pki").display()
            ),
        ));
    }
    let mut key = [0u8; 32];
    let mut f =
        std::fs::File::open("/dev/urandom").map_err(|e| PlanError::io("/dev/urandom", e))?;
    std::io::Read::read_exact(&mut f, &mut key).map_err(|e| PlanError::io("/dev/urandom", e))?;
    let text = base64::engine::general_purpose::STANDARD.encode(key);
    write_if_changed(&path, format!("{text}\n").as_bytes(), true)?;
    Ok(text)
}
