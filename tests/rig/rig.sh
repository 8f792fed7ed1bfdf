#!/usr/bin/env bash
# ferry test rig: N test hosts on this machine, each a network namespace plus
# mount, PID, UTS and cgroup namespaces whose root is an overlay over `/` (or
# over a minimal Debian 12 root, FERRY_RIG_BASE=bare), booting its systemd as
# PID 1 (with `container=` set) and
# running sshd, reachable over a bridge at 198.18.0.0/15 addresses with no
# default route. Root SSH works with a generated key.
#
#   tests/rig/rig.sh up N        start N hosts (h1..hN); replaces a running rig
#                                of the same FERRY_RIG_DIR, and refuses to start
#                                when another rig (running or left behind) holds
#                                its names or its /24, naming what to remove
#   tests/rig/rig.sh down        remove everything the rig created (idempotent)
#   tests/rig/rig.sh exec H CMD  run CMD inside host H (no SSH needed)
#   tests/rig/rig.sh status      list hosts, addresses and systemd state
#   tests/rig/rig.sh ssh-config  print the path of the generated ssh_config
#
# Environment (so that several rigs can coexist, e.g. tests and a demo):
#   FERRY_RIG_DIR  state dir on a real filesystem   (default /var/tmp/ferry-rig)
#   FERRY_RIG_ID   short prefix for netns/link names (default fr, <= 5 chars;
#                  tests/common/rig.rs gives every rig of a test run its own)
#   FERRY_RIG_NET  first three octets of the /24     (default 198.18.0)
#   FERRY_RIG_BASE what the hosts' root overlays:
#                  machine  this machine's own `/` (default)
#                  bare     a minimal Debian 12 root (minbase, systemd,
#                           openssh-server) built once with mmdebstrap from
#                           Debian's packages and cached, so that a host has
#                           nothing of this machine
#   FERRY_RIG_BARE_ROOT where that root is cached (default /var/cache/ferry-rig/debian-12-minimal)
#
# The state dir holds: `state` (every namespace, link, process, cgroup and
# directory created, one per line, appended as they are created, so `down`
# also cleans up after a failed `up`), `id_ed25519` (root key), `ssh_config`,
# `known_hosts`, `hosts` (name address pairs) and per host `<h>/upper`,
# `<h>/work`, `<h>/root`, `<h>/containerd`, `<h>/console.log`.
set -euo pipefail

RIG_DIR=${FERRY_RIG_DIR:-/var/tmp/ferry-rig}
RIG_ID=${FERRY_RIG_ID:-fr}
RIG_NET=${FERRY_RIG_NET:-198.18.0}
RIG_BASE=${FERRY_RIG_BASE:-machine}
BARE_ROOT=${FERRY_RIG_BARE_ROOT:-/var/cache/ferry-rig/debian-12-minimal}
BARE_SUITE=bookworm
BARE_MIRROR=${FERRY_RIG_BARE_MIRROR:-http://deb.debian.org/debian}
STATE=$RIG_DIR/state
BRIDGE=${RIG_ID}-br0
SELF=$(readlink -f "$0")

die() { echo "rig: $*" >&2; exit 1; }
log() { echo "rig: $*" >&2; }

case "$RIG_NET" in
  198.18.*|198.19.*) ;;
  *) die "FERRY_RIG_NET=$RIG_NET is outside 198.18.0.0/15; test hosts use only that range" ;;
esac
[ ${#RIG_ID} -le 5 ] || die "FERRY_RIG_ID=$RIG_ID is longer than 5 characters (link names are limited to 15)"
[ "$(id -u)" = 0 ] || die "the rig needs root (namespaces, mounts, links)"
case "$RIG_BASE" in
  machine) LOWER=/ ;;
  bare) LOWER=$BARE_ROOT ;;
  *) die "FERRY_RIG_BASE=$RIG_BASE is neither machine nor bare" ;;
esac

host_addr() { echo "$RIG_NET.$((10 + $1))"; }

record() { echo "$*" >>"$STATE"; }

