//! `ferry registry push` with authentication, over TLS with a private CA
//! (`--ca`) and under a project prefix (`--to 127.0.0.1:PORT/project`), into
//! Debian's docker-registry:
//! - basic auth: the registry's `auth: htpasswd` with a bcrypt entry made by
//!   Debian's `htpasswd -B`;
//! - token exchange: the registry's `auth: token`, with the test's own token
//!   server (tests/fixtures/tokenserver.py, a test fixture) over HTTPS with
//!   the same CA, which trades the right Basic credentials for an RS256 JWT
//!   and refuses anything else.
//!
//! The right password pushes every tag the bundle carries, and skopeo (with
//! the credentials and the CA) reads each back: as the digest bundle.json
//! records, or, where docker-registry refused the partial upstream index, as
//! the index of the carried platforms the report names, with every carried
//! platform's manifest under its upstream digest. No password, or a wrong
//! one, fails: exit 1, naming the target and saying that authentication
//! failed, and the registry stores nothing. The password, and every token the
//! token server issued, never shows in ferry's stdout, stderr, `--json`
//! report or `RUST_LOG=debug` log.

mod common;

use common::mirror::{carried_entry, ferry, sha256_hex, DockerRegistry, TestCa};
use common::testbundle::{keypair, make_bundle, unpack_into};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

const USER: &str = "ferry-pusher";
const PASSWORD: &str = "s3cret-Pa55word-4f9c1e";
const WRONG_PASSWORD: &str = "wrong-Pa55word-77d2a0";
const PROJECT: &str = "project";
const IMAGES: &[&str] = &["registry.k8s.io/pause:3.9", "quay.io/cilium/cilium:v1.15.6"];
const SERVICE: &str = "ferry-test-registry";
const ISSUER: &str = "ferry-test-token-server";

#[test]
fn basic_auth_over_tls_pushes_with_the_right_password_and_refuses_a_wrong_one() {
    let fx = Fixture::new();
    let config = format!("{}{}", fx.tls_config(), fx.htpasswd_config());
    let registry = DockerRegistry::start_with(&config);

    let anonymous = fx.push(&registry, None, false);
    let error = assert_refused(&registry, &anonymous);
    assert!(error.contains("--user"), "says what to give: {error}");

    let wrong = fx.push(&registry, Some(WRONG_PASSWORD), false);
    assert_no_secret(&wrong, &[PASSWORD, WRONG_PASSWORD]);
    let error = assert_refused(&registry, &wrong);
    assert!(error.contains(USER), "names the user: {error}");

    let right = fx.push(&registry, Some(PASSWORD), true);
    assert_no_secret(&right, &[PASSWORD]);
    assert_debug_logged(&right);
    let report = fx.assert_pushed(&registry, &right);
    fx.assert_read_back(&registry, &report);
}

