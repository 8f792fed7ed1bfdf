//! `ferry registry serve` under hostile and crowded clients: slow request
//! heads, idle keep-alive connections and stalled TLS handshakes are closed
//! once their timeout passed (never before); clients beyond the per-address
//! and overall limits are refused while other addresses are served; and with
//! 5,000 idle and slow sockets held open, a full pull of every image still
//! completes with the right digests while the server's memory stays flat.
//! Clients bind to different loopback source addresses (all of 127/8 is
//! loopback) to look like different hosts.

mod common;

use common::mirror::{carried_entry, ferry, sha256_hex, spawn_serve, TestCa};
use common::testbundle::{keypair, make_bundle, unpack_into};
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

const REFS: &[&str] = &[
    "registry.k8s.io/pause:3.9",
    "registry.k8s.io/coredns/coredns:v1.11.1",
    "quay.io/cilium/cilium:v1.15.6",
    "docker.io/library/busybox:1.36",
];

/// Longest wait for a close the server owes us; a hang fails the test.
const CLOSE_WAIT_MAX: Duration = Duration::from_secs(30);

/// A signed bundle of `refs` unpacked into `<dir>/data`; ref -> index digest.
fn fixture(dir: &Path, refs: &[&str], extra_bytes: u64) -> BTreeMap<String, String> {
    let (public, secret) = keypair(dir, "release");
    let b = make_bundle(dir, "limits", refs, extra_bytes, 1000, Some(&secret));
    unpack_into(&b.path, &public, &dir.join("data"));
    b.manifest
        .images
        .iter()
        .map(|i| (i.reference.clone(), i.digest.clone()))
        .collect()
}

/// `ferry registry serve` with extra flags; killed (and reaped) on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Server {
    fn start(dir: &Path, tls: Option<&TestCa>, flags: &[&str]) -> Server {
        let log = dir.join(format!("serve-{}.log", flags.join("_").replace('-', "")));
        let mut cmd = ferry();
        cmd.args(["registry", "serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.join("data"))
            .args(flags)
            .env("RUST_LOG", "info");
        if let Some(ca) = tls {
            cmd.arg("--tls-cert")
                .arg(&ca.cert)
                .arg("--tls-key")
                .arg(&ca.key);
        }
        let (child, url) = spawn_serve(cmd, &log);
        let addr = url.split_once("://").unwrap().1.parse().unwrap();
        Server { child, addr, log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn proc_status(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{key} missing from /proc/PID/status"))
    }

    /// Resident memory in KiB.
    fn rss_kib(&self) -> u64 {
        self.proc_status("VmRSS:")
    }

    fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .unwrap()
            .count()
    }

    /// Open descriptors once the count holds still: connections a client just
    /// closed, or just opened but not yet accepted, are settled first.
    fn settled_fds(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last = self.open_fds();
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let now = self.open_fds();
            if now == last || Instant::now() > deadline {
                return now;
            }
            last = now;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP connection to `to` from the loopback address `from`.
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from((from, 0)).into())
        .unwrap_or_else(|e| panic!("bind {from}: {e}"));
    s.connect(&to.into())
        .unwrap_or_else(|e| panic!("connect {from} -> {to}: {e}"));
    s.into()
}

/// Reads until the server closes (EOF or reset); returns the time since `since`.
fn wait_closed(s: &mut TcpStream, since: Instant) -> Duration {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return since.elapsed(),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                return since.elapsed()
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read: {e}"),
        }
        assert!(
            since.elapsed() < CLOSE_WAIT_MAX,
            "the server kept the connection open for {CLOSE_WAIT_MAX:?}"
        );
    }
}

/// One HTTP/1.1 GET on a kept-alive connection: status and body.
fn get(s: &mut TcpStream, path: &str) -> (u16, Vec<u8>) {
    write!(s, "GET {path} HTTP/1.1\r\nHost: mirror\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).unwrap();
        assert_eq!(n, 1, "connection closed inside a response head: {head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().unwrap())
        })
        .expect("content-length");
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    (status, body)
}

fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir().unwrap()
}

