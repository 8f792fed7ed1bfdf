//! Ports for daemons that must be told theirs in a config file (Debian's
//! docker-registry, `ferry registry serve` on a port a plan rendered):
//! [`start_on_free_port`] starts the daemon on a candidate port and, when the
//! daemon says the port is in use, starts it again on another one. Nothing is
//! bound and released to "find" a free port, so no other process can take
//! the port between the test's check and the daemon's bind.
//!
//! A daemon counts as up once it owns a listening socket on its port (read
//! from /proc/net/tcp{,6} and its /proc/<pid>/fd), so a listener of some other
//! process on the same port is never mistaken for it.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// Ports tried before giving up.
const ATTEMPTS: usize = 8;
/// How long a daemon may take to listen (or exit).
const START_BOUND: Duration = Duration::from_secs(30);

/// Starts a daemon with `start(port)` (which writes its config and spawns
/// it; its output goes to `log`) on a candidate loopback port, and returns it
/// once it listens there. A daemon that exits saying the port is in use is
/// started again on another port; any other exit, or no listener within
/// [`START_BOUND`], panics with `what` and the log.
pub fn start_on_free_port(
    what: &str,
    log: &Path,
    mut start: impl FnMut(u16) -> Child,
) -> (Child, u16) {
    let mut tried = Vec::new();
    for _ in 0..ATTEMPTS {
        let port = candidate();
        tried.push(port);
        let mut child = start(port);
        match wait_listening(&mut child, port) {
            Ok(()) => return (child, port),
            Err(status) => {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let Some(status) = status else {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "{what} did not listen on port {port} within {START_BOUND:?} ({}):\n{text}",
                        log.display()
                    );
                };
                if !says_in_use(&text) {
                    panic!(
                        "{what} exited ({status}) before listening on port {port} ({}):\n{text}",
                        log.display()
                    );
                }
            }
        }
    }
    panic!(
        "{what}: ports {tried:?} were all in use; free some of 10000-{}",
        range_end() - 1
    );
}

/// A loopback socket bound to a port but not listening, held for as long as
/// the value lives: connections to [`Unlistened::addr`] are refused, and no
/// other socket can take the port meanwhile.
pub struct Unlistened {
    _socket: socket2::Socket,
    pub addr: SocketAddr,
}

impl Unlistened {
    pub fn bind() -> Unlistened {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        socket.bind(&any.into()).expect("bind 127.0.0.1:0");
        let addr = socket
            .local_addr()
            .expect("local address")
            .as_socket()
            .expect("an IP address");
        Unlistened {
            _socket: socket,
            addr,
        }
    }
}

/// A port below the kernel's ephemeral range (so no outgoing connection holds
/// it), at random so parallel tests rarely pick the same one.
fn candidate() -> u16 {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let span = u64::from(range_end() - 10000);
    10000 + (h.finish() % span) as u16
}

/// The first port of the kernel's ephemeral range (32768 when unreadable).
fn range_end() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .filter(|&p: &u16| p > 10001)
        .unwrap_or(32768)
}

fn says_in_use(log: &str) -> bool {
    let log = log.to_ascii_lowercase();
    log.contains("address already in use") || log.contains("address in use")
}

/// Waits until `child` listens on `port`: Ok, or Err(Some(status)) when it
/// exited first, Err(None) when neither happened within [`START_BOUND`].
fn wait_listening(child: &mut Child, port: u16) -> Result<(), Option<ExitStatus>> {
    let deadline = Instant::now() + START_BOUND;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("wait for the daemon") {
            return Err(Some(status));
        }
        if listening_inodes(port)
            .iter()
            .any(|inode| owns_socket(child.id(), inode))
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(None)
}

/// Socket inodes of TCP listeners on `port` (any address).
fn listening_inodes(port: u16) -> Vec<String> {
    let suffix = format!(":{port:04X}");
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[3] == "0A" && f[1].ends_with(&suffix) {
                out.push(f[9].to_owned());
            }
        }
    }
    out
}

/// Whether process `pid` (or a thread of it) has socket `inode` open.
fn owns_socket(pid: u32, inode: &str) -> bool {
    let want = format!("socket:[{inode}]");
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == want.as_str())
    })
}

/// For tests of this module: a listener on a port, as another process would hold it.
pub fn hold(port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind(("127.0.0.1", port))
}
