#!/usr/bin/env bash
# Runs every fuzz target for a bounded time, starting from its committed seed
# corpus (fuzz/corpus/<target>/), and prints one summary line per target with
# the number of inputs executed. Exits non-zero when any target crashes,
# times out on an input or exceeds the memory limit; the input that did is
# kept under fuzz/artifacts/<target>/ (reproduce with `cargo +nightly fuzz run
# <target> <file>`).
#
#   FUZZ_SECONDS   seconds per target (default 60)
#   FUZZ_TARGETS   targets to run (default: all)
#   FUZZ_TOOLCHAIN nightly toolchain cargo-fuzz builds with (default nightly)
set -euo pipefail
cd "$(dirname "$0")"

seconds=${FUZZ_SECONDS:-60}
toolchain=${FUZZ_TOOLCHAIN:-nightly}
targets=${FUZZ_TARGETS:-bundle_reader bundle_json parts_json kubeasz_files registry_route}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

cargo "+$toolchain" fuzz build

# New inputs libFuzzer finds go to a scratch corpus, not the committed seeds;
# scratch files the targets write go there too (TMPDIR).
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export TMPDIR="$work/tmp"
mkdir -p "$TMPDIR"

summary=()
failed=0
for t in $targets; do
    [ -d "corpus/$t" ] || { echo "fuzz: no seed corpus fuzz/corpus/$t (write it with: cd fuzz && cargo run --bin mkseeds)" >&2; exit 1; }
    mkdir -p "$work/corpus-$t"
    log="$work/$t.log"
    echo "fuzz: $t for $seconds s"
    rc=0
    cargo "+$toolchain" fuzz run "$t" "$work/corpus-$t" "$PWD/corpus/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 >"$log" 2>&1 || rc=$?
    execs=$(grep -m1 '^stat::number_of_executed_units:' "$log" | awk '{print $2}' || true)
    if [ "$rc" -eq 0 ]; then
        summary+=("fuzz $t: ${execs:-?} executions in $seconds s, no crash")
    else
        failed=1
        tail -n 60 "$log"
        artifact=$(grep -o 'Test unit written to [^ ]*' "$log" | tail -n1 | cut -d' ' -f5)
        summary+=("fuzz $t: CRASH (exit $rc) after ${execs:-?} executions; input: ${artifact:-fuzz/artifacts/$t/}")
    fi
done

printf '%s\n' "${summary[@]}"
exit "$failed"
