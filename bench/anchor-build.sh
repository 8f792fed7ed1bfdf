#!/usr/bin/env bash
# The anchor for `ferry bundle build`: what kubeasz/Hauler-style tooling amounts
# to. Every image copied with skopeo (all platforms) into one OCI layout, every
# binary downloaded with curl, then `tar -c | zstd -T0`. No signature, no
# checksums checked, one image after another as those tools do.
#
#   anchor-build.sh REGISTRY FILESERVER IMAGES_TXT BINARIES_TXT WORKDIR OUT.tar.zst
set -euo pipefail
registry=$1 files=$2 images=$3 binaries=$4 work=$5 out=$6

mkdir -p "$work/images" "$work/files"
while read -r ref; do
    skopeo copy --quiet --all --src-tls-verify=false "docker://$registry/$ref" "oci:$work/images:$ref"
done <"$images"
while read -r path; do
    mkdir -p "$work/files/$(dirname "$path")"
    curl -fsS -o "$work/files/$path" "http://$files/$path"
done <"$binaries"
tar -C "$work" -cf - images files | zstd -q -T0 -o "$out"
