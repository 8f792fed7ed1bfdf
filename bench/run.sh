#!/usr/bin/env bash
# `make bench`: ferry side by side with the tools operators run today, on a
# generated upstream of realistic size, everything on loopback. Prints one
# table and writes it to bench/RESULTS.md.
#
#   build    ferry bundle build (cold cache)  vs  skopeo copy + curl + tar | zstd -T0 (bench/anchor-build.sh)
#   unpack   ferry bundle unpack (signature + every hash)  vs  zstd -dc | tar -x  [ + sha256sum -c ]
#            (and, for information, zstd -dc | tar -x + sync -f: durable like ferry's unpack)
#   registry ferry registry serve  vs  Debian's docker-registry holding the same images:
#            wrk, 16 connections, every blob of every image / every manifest; and the
#            large layers (20-150 MB) from five servers: ferry plain HTTP and TLS 1.3,
#            docker-registry, and nginx (nginx-light, sendfile) plain HTTP and TLS 1.3 over
#            the very files ferry serves, as the limit anchor. For each: MB/s and the
#            server's CPU seconds (utime + stime from /proc/PID/stat, nginx master and
#            workers) per GB served, and peak RSS. One self-signed P-256 certificate
#            (openssl) for both TLS servers; wrk runs with an OPENSSL_CONF that allows
#            TLS 1.3 only. nginx runs in the foreground with its prefix, config, pid and
#            logs in bench/work/run/nginx, on loopback; access logs are on for ferry and
#            nginx (ferry's default info log to a file; nginx's access_log to a file).
#   memory   peak RSS of build and unpack for the 1.5 GB and the 4.5 GB fixture
#   install  ferry install to bare test hosts (bench/install.sh): 7 hosts from bare, the no-op
#            re-run, the re-run with --verify-hosts, and fan-out to 5, 10 and 20 hosts
#
# Environment: FERRY (binary; default $CARGO_TARGET_DIR/release/ferry), BENCH_WORK
# (default bench/work: cached fixture and registry data, scratch), BENCH_RUNS
# (default 3), BENCH_DURATION (seconds per wrk run, default 10), BENCH_SKIP_BIG=1
# (skip the 4.5 GB memory runs), BENCH_PERF=1 (also write CPU profiles of build
# and unpack, and of each registry server under wrk, to bench/work/perf-*.txt),
# BENCH_ONLY (sections to run, separated by spaces or commas, from: build unpack
# registry memory install; default all of them; the registry alone builds and unpacks
# one bundle untimed for its data; rows of the sections left out are kept from
# the previous bench/RESULTS.md, marked as from the earlier run).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
FERRY=${FERRY:-${CARGO_TARGET_DIR:-$ROOT/target}/release/ferry}
WORK=${BENCH_WORK:-$HERE/work}
RUNS=${BENCH_RUNS:-3}
DUR=${BENCH_DURATION:-10}
# Bump when mkfixture.py changes what it writes: the cached fixture is rebuilt.
FIXTURE_VERSION=3
FX=$WORK/fixture-v$FIXTURE_VERSION
RUN=$WORK/run
RESULTS=$RUN/results.tsv
K8S=1.29.6
ONLY=" ${BENCH_ONLY:-build unpack registry memory install} "
ONLY=${ONLY//,/ }
want() { [[ $ONLY == *" $1 "* ]]; }
export BENCH_RUNS=$RUNS
BENCH_LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
export BENCH_LOAD_START

log() { printf '%s bench: %s\n' "$(date +%T)" "$*" >&2; }
die() {
    log "$*"
    exit 1
}

for t in skopeo /usr/bin/docker-registry /usr/sbin/nginx openssl wrk zstd curl /usr/bin/time python3 sha256sum tar; do
    command -v "$t" >/dev/null || die "$t missing: run 'make deps' (apt packages in .ci/packages.txt)"
done
[[ -x $FERRY ]] || die "$FERRY missing: run 'make release' (or set FERRY)"

PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$RUN/t"
}
trap cleanup EXIT
stop() { # PID: stop a process this script started and forget it
    local p keep=()
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # URL [CURL OPTION...]
    for _ in $(seq 1 300); do
        curl -fsS -o /dev/null "$@" 2>/dev/null && return 0
        sleep 0.1
    done
    die "$1 did not come up"
}

