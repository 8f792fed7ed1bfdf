#!/usr/bin/env bash
# The whole suite (what `cargo test --workspace` runs) in two lanes at once.
# The rig tests spend most of their time waiting on their test hosts
# (systemd, sshd, etcd), so two of them share a 2-core machine well and the
# suite takes about half as long. Each test target runs whole, by itself in
# its lane; its output goes to a file and is printed when it ends, so lines
# of two lanes never interleave. Exits non-zero when any target failed,
# naming them all.
#
#   FERRY_TEST_LANES=1 tests/run-lanes.sh   one lane (one target at a time)
set -uo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
lanes=${FERRY_TEST_LANES:-2}

"$CARGO" test --workspace --no-run || exit 1

# Measured seconds of the long targets (tests that boot rigs or build
# bundles); every other target counts as 10. Lanes are filled longest first.
declare -A cost=(
    [install_e2e]=360 [upgrade]=330 [addons_apply]=300 [node_add]=400
    [install_faults]=260 [local_lb]=250 [bundle_build]=200 [bundle_artifacts]=95
    [bundle_os]=55 [addons_schema]=40 [catalog_1_29_7]=90 [etcd_backup]=380
)

# "package target" of every integration test target of the workspace.
mapfile -t targets < <("$CARGO" metadata --no-deps --format-version 1 | python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    for t in p["targets"]:
        if "test" in t["kind"]:
            print(p["name"], t["name"])
')
mapfile -t targets < <(for t in "${targets[@]}"; do
    name=${t#* }
    echo "${cost[$name]:-10} $t"
done | sort -rn | cut -d' ' -f2-)

declare -a lane_jobs lane_load
for ((l = 0; l < lanes; l++)); do lane_jobs[l]=""; lane_load[l]=0; done
# Unit tests and doc tests of every crate go first in lane 0.
lane_jobs[0]="units"
lane_load[0]=60
for t in "${targets[@]}"; do
    best=0
    for ((l = 1; l < lanes; l++)); do
        ((lane_load[l] < lane_load[best])) && best=$l
    done
    lane_jobs[best]+=" ${t/ /:}"
    lane_load[best]=$((lane_load[best] + ${cost[${t#* }]:-10}))
done

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

run_job() {
    local job=$1
    if [ "$job" = units ]; then
        "$CARGO" test --workspace --lib --bins --no-fail-fast && "$CARGO" test --workspace --doc
    else
        "$CARGO" test -p "${job%%:*}" --test "${job#*:}" --no-fail-fast
    fi
}

run_lane() {
    local l=$1 job
    for job in ${lane_jobs[l]}; do
        local log="$out/$l-${job//[:\/]/_}.log" started=$SECONDS
        if run_job "$job" >"$log" 2>&1; then
            echo "ok $job" >>"$out/results"
        else
            echo "FAILED $job" >>"$out/results"
        fi
        { echo "=== lane $l: $job ($((SECONDS - started))s)"; cat "$log"; } | flock "$out/print.lock" cat
    done
}

started=$SECONDS
for ((l = 0; l < lanes; l++)); do
    echo "lane $l:${lane_jobs[l]}"
    run_lane "$l" &
done
wait

echo "=== suite: $(grep -c '^ok ' "$out/results") targets ok in $((SECONDS - started))s"
if grep -q '^FAILED ' "$out/results"; then
    echo "=== failed:"
    grep '^FAILED ' "$out/results" | sed 's/^FAILED /  /'
    exit 1
fi