# Install what the rig needs if a tool is missing (the packages are listed in .ci/packages.txt).
ensure_packages() {
  local missing=()
  command -v sshd >/dev/null || missing+=(openssh-server)
  command -v ssh >/dev/null || missing+=(openssh-client)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v nsenter >/dev/null || missing+=(util-linux)
  [ -x /lib/systemd/systemd ] || missing+=(systemd systemd-sysv)
  command -v ssh-keygen >/dev/null || missing+=(openssh-client)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# The minimal Debian 12 root of bare hosts: built once (under a lock, into a
# temporary dir renamed when complete), then reused.
ensure_bare_root() {
  [ "$RIG_BASE" = bare ] || return 0
  [ -e "$BARE_ROOT/.ferry-rig-complete" ] && return 0
  command -v mmdebstrap >/dev/null || die "FERRY_RIG_BASE=bare needs mmdebstrap (apt-get install mmdebstrap; listed in .ci/packages.txt)"
  mkdir -p "$(dirname "$BARE_ROOT")"
  exec 9>"$BARE_ROOT.lock"
  flock 9
  if [ ! -e "$BARE_ROOT/.ferry-rig-complete" ]; then
    local tmp=$BARE_ROOT.tmp.$$ start=$SECONDS
    rm -rf "$tmp"
    log "building the minimal Debian 12 root of bare hosts in $BARE_ROOT (once)"
    mmdebstrap --quiet --variant=minbase --include=systemd,systemd-sysv,openssh-server \
      "$BARE_SUITE" "$tmp" "$BARE_MIRROR" >&2 || { rm -rf "$tmp"; die "mmdebstrap failed (mirror $BARE_MIRROR)"; }
    touch "$tmp/.ferry-rig-complete"
    rm -rf "$BARE_ROOT"
    mv "$tmp" "$BARE_ROOT"
    log "minimal root built in $((SECONDS - start))s"
  fi
  exec 9>&-
}

# Cgroup hierarchies of this machine: "<dir> <fstype> <super options>".
cgroup_hierarchies() {
  awk '$5 ~ "^/sys/fs/cgroup/" { split($0, a, " - "); split(a[2], b, " "); if (b[1] == "cgroup" || b[1] == "cgroup2") print $5, b[1], b[3] }' /proc/self/mountinfo
}

# This process's cgroup path in the hierarchy mounted at $1.
own_cgroup() {
  local dir=$1 fstype=$2 opts=$3 key
  if [ "$fstype" = cgroup2 ]; then
    awk -F: '$1 == "0" { print $3 }' /proc/self/cgroup
    return
  fi
  key=$(echo "$opts" | tr ',' '\n' | grep -vE '^(rw|ro|relatime|noatime|nosuid|nodev|noexec|clone_children|xattr|nsdelegate|memory_recursiveprot|favordynmods|none)$' | paste -sd,)
  awk -F: -v k="$key" '$2 == k { print $3 }' /proc/self/cgroup
}

# Per host cgroup in every hierarchy, below this process's own cgroup, so the
# host's systemd (in its own cgroup namespace) manages only its own subtree.
make_cgroups() {
  local h=$1 dir fstype opts base path
  while read -r dir fstype opts; do
    base=$(own_cgroup "$dir" "$fstype" "$opts")
    [ -n "$base" ] || continue
    path="$dir${base%/}/ferry-rig-$RIG_ID-$h"
    if [ ! -d "$path" ]; then
      mkdir "$path"
      record "cgroup $path"
    fi
    if [ -f "$path/cpuset.cpus" ]; then
      cat "$(dirname "$path")/cpuset.cpus" >"$path/cpuset.cpus"
      cat "$(dirname "$path")/cpuset.mems" >"$path/cpuset.mems"
    fi
    echo "$path" >>"$RIG_DIR/$h/cgroups"
  done < <(cgroup_hierarchies)
}

prepare_upper() {
  local h=$1 n=$2 i up=$RIG_DIR/$1/upper
  mkdir -p "$up/etc/ssh/sshd_config.d" "$up/root/.ssh" "$up/etc/systemd/system/multi-user.target.wants" \
    "$up/etc/systemd/system/timers.target.wants" "$up/etc/systemd/system/getty.target.wants" \
    "$up/etc/systemd/system/sysinit.target.wants" "$up/var/lib/containerd" "$up/.oldroot"
  chmod 700 "$up/root/.ssh"
  echo "$h" >"$up/etc/hostname"
  od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$up/etc/machine-id"
  echo >>"$up/etc/machine-id"
  {
    echo "127.0.0.1 localhost"
    echo "::1 localhost ip6-localhost ip6-loopback"
    for i in $(seq 1 "$n"); do echo "$(host_addr "$i") h$i"; done
  } >"$up/etc/hosts"
  echo "# no file systems: a ferry rig test host" >"$up/etc/fstab"
  cp "$RIG_DIR/id_ed25519.pub" "$up/root/.ssh/authorized_keys"
  chmod 600 "$up/root/.ssh/authorized_keys"
  ssh-keygen -q -N '' -t ed25519 -C "$h" -f "$up/etc/ssh/ssh_host_ed25519_key"
  cat >"$up/etc/ssh/sshd_config.d/00-ferry-rig.conf" <<EOF
# ferry rig test host: one host key, root by key only
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
MaxSessions 64
MaxStartups 64:30:128
# No PAM session (logind) per command: test hosts answer multiplexed commands faster.
UsePAM no
EOF
  # Services apt enabled on this machine stay off in test hosts: an overlay
  # whiteout (0/0 char device) hides the link, so the installer can still
  # enable its own unit of the same name (a mask would block that).
  local wants=${LOWER%/}/etc/systemd/system disabled=()
  for l in "$wants"/multi-user.target.wants/* "$wants"/timers.target.wants/* "$wants"/sysinit.target.wants/* "$wants"/getty.target.wants/*; do
    [ -L "$l" ] || continue
    case "$(basename "$l")" in
      ssh.service|remote-fs.target) continue ;;
    esac
    mknod "$up${l#"${LOWER%/}"}" c 0 0
    disabled+=("$(basename "$(readlink "$l")")")
  done
  # Aliases of those units (e.g. etcd2.service -> etcd.service) go as well.
  for l in "$wants"/*; do
    [ -L "$l" ] || continue
    case " ${disabled[*]} " in
      *" $(basename "$(readlink "$l")") "*) mknod "$up${l#"${LOWER%/}"}" c 0 0 ;;
    esac
  done
  for u in getty@.service console-getty.service container-getty@.service serial-getty@.service getty.target; do
    ln -sf /dev/null "$up/etc/systemd/system/$u"
  done
}

# Runs inside the host's new namespaces as its PID 1, then becomes systemd.
host_init() {
  local h=$1 d=$RIG_DIR/$1 r=$RIG_DIR/$1/root dir fstype opts name
  hostname "$h"
  mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$d/upper,workdir=$d/work" "$r"
  mount -t proc proc "$r/proc"
  # Only net.* sysctls are per network namespace: the rest of /proc/sys is the
  # machine's own kernel, so it is read-only inside test hosts.
  mount --bind "$r/proc/sys" "$r/proc/sys"
  mount --bind "$r/proc/sys/net" "$r/proc/sys/net"
  mount -o remount,bind,ro "$r/proc/sys"
  mount -t sysfs sysfs "$r/sys"
  mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$r/sys/fs/cgroup"
  while read -r dir fstype opts; do
    name=${dir#/sys/fs/cgroup/}
    mkdir -p "$r/sys/fs/cgroup/$name"
    if [ "$fstype" = cgroup2 ]; then
      mount -t cgroup2 cgroup2 "$r/sys/fs/cgroup/$name"
    else
      mount -t cgroup -o "$opts" cgroup "$r/sys/fs/cgroup/$name"
    fi
  done < <(cgroup_hierarchies)
  mount -t tmpfs -o mode=755,nosuid tmpfs "$r/dev"
  for n in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
    IFS=: read -r name maj min <<<"$n"
    mknod -m 666 "$r/dev/$name" c "$maj" "$min"
  done
  mkdir -p "$r/dev/pts" "$r/dev/shm" "$r/dev/net"
  mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$r/dev/pts"
  ln -s pts/ptmx "$r/dev/ptmx"
  [ -e /dev/net/tun ] && mknod -m 666 "$r/dev/net/tun" c 10 200
  [ -e /dev/fuse ] && mknod -m 666 "$r/dev/fuse" c 10 229
  mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$r/dev/shm"
  touch "$r/dev/console"
  mount --bind "$d/console.log" "$r/dev/console"
  ln -s /proc/self/fd "$r/dev/fd"
  ln -s /proc/self/fd/0 "$r/dev/stdin"
  ln -s /proc/self/fd/1 "$r/dev/stdout"
  ln -s /proc/self/fd/2 "$r/dev/stderr"
  # containerd's overlay snapshotter cannot sit on an overlay root.
  mount --bind "$d/containerd" "$r/var/lib/containerd"
  mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$r/run"
  mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$r/tmp"
  cd "$r"
  pivot_root . .oldroot
  umount -l /.oldroot
  # Kernel modules and the clock belong to the machine: the hosts cannot change them.
  exec setpriv --bounding-set -sys_module,-sys_time \
    env -i container=ferry-rig TERM=dumb /lib/systemd/systemd --log-target=console </dev/null >/dev/console 2>&1
}

start_host() {
  local i=$1 n=$2 h=h$1 ns=$RIG_ID-h$1 veth=$RIG_ID-h$1 d=$RIG_DIR/h$1 pid
  mkdir -p "$d/upper" "$d/work" "$d/root" "$d/containerd"
  record "dir $d"
  : >"$d/console.log"
  : >"$d/cgroups"
  prepare_upper "$h" "$n"
  ip netns add "$ns"
  record "netns $ns"
  ip link add "$veth" type veth peer name eth0 netns "$ns"
  record "link $veth"
  ip link set "$veth" master "$BRIDGE" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "$(host_addr "$i")/24" dev eth0
  ip -n "$ns" link set eth0 up
  make_cgroups "$h"
  # Join the host's cgroups, then enter its netns (nsenter, not `ip netns
  # exec`, which remounts /sys) and the new mount/PID/UTS/cgroup namespaces.
  (
    while read -r cg; do echo "$BASHPID" >"$cg/cgroup.procs"; done <"$d/cgroups"
    exec nsenter --net="/run/netns/$ns" unshare --mount --pid --uts --cgroup --fork --propagation private \
      "$SELF" __init "$h"
  ) >>"$d/console.log" 2>&1 &
  pid=$!
  # With its start time: pids are reused (pid_max may be 32768), and `down`
  # must never kill a process that took a dead host's pid.
  record "proc $pid $h $(proc_start "$pid")"
  echo "$pid" >"$d/unshare.pid"
}

# PID (in this PID namespace) of a host's PID 1.
host_pid() {
  local h=$1 up
  up=$(cat "$RIG_DIR/$h/unshare.pid" 2>/dev/null) || return 1
  local c
  c=$(cat /proc/"$up"/task/*/children 2>/dev/null | awk '{print $1}')
  [ -n "$c" ] || return 1
  echo "$c"
}