# timed KIND KEY CMD...: run CMD under /usr/bin/time -v, append "KIND KEY s=.. rss=.." to results.
timed() {
    local kind=$1 key=$2 t0 t1 rss cpu
    shift 2
    sync
    t0=$(date +%s.%N)
    /usr/bin/time -v -o "$RUN/time.txt" "$@" >"$RUN/last.log" 2>&1 || {
        cat "$RUN/last.log" >&2
        die "$kind $key failed: $*"
    }
    t1=$(date +%s.%N)
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$RUN/time.txt")
    cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {printf "%.2f", s}' "$RUN/time.txt")
    t1=$(awk "BEGIN {printf \"%.3f\", $t1 - $t0}")
    echo "$kind $key s=$t1 rss=$rss cpu=$cpu" >>"$RESULTS"
    log "$kind $key: $t1 s, CPU $cpu s, peak RSS $((rss / 1024)) MiB"
}

rm -rf "$RUN"
mkdir -p "$RUN/t"
: >"$RESULTS"

# ---------------------------------------------------------------- fixture
# (not for the install section alone: it installs the demo's fixture bundle)
if want build || want unpack || want registry || want memory; then
if [[ ! -e $FX/.done ]]; then
    rm -rf "$FX"
    log "generating the fixture upstream (4.5 GB, cached in $FX)"
    python3 "$HERE/mkfixture.py" --out "$FX" --scale 3
    touch "$FX/.done"
fi

# Debian's docker-registry (its packaged config minus auth, on loopback) and a file server.
RPORT=$(free_port)
mkdir -p "$FX/registry-data"
cat >"$RUN/registry.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: $FX/registry-data
http:
  addr: 127.0.0.1:$RPORT
YAML
/usr/bin/docker-registry serve "$RUN/registry.yml" >"$RUN/registry.log" 2>&1 </dev/null &
REG_PID=$!
PIDS+=("$REG_PID")
FPORT=$(free_port)
python3 -m http.server --bind 127.0.0.1 --directory "$FX/files" "$FPORT" >"$RUN/files.log" 2>&1 </dev/null &
PIDS+=("$!")
wait_http "http://127.0.0.1:$RPORT/v2/"
wait_http "http://127.0.0.1:$FPORT/"
REG=127.0.0.1:$RPORT
FILES=127.0.0.1:$FPORT

if [[ ! -e $FX/.seeded ]]; then
    log "seeding docker-registry with $(wc -l <"$FX/images-s3.txt") images (skopeo copy --all; cached)"
    xargs -P 2 -I{} skopeo copy --quiet --all --dest-tls-verify=false "oci:$FX/images:{}" "docker://$REG/{}" <"$FX/images-s3.txt"
    touch "$FX/.seeded"
fi

MIRRORS=(
    --mirror "registry.k8s.io=http://$REG/registry.k8s.io"
    --mirror "quay.io=http://$REG/quay.io"
    --mirror "https://dl.k8s.io=http://$FILES/dl.k8s.io"
)
[[ -e $WORK/key.key ]] || "$FERRY" bundle keygen -o "$WORK/key" >/dev/null
fi

ferry_build() { # SCALE OUT CACHE: the command line, in BUILD
    BUILD=("$FERRY" bundle build --k8s "$K8S" --catalog-dir "$FX/catalog-s$1" --profile "$FX/catalog-s$1/bench.toml"
        "${MIRRORS[@]}" --cache-dir "$3" --sign-key "$WORK/key.key" --plain -o "$2")
}
T=$RUN/t
BUNDLE=$T/ferry.tar.zst

# ---------------------------------------------------------------- build
# Interleaved runs, so both sides see the same background load.
for i in $(seq 1 "$RUNS"); do
    want build || break
    rm -rf "$T/cache" "$T/ferry.tar.zst"
    ferry_build 1 "$T/ferry.tar.zst" "$T/cache"
    timed build ferry "${BUILD[@]}"
    echo "size ferry bytes=$(stat -c %s "$T/ferry.tar.zst")" >>"$RESULTS"
    rm -rf "$T/cache"
    rm -rf "$T/anchor" "$T/anchor.tar.zst"
    timed build anchor "$HERE/anchor-build.sh" "$REG" "$FILES" "$FX/images-s1.txt" "$FX/binaries-s1.txt" "$T/anchor" "$T/anchor.tar.zst"
    echo "size anchor bytes=$(stat -c %s "$T/anchor.tar.zst")" >>"$RESULTS"
    rm -rf "$T/anchor" "$T/anchor.tar.zst"
