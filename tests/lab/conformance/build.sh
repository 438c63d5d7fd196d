#!/usr/bin/env bash
# Build, once, everything `make conformance` runs, into the cache outside the clone:
#   - the lab release's conformance suite: e2e.test, ginkgo and the programs of the suite's images
#     (tests/lab/kubernetes/build.sh conformance, from the pinned k8s.io/kubernetes module);
#   - a Debian bookworm root with the packages the suite's images are made of (busybox-static,
#     dig, nc, ip, curl, bash, apache2, nginx), debootstrapped once;
#   - the images, under the names and tags `e2e.test --list-images` gives (images.py).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
CACHE_DIR="${CACHE_DIR:-/var/cache/kubeha}"
KUBERNETES_VERSION="${KUBERNETES_VERSION:-1.34.4}"
kube_dir="${CACHE_DIR}/kubernetes/v${KUBERNETES_VERSION}"
root="${CACHE_DIR}/conformance/root-bookworm"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
packages=busybox-static,bind9-dnsutils,netcat-openbsd,iproute2,curl,bash,apache2,nginx

CACHE_DIR="${CACHE_DIR}" KUBERNETES_VERSION="${KUBERNETES_VERSION}" "${here}/../kubernetes/build.sh" conformance

if [ "$(cat "${root}/.kubeha-root-complete" 2>/dev/null)" != "${packages}" ]; then
    rm -rf "${root}.partial"
    mkdir -p "${root%/*}"
    debootstrap --variant=minbase --include="${packages}" bookworm "${root}.partial" "${mirror}" > "${root}.log" 2>&1 \
        || { tail -20 "${root}.log" >&2; exit 1; }
    echo "${packages}" > "${root}.partial/.kubeha-root-complete"
    rm -rf "${root}"
    mv "${root}.partial" "${root}"
fi
cd "${here}/../../.."
python3 -m tests.lab.conformance.images "${kube_dir}" "${root}" "${CACHE_DIR}/go/mod/k8s.io/kubernetes@v${KUBERNETES_VERSION}"
