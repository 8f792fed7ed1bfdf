//! The kinds of value config.yml and the inventory carry. Each kind accepts a
//! narrow, documented set, so that a value cannot close a string, add a flag
//! or a line, or climb out of a directory in the files and commands ferry
//! writes from it; [`Kind::allowed`] is what an error tells the user.

use std::net::IpAddr;

/// A value's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An RFC 1123 label: a Kubernetes namespace, a cluster name.
    DnsLabel,
    /// An RFC 1123 subdomain: a node name, a DNS domain.
    DnsSubdomain,
    /// A DNS subdomain that may end in `.` (a cluster's DNS domain).
    DnsDomain,
    /// An absolute path of safe characters, without `.` or `..` components.
    AbsPath,
    /// A path ssh reads (absolute or under `~/`), of safe characters.
    KeyFile,
    /// A Linux network interface name.
    Interface,
    /// An IPv4 or IPv6 address.
    Ip,
    /// An IP address or a DNS name.
    HostOrIp,
    /// `address/prefix`.
    Cidr,
    /// A TCP port, 1-65535.
    Port,
    /// `first-last` ports, first not above last.
    PortRange,
    /// A login name as useradd accepts it.
    UserName,
    /// A Kubernetes resource quantity (`500m`, `1Gi`, `100`).
    Quantity,
    /// A quantity or a percentage (`500Mi`, `10%`): eviction thresholds.
    QuantityOrPercent,
    /// A Go duration (`1h`, `90s`, `876000h`).
    Duration,
    /// Whole hours or a Go duration (etcd's compaction retention).
    HoursOrDuration,
    /// A whole number.
    Count,
    /// A version such as `1.29.6` or `v1.29.6`.
    Version,
    /// An OCI image reference (`host[:port]/path:tag` or `@sha256:...`).
    ImageRef,
    /// An `http://` or `https://` URL with a host, optional port and path.
    HttpUrl,
    /// A kubeconfig name: letters, digits and `-_.@:`.
    Name,
    /// A CamelCase identifier (an admission plugin).
    Identifier,
    /// A systemd service unit name.
    UnitName,
    /// A word of letters, digits, `-` and `_` (an enumerated setting, checked
    /// against its values where it is used).
    Word,
    /// A systemd calendar event (`OnCalendar=`): a shorthand such as
    /// `daily`, or `[weekdays] [date] [time]`.
    Calendar,
}

impl Kind {
    /// Whether `s` is a value of this kind.
    pub fn accepts(self, s: &str) -> bool {
        match self {
            Kind::DnsLabel => is_dns_label(s),
            Kind::DnsSubdomain => is_dns_subdomain(s),
            Kind::DnsDomain => is_dns_subdomain(s.strip_suffix('.').unwrap_or(s)),
            Kind::AbsPath => is_abs_path(s),
            Kind::KeyFile => is_key_file(s),
            Kind::Interface => is_interface(s),
            Kind::Ip => s.parse::<IpAddr>().is_ok(),
            Kind::HostOrIp => s.parse::<IpAddr>().is_ok() || is_dns_name(s),
            Kind::Cidr => s.parse::<ipnet::IpNet>().is_ok(),
            Kind::Port => s.parse::<u16>().is_ok_and(|p| p > 0) && is_count(s),
            Kind::PortRange => is_port_range(s),
            Kind::UserName => is_user_name(s),
            Kind::Quantity => is_quantity(s),
            Kind::QuantityOrPercent => is_quantity(s) || is_percent(s),
            Kind::Duration => is_go_duration(s),
            Kind::HoursOrDuration => is_count(s) || is_go_duration(s),
            Kind::Count => is_count(s),
            Kind::Version => is_version(s),
            Kind::ImageRef => is_image_ref(s),
            Kind::HttpUrl => is_http_url(s),
            Kind::Name => is_name(s),
            Kind::Identifier => is_identifier(s),
            Kind::UnitName => is_unit_name(s),
            Kind::Word => is_word(s),
            Kind::Calendar => is_calendar(s),
        }
    }