done
if [[ ! -e $BUNDLE ]] && { want unpack || want registry; }; then
    log "building the bundle for the unpack and registry runs (untimed)"
    ferry_build 1 "$BUNDLE" "$T/cache"
    "${BUILD[@]}" >"$RUN/last.log" 2>&1 || {
        cat "$RUN/last.log" >&2
        die "ferry bundle build failed"
    }
    rm -rf "$T/cache"
fi

# ---------------------------------------------------------------- unpack
UNTAR='mkdir -p "$2" && zstd -dc "$1" | tar -x -C "$2"'
UNTAR_SYNC="$UNTAR"' && sync -f "$2"'
UNTAR_CHECK="$UNTAR"' && cd "$2" && sha256sum -c --quiet "$3"'
if want unpack; then
    zstd -dc "$BUNDLE" | tar -xO bundle.json >"$RUN/bundle.json"
    python3 "$HERE/tools.py" sums "$RUN/bundle.json" "$RUN/sums"
fi
for i in $(seq 1 "$RUNS"); do
    want unpack || break
    rm -rf "$T/data"
    timed unpack ferry "$FERRY" bundle unpack "$BUNDLE" --trust "$WORK/key.pub" --data-dir "$T/data"
    if [[ $i == "$RUNS" ]]; then touch "$T/data.unpacked"; else rm -rf "$T/data"; fi
    rm -rf "$T/x"
    timed unpack untar bash -c "$UNTAR" _ "$BUNDLE" "$T/x"
    rm -rf "$T/x"
    timed unpack untar+sync bash -c "$UNTAR_SYNC" _ "$BUNDLE" "$T/x"
    rm -rf "$T/x"
    timed unpack untar+sha256sum bash -c "$UNTAR_CHECK" _ "$BUNDLE" "$T/x" "$RUN/sums"
    rm -rf "$T/x"
done

# ---------------------------------------------------------------- registry
if want registry; then
if [[ ! -e $T/data.unpacked ]]; then
    log "unpacking the bundle for the registry runs (untimed)"
    rm -rf "$T/data"
    "$FERRY" bundle unpack "$BUNDLE" --trust "$WORK/key.pub" --data-dir "$T/data" >"$RUN/last.log" 2>&1 || {
        cat "$RUN/last.log" >&2
        die "ferry bundle unpack failed"
    }
    touch "$T/data.unpacked"
fi
# A fresh docker-registry on the same data, so its peak RSS is from serving only.
stop "$REG_PID"
/usr/bin/docker-registry serve "$RUN/registry.yml" >>"$RUN/registry.log" 2>&1 </dev/null &
REG_PID=$!
PIDS+=("$REG_PID")
wait_http "http://$REG/v2/"
BENCH_LARGE_INFO=$(python3 "$HERE/tools.py" urls "$FX/images" "$FX/images-s1.txt" "$RUN")
log "$BENCH_LARGE_INFO"

# TLS: one self-signed P-256 certificate for 127.0.0.1, for ferry and nginx alike.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$RUN/tls.key" -out "$RUN/tls.crt" 2>"$RUN/openssl.log" ||
    die "openssl req failed: $(cat "$RUN/openssl.log")"
# wrk (and openssl s_client below) read OpenSSL's defaults from OPENSSL_CONF:
# this one allows TLS 1.3 only, so every measured TLS connection is TLS 1.3.
CLIENT_CNF=$RUN/openssl-client.cnf
cat >"$CLIENT_CNF" <<'CNF'
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
MinProtocol = TLSv1.3
CNF

SPORT=$(free_port)
"$FERRY" registry serve --data-dir "$T/data" --listen "127.0.0.1:$SPORT" >"$RUN/serve.log" 2>&1 </dev/null &
SERVE_PID=$!
PIDS+=("$SERVE_PID")
TPORT=$(free_port)
"$FERRY" registry serve --data-dir "$T/data" --listen "127.0.0.1:$TPORT" \
    --tls-cert "$RUN/tls.crt" --tls-key "$RUN/tls.key" >"$RUN/serve-tls.log" 2>&1 </dev/null &
TLS_PID=$!
PIDS+=("$TLS_PID")