# Whether a host's unshare is still there (it may not have forked its PID 1
# yet on a loaded machine: that is starting, not exited).
host_started() {
  local up state
  up=$(cat "$RIG_DIR/$1/unshare.pid" 2>/dev/null) || return 1
  state=$(sed -E 's/^.*\) //' "/proc/$up/stat" 2>/dev/null | awk '{print $1}')
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

write_ssh_files() {
  local n=$1 i
  : >"$RIG_DIR/known_hosts"
  : >"$RIG_DIR/hosts"
  {
    echo "# ferry test rig ($RIG_DIR)"
    for i in $(seq 1 "$n"); do
      printf 'Host h%s\n  HostName %s\n' "$i" "$(host_addr "$i")"
    done
    printf 'Host h* %s.*\n' "$RIG_NET"
    printf '  User root\n  IdentityFile %s/id_ed25519\n  IdentitiesOnly yes\n' "$RIG_DIR"
    printf '  UserKnownHostsFile %s/known_hosts\n  StrictHostKeyChecking yes\n' "$RIG_DIR"
    printf '  ConnectTimeout 5\n  ServerAliveInterval 5\n  ServerAliveCountMax 3\n  LogLevel ERROR\n'
  } >"$RIG_DIR/ssh_config"
  for i in $(seq 1 "$n"); do
    echo "$(host_addr "$i") $(cut -d' ' -f1,2 "$RIG_DIR/h$i/upper/etc/ssh/ssh_host_ed25519_key.pub")" >>"$RIG_DIR/known_hosts"
    echo "h$i $(host_addr "$i")" >>"$RIG_DIR/hosts"
  done
}

wait_ssh() {
  local n=$1 i deadline=$((SECONDS + 90))
  for i in $(seq 1 "$n"); do
    until ssh -F "$RIG_DIR/ssh_config" -o BatchMode=yes -o ConnectTimeout=2 "h$i" true 2>/dev/null; do
      if [ $SECONDS -ge $deadline ]; then
        log "h$i: no sshd after 90s; console log follows"
        tail -n 30 "$RIG_DIR/h$i/console.log" >&2 || true
        return 1
      fi
      host_started "h$i" || { log "h$i: its init exited; console log follows"; tail -n 30 "$RIG_DIR/h$i/console.log" >&2; return 1; }
      sleep 0.2
    done
  done
}

# The command that removes a leftover netns or link: `rig.sh down` of the rig
# whose state recorded it, else `ip ... del`.
remover() {
  local kind=$1 name=$2 st
  for st in /var/tmp/ferry-rig*/state "$(dirname "$RIG_DIR")"/*/state; do
    [ -f "$st" ] && [ "$st" != "$STATE" ] || continue
    if grep -qxF "$kind $name" "$st"; then
      echo "FERRY_RIG_DIR=$(dirname "$st") $SELF down"
      return
    fi
  done
  echo "ip $kind del $name"
}

# What already holds this rig's names or an address or route in its /24: the
# bridge and links of this machine, and every network namespace.
in_use() {
  local n=$1 i name idx dev inet addr rest ns
  ip link show "$BRIDGE" >/dev/null 2>&1 && echo "link $BRIDGE exists; remove it with: $(remover link "$BRIDGE")"
  for i in $(seq 1 "$n"); do
    name=$RIG_ID-h$i
    [ -e "/run/netns/$name" ] && echo "netns $name exists; remove it with: $(remover netns "$name")"
    ip link show "$name" >/dev/null 2>&1 && echo "link $name exists; remove it with: $(remover link "$name")"
  done
  while read -r idx dev inet addr rest; do
    dev=${dev%%@*}
    [ "$dev" = "$BRIDGE" ] || echo "link $dev holds $addr; remove it with: $(remover link "$dev")"
  done < <(ip -o -4 addr show to "$RIG_NET.0/24")
  ip -4 route show root "$RIG_NET.0/24" | while read -r addr rest; do
    dev=$(echo "$rest" | sed -n 's/.*dev \([^ ]*\).*/\1/p')
    [ -n "$(ip -o -4 addr show dev "$dev" to "$RIG_NET.0/24" 2>/dev/null)" ] ||
      echo "route $addr $rest; remove it with: ip route del $addr dev $dev"
  done
  for ns in $(ip netns list | awk '{print $1}'); do
    while read -r idx dev inet addr rest; do
      echo "netns $ns holds $addr (on its ${dev%%@*}); remove it with: $(remover netns "$ns")"
    done < <(ip -n "$ns" -o -4 addr show to "$RIG_NET.0/24" 2>/dev/null)
  done
  return 0
}

# Refuses to start when another rig, running or left behind, holds this
# rig's names or its /24.
check_free() {
  local held
  held=$(in_use "$1")
  [ -z "$held" ] && return 0
  die "$RIG_NET.0/24 or this rig's names are in use already (by another rig, running or left behind), so the rig $RIG_DIR (FERRY_RIG_ID=$RIG_ID) does not start:
$(echo "$held" | sed 's/^/  /')
stop that rig or remove what it left with the commands above, or pick another FERRY_RIG_NET"
}

cmd_up() {
  local n=${1:-}
  [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 200 ] || die "usage: rig.sh up N (1..200)"
  ensure_packages
  ensure_bare_root
  [ -e "$STATE" ] && cmd_down
  mkdir -p "$RIG_DIR"
  # Checking that the /24 is free and taking it (the bridge's address) is one
  # step for every rig: rigs starting at once see each other.
  mkdir -p /run/lock
  exec 8>"/run/lock/ferry-rig-$RIG_NET.lock"
  flock 8
  check_free "$n"
  : >"$STATE"
  record "rigdir $RIG_DIR"
  ip link add "$BRIDGE" type bridge
  record "link $BRIDGE"
  ip addr add "$RIG_NET.1/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  exec 8>&-
  ssh-keygen -q -N '' -t ed25519 -C ferry-rig -f "$RIG_DIR/id_ed25519" <<<y >/dev/null 2>&1 || true
  [ -s "$RIG_DIR/id_ed25519" ] || die "could not generate $RIG_DIR/id_ed25519"
  local i
  for i in $(seq 1 "$n"); do start_host "$i" "$n"; done
  write_ssh_files "$n"
  echo "$n" >"$RIG_DIR/count"
  if ! wait_ssh "$n"; then
    die "hosts did not come up; run 'tests/rig/rig.sh down' to clean up (state: $STATE)"
  fi
  log "$n hosts up; ssh -F $RIG_DIR/ssh_config h1"
}

# A process's start time (clock ticks since boot), empty when it is gone.
proc_start() {
  sed -E 's/^.*\) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}'
}

kill_host_procs() {
  local pid=$1 started=$2 c
  # Not the process recorded: its pid now belongs to another.
  [ -z "$started" ] || [ "$(proc_start "$pid")" = "$started" ] || return 0
  for c in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do kill -KILL "$c" 2>/dev/null || true; done
  kill -KILL "$pid" 2>/dev/null || true
}

cmd_down() {
  [ -e "$STATE" ] || { rmdir "$RIG_DIR" 2>/dev/null || true; log "nothing to remove ($STATE not found)"; return 0; }
  local kind a b c
  # Processes first: killing a host's PID 1 ends its whole PID namespace.
  while read -r kind a b c; do
    [ "$kind" = proc ] || continue
    [ -d "/proc/$a" ] && kill_host_procs "$a" "$c"
  done <"$STATE"
  # Wait until each host cgroup is empty so its mounts and links are released.
  local deadline=$((SECONDS + 20))
  while read -r kind a b; do
    [ "$kind" = cgroup ] || continue
    while [ -d "$a" ] && [ -n "$(find "$a" -name cgroup.procs -exec cat {} + 2>/dev/null)" ]; do
      find "$a" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
      [ $SECONDS -lt $deadline ] || { log "processes remain in $a"; break; }
      sleep 0.1
    done
  done <"$STATE"
  while read -r kind a b; do
    case "$kind" in
      cgroup) [ -d "$a" ] && find "$a" -depth -type d -exec rmdir {} + 2>/dev/null || true ;;
    esac
  done <"$STATE"
  tac "$STATE" | while read -r kind a b; do
    case "$kind" in
      netns) ip netns del "$a" 2>/dev/null || true ;;
      link) ip link del "$a" 2>/dev/null || true ;;
    esac
  done
  tac "$STATE" | while read -r kind a b; do
    case "$kind" in
      dir)
        # Any mount left below (only if a process escaped) is detached first.
        grep -F " $a/" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
        rm -rf --one-file-system "$a"
        ;;
    esac
  done
  rm -f "$RIG_DIR/ssh_config" "$RIG_DIR/known_hosts" "$RIG_DIR/hosts" "$RIG_DIR/count" "$RIG_DIR/id_ed25519" "$RIG_DIR/id_ed25519.pub"
  rm -f "$STATE"
  rmdir "$RIG_DIR" 2>/dev/null || true
  log "removed"
}

