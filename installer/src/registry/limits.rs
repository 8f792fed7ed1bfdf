//! Connection limits of the registry mirror: timeouts, how many connections
//! are held overall and per client address, and a refusal log that says once
//! per address and interval what it refused instead of a line per socket.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Timeouts and bounds for `ferry registry serve`. The defaults suit a master
/// serving a few hundred kubelets under systemd's LimitNOFILE=65536.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Time from accept (or from the first byte of a later request) until a
    /// request head must be complete.
    pub header_read_timeout: Duration,
    /// How long a connection may sit with no request in progress; also how
    /// long a response may stall because the client stopped reading.
    pub idle_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Largest HTTP/1.1 request head and HTTP/2 header list.
    pub max_header_bytes: usize,
    pub h2_max_streams: u32,
    pub h2_max_pending_resets: usize,
    /// Zero turns HTTP/2 keep-alive pings off.
    pub h2_keepalive_interval: Duration,
    pub h2_keepalive_timeout: Duration,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        tls_handshake_timeout: Duration::from_secs(10),
        max_connections: 16384,
        max_connections_per_ip: 256,
        max_header_bytes: 32 * 1024,
        h2_max_streams: 128,
        h2_max_pending_resets: 20,
        h2_keepalive_interval: Duration::from_secs(30),
        h2_keepalive_timeout: Duration::from_secs(20),
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Which bound a refused connection hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerAddress,
}

/// Counts open connections overall and per client address.
#[derive(Debug)]
pub struct ConnLimiter {
    max_total: usize,
    max_per_ip: usize,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One admitted connection; dropping it frees its slot.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<ConnLimiter>,
    ip: IpAddr,
}

impl ConnLimiter {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<ConnLimiter> {
        Arc::new(ConnLimiter {
            max_total,
            max_per_ip,
            counts: Mutex::new(Counts::default()),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refused> {
        // An IPv4 client of a [::] listener shows up as ::ffff:a.b.c.d.
        let ip = ip.to_canonical();
        let mut c = self.counts();
        if c.total >= self.max_total {
            return Err(Refused::Total);
        }
        let n = c.per_ip.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return Err(Refused::PerAddress);
        }
        *n += 1;
        c.total += 1;
        Ok(Permit {
            limiter: self.clone(),
            ip,
        })
    }

    pub fn active(&self) -> usize {
        self.counts().total
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut c = self.limiter.counts();
        c.total -= 1;
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Logs refused connections at most once per address and interval, with the
/// number refused since the last line, so a flood cannot flood the journal.
#[derive(Debug)]
pub struct RefusalLog {
    interval: Duration,
    seen: Mutex<HashMap<IpAddr, (Option<Instant>, u64)>>,
}

/// Above this many remembered addresses, forget the ones not refused lately.
const REFUSAL_LOG_ENTRIES: usize = 4096;

impl RefusalLog {
    pub fn new(interval: Duration) -> RefusalLog {
        RefusalLog {
            interval,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Records one refusal; returns the number of refusals the logged line
    /// covers, or None when this one is only counted.
    pub fn note(&self, ip: IpAddr, why: Refused, limits: &Limits) -> Option<u64> {
        let ip = ip.to_canonical();
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= REFUSAL_LOG_ENTRIES {
            seen.retain(|_, (at, _)| at.is_some_and(|at| now.duration_since(at) < self.interval));
        }
        let entry = seen.entry(ip).or_insert((None, 0));
        entry.1 += 1;
        if entry
            .0
            .is_some_and(|at| now.duration_since(at) < self.interval)
        {
            return None;
        }
        let count = std::mem::take(&mut entry.1);
        entry.0 = Some(now);
        let bound = match why {
            Refused::Total => format!(
                "{} connections open in all (--max-connections)",
                limits.max_connections
            ),
            Refused::PerAddress => format!(
                "{} connections open from this address (--max-connections-per-ip)",
                limits.max_connections_per_ip
            ),
        };
        tracing::warn!(
            client = %ip,
            refused = count,
            "connection refused: {bound}; refused {count} in the last {:?} (raise the limit if this client is legitimate)",
            self.interval
        );
        Some(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn limits_per_address_and_overall() {
        let l = ConnLimiter::new(3, 2);
        let a1 = l.try_acquire(ip("10.0.0.1")).unwrap();
        let _a2 = l.try_acquire(ip("::ffff:10.0.0.1")).unwrap();
        assert_eq!(
            l.try_acquire(ip("10.0.0.1")).unwrap_err(),
            Refused::PerAddress
        );
        let _b = l.try_acquire(ip("10.0.0.2")).unwrap();
        assert_eq!(l.try_acquire(ip("10.0.0.3")).unwrap_err(), Refused::Total);
        drop(a1);
        assert_eq!(l.active(), 2);
        let _a3 = l.try_acquire(ip("10.0.0.1")).unwrap();
    }

    #[test]
    fn refusals_are_logged_once_per_interval() {
        let log = RefusalLog::new(Duration::from_secs(3600));
        let limits = Limits::DEFAULT;
        assert_eq!(
            log.note(ip("10.0.0.1"), Refused::PerAddress, &limits),
            Some(1)
        );
        for _ in 0..100 {
            assert_eq!(log.note(ip("10.0.0.1"), Refused::PerAddress, &limits), None);
        }
        assert_eq!(log.note(ip("10.0.0.2"), Refused::Total, &limits), Some(1));
    }
}