# nginx, the limit anchor: a production static-file config (sendfile, tcp_nopush,
# keep-alive, a worker per core, access log on) serving ferry's own blob files
# under the registry's blob URLs, plain HTTP and TLS 1.2/1.3 (OpenSSL).
NPORT=$(free_port)
NTPORT=$(free_port)
NGX=$RUN/nginx
mkdir -p "$NGX/tmp"
cat >"$NGX/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes auto;
pid $NGX/nginx.pid;
error_log $NGX/error.log warn;
events {
    worker_connections 4096;
}
http {
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65s;
    keepalive_requests 10000;
    server_tokens off;
    default_type application/octet-stream;
    log_format bench '\$remote_addr [\$time_local] "\$request" \$status \$body_bytes_sent \$request_time \$ssl_protocol \$ssl_cipher';
    access_log $NGX/access.log bench;
    client_body_temp_path $NGX/tmp/body;
    proxy_temp_path $NGX/tmp/proxy;
    fastcgi_temp_path $NGX/tmp/fastcgi;
    uwsgi_temp_path $NGX/tmp/uwsgi;
    scgi_temp_path $NGX/tmp/scgi;
    ssl_certificate $RUN/tls.crt;
    ssl_certificate_key $RUN/tls.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    server {
        listen 127.0.0.1:$NPORT;
        listen 127.0.0.1:$NTPORT ssl;
        location = /v2/ {
            default_type application/json;
            return 200 '{}';
        }
        location ~ "^/v2/.+/blobs/sha256:([0-9a-f]{64})\$" {
            alias $T/data/blobs/sha256/\$1;
        }
    }
}
CONF
/usr/sbin/nginx -p "$NGX/" -c "$NGX/nginx.conf" -e "$NGX/error.log" >"$NGX/stdout.log" 2>&1 </dev/null &
NGINX_PID=$!
PIDS+=("$NGINX_PID")

wait_http "http://127.0.0.1:$SPORT/v2/"
wait_http "https://127.0.0.1:$TPORT/v2/" -k
wait_http "http://127.0.0.1:$NPORT/v2/"
wait_http "https://127.0.0.1:$NTPORT/v2/" -k
ENDPOINTS=("http://127.0.0.1:$SPORT" "https://127.0.0.1:$TPORT" "http://$REG" "http://127.0.0.1:$NPORT" "https://127.0.0.1:$NTPORT")
# Correctness probes before the load: ferry and docker-registry give the same
# bytes for the first manifest; all five servers give the same bytes for the
# first large blob, and they hash to its digest.
first=$(head -1 "$RUN/manifests.list")
for a in "127.0.0.1:$SPORT" "$REG"; do
    curl -fsS -H "Accept: ${first%% *}" "http://$a${first#* }" | sha256sum
