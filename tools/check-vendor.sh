#!/usr/bin/env bash
# Before any build starts: every upstream source snapshot a build still needs is in VENDOR_DIR
# (default ../shared/vendor, beside the clone). A snapshot is needed only while the binary it
# builds is not in the cache yet. Names what is missing and where its upstream source is.
# Usage: check-vendor.sh   (env: VENDOR_DIR, CACHE_DIR, ENGINE_DIR)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
VENDOR_DIR="${VENDOR_DIR:-${root}/../shared/vendor}"
CACHE_DIR="${CACHE_DIR:-/var/cache/kubeha}"
ENGINE_DIR="${ENGINE_DIR:-${CACHE_DIR}/engine}"
KUBE_BIN="${CACHE_DIR}/kubernetes/v1.34.4/bin"

# snapshot | the binary it builds | upstream repository, tag and folder
SNAPSHOTS="flannel-cni-plugin-v1.9.1-flannel1.tar.gz|${KUBE_BIN}/flannel-cni|github.com/flannel-io/cni-plugin, tag v1.9.1-flannel1
kube-vip-1.2.3.tar.gz|${KUBE_BIN}/kube-vip|github.com/kube-vip/kube-vip, tag v1.2.3
pulumi-command-1.2.1-provider.tar.gz|${ENGINE_DIR}/plugins/pulumi-resource-command|github.com/pulumi/pulumi-command, tag v1.2.1, folder provider/ and LICENSE
pulumi-language-python-3.259.0.tar.gz|${ENGINE_DIR}/bin/pulumi-language-python|github.com/pulumi/pulumi, tag v3.259.0, folder sdk/python/cmd/pulumi-language-python and LICENSE"

missing=0
while IFS='|' read -r snapshot binary upstream; do
    [ -x "${binary}" ] && [ -f "${binary}.version" ] && continue  # built already: not needed
    [ -f "${VENDOR_DIR}/${snapshot}" ] && continue
    echo "missing upstream source snapshot: ${VENDOR_DIR}/${snapshot}" >&2
    echo "  (an unmodified \`git archive\` of ${upstream}; set VENDOR_DIR to the folder that holds it)" >&2
    missing=1
done <<< "${SNAPSHOTS}"
exit "${missing}"
