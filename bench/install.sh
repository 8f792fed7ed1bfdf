# `make bench`, install section (sourced by bench/run.sh, which defines
# timed, log, die, FERRY, RUN, RESULTS, RUNS and ROOT).
#
# ferry install to test hosts of the rig (tests/rig/rig.sh: network
# namespaces booting systemd over a bare Debian 12 root, so every OS package
# comes from the bundle), from the demo's fixture bundle (kube-* are test
# stand-ins; etcd, containerd, haproxy and keepalived are real). The bundle
# is unpacked once beforehand: these rows time the deploy. Rows (results.tsv):
#   install-full 7     the demo's layout (3 masters + etcd, 2 nodes, 2 [ex_lb] with a VIP), from bare
#   install-noop 7     the same again with nothing to do, RUNS times
#   install-verify 7   the same again with --verify-hosts (every placed file hashed on every host)
#   fanout N           N = 5, 10, 20 fresh hosts: 3 masters + etcd and N-3 nodes, default --forks (10)
# Each row also records busy= (the machine's CPU use during the run, %, from
# /proc/stat: the hosts run on the same 2 cores as the deploy host).

BENCH_RIG_NET=${BENCH_RIG_NET:-198.18.60}
export FERRY_RIG_DIR=$RUN/rig FERRY_RIG_ID=fbn FERRY_RIG_NET=$BENCH_RIG_NET FERRY_RIG_BASE=bare

# machine_busy CMD...: runs CMD; prints the machine's CPU use during it (%).
cpu_ticks() { awk '/^cpu / {print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat; }

# install_timed KIND KEY [ARG...]: one `ferry install` to the rig, timed, with busy=.
install_timed() {
    local kind=$1 key=$2 a b
    shift 2
    a=$(cpu_ticks)
    timed "$kind" "$key" "$FERRY" install --bundle "$IB/prod.tar.zst" --trust "$IB/key.pub" \
        --inventory "$IB/hosts" --config "$IB/config.yml" --data-dir "$IB/data" \
        --cluster-dir "$IC" --ssh-config "$FERRY_RIG_DIR/ssh_config" "$@"
    b=$(cpu_ticks)
    # Appends busy= to the line timed just wrote.
    sed -i '$ s/$/ busy='"$(awk -v a="$a" -v b="$b" 'BEGIN {split(a, x, " "); split(b, y, " "); printf "%.0f", 100 * (y[1] - x[1]) / (y[2] - x[2])}')"'/' "$RESULTS"
    grep -q 'no changes\|files changed' "$RUN/last.log" || die "$kind $key: no report in $RUN/last.log"
}

# write_inventory N EX_LB: 3 masters + etcd, nodes, and with EX_LB the last two hosts as [ex_lb].
write_inventory() {
    local n=$1 exlb=$2 net=$BENCH_RIG_NET i last
    addr() { echo "$net.$((10 + $1))"; }
    last=$n
    [[ $exlb == 1 ]] && last=$((n - 2))
    {
        echo "[all]"
        for i in $(seq 1 "$n"); do echo "$(addr "$i") ansible_host=$(addr "$i") ip=$(addr "$i") node_name=h$i"; done
        echo "[etcd]"; for i in 1 2 3; do addr "$i"; done
        echo "[kube_master]"; for i in 1 2 3; do addr "$i"; done
        echo "[kube_node]"; for i in $(seq 4 "$last"); do addr "$i"; done
        if [[ $exlb == 1 ]]; then echo "[ex_lb]"; for i in $((n - 1)) "$n"; do addr "$i"; done; fi
        echo "[all:vars]"
        echo "ansible_user=root"
        echo "ansible_ssh_private_key_file=$FERRY_RIG_DIR/id_ed25519"
    } >"$IB/hosts"
    {
        echo 'CLUSTER_NAME: "bench"'
        echo 'K8S_VER: "1.29.6"'
        echo 'CONTAINER_RUNTIME: "containerd"'
        echo 'HOST_SUBNET_PREFIX: 24'
        echo 'PROXY_MODE: "ipvs"'
        echo 'CONTAINERD_RESTRICT_OOM_SCORE_ADJ: true'
        echo 'EX_LB_MAXCONN: 4000'
        if [[ $exlb == 1 ]]; then echo "VIP: \"$net.250\""; echo 'VIP_IF: "eth0"'; fi
    } >"$IB/config.yml"
}

# fresh_rig N LABEL: N new hosts, a new cluster dir ($IC, kept with its
# logs for reading the steps' timings afterwards).
fresh_rig() {
    "$ROOT/tests/rig/rig.sh" up "$1" >"$RUN/rig.log" 2>&1 || { cat "$RUN/rig.log" >&2; die "rig up $1 failed"; }
    IC=$IB/cluster-$2
    rm -rf "$IC"
}

bench_install() {
    IB=$RUN/install
    mkdir -p "$IB"
    local demo=${DEMO_DIR:-$ROOT/.work/demo}
    if [[ ! -e $demo/prod.tar.zst ]]; then
        log "building the demo's fixture bundle (tests/demo.sh, DEMO_BUILD_ONLY=1)"
        DEMO_BUILD_ONLY=1 FERRY=$FERRY "$ROOT/tests/demo.sh" >"$RUN/demo-build.log" 2>&1 ||
            { tail -n 30 "$RUN/demo-build.log" >&2; die "building the demo bundle failed"; }
    fi
    cp "$demo/prod.tar.zst" "$demo/key.pub" "$IB/"
    "$FERRY" bundle unpack "$IB/prod.tar.zst" --trust "$IB/key.pub" --data-dir "$IB/data" >/dev/null
    trap '"$ROOT/tests/rig/rig.sh" down >/dev/null 2>&1 || true; cleanup' EXIT

    log "install: 7 bare hosts, full, then no-op x$RUNS, then --verify-hosts"
    write_inventory 7 1
    fresh_rig 7 bare-7
    install_timed install-full 7
    local i
    for i in $(seq 1 "$RUNS"); do install_timed install-noop 7; done
    grep -q '^no changes (7 hosts' "$RUN/last.log" || die "the no-op install changed something: $(tail -n 3 "$RUN/last.log")"
    install_timed install-verify 7 --verify-hosts
    local n
    for n in 5 10 20; do
        log "fan-out: $n bare hosts, full install"
        write_inventory "$n" 0
        fresh_rig "$n" "fanout-$n"
        install_timed fanout "$n"
    done
    "$ROOT/tests/rig/rig.sh" down >/dev/null 2>&1
}