#[test]
fn token_exchange_over_tls_pushes_with_the_right_password_and_refuses_a_wrong_one() {
    let fx = Fixture::new();
    let tokens = TokenServer::start(&fx);
    let config = format!("{}{}", fx.tls_config(), tokens.registry_config());
    let registry = DockerRegistry::start_with(&config);

    let wrong = fx.push(&registry, Some(WRONG_PASSWORD), true);
    assert_no_secret(&wrong, &[PASSWORD, WRONG_PASSWORD]);
    let error = assert_refused(&registry, &wrong);
    assert!(error.contains(USER), "names the user: {error}");
    let stats = tokens.stats();
    // One refusal: the push stops at the first one instead of trying every image.
    assert_eq!(stats["refused"], 1, "{stats}");
    assert_eq!(stats["granted"], 0, "{stats}");

    let right = fx.push(&registry, Some(PASSWORD), true);
    let issued = tokens.issued();
    assert!(!issued.is_empty(), "no token was issued");
    let mut secrets = vec![PASSWORD];
    secrets.extend(issued.iter().map(String::as_str));
    // Each token's signature part on its own too, in case a log printed a
    // token in pieces.
    secrets.extend(issued.iter().filter_map(|t| t.rsplit('.').next()));
    assert_no_secret(&right, &secrets);
    assert_debug_logged(&right);
    let report = fx.assert_pushed(&registry, &right);
    let stats = tokens.stats();
    for reference in IMAGES {
        let repo = reference.rsplit_once(':').unwrap().0;
        let scope = format!("repository:{PROJECT}/{repo}:pull,push");
        assert!(
            stats["scopes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s == &scope),
            "ferry never asked for {scope}: {stats}"
        );
    }
    fx.assert_read_back(&registry, &report);
}

/// A bundle of IMAGES (one with a signature tag) unpacked into a data dir,
/// and a test CA, in one temp dir.
struct Fixture {
    dir: tempfile::TempDir,
    data: PathBuf,
    /// The OCI layout the bundle's images came from (upstream bytes).
    layout: PathBuf,
    /// Every tag the bundle carries (images and their signatures) -> its
    /// upstream digest, as bundle.json records them.
    digests: BTreeMap<String, String>,
    ca: TestCa,
    /// A skopeo `--cert-dir` holding the CA certificate only.
    cert_dir: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("ferry-push-auth-")
            .tempdir()
            .unwrap();
        let (public, secret) = keypair(dir.path(), "release");
        let bundle = make_bundle(dir.path(), "prod", IMAGES, 50_000, 1000, Some(&secret));
        let data = dir.path().join("data");
        unpack_into(&bundle.path, &public, &data);
        let mut digests = BTreeMap::new();
        for image in &bundle.manifest.images {
            digests.insert(image.reference.clone(), image.digest.clone());
            if let Some(sig) = &image.signature {
                digests.insert(sig.reference.clone(), sig.digest.clone());
            }
        }
        let tls = dir.path().join("tls");
        std::fs::create_dir(&tls).unwrap();
        let ca = TestCa::new(&tls);
        let cert_dir = dir.path().join("certs.d");
        std::fs::create_dir(&cert_dir).unwrap();
        std::fs::copy(&ca.ca, cert_dir.join("ca.crt")).unwrap();
        Fixture {
            dir,
            data,
            layout: bundle.layout,
            digests,
            ca,
            cert_dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Lines of the registry's `http:` section: TLS with the CA's certificate for 127.0.0.1.
    fn tls_config(&self) -> String {
        format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            self.ca.cert.display(),
            self.ca.key.display()
        )
    }

    /// An `auth: htpasswd` section with a bcrypt entry for USER made by `htpasswd -B`.
    fn htpasswd_config(&self) -> String {
        let mut child = Command::new("htpasswd")
            .args(["-n", "-B", "-i", USER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run htpasswd (Debian's apache2-utils)");
        write_line(&mut child, PASSWORD);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "htpasswd: {}", stderr(&out));
        let entry = String::from_utf8(out.stdout).unwrap();
        assert!(
            entry.starts_with(&format!("{USER}:$2")),
            "not bcrypt: {entry}"
        );
        let path = self.path("htpasswd");
        std::fs::write(&path, entry).unwrap();
        format!(
            "auth:\n  htpasswd:\n    realm: ferry-test\n    path: {}\n",
            path.display()
        )
    }

    /// `ferry registry push --json --to ADDR/project --ca CA [--user USER
    /// --password-stdin]`, with `RUST_LOG=debug` or without RUST_LOG.
    fn push(&self, registry: &DockerRegistry, password: Option<&str>, debug: bool) -> Output {
        let mut cmd = ferry();
        cmd.args(["registry", "push", "--json", "--to", &target(registry)]);
        if password.is_some() {
            cmd.args(["--user", USER, "--password-stdin"]);
        }
        cmd.arg("--ca")
            .arg(&self.ca.ca)
            .arg("--data-dir")
            .arg(&self.data)
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if debug {
            cmd.env("RUST_LOG", "debug");
        }
        let mut child = cmd.spawn().expect("run ferry registry push");
        write_line(&mut child, password.unwrap_or_default());
        child.wait_with_output().unwrap()
    }

    /// The push succeeded and its report lists every tag under the prefix;
    /// returns the report.
    fn assert_pushed(&self, registry: &DockerRegistry, out: &Output) -> serde_json::Value {
        assert!(out.status.success(), "push failed: {}", stderr(out));
        let report: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("--json report on stdout");
        assert_eq!(report["images_pushed"], self.digests.len(), "{report}");
        assert!(report["blobs_pushed"].as_u64().unwrap() > 0, "{report}");
        for (reference, digest) in &self.digests {
            let shown = format!("{}/{reference}", target(registry));
            let entry = report_entry(&report, reference);
            assert_eq!(entry["target"], shown.as_str(), "{report}");
            assert_eq!(entry["digest"], digest.as_str(), "{report}");
        }
        report
    }

    /// skopeo, with the credentials and the CA, reads every tag back as the
    /// digest the report gives (the upstream one, or that of the index of the
    /// carried platforms when the registry refused a partial upstream index),
    /// and every carried platform's manifest by its upstream digest, byte for
    /// byte. Without credentials the registry refuses.
    fn assert_read_back(&self, registry: &DockerRegistry, report: &serde_json::Value) {
        for (reference, digest) in &self.digests {
            let pushed = report_entry(report, reference)["pushed_digest"]
                .as_str()
                .unwrap()
                .to_owned();
            let tag = self.read_raw(registry, reference, &pushed);
            let carried = self.carried_children(digest);
            if pushed != *digest {
                assert_eq!(index_entries(&tag), carried, "{reference}: {pushed}");
            }
            let repo = reference.rsplit_once(':').unwrap().0;
            for child in &carried {
                self.read_raw(registry, &format!("{repo}@{child}"), child);
            }
            let anonymous = self.skopeo_inspect(registry, reference, None);
            assert!(
                !anonymous.status.success(),
                "{reference} was readable without credentials"
            );
        }
    }

    /// `skopeo inspect --raw` of `reference` under the target, asserting the
    /// bytes have `digest`; returns them.
    fn read_raw(&self, registry: &DockerRegistry, reference: &str, digest: &str) -> Vec<u8> {
        let out = self.skopeo_inspect(registry, reference, Some(PASSWORD));
        assert!(out.status.success(), "skopeo {reference}: {}", stderr(&out));
        let got = format!("sha256:{}", sha256_hex(&out.stdout));
        assert_eq!(got, digest, "{reference}");
        out.stdout
    }

    /// Digests of the index entries the bundle carries (none for a manifest).
    fn carried_children(&self, digest: &str) -> BTreeSet<String> {
        let hex = digest.strip_prefix("sha256:").unwrap();
        let bytes = std::fs::read(self.layout.join("blobs/sha256").join(hex)).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        doc["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| carried_entry(e))
            .map(|e| e["digest"].as_str().unwrap().to_owned())
            .collect()
    }

    fn skopeo_inspect(
        &self,
        registry: &DockerRegistry,
        reference: &str,
        password: Option<&str>,
    ) -> Output {
        let mut cmd = Command::new("skopeo");
        cmd.args(["inspect", "--raw", "--retry-times", "0", "--cert-dir"])
            .arg(&self.cert_dir);
        match password {
            Some(p) => cmd.arg("--creds").arg(format!("{USER}:{p}")),
            None => cmd.arg("--no-creds"),
        };
        cmd.arg(format!("docker://{}/{reference}", target(registry)))
            .output()
            .expect("run skopeo")
    }
}

/// tests/fixtures/tokenserver.py, a test fixture: HTTPS with the test CA on
/// a free loopback port; killed on drop.
struct TokenServer {
    child: Child,
    state: PathBuf,
    realm: String,
}

impl TokenServer {
    fn start(fx: &Fixture) -> TokenServer {
        let state = fx.path("tokenserver");
        std::fs::create_dir(&state).unwrap();
        let password_file = state.join("password");
        std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenserver.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg("--cert")
            .arg(&fx.ca.cert)
            .arg("--key")
            .arg(&fx.ca.key)
            .args(["--user", USER, "--issuer", ISSUER, "--service", SERVICE])
            .arg("--password-file")
            .arg(&password_file)
            .arg("--state")
            .arg(&state)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(state.join("log")).unwrap())
            .spawn()
            .expect("start tokenserver.py");
        let stdout = child.stdout.take().unwrap();
        let mut server = TokenServer {
            child,
            state,
            realm: String::new(),
        };
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let Some(port) = line.trim().strip_prefix("listening on ") else {
            panic!(
                "tokenserver.py did not start: {line:?}\n{}",
                std::fs::read_to_string(server.state.join("log")).unwrap_or_default()
            );
        };
        server.realm = format!("https://127.0.0.1:{port}/token");
        server
    }

    /// The registry's `auth: token` section trusting this server's signing certificate.
    fn registry_config(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            self.realm,
            self.state.join("signing.crt").display()
        )
    }

    /// `{"granted": N, "refused": N, "scopes": [...]}`
    fn stats(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.state.join("stats.json")).unwrap()).unwrap()
    }

    /// Every token handed out so far.
    fn issued(&self) -> Vec<String> {
        std::fs::read_to_string(self.state.join("tokens.txt"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The report's entry for a source reference.
fn report_entry<'a>(report: &'a serde_json::Value, reference: &str) -> &'a serde_json::Value {
    report["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["source"] == reference)
        .unwrap_or_else(|| panic!("{reference} not in the report: {report}"))
}

/// The digests an index lists.
fn index_entries(bytes: &[u8]) -> BTreeSet<String> {
    let doc: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    doc["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["digest"].as_str().unwrap().to_owned())
        .collect()
}

/// `127.0.0.1:PORT/project`
fn target(registry: &DockerRegistry) -> String {
    format!("{}/{PROJECT}", registry.addr)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Writes `line` and a newline to the child's stdin and closes it.
fn write_line(child: &mut Child, line: &str) {
    let mut stdin = child.stdin.take().unwrap();
    // The child may already have exited; its output then tells why.
    let _ = stdin.write_all(format!("{line}\n").as_bytes());
}

fn assert_no_secret(out: &Output, secrets: &[&str]) {
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), stderr(out));
    for secret in secrets {
        assert!(!stdout.contains(secret), "a secret on stdout:\n{stdout}");
        assert!(!stderr.contains(secret), "a secret on stderr:\n{stderr}");
    }
}

/// `RUST_LOG=debug` really logged at debug level (so the secret checks saw that log).
fn assert_debug_logged(out: &Output) {
    let stderr = stderr(out);
    assert!(
        stderr.lines().any(|l| l.contains("DEBUG")),
        "no debug lines: {stderr}"
    );
}

/// Exit 1, an error naming the target and saying authentication failed, and
/// nothing stored in the registry; returns the error.
fn assert_refused(registry: &DockerRegistry, out: &Output) -> String {
    let stderr = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // The error is the last thing ferry prints, after any log lines, and
    // may span lines.
    let at = stderr
        .rfind("\nerror: ")
        .map(|at| at + 1)
        .or_else(|| stderr.starts_with("error: ").then_some(0))
        .unwrap_or_else(|| panic!("no error: {stderr}"));
    let error = &stderr[at..];
    assert!(error.contains(&target(registry)), "{error}");
    assert!(
        error.to_lowercase().contains("authentication failed"),
        "{error}"
    );
    let stored = files_under(&registry.dir.path().join("data"));
    assert!(stored.is_empty(), "the registry stored {stored:?}");
    error.to_owned()
}

/// Regular files under `root` (none when it does not exist).
fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}