#[test]
fn slow_heads_and_idle_keepalives_are_closed_after_their_timeouts() {
    let dir = tempdir("ferry-limits-slow-");
    fixture(dir.path(), &REFS[..1], 0);
    let header = Duration::from_secs(1);
    let idle = Duration::from_secs(3);
    let server = Server::start(
        dir.path(),
        None,
        &["--header-read-timeout", "1", "--idle-timeout", "3"],
    );
    let lo = Ipv4Addr::LOCALHOST;

    // Connects and says nothing.
    let silent = std::thread::spawn(move || {
        let t0 = Instant::now();
        let mut s = connect_from(lo, server.addr);
        wait_closed(&mut s, t0)
    });
    // Starts a head and dribbles a header byte every 100 ms: the header
    // timeout counts from the start, so dribbling does not extend it.
    let dribbler = std::thread::spawn(move || {
        let t0 = Instant::now();
        let mut s = connect_from(lo, server.addr);
        s.write_all(b"GET /v2/ HTTP/1.1\r\nX-Slow: ").unwrap();
        let mut w = s.try_clone().unwrap();
        std::thread::spawn(move || {
            while w.write_all(b"a").is_ok() && t0.elapsed() < CLOSE_WAIT_MAX {
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        wait_closed(&mut s, t0)
    });
    // A kept-alive connection: a second request after more than the header
    // timeout (but less than the idle timeout) is still served; then idle.
    let mut s = connect_from(lo, server.addr);
    assert_eq!(get(&mut s, "/v2/").0, 200);
    std::thread::sleep(Duration::from_secs(2));
    let t0 = Instant::now();
    assert_eq!(get(&mut s, "/v2/").0, 200, "served after 2 s of idling");
    let idle_closed = wait_closed(&mut s, t0);

    let silent = silent.join().unwrap();
    let dribbled = dribbler.join().unwrap();
    assert!(silent >= header, "silent socket closed after {silent:?}");
    assert!(dribbled >= header, "slow head closed after {dribbled:?}");
    assert!(
        idle_closed >= idle,
        "idle socket closed after {idle_closed:?}"
    );
}

#[test]
fn tls_handshakes_that_never_finish_are_closed() {
    let dir = tempdir("ferry-limits-tls-");
    fixture(dir.path(), &REFS[..1], 0);
    let ca = TestCa::new(dir.path());
    let server = Server::start(dir.path(), Some(&ca), &["--tls-handshake-timeout", "1"]);
    let limit = Duration::from_secs(1);

    // Nothing at all, and a ClientHello record header without its body.
    let t0 = Instant::now();
    let mut silent = connect_from(Ipv4Addr::LOCALHOST, server.addr);
    let mut partial = connect_from(Ipv4Addr::LOCALHOST, server.addr);
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    let a = wait_closed(&mut silent, t0);
    let b = wait_closed(&mut partial, t0);
    assert!(a >= limit, "silent TLS client closed after {a:?}");
    assert!(b >= limit, "half a ClientHello closed after {b:?}");

    // A client that completes its handshake is served.
    let client = reqwest::blocking::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&ca.ca).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let resp = client
        .get(format!("https://{}/v2/", server.addr))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// Opens `n` connections from `from` and checks each is served.
fn served_connections(from: Ipv4Addr, to: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut s = connect_from(from, to);
            assert_eq!(get(&mut s, "/v2/").0, 200, "connection {i} from {from}");
            s
        })
        .collect()
}

/// A connection the server must close at once (long before any timeout).
fn assert_refused(from: Ipv4Addr, to: SocketAddr) {
    let t0 = Instant::now();
    let mut s = connect_from(from, to);
    // The request may or may not reach the server before it closes.
    let _ = s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: mirror\r\n\r\n");
    let mut head = [0u8; 12];
    let n = read_some(&mut s, &mut head);
    assert_eq!(n, 0, "connection from {from} beyond the limit was answered");
    wait_closed(&mut s, t0);
}

fn read_some(s: &mut TcpStream, buf: &mut [u8]) -> usize {
    s.set_read_timeout(Some(CLOSE_WAIT_MAX)).unwrap();
    match s.read(buf) {
        Ok(n) => n,
        Err(e) if e.kind() == ErrorKind::ConnectionReset => 0,
        Err(e) => panic!("read: {e}"),
    }
}

#[test]
fn clients_beyond_the_per_address_and_overall_limits_are_refused() {
    let dir = tempdir("ferry-limits-conns-");
    fixture(dir.path(), &REFS[..1], 0);
    let server = Server::start(
        dir.path(),
        None,
        &["--max-connections-per-ip", "4", "--max-connections", "8"],
    );
    let (a, b, c) = (
        Ipv4Addr::new(127, 0, 0, 2),
        Ipv4Addr::new(127, 0, 1, 3),
        Ipv4Addr::new(127, 0, 2, 4),
    );
    let mut held_a = served_connections(a, server.addr, 4);
    for _ in 0..5 {
        assert_refused(a, server.addr);
    }
    // Another address is served while the first one is at its limit.
    let held_b = served_connections(b, server.addr, 4);
    // 8 open in all: a third address is refused too.
    assert_refused(c, server.addr);

    // One refusal line per address for the five refusals of `a`.
    let log = server.log_text();
    let lines_a = log
        .lines()
        .filter(|l| l.contains("connection refused") && l.contains("127.0.0.2"))
        .count();
    assert_eq!(lines_a, 1, "refusals of 127.0.0.2 logged once:\n{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("127.0.2.4") && l.contains("--max-connections)")),
        "{log}"
    );

    // A closed connection frees its slot.
    drop(held_a.pop());
    drop(held_b);
    let deadline = Instant::now() + CLOSE_WAIT_MAX;
    loop {
        let mut s = connect_from(a, server.addr);
        let _ = s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: mirror\r\n\r\n");
        let mut head = [0u8; 12];
        if read_some(&mut s, &mut head) == 12 {
            assert_eq!(&head[9..12], b"200");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "slot of a closed connection never freed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Fetches `url` and checks the body hashes to `digest`; returns its size.
fn fetch_checked(client: &reqwest::blocking::Client, url: &str, digest: &str) -> (Vec<u8>, u64) {
    let resp = client.get(url).send().unwrap();
    assert_eq!(resp.status(), 200, "{url}");
    let body = resp.bytes().unwrap().to_vec();
    assert_eq!(format!("sha256:{}", sha256_hex(&body)), digest, "{url}");
    let n = body.len() as u64;
    (body, n)
}

/// Every carried manifest and blob of `reference` through the mirror, each
/// checked against its digest; returns the bytes pulled.
fn pull_image(base: &str, reference: &str, digest: &str) -> u64 {
    pull_image_with(&reqwest::blocking::Client::new(), base, reference, digest)
}

fn pull_image_with(
    client: &reqwest::blocking::Client,
    base: &str,
    reference: &str,
    digest: &str,
) -> u64 {
    let (host_path, _) = reference.rsplit_once(':').unwrap();
    let manifest_url = |d: &str| format!("{base}/v2/{host_path}/manifests/{d}");
    let blob_url = |d: &str| format!("{base}/v2/{host_path}/blobs/{d}");
    let (index, mut total) = fetch_checked(client, &manifest_url(digest), digest);
    let index: serde_json::Value = serde_json::from_slice(&index).unwrap();
    let mut carried = 0;
    for entry in index["manifests"].as_array().unwrap() {
        if !carried_entry(entry) {
            continue;
        }
        carried += 1;
        let md = entry["digest"].as_str().unwrap();
        let (m, n) = fetch_checked(client, &manifest_url(md), md);
        total += n;
        let m: serde_json::Value = serde_json::from_slice(&m).unwrap();
        let config = m["config"]["digest"].as_str().unwrap();
        total += fetch_checked(client, &blob_url(config), config).1;
        for layer in m["layers"].as_array().unwrap() {
            let d = layer["digest"].as_str().unwrap();
            total += fetch_checked(client, &blob_url(d), d).1;
        }
    }
    assert!(carried > 0, "{reference}: no carried platform in its index");
    total
}

/// Every image at once, one thread per image; returns the bytes pulled.
fn pull_everything(base: &str, digests: &BTreeMap<String, String>) -> u64 {
    let threads: Vec<_> = digests
        .iter()
        .map(|(r, d)| {
            let (base, r, d) = (base.to_owned(), r.clone(), d.clone());
            std::thread::spawn(move || pull_image(&base, &r, &d))
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).sum()
}

/// Half send the start of a request head and stop; half finish a request and
/// stay connected. 50 per source address, addresses 127.0.1.1 and up.
fn crowd(to: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let from = Ipv4Addr::new(127, 0, 1 + (i / 50 / 250) as u8, 1 + (i / 50 % 250) as u8);
            let mut s = connect_from(from, to);
            if i % 2 == 0 {
                s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: mirror\r\nX-Slow: ")
                    .unwrap();
            } else {
                assert_eq!(get(&mut s, "/v2/").0, 200, "idle client {i} from {from}");
            }
            s
        })
        .collect()
}

#[test]
fn full_pull_completes_with_5000_idle_and_slow_sockets_open_and_memory_stays_flat() {
    const SOCKETS: usize = 5000;
    /// Allowed growth of the server's resident memory while the sockets are
    /// held and the pull runs: about 6 KiB per socket.
    const RSS_GROWTH_MAX_KIB: u64 = 32 * 1024;
    let dir = tempdir("ferry-limits-crowd-");
    let digests = fixture(dir.path(), REFS, 2 << 20);
    // Long timeouts so the crowd stays for the whole pull; default limits otherwise.
    let server = Server::start(
        dir.path(),
        None,
        &["--header-read-timeout", "600", "--idle-timeout", "600"],
    );
    let base = format!("http://{}", server.addr);
    let warm = pull_everything(&base, &digests);
    let rss_before = server.rss_kib();
    let fds_before = server.settled_fds();

    let crowd = crowd(server.addr, SOCKETS);
    let fds_crowded = server.settled_fds();
    assert!(
        fds_crowded >= fds_before + SOCKETS,
        "server holds {fds_crowded} descriptors, expected at least {} with the crowd",
        fds_before + SOCKETS
    );
    let pulled = pull_everything(&base, &digests);
    assert_eq!(
        pulled, warm,
        "the pull under load fetched what the warm-up did"
    );
    let rss_after = server.rss_kib();
    assert!(
        server.open_fds() >= fds_before + SOCKETS,
        "the crowd was dropped during the pull"
    );
    eprintln!(
        "{SOCKETS} sockets held, {pulled} bytes pulled: RSS {rss_before} KiB -> {rss_after} KiB"
    );
    assert!(
        rss_after <= rss_before + RSS_GROWTH_MAX_KIB,
        "server RSS grew from {rss_before} KiB to {rss_after} KiB with {SOCKETS} sockets (bound {RSS_GROWTH_MAX_KIB} KiB)"
    );
    drop(crowd);
}

#[test]
fn http2_with_prior_knowledge_is_served_and_closed_when_idle() {
    let dir = tempdir("ferry-limits-h2-");
    let digests = fixture(dir.path(), &REFS[..1], 0);
    let idle = Duration::from_secs(2);
    let server = Server::start(dir.path(), None, &["--idle-timeout", "2"]);

    // A plain connection opening with the HTTP/2 preface is served over HTTP/2.
    let client = reqwest::blocking::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let base = format!("http://{}", server.addr);
    let (reference, digest) = digests.iter().next().unwrap();
    assert!(pull_image_with(&client, &base, reference, digest) > 0);
    assert!(server.log_text().contains("HTTP/2.0\" 200"));

    // Preface and SETTINGS, then nothing: closed once idle.
    let t0 = Instant::now();
    let mut s = connect_from(Ipv4Addr::LOCALHOST, server.addr);
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    let closed = wait_closed(&mut s, t0);
    assert!(
        closed >= idle,
        "idle HTTP/2 connection closed after {closed:?}"
    );
}