    /// What the kind allows, for error messages.
    pub fn allowed(self) -> &'static str {
        match self {
            Kind::DnsLabel => "a DNS label: 1-63 lower-case letters, digits and '-', starting and ending with a letter or digit",
            Kind::DnsSubdomain => "a DNS subdomain: DNS labels (lower-case letters, digits, '-') joined by '.', at most 253 characters",
            Kind::DnsDomain => "a DNS domain such as cluster.local: DNS labels (lower-case letters, digits, '-') joined by '.'",
            Kind::AbsPath => "an absolute path: '/' then letters, digits and '._+@-', without '.' or '..' components",
            Kind::KeyFile => "an absolute path or one under '~/': letters, digits and '._+@-', without '.' or '..' components",
            Kind::Interface => "an interface name: 1-15 letters, digits, '.', '-' or '_', not '.' or '..'",
            Kind::Ip => "an IP address such as 10.0.0.10",
            Kind::HostOrIp => "an IP address or a DNS name (letters, digits, '-' and '.')",
            Kind::Cidr => "a CIDR such as 10.96.0.0/16",
            Kind::Port => "a port number, 1-65535",
            Kind::PortRange => "a port range such as 30000-32767",
            Kind::UserName => "a user name: letters, digits, '_', '.' and '-', not starting with '-', at most 32",
            Kind::Quantity => "a Kubernetes quantity such as 500m, 1Gi or 100",
            Kind::QuantityOrPercent => "a Kubernetes quantity such as 500Mi, or a percentage such as 10%",
            Kind::Duration => "a duration such as 90s, 1h or 1h30m (units ns, us, ms, s, m, h)",
            Kind::HoursOrDuration => "whole hours such as 8, or a duration such as 30m or 1h",
            Kind::Count => "a whole number",
            Kind::Version => "a version such as 1.29.6",
            Kind::ImageRef => "an image reference such as registry.local:5000/pause:3.9 (lower-case path, tag or @sha256 digest)",
            Kind::HttpUrl => "an http:// or https:// URL: a host, an optional port and path, nothing else",
            Kind::Name => "a name of letters, digits and '-_.@:', starting with a letter or digit",
            Kind::Identifier => "a name of letters and digits starting with a letter, such as NodeRestriction",
            Kind::UnitName => "a systemd service name such as containerd.service",
            Kind::Word => "a word of letters, digits, '-' and '_'",
            Kind::Calendar => "a systemd calendar event such as daily, hourly, '*-*-* 02:30:00' or 'Mon..Fri 01:00' (see systemd.time(7))",
        }
    }

    /// `None` when `s` is of this kind, else the message an error carries.
    pub fn check(self, s: &str) -> Option<String> {
        (!self.accepts(s)).then(|| format!("{s:?} is not {}", self.allowed()))
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// A DNS name as resolvers accept it: letters of either case.
fn is_dns_name(s: &str) -> bool {
    is_dns_subdomain(&s.to_ascii_lowercase())
}

fn path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._+@-/".contains(&b)
}

fn is_abs_path(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('/') else {
        return false;
    };
    s.len() <= 4096
        && s.bytes().all(path_byte)
        && (rest.is_empty()
            || rest
                .trim_end_matches('/')
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".."))
}

fn is_key_file(s: &str) -> bool {
    match s.strip_prefix("~/") {
        Some(rest) => is_abs_path(&format!("/{rest}")) && !rest.is_empty(),
        None => is_abs_path(s),
    }
}

