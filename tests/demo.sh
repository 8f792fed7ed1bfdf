#!/usr/bin/env bash
# `make demo`: the main job end to end on local fixtures, no internet needed.
#
#   1. fixture upstream on loopback: Debian's docker-registry seeded with small
#      multi-arch images under the catalog's names, and a file server laid out
#      like dl.k8s.io / GitHub releases / get.helm.sh (tests/fixtures/upstream.sh)
#   2. a signing key (ferry bundle keygen)
#   3. ferry bundle build --k8s 1.29.6 through --mirror only, signed
#   4. ferry bundle verify, and the stock tools: minisign -Vm, zstd -dc | tar -t
#
# Everything lives under ./.work/demo (gitignored). Whatever the demo starts is
# stopped on exit (trap). Later steps (install onto local test hosts) append
# further step_* functions and calls at the bottom.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
FERRY=${FERRY:-${CARGO_TARGET_DIR:-$ROOT/target}/release/ferry}
DEMO=${DEMO_DIR:-$ROOT/.work/demo}
UPSTREAM=$DEMO/upstream
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)}

say() { printf '\n==> %s\n' "$*"; }

cleanup() {
    "$ROOT/tests/fixtures/upstream.sh" down "$UPSTREAM" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

step_preflight() {
    [[ -x $FERRY ]] || { echo "demo: $FERRY missing; run 'make release' (or make demo)" >&2; exit 1; }
    local missing=()
    for t in docker-registry skopeo minisign zstd python3 curl etcd containerd runc; do
        command -v "$t" >/dev/null || missing+=("$t")
    done
    [[ -d /usr/lib/cni ]] || missing+=(containernetworking-plugins)
    if ((${#missing[@]})); then
        echo "demo: missing ${missing[*]}; run 'make deps'" >&2
        exit 1
    fi
    mkdir -p "$DEMO"
}

step_upstream() {
    say "fixture upstream (registry + file server on 127.0.0.1)"
    "$ROOT/tests/fixtures/upstream.sh" up "$UPSTREAM"
    mapfile -t MIRRORS <"$UPSTREAM/mirrors"
    printf '    %s\n' "${MIRRORS[@]}"
}

step_key() {
    say "signing key"
    if [[ ! -e $DEMO/key.key ]]; then
        "$FERRY" bundle keygen -o "$DEMO/key"
    else
        echo "reusing $DEMO/key.key"
    fi
}

step_build() {
    say "ferry bundle build --k8s 1.29.6 (through --mirror only)"
    rm -f "$DEMO/prod.tar.zst"
    # The cache keeps upstream checksum files for good, as a real release's
    # never change; the fixture's do when its script changed: start afresh.
    if ! cmp -s "$UPSTREAM/files/.done" "$DEMO/cache/.upstream" 2>/dev/null; then
        rm -rf "$DEMO/cache"
        mkdir -p "$DEMO/cache"
        cp "$UPSTREAM/files/.done" "$DEMO/cache/.upstream"
    fi
    local start end
    start=$(date +%s.%N)
    "$FERRY" bundle build --k8s 1.29.6 --profile prod \
        --platform linux/amd64,linux/arm64 \
        "${MIRRORS[@]}" \
        --cache-dir "$DEMO/cache" \
        --sign-key "$DEMO/key.key" \
        -o "$DEMO/prod.tar.zst"
    end=$(date +%s.%N)
    BUILD_SECONDS=$(python3 -c "print(f'{$end - $start:.1f}')")
}

step_verify() {
    say "ferry bundle verify"
    "$FERRY" bundle verify "$DEMO/prod.tar.zst" --trust "$DEMO/key.pub"
    say "stock tools: minisign -Vm bundle.json, zstd -dc | tar -t"
    rm -rf "$DEMO/check" && mkdir -p "$DEMO/check"
    zstd -dc "$DEMO/prod.tar.zst" | tar -x -C "$DEMO/check" bundle.json bundle.json.minisig
    minisign -Vm "$DEMO/check/bundle.json" -x "$DEMO/check/bundle.json.minisig" -p "$DEMO/key.pub"
    echo "tar entries: $(zstd -dc "$DEMO/prod.tar.zst" | tar -t | wc -l)"
    "$FERRY" bundle inspect "$DEMO/prod.tar.zst"
}

step_report() {
    say "done"
    cat <<EOF2
bundle:      $DEMO/prod.tar.zst ($(du -h "$DEMO/prod.tar.zst" | cut -f1), built in ${BUILD_SECONDS}s)
public key:  $DEMO/key.pub      (secret key $DEMO/key.key)
cache:       $DEMO/cache        (a second build downloads nothing)
fixtures:    $UPSTREAM          (files/, images/, registry/)
EOF2
}

step_install() {
    say "ferry install to 7 local test hosts (network namespaces booting systemd; left up afterwards)"
    "$ROOT/tests/rig/demo-install.sh" "$DEMO/prod.tar.zst" "$DEMO/key.pub" "$FERRY"
}

step_preflight
step_upstream
step_key
step_build
step_verify
# The benchmarks (bench/install.sh) only need the bundle.
[[ ${DEMO_BUILD_ONLY:-} == 1 ]] && exit 0
step_install
step_report
