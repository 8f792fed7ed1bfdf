#!/usr/bin/env bash
# `make bench`: ferry side by side with the tools operators run today, on a
# generated upstream of realistic size, everything on loopback. Prints one
# table and writes it to bench/RESULTS.md.
#
#   build    ferry bundle build (cold cache)  vs  skopeo copy + curl + tar | zstd -T0 (bench/anchor-build.sh)
#   unpack   ferry bundle unpack (signature + every hash)  vs  zstd -dc | tar -x  [ + sha256sum -c ]
#            (and, for information, zstd -dc | tar -x + sync -f: durable like ferry's unpack)
#   registry ferry registry serve  vs  Debian's docker-registry holding the same images:
#            wrk, 16 connections, every blob of every image / every manifest
#   memory   peak RSS of build and unpack for the 1.5 GB and the 4.5 GB fixture
#
# Environment: FERRY (binary; default $CARGO_TARGET_DIR/release/ferry), BENCH_WORK
# (default bench/work: cached fixture and registry data, scratch), BENCH_RUNS
# (default 3), BENCH_DURATION (seconds per wrk run, default 10), BENCH_SKIP_BIG=1
# (skip the 4.5 GB memory runs), BENCH_PERF=1 (also write CPU profiles of build
# and unpack to bench/work/perf-*.txt).
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
export BENCH_RUNS=$RUNS
BENCH_LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
export BENCH_LOAD_START

log() { printf '%s bench: %s\n' "$(date +%T)" "$*" >&2; }
die() {
    log "$*"
    exit 1
}

for t in skopeo /usr/bin/docker-registry wrk zstd curl /usr/bin/time python3 sha256sum tar; do
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
wait_http() {
    for _ in $(seq 1 300); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    die "$1 did not come up"
}
# Peak RSS (kB) of a running process.
vmhwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

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

ferry_build() { # SCALE OUT CACHE: the command line, in BUILD
    BUILD=("$FERRY" bundle build --k8s "$K8S" --catalog-dir "$FX/catalog-s$1" --profile "$FX/catalog-s$1/bench.toml"
        "${MIRRORS[@]}" --cache-dir "$3" --sign-key "$WORK/key.key" --plain -o "$2")
}
T=$RUN/t

# ---------------------------------------------------------------- build
# Interleaved runs, so both sides see the same background load.
for i in $(seq 1 "$RUNS"); do
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
BUNDLE=$T/ferry.tar.zst

# ---------------------------------------------------------------- unpack
zstd -dc "$BUNDLE" | tar -xO bundle.json >"$RUN/bundle.json"
python3 "$HERE/tools.py" sums "$RUN/bundle.json" "$RUN/sums"
UNTAR='mkdir -p "$2" && zstd -dc "$1" | tar -x -C "$2"'
UNTAR_SYNC="$UNTAR"' && sync -f "$2"'
UNTAR_CHECK="$UNTAR"' && cd "$2" && sha256sum -c --quiet "$3"'
for i in $(seq 1 "$RUNS"); do
    rm -rf "$T/data"
    timed unpack ferry "$FERRY" bundle unpack "$BUNDLE" --trust "$WORK/key.pub" --data-dir "$T/data"
    [[ $i == "$RUNS" ]] || rm -rf "$T/data"
    rm -rf "$T/x"
    timed unpack untar bash -c "$UNTAR" _ "$BUNDLE" "$T/x"
    rm -rf "$T/x"
    timed unpack untar+sync bash -c "$UNTAR_SYNC" _ "$BUNDLE" "$T/x"
    rm -rf "$T/x"
    timed unpack untar+sha256sum bash -c "$UNTAR_CHECK" _ "$BUNDLE" "$T/x" "$RUN/sums"
    rm -rf "$T/x"
done

# ---------------------------------------------------------------- registry
# A fresh docker-registry on the same data, so its peak RSS is from serving only.
stop "$REG_PID"
/usr/bin/docker-registry serve "$RUN/registry.yml" >>"$RUN/registry.log" 2>&1 </dev/null &
REG_PID=$!
PIDS+=("$REG_PID")
wait_http "http://$REG/v2/"
python3 "$HERE/tools.py" urls "$FX/images" "$FX/images-s1.txt" "$RUN"
SPORT=$(free_port)
"$FERRY" registry serve --data-dir "$T/data" --listen "127.0.0.1:$SPORT" >"$RUN/serve.log" 2>&1 </dev/null &
SERVE_PID=$!
PIDS+=("$SERVE_PID")
wait_http "http://127.0.0.1:$SPORT/v2/"
# A correctness probe before the load: both servers give the same bytes for the first manifest.
first=$(head -1 "$RUN/manifests.list")
for a in "127.0.0.1:$SPORT" "$REG"; do
    curl -fsS -H "Accept: ${first%% *}" "http://$a${first#* }" | sha256sum
done | uniq | wc -l | grep -qx 1 || die "ferry registry serve and docker-registry disagree on ${first#* }"

load() { # SERVER ADDR PID KIND
    local out
    out=$(wrk -t2 -c16 -d"${DUR}s" --timeout 30s -s "$HERE/pull.lua" "http://$2" -- "$RUN/$4.list" | tee -a "$RUN/wrk.log" | grep '^RESULT')
    python3 - "$1" "$4" "$(vmhwm "$3")" "$out" >>"$RESULTS" <<'PY'
import sys
server, kind, rss, line = sys.argv[1:]
f = dict(kv.split("=") for kv in line.split()[1:])
sec = float(f["duration_us"]) / 1e6
errors = sum(float(f[k]) for k in f if k.startswith("err_"))
print("registry-%s %s mbps=%.1f rps=%.1f p50=%.2f p99=%.2f errors=%d rss=%s" % (
    kind, server, float(f["bytes"]) / 1e6 / sec, float(f["requests"]) / sec,
    float(f["p50_us"]) / 1e3, float(f["p99_us"]) / 1e3, errors, rss))
PY
    tail -1 "$RESULTS" | sed "s/^/$(date +%T) bench: /" >&2
}
for i in $(seq 1 "$RUNS"); do
    for kind in blobs manifests; do
        load ferry "127.0.0.1:$SPORT" "$SERVE_PID" "$kind"
        load docker-registry "$REG" "$REG_PID" "$kind"
    done
done
stop "$SERVE_PID"
rm -rf "$T/data"

# ---------------------------------------------------------------- memory at 4.5 GB
if [[ ${BENCH_SKIP_BIG:-} != 1 ]]; then
    rm -rf "$T/cache" "$T/big.tar.zst" "$BUNDLE"
    ferry_build 3 "$T/big.tar.zst" "$T/cache"
    timed build-x3 ferry "${BUILD[@]}"
    rm -rf "$T/cache"
    timed unpack-x3 ferry "$FERRY" bundle unpack "$T/big.tar.zst" --trust "$WORK/key.pub" --data-dir "$T/data"
    rm -rf "$T/data" "$T/big.tar.zst"
fi

# ---------------------------------------------------------------- profiles (BENCH_PERF=1)
# One extra, untimed run of build and unpack under `perf record -e cpu-clock`
# (software clock: works in VMs without hardware counters); top symbols go to
# $WORK/perf-build.txt and $WORK/perf-unpack.txt.
if [[ ${BENCH_PERF:-} == 1 ]] && command -v perf >/dev/null; then
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
BENCH_FIXTURE_INFO="$(python3 - "$FX" <<'PY'
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
