#!/usr/bin/env bash
# Demo step: install a bundle to 7 local test hosts (tests/rig/rig.sh) and
# leave them up for inspection.
#
#   tests/rig/demo-install.sh BUNDLE TRUSTED_KEY.pub [FERRY_BINARY]
#
# Layout: h1-h3 masters + etcd (and registry mirrors), h4-h5 nodes, h6-h7
# ex_lb with the VIP 198.18.9.250. kube-* binaries in the fixture bundle are
# test stand-ins, not Kubernetes. Remove everything with `make rig-down`
# (or FERRY_RIG_DIR=/var/tmp/ferry-demo/rig tests/rig/rig.sh down).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUNDLE=${1:?usage: demo-install.sh BUNDLE KEY.pub [FERRY]}
KEY=${2:?usage: demo-install.sh BUNDLE KEY.pub [FERRY]}
FERRY=${3:-${CARGO_TARGET_DIR:-$ROOT/target}/release/ferry}
DEMO=${FERRY_DEMO_DIR:-/var/tmp/ferry-demo}
export FERRY_RIG_DIR=${FERRY_RIG_DIR:-/var/tmp/ferry-rig} FERRY_RIG_ID=${FERRY_RIG_ID:-fr} FERRY_RIG_NET=${FERRY_RIG_NET:-198.18.9}
NET=$FERRY_RIG_NET
# Bare hosts: a minimal Debian 12 root, nothing of this machine; what the
# steps need comes from the bundle's debian-12 package set.
export FERRY_RIG_BASE=${FERRY_RIG_BASE:-bare}

mkdir -p "$DEMO"
"$HERE/rig.sh" up 7

addr() { echo "$NET.$((10 + $1))"; }
{
  echo "[all]"
  for i in 1 2 3; do echo "$(addr $i) ansible_host=$(addr $i) ip=$(addr $i) etcd_name=etcd-$i node_name=h$i"; done
  for i in 4 5 6 7; do echo "$(addr $i) ansible_host=$(addr $i) ip=$(addr $i) node_name=h$i"; done
  echo "[etcd]"; for i in 1 2 3; do addr $i; done
  echo "[kube_master]"; for i in 1 2 3; do addr $i; done
  echo "[kube_node]"; for i in 4 5; do addr $i; done
  echo "[ex_lb]"; for i in 6 7; do addr $i; done
  echo "[all:vars]"
  echo "ansible_user=root"
  echo "ansible_ssh_private_key_file=$FERRY_RIG_DIR/id_ed25519"
} >"$DEMO/hosts"
cat >"$DEMO/config.yml" <<EOF
CLUSTER_NAME: "demo"
K8S_VER: "1.29.6"
CONTAINER_RUNTIME: "containerd"
VIP: "$NET.250"
VIP_IF: "eth0"
HOST_SUBNET_PREFIX: 24
PROXY_MODE: "ipvs"
# The test hosts are containers without CAP_SYS_RESOURCE (like LXC nodes).
CONTAINERD_RESTRICT_OOM_SCORE_ADJ: true
# Open files are capped at 20000 on this machine and cannot be raised:
# haproxy on [ex_lb] gets fewer connections than the default 50000.
EX_LB_MAXCONN: 4000
EOF

echo "== ferry install to 7 test hosts (logs: $DEMO/cluster/logs)"
start=$SECONDS
"$FERRY" install --bundle "$BUNDLE" --trust "$KEY" --inventory "$DEMO/hosts" --config "$DEMO/config.yml" \
  --data-dir "$DEMO/data" --cluster-dir "$DEMO/cluster" --ssh-config "$FERRY_RIG_DIR/ssh_config"
echo "   took $((SECONDS - start))s"
echo "== the same again: nothing to do"
"$FERRY" install --bundle "$BUNDLE" --trust "$KEY" --inventory "$DEMO/hosts" --config "$DEMO/config.yml" \
  --data-dir "$DEMO/data" --cluster-dir "$DEMO/cluster" --ssh-config "$FERRY_RIG_DIR/ssh_config" | tail -n 1
echo "== every node reaches an apiserver through its own balancer (127.0.0.1:6444, kubelet's credentials)"
reach='set -e; kc=/etc/kubernetes/kubelet.kubeconfig; d=$(mktemp -d); trap "rm -rf $d" EXIT
field() { sed -n "s/^ *$1: *//p" $kc | head -n1; }
field certificate-authority-data | base64 -d >$d/ca; field client-certificate-data | base64 -d >$d/crt
field client-key-data | base64 -d >$d/key
curl -sS --max-time 10 --cacert $d/ca --cert $d/crt --key $d/key "$(field server)/healthz"'
for i in 1 2 3 4 5; do
  got=$("$HERE/rig.sh" exec "h$i" bash -c "$reach" 2>&1 || true)
  [ "$got" = ok ] || { echo "FAIL: h$i: no apiserver through its local balancer: $got" >&2; exit 1; }
  echo "   h$i: ok"
done
echo "== OS packages came from the bundle's debian-12 set, through apt pointed only at it"
for i in 1 2 3 4 5 6 7; do
  # Masters and nodes run kubelet and kube-proxy; h6 and h7 hold the VIP.
  case $i in 6|7) want="chrony haproxy keepalived" ;; *) want="chrony conntrack ipset ipvsadm socat haproxy" ;; esac
  got=$("$HERE/rig.sh" exec "h$i" bash -c "cat /var/lib/ferry/apt/sources.list; dpkg-query -W -f='\${Package}=\${Version} ' $want" 2>&1 || true)
  case $got in
    "deb [trusted=yes] file:/var/lib/ferry/os/debian-12/amd64 ./"$'\n'chrony=*haproxy=*) echo "   h$i: ${got#*$'\n'}" ;;
    *) echo "FAIL: h$i: OS packages not installed from the bundle: $got" >&2; exit 1 ;;
  esac
done
for i in 6 7; do
  got=$("$HERE/rig.sh" exec "h$i" systemctl is-active haproxy.service keepalived.service | tr '\n' ' ')
  [ "$got" = "active active " ] || { echo "FAIL: h$i: haproxy/keepalived from the bundle not running: $got" >&2; exit 1; }
done
echo "== ferry status"
"$FERRY" status --inventory "$DEMO/hosts" --config "$DEMO/config.yml" --data-dir "$DEMO/data" \
  --cluster-dir "$DEMO/cluster" --ssh-config "$FERRY_RIG_DIR/ssh_config" || true

cat <<EOF

The cluster stays up for inspection (kube-* are test stand-ins; etcd, containerd,
haproxy and keepalived are real):
  ssh -F $FERRY_RIG_DIR/ssh_config h1                 # any of h1..h7
  tests/rig/rig.sh status                              # hosts and systemd state
  $DEMO/cluster                                        # PKI, kubeconfigs, logs/<host>.log
  curl --cacert $DEMO/cluster/pki/ca.pem --cert $DEMO/cluster/pki/admin.pem \
    --key $DEMO/cluster/pki/admin-key.pem https://$NET.250:6443/healthz  # apiserver via the VIP
Remove it with: make rig-down
EOF
