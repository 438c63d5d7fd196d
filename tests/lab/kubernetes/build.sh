#!/usr/bin/env bash
# Build, once, the real Kubernetes the lab runs, from the Go module proxy, into the cache outside
# the clone: $KUBE_DIR/bin holds kubeadm, kubelet, kubectl, kube-apiserver, kube-controller-manager,
# kube-scheduler, kube-proxy (k8s.io/kubernetes), etcd, etcdctl, etcdutl, crictl, coredns, pause and, in cni/, the
# reference CNI plugins (github.com/containernetworking/plugins), flanneld (github.com/flannel-io/flannel)
# and flannel's CNI plugin (snapshot), and kube-vip (from its unmodified
# source snapshot in ../shared/vendor, VENDOR_DIR; the image of the kube-vip mode). Later runs
# reuse every binary whose version stamp matches. Versions: modules/*/go.mod and the table below.
# Usage: build.sh [BINARY...] (default: all; `build.sh kubeadm` is what the unit tests need).
# `build.sh conformance` builds, into $KUBE_DIR/conformance/bin and only when asked, the release's
# conformance suite from modules/conformance: e2e.test (`go test -c k8s.io/kubernetes/test/e2e`),
# ginkgo (its parallel runner) and the programs of the suite's images (agnhost, nnp,
# sample-apiserver, and etcd at the release's own v3.6.4).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
CACHE_DIR="${CACHE_DIR:-/var/cache/kubeha}"
VENDOR_DIR="${VENDOR_DIR:-$(cd "${here}/../../../.." && pwd)/shared/vendor}"
# The lab's Kubernetes release; modules/kubernetes/go.mod requires the same. The release the
# upgrade test starts from (UPGRADE_FROM_VERSION in lab-stack.sh) has its own module folder,
# modules/kubernetes-<version>, and only the Kubernetes binaries are built for it.
KUBERNETES_VERSION="${KUBERNETES_VERSION:-1.34.4}"
KUBERNETES_MODULE=kubernetes
[ ! -d "${here}/modules/kubernetes-${KUBERNETES_VERSION}" ] || KUBERNETES_MODULE="kubernetes-${KUBERNETES_VERSION}"
KUBE_DIR="${KUBE_DIR:-${CACHE_DIR}/kubernetes/v${KUBERNETES_VERSION}}"
export GOMODCACHE="${CACHE_DIR}/go/mod" GOCACHE="${CACHE_DIR}/go/build" GOFLAGS="-mod=mod -trimpath" GOTOOLCHAIN=local
export CGO_ENABLED=0

# What each binary is built from, and the version it reports (kubeadm checks etcd's and CoreDNS's
# against its own table; these are the ones kubeadm 1.34 expects).
ETCD_VERSION=3.6.5
CRICTL_VERSION=1.34.0
COREDNS_VERSION=1.12.1
CNI_PLUGINS_VERSION=1.7.1  # what the official kubernetes-cni package of 1.34 ships
CNI_PLUGINS="plugins/main/bridge plugins/main/loopback plugins/main/ptp plugins/ipam/host-local plugins/meta/portmap
    plugins/meta/bandwidth plugins/meta/firewall plugins/meta/tuning"
KUBE_VIP_VERSION=1.2.3  # the product's pinned kube-vip image (components/config/catalogue.py)
FLANNEL_VERSION=0.28.10  # the product's pinned flannel (components/config/catalogue.py); modules/flannel requires it
FLANNEL_CNI_VERSION=1.9.1-flannel1  # flannel's own CNI plugin, from its snapshot in VENDOR_DIR
KUBERNETES_BINARIES="kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy"

module_version() {  # $1 module folder, $2 module path: the version its go.mod requires
    awk -v module="$2" '$1 == module || ($1 == "require" && $2 == module) {print $NF; exit}' "${here}/modules/$1/go.mod"
}

require_release() {  # $1 module folder: its go.mod requires k8s.io/kubernetes at KUBERNETES_VERSION
    if [ "$(module_version "$1" k8s.io/kubernetes)" != "v${KUBERNETES_VERSION}" ]; then
        echo "modules/$1/go.mod does not require k8s.io/kubernetes v${KUBERNETES_VERSION}" >&2
        exit 1
    fi
}
require_release "${KUBERNETES_MODULE}"

built() {  # $1 binary, $2 version stamp
    [ -x "$1" ] && [ "$(cat "$1.version" 2>/dev/null)" = "$2" ] && return 0
    rm -f "$1" "$1.version"
    return 1
}

stamp() {
    echo "$2" > "$1.version"
    printf '%-26s %-10s %s\n' "$(basename "$1")" "$2" "$(du -h "$1" | cut -f1)"
}

# kubeadm reads its own version from these; without them it says v0.0.0 and refuses the config.
kubernetes_ldflags() {
    local minor="${KUBERNETES_VERSION#*.}"
    minor="${minor%%.*}"
    printf '%s ' -s -w \
        -X "k8s.io/component-base/version.gitVersion=v${KUBERNETES_VERSION}" \
        -X "k8s.io/component-base/version.gitMajor=${KUBERNETES_VERSION%%.*}" \
        -X "k8s.io/component-base/version.gitMinor=${minor}" \
        -X "k8s.io/component-base/version.gitTreeState=clean" \
        -X "k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"
}