cmd_exec() {
  local h=${1:-} pid
  [ -n "$h" ] && [ $# -ge 2 ] || die "usage: rig.sh exec HOST CMD..."
  shift
  pid=$(host_pid "$h") || die "host $h is not running (state: $STATE)"
  exec nsenter -t "$pid" -m -u -n -p -C -i -r -w env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$@"
}

cmd_status() {
  [ -e "$STATE" ] || { echo "rig: not up ($STATE not found)"; return 0; }
  local h addr pid st
  while read -r h addr; do
    if pid=$(host_pid "$h"); then
      st=$(nsenter -t "$pid" -m -u -n -p -C -r -w systemctl is-system-running 2>/dev/null || true)
    else
      pid=- st=down
    fi
    printf '%-6s %-15s pid %-8s %s\n' "$h" "$addr" "$pid" "$st"
  done <"$RIG_DIR/hosts"
  echo "ssh -F $RIG_DIR/ssh_config h1"
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) cmd_down ;;
  exec) shift; cmd_exec "$@" ;;
  pid) host_pid "${2:?usage: rig.sh pid HOST}" || die "host ${2} is not running (state: $STATE)" ;;
  status) cmd_status ;;
  ssh-config) echo "$RIG_DIR/ssh_config" ;;
  __init) shift; host_init "$@" ;;
  *) die "usage: rig.sh up N | down | exec HOST CMD... | pid HOST | status | ssh-config" ;;
esac