done | uniq | wc -l | grep -qx 1 || die "ferry registry serve and docker-registry disagree on ${first#* }"
big=$(head -1 "$RUN/large.list")
big=${big#* }
for a in "${ENDPOINTS[@]}"; do
    [[ $(curl -fsSk "$a$big" | sha256sum | cut -d' ' -f1) == "${big##*sha256:}" ]] ||
        die "$a$big: wrong bytes"
done
# The large blobs into the page cache, ferry's (nginx serves the same files)
# and docker-registry's, so no server pays for the disk.
while read -r _ path; do
    hex=${path##*sha256:}
    cat "$T/data/blobs/sha256/$hex" "$FX/registry-data/docker/registry/v2/blobs/sha256/${hex:0:2}/$hex/data" >/dev/null
done <"$RUN/large.list"
# What TLS both servers negotiate with a client allowing TLS 1.3 only.
BENCH_TLS_INFO="TLS: wrk runs with an OpenSSL config that allows TLS 1.3 only (OPENSSL_CONF with MinProtocol = TLSv1.3); negotiated with that config (openssl s_client):"
sep=""
for a in "ferry 127.0.0.1:$TPORT" "nginx 127.0.0.1:$NTPORT"; do
    neg=$(OPENSSL_CONF=$CLIENT_CNF openssl s_client -connect "${a#* }" </dev/null 2>/dev/null | grep -m1 '^New, ' || true)
    [[ $neg == *TLSv1.3* ]] || die "${a%% *} did not negotiate TLS 1.3: ${neg:-no handshake}"
    neg=${neg#New, }
    BENCH_TLS_INFO+="$sep ${a%% *} ${neg/, Cipher is / }"
    sep=";"
done

load() { # SERVER KIND URL PID: one wrk run; MB/s, latency, the server's CPU per GB and peak RSS
    local c0 c1 out
    c0=$(python3 "$HERE/tools.py" cpu "$4")
    out=$(OPENSSL_CONF=$CLIENT_CNF /usr/bin/time -f '%U %S' -o "$RUN/wrk-time.txt" \
        wrk -t2 -c16 -d"${DUR}s" --timeout 30s -s "$HERE/pull.lua" "$3" -- "$RUN/$2.list" |
        tee -a "$RUN/wrk.log" | grep '^RESULT')
    c1=$(python3 "$HERE/tools.py" cpu "$4")
    python3 - "$1" "$2" "$(python3 "$HERE/tools.py" rss "$4")" "$c0" "$c1" "$(tail -1 "$RUN/wrk-time.txt")" "$out" >>"$RESULTS" <<'PY'
import sys
server, kind, rss, c0, c1, wrk, line = sys.argv[1:]
f = dict(kv.split("=") for kv in line.split()[1:])
sec = float(f["duration_us"]) / 1e6
errors = sum(float(f[k]) for k in f if k.startswith("err_"))
gb = float(f["bytes"]) / 1e9
cpu = float(c1) - float(c0)
wrkcpu = sum(float(x) for x in wrk.split())
print("registry-%s %s mbps=%.1f rps=%.1f p50=%.2f p99=%.2f errors=%d rss=%s cpu=%.2f gb=%.3f cpugb=%.4f "
      "cpukreq=%.4f wrkcpugb=%.4f" % (
    kind, server, gb * 1e3 / sec, float(f["requests"]) / sec,
    float(f["p50_us"]) / 1e3, float(f["p99_us"]) / 1e3, errors, rss, cpu, gb, cpu / gb if gb else 0,
    cpu * 1e3 / float(f["requests"]) if float(f["requests"]) else 0, wrkcpu / gb if gb else 0))
PY
    tail -1 "$RESULTS" | sed "s/^/$(date +%T) bench: /" >&2
}
LARGE=(
    "ferry ${ENDPOINTS[0]} $SERVE_PID"
    "ferry-tls ${ENDPOINTS[1]} $TLS_PID"
    "docker-registry ${ENDPOINTS[2]} $REG_PID"
    "nginx ${ENDPOINTS[3]} $NGINX_PID"
    "nginx-tls ${ENDPOINTS[4]} $NGINX_PID"
)
for i in $(seq 1 "$RUNS"); do
    for kind in blobs manifests; do
        load ferry "$kind" "http://127.0.0.1:$SPORT" "$SERVE_PID"
        load docker-registry "$kind" "http://$REG" "$REG_PID"
    done
    # The five servers in a different order each run, so none always goes first.
    for j in $(seq 0 4); do
        # shellcheck disable=SC2086 # "SERVER URL PID"
        load ${LARGE[$(((i + j) % 5))]%% *} large ${LARGE[$(((i + j) % 5))]#* }
    done
done
# Every request wrk made to nginx over TLS was TLS 1.3 (its access log says so).
# BENCH_PERF=1: one extra, unmeasured large-blob run per server under
# `perf record -e cpu-clock -g` of the server's processes; top symbols go to
# $WORK/perf-registry-SERVER.txt.
if [[ ${BENCH_PERF:-} == 1 ]] && command -v perf >/dev/null; then
    for s in "${LARGE[@]}"; do
        # shellcheck disable=SC2086 # "SERVER URL PID"
        set -- $s
        perf record -q -e cpu-clock -F 999 -g -p "$(python3 "$HERE/tools.py" pids "$3")" -o "$RUN/registry-$1.perf" \
            -- sleep "$((DUR + 1))" >"$RUN/perf.log" 2>&1 &
        perf_pid=$!
        PIDS+=("$perf_pid")
        sleep 1 # perf attached before the load starts
        OPENSSL_CONF=$CLIENT_CNF wrk -t2 -c16 -d"${DUR}s" --timeout 30s -s "$HERE/pull.lua" "$2" -- "$RUN/large.list" >/dev/null
        wait "$perf_pid" || true
        stop "$perf_pid"
        perf report -i "$RUN/registry-$1.perf" --no-children --sort dso,symbol --stdio -g none 2>/dev/null |
            grep -v -e '^#' -e '^$' | sed -n 1,40p >"$WORK/perf-registry-$1.txt" || true
    done
    log "profiles in $WORK/perf-registry-*.txt"
fi
BENCH_TLS_INFO+=". Every TLS request in nginx's access log (wrk's and the probes'): $(awk '$(NF-1) ~ /^TLS/ {n[$(NF-1) " " $NF]++} END {for (k in n) {printf "%s%d over %s", s, n[k], k; s = ", "}}' "$NGX/access.log")."
export BENCH_LARGE_INFO BENCH_TLS_INFO
stop "$SERVE_PID"
stop "$TLS_PID"
stop "$NGINX_PID"
rm -rf "$T/data" "$T/data.unpacked"
fi

# ---------------------------------------------------------------- memory at 4.5 GB
if want memory && [[ ${BENCH_SKIP_BIG:-} != 1 ]]; then
    rm -rf "$T/cache" "$T/big.tar.zst" "$BUNDLE"
    ferry_build 3 "$T/big.tar.zst" "$T/cache"
    timed build-x3 ferry "${BUILD[@]}"
    rm -rf "$T/cache"
    timed unpack-x3 ferry "$FERRY" bundle unpack "$T/big.tar.zst" --trust "$WORK/key.pub" --data-dir "$T/data"
    rm -rf "$T/data" "$T/big.tar.zst"
fi

# ---------------------------------------------------------------- install and fan-out
if want install; then
    # shellcheck source=bench/install.sh
    source "$HERE/install.sh"
    bench_install
fi

# ---------------------------------------------------------------- profiles (BENCH_PERF=1)
# One extra, untimed run of build and unpack under `perf record -e cpu-clock`
# (software clock: works in VMs without hardware counters); top symbols go to
# $WORK/perf-build.txt and $WORK/perf-unpack.txt.
if [[ ${BENCH_PERF:-} == 1 ]] && { want build || want unpack; } && command -v perf >/dev/null; then
    rm -rf "$T/cache" "$T/p.tar.zst"
    ferry_build 1 "$T/p.tar.zst" "$T/cache"
    perf record -q -e cpu-clock -F 499 -g -o "$RUN/build.perf" -- "${BUILD[@]}" >/dev/null 2>&1
    rm -rf "$T/cache" "$T/data"
    perf record -q -e cpu-clock -F 499 -g -o "$RUN/unpack.perf" -- "$FERRY" bundle unpack "$T/p.tar.zst" \
        --trust "$WORK/key.pub" --data-dir "$T/data" >/dev/null 2>&1
    for w in build unpack; do
        perf report -i "$RUN/$w.perf" --no-children --sort dso,symbol --stdio -g none 2>/dev/null |
            grep -v -e '^#' -e '^$' | sed -n 1,40p >"$WORK/perf-$w.txt" || true
    done
    rm -rf "$T/data" "$T/p.tar.zst"
    log "profiles in $WORK/perf-build.txt, $WORK/perf-unpack.txt"
fi

# ---------------------------------------------------------------- report
BENCH_FIXTURE_INFO=""
[[ -e $FX/.done ]] && BENCH_FIXTURE_INFO="$(python3 - "$FX" <<'PY'
import os, sys
fx = sys.argv[1]
def du(p):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(p) for f in fs)
imgs = {s: len(open(os.path.join(fx, "images-s%d.txt" % s)).read().split()) for s in (1, 3)}
bins = {s: len(open(os.path.join(fx, "binaries-s%d.txt" % s)).read().split()) for s in (1, 3)}
print("bench/mkfixture.py: %d images (linux/amd64 + linux/arm64, shared base layers, gzip layers 1 KB to ~150 MB) "
      "and %d binaries (10 to 120 MB) for the 1.5 GB runs; %d images and %d binaries for the 4.5 GB runs "
      "(%.2f GB of blobs and binaries in all). Served on loopback by Debian's docker-registry and python3 -m http.server."
      % (imgs[1], bins[1], imgs[3], bins[3], (du(os.path.join(fx, "images")) + du(os.path.join(fx, "files"))) / 1e9))
PY
)"
export BENCH_FIXTURE_INFO
python3 "$HERE/tools.py" report "$RESULTS" "$HERE/RESULTS.md"
cp "$RESULTS" "$WORK/last-results.tsv"
log "wrote $HERE/RESULTS.md"