wanted() {  # $1 binary: asked for on the command line (or nothing was)
    [ "${#requested[@]}" -eq 0 ] && return 0
    local name
    for name in "${requested[@]}"; do [ "${name}" = "$1" ] && return 0; done
    return 1
}

build() {  # $1 binary name, $2 module folder, $3 version stamp, $4 package, $5 ldflags
    local bin="${KUBE_DIR}/bin/$1"
    wanted "${1#cni/}" || return 0
    built "${bin}" "$3" && return
    (cd "${here}/modules/$2" && go build -ldflags "$5" -o "${bin}" "$4")
    stamp "${bin}" "$3"
}

build_snapshot() {  # $1 binary, $2 its snapshot in VENDOR_DIR, $3 version: unpacked afresh, built with its own go.mod
    local bin="${KUBE_DIR}/bin/$1" source="${CACHE_DIR}/kubernetes/src/${2%.tar.gz}"
    wanted "$1" || return 0
    built "${bin}" "v$3" && return
    rm -rf "${source}" && mkdir -p "${source}"
    tar -xzf "${VENDOR_DIR}/$2" -C "${source}" --strip-components=1
    (cd "${source}" && go build -ldflags "-s -w -X main.Version=v$3" -o "${bin}" .)
    stamp "${bin}" "v$3"
}

build_suite() {  # $1 binary, $2 package: the conformance suite's, stamped with the release
    local bin="${KUBE_DIR}/conformance/bin/$1"
    built "${bin}" "v${KUBERNETES_VERSION}" && return
    local compile=(build)
    [ "$1" != e2e.test ] || compile=(test -c)  # the suite is a test binary
    mkdir -p "${bin%/*}"
    (cd "${here}/modules/conformance" && go "${compile[@]}" -ldflags "$(kubernetes_ldflags)" -o "${bin}" "$2")
    stamp "${bin}" "v${KUBERNETES_VERSION}"
}

if [ "${1:-}" = conformance ]; then
    require_release conformance
    build_suite e2e.test k8s.io/kubernetes/test/e2e
    build_suite ginkgo github.com/onsi/ginkgo/v2/ginkgo
    build_suite agnhost k8s.io/kubernetes/test/images/agnhost
    build_suite nnp k8s.io/kubernetes/test/images/nonewprivs
    build_suite sample-apiserver k8s.io/sample-apiserver
    build_suite etcd go.etcd.io/etcd/server/v3
    exit 0
fi

requested=("$@")
started=${EPOCHREALTIME}
mkdir -p "${KUBE_DIR}/bin"
for binary in ${KUBERNETES_BINARIES}; do
    build "${binary}" "${KUBERNETES_MODULE}" "v${KUBERNETES_VERSION}" "k8s.io/kubernetes/cmd/${binary}" "$(kubernetes_ldflags)"
done
build etcd etcd "v${ETCD_VERSION}" go.etcd.io/etcd/server/v3 "-s -w"
build etcdctl etcd "v${ETCD_VERSION}" go.etcd.io/etcd/etcdctl/v3 "-s -w"
build etcdutl etcd "v${ETCD_VERSION}" go.etcd.io/etcd/etcdutl/v3 "-s -w"
build crictl cri-tools "v${CRICTL_VERSION}" sigs.k8s.io/cri-tools/cmd/crictl \
    "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=v${CRICTL_VERSION}"
build coredns coredns "v${COREDNS_VERSION}" github.com/coredns/coredns "-s -w"
build pause pause "kubeha-lab-2" . "-s -w"
# flanneld needs cgo (its udp backend), linked statically so the image needs no libc; Go's own
# user and DNS lookups (osusergo, netgo), since glibc's cannot be linked statically.
GOFLAGS="${GOFLAGS} -tags=osusergo,netgo" CGO_ENABLED=1 build flanneld flannel "v${FLANNEL_VERSION}-static" github.com/flannel-io/flannel \
    "-s -w -extldflags -static -X github.com/flannel-io/flannel/pkg/version.Version=v${FLANNEL_VERSION}"
build install-conf flannel "v${FLANNEL_VERSION}" github.com/flannel-io/flannel/cmd/install_conf "-s -w"
# The `flannel` CNI plugin flannel's DaemonSet installs.
build_snapshot flannel-cni "flannel-cni-plugin-v${FLANNEL_CNI_VERSION}.tar.gz" "${FLANNEL_CNI_VERSION}"
build_snapshot kube-vip "kube-vip-${KUBE_VIP_VERSION}.tar.gz" "${KUBE_VIP_VERSION}"
mkdir -p "${KUBE_DIR}/bin/cni"
for plugin in ${CNI_PLUGINS}; do
    build "cni/${plugin##*/}" cni-plugins "v${CNI_PLUGINS_VERSION}" "github.com/containernetworking/plugins/${plugin}" \
        "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=v${CNI_PLUGINS_VERSION}"
done
printf 'Kubernetes v%s ready in %s (%.0f s)\n' "${KUBERNETES_VERSION}" "${KUBE_DIR}/bin" \
    "$(awk -v a="${started}" -v b="${EPOCHREALTIME}" 'BEGIN {print b - a}')"