fn is_interface(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn is_port_range(s: &str) -> bool {
    let Some((a, b)) = s.split_once('-') else {
        return false;
    };
    match (a.parse::<u16>(), b.parse::<u16>()) {
        (Ok(a), Ok(b)) => is_count(s.replace('-', "").as_str()) && 0 < a && a <= b,
        _ => false,
    }
}

fn is_user_name(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= 32
        && !u.starts_with('-')
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

fn is_count(s: &str) -> bool {
    !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit())
}

/// A decimal number: digits with at most one '.', at least one digit.
fn is_decimal(s: &str) -> bool {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    !(int.is_empty() && frac.is_empty())
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && s.len() <= 32
}

/// Kubernetes' quantity grammar: a signed decimal, then a binary or decimal
/// SI suffix or a decimal exponent.
fn is_quantity(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(end);
    if !is_decimal(number) {
        return false;
    }
    const SUFFIXES: &[&str] = &[
        "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P", "E",
    ];
    SUFFIXES.contains(&suffix) || is_exponent(suffix)
}

fn is_exponent(s: &str) -> bool {
    let Some(rest) = s.strip_prefix(['e', 'E']) else {
        return false;
    };
    let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
    is_count(digits) && digits.len() <= 3
}

fn is_percent(s: &str) -> bool {
    s.strip_suffix('%').is_some_and(is_decimal)
}

/// Go's `time.ParseDuration`: `0`, or one or more decimal-and-unit pairs.
/// systemd.time(7) calendar events, the forms an operator writes: a
/// shorthand, or up to three words (weekdays, a date with `-`, a time with
/// `:`) of digits and `*,./~-:` with weekday names.
fn is_calendar(s: &str) -> bool {
    const SHORTHANDS: [&str; 9] = [
        "minutely",
        "hourly",
        "daily",
        "weekly",
        "monthly",
        "yearly",
        "annually",
        "quarterly",
        "semiannually",
    ];
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    if SHORTHANDS.contains(&s) {
        return true;
    }
    let words: Vec<&str> = s.split(' ').collect();
    let spec = |w: &str, sep: char| {
        w.contains(sep)
            && w.starts_with(|c: char| c.is_ascii_digit() || c == '*')
            && w.chars()
                .all(|c| c.is_ascii_digit() || "*,./~-:".contains(c))
    };
    let weekdays = |w: &str| {
        w.split([',', '.', '-'])
            .filter(|d| !d.is_empty())
            .all(|d| DAYS.contains(&d))
            && w.starts_with(|c: char| c.is_ascii_uppercase())
    };
    let mut rest = &words[..];
    if rest.first().is_some_and(|w| weekdays(w)) {
        rest = &rest[1..];
    }
    if rest
        .first()
        .is_some_and(|w| spec(w, '-') && !w.contains(':'))
    {
        rest = &rest[1..];
    }
    if rest.first().is_some_and(|w| spec(w, ':')) {
        rest = &rest[1..];
    }
    rest.is_empty() && !s.is_empty() && words.len() <= 3
}

fn is_go_duration(s: &str) -> bool {
    if s == "0" {
        return true;
    }
    let mut rest = s;
    if rest.is_empty() || rest.len() > 64 {
        return false;
    }
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if !is_decimal(&rest[..end]) {
            return false;
        }
        rest = &rest[end..];
        let unit = ["ns", "us", "µs", "ms", "s", "m", "h"]
            .iter()
            .filter(|u| rest.starts_with(**u))
            .max_by_key(|u| u.len());
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

fn is_version(s: &str) -> bool {
    let s = s.strip_prefix('v').unwrap_or(s);
    let (core, extra) = match s.find(['-', '+']) {
        Some(i) => s.split_at(i),
        None => (s, ""),
    };
    let parts: Vec<&str> = core.split('.').collect();
    (2..=3).contains(&parts.len())
        && parts.iter().all(|p| is_count(p) && p.len() <= 9)
        && extra.len() <= 64
        && extra[extra.len().min(1)..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-+".contains(&b))
}

/// The distribution reference grammar: `[domain[:port]/]path[:tag][@digest]`.
fn is_image_ref(s: &str) -> bool {
    if s.len() > 512 {
        return false;
    }
    let (name_tag, digest) = match s.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        let ok = d
            .strip_prefix("sha256:")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        if !ok {
            return false;
        }
    }
    // A tag is after the last ':' that follows the last '/'.
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_tag[..last_slash + i],
            Some(&name_tag[last_slash + i + 1..]),
        ),
        None => (name_tag, None),
    };
    if let Some(t) = tag {
        let first_ok = t
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !first_ok
            || t.len() > 128
            || !t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return false;
        }
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    let domain = match parts.first() {
        Some(first) if parts.len() > 1 && (first.contains(['.', ':']) || *first == "localhost") => {
            Some(parts.remove(0))
        }
        _ => None,
    };
    domain.is_none_or(is_registry_host)
        && !parts.is_empty()
        && parts.iter().all(|p| is_path_component(p))
}

/// `host[:port]` of a registry.
fn is_registry_host(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    port.is_none_or(|p| p.parse::<u16>().is_ok())
        && (host.parse::<IpAddr>().is_ok() || is_dns_name(host))
}

/// `[a-z0-9]+` joined by `.`, `_`, `__` or dashes.
fn is_path_component(p: &str) -> bool {
    let bytes = p.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !p.is_empty()
        && bytes.first().copied().is_some_and(alnum)
        && bytes.last().copied().is_some_and(alnum)
        && bytes.iter().all(|&b| alnum(b) || b"._-".contains(&b))
        && !p.contains("..")
        && !p.contains("___")
}

fn is_http_url(s: &str) -> bool {
    let Some(rest) = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
    else {
        return false;
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host_ok = match authority.strip_prefix('[') {
        // An IPv6 literal: [addr] or [addr]:port.
        Some(v6) => v6.split_once(']').is_some_and(|(a, p)| {
            a.parse::<std::net::Ipv6Addr>().is_ok()
                && (p.is_empty()
                    || p.strip_prefix(':')
                        .is_some_and(|p| p.parse::<u16>().is_ok()))
        }),
        None => is_registry_host(authority),
    };
    host_ok && s.len() <= 2048 && path.bytes().all(path_byte)
}

fn is_name(s: &str) -> bool {
    s.len() <= 253
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@:".contains(&b))
}

fn is_identifier(s: &str) -> bool {
    s.len() <= 128
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn is_unit_name(s: &str) -> bool {
    s.strip_suffix(".service").is_some_and(|n| {
        !n.is_empty()
            && n.len() <= 240
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b":_.@-".contains(&b))
            && !n.starts_with('-')
    })
}

fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::Kind::{self, *};

    /// Values every kind refuses: each would change the meaning of a file or
    /// command it were written into.
    const HOSTILE: &[&str] = &[
        "",
        "a b",
        "a\"b",
        "a'b",
        "$(touch /tmp/x)",
        "`id`",
        "a;b",
        "a\\b",
        "%n",
        "a\nb",
        "{{ x }}",
        "a]b",
        "a#b",
        "a,b=c ",
    ];

    const ALL: &[Kind] = &[
        DnsLabel,
        DnsSubdomain,
        DnsDomain,
        AbsPath,
        KeyFile,
        Interface,
        Ip,
        HostOrIp,
        Cidr,
        Port,
        PortRange,
        UserName,
        Quantity,
        QuantityOrPercent,
        Duration,
        HoursOrDuration,
        Count,
        Version,
        ImageRef,
        HttpUrl,
        Name,
        Identifier,
        UnitName,
        Word,
    ];

    #[test]
    fn no_kind_accepts_quotes_spaces_or_shell_syntax() {
        for kind in ALL {
            for v in HOSTILE {
                assert!(!kind.accepts(v), "{kind:?} accepted {v:?}");
            }
        }
    }

    fn check(kind: Kind, good: &[&str], bad: &[&str]) {
        for v in good {
            assert!(kind.accepts(v), "{kind:?} refused {v:?}");
        }
        for v in bad {
            assert!(!kind.accepts(v), "{kind:?} accepted {v:?}");
            assert!(kind.check(v).unwrap().contains(kind.allowed()));
        }
    }

    #[test]
    fn calendar_events() {
        check(
            Kind::Calendar,
            &[
                "daily",
                "hourly",
                "*-*-* 02:30:00",
                "Mon..Fri 01:00",
                "Sat,Sun *-*-* 03:00",
                "*:0/15",
                "2026-12-* 04:00",
                "Mon",
            ],
            &[
                "../../etc/cron.d/x",
                "daily; rm -rf /",
                "x\" --y",
                "Mon Tue",
                "02:00\n",
                "*-*-* 02:00 extra",
                "%n",
                "Daily",
            ],
        );
    }

    #[test]
    fn names_and_paths() {
        check(
            DnsLabel,
            &["prod-k8s", "a", "k8s-01"],
            &["-a", "a-", "A", "a.b", &"a".repeat(64)],
        );
        check(
            DnsSubdomain,
            &["cluster.local", "node-1.dc1"],
            &["a..b", ".a", "a.", "UP"],
        );
        check(
            AbsPath,
            &["/opt/kube/bin", "/", "/var/lib/etcd/", "/data/etcd_1"],
            &[
                "opt/kube",
                "/a/../etc",
                "/a/./b",
                "//etc",
                "/a//b",
                "/a b",
                "/a:b",
                "../x",
            ],
        );
        check(
            KeyFile,
            &["~/.ssh/id_ed25519", "/root/.ssh/k"],
            &["-oProxyCommand=x", "~", "~/", "keys/k", "~/../k"],
        );
        check(
            Interface,
            &["eth0", "bond0.100", "ens3"],
            &["..", "toolonginterface", "a/b", "a:b"],
        );
        check(Name, &["context-cluster1", "admin@prod"], &["-a", "a b"]);
        check(
            UnitName,
            &["containerd.service", "a@b.service"],
            &["containerd", "-x.service"],
        );
    }

    #[test]
    fn addresses_and_urls() {
        check(
            Ip,
            &["10.0.0.1", "fd00::1"],
            &["10.0.0", "10.0.0.1/24", "host"],
        );
        check(
            HostOrIp,
            &["10.0.0.1", "api.Example.com"],
            &["-oProxy", "a_b"],
        );
        check(
            Cidr,
            &["10.96.0.0/16", "fd00::/64"],
            &["10.96.0.0", "10.96.0.0/33"],
        );
        check(Port, &["22", "65535"], &["0", "65536", "+22", "2 2"]);
        check(
            UserName,
            &["root", "ops.admin", "k8s_user"],
            &["-oX", "a@b", &"u".repeat(33)],
        );
        check(
            PortRange,
            &["30000-32767", "80-80"],
            &["30000", "2-1", "0-5", "+1-5", "1-70000"],
        );
        check(
            DnsDomain,
            &["cluster.local", "cluster.local."],
            &["cluster..local", "Cluster.local"],
        );
        check(
            HttpUrl,
            &[
                "https://harbor.company.local",
                "http://10.0.0.5:5000/v2",
                "https://[fd00::1]:443",
            ],
            &[
                "ftp://a",
                "https://",
                "https://a b",
                "https://u:p@host",
                "https://a/?q=1",
                "https://a:99999",
            ],
        );
        check(
            ImageRef,
            &[
                "harbor.company.local/google_containers/pause:3.9",
                "registry.k8s.io/pause:3.9",
                "localhost:5000/a/b:v1.2_x",
                "pause",
                &format!("r.io/a@sha256:{}", "0".repeat(64)),
            ],
            &[
                "Pause:3.9",
                "r.io/a:",
                "r.io/a@sha256:12",
                "r.io//a",
                "r.io/a:-x",
                "r.io:x/a",
            ],
        );
    }

    #[test]
    fn numbers_quantities_and_durations() {
        check(
            Quantity,
            &["500m", "1Gi", "100", "1.5", "5e3", "+1k"],
            &["1GB", "m", "1..2", "1Gi "],
        );
        check(QuantityOrPercent, &["500Mi", "10%", "7.5%"], &["%", "10%%"]);
        check(
            Duration,
            &["1h", "90s", "1h30m", "876000h", "1.5h", "0", "300ms", "2µs"],
            &["1", "h", "1d", "1h 2m"],
        );
        check(HoursOrDuration, &["8", "30m"], &["8 h"]);
        check(Count, &["10000"], &["-1", "1.0", "1e3"]);
        check(
            Version,
            &["1.29.6", "v1.29.6", "1.29", "1.30.0-rc.1"],
            &["1", "1.x.0", "v"],
        );
        check(
            Identifier,
            &["NodeRestriction"],
            &["Node-Restriction", "1Abc"],
        );
        check(Word, &["ipvs", "vxlan", "Always"], &["a.b"]);
    }
}
