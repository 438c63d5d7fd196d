#!/usr/bin/env bash
# Build, once, everything `make conformance` runs, into the cache outside the clone:
#   - the lab release's conformance suite: e2e.test, ginkgo and the programs of the suite's images
#     (tests/lab/kubernetes/build.sh conformance, from the pinned k8s.io/kubernetes module);
#   - a Debian bookworm root with the packages the suite's images are made of (dig, nc, ip, curl,
#     bash, apache2, nginx), debootstrapped once, and the tools to build busybox in it;
#   - busybox, from Debian's source package of the root's busybox-static, fetched by apt (which
#     checks it against the archive's signed index) and built in the root with busybox-static's
#     configuration and two changes: its shell passes on environment variables whose names are
#     not shell names (Debian's option for the installer; the published busybox image's shell
#     does, the suite's env-prefix tests need it), and a command runs the program PATH finds,
#     not busybox's own applet first (as upstream's default; the Service tests need OpenBSD nc);
#   - the images, under the names and tags `e2e.test --list-images` gives (images.py).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
CACHE_DIR="${CACHE_DIR:-/var/cache/kubeha}"
KUBERNETES_VERSION="${KUBERNETES_VERSION:-1.34.4}"
kube_dir="${CACHE_DIR}/kubernetes/v${KUBERNETES_VERSION}"
root="${CACHE_DIR}/conformance/root-bookworm"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
packages=busybox-static,bind9-dnsutils,netcat-openbsd,iproute2,curl,bash,apache2,nginx,gcc,libc6-dev,dpkg-dev
busybox_changes=(
    -e 's/^# CONFIG_FEATURE_DI_ENV_HACK is not set/CONFIG_FEATURE_DI_ENV_HACK=y/'
    -e 's/^CONFIG_FEATURE_PREFER_APPLETS=y/# CONFIG_FEATURE_PREFER_APPLETS is not set/'
    -e 's/^CONFIG_FEATURE_SH_STANDALONE=y/# CONFIG_FEATURE_SH_STANDALONE is not set/'
)

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

# The build's stamp: the source version and the configuration changes.
# shellcheck disable=SC2016  # dpkg-query's format, not the shell's
busybox_source="$(chroot "${root}" dpkg-query -W -f '${source:Version}' busybox-static)"
busybox_stamp="${busybox_source} ${busybox_changes[*]}"
if [ "$(cat "${root}/usr/local/bin/busybox.stamp" 2>/dev/null)" != "${busybox_stamp}" ]; then
    echo "deb-src ${mirror} bookworm main" > "${root}/etc/apt/sources.list.d/kubeha-source.list"
    # shellcheck disable=SC2016  # expanded in the root's shell
    chroot "${root}" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin /bin/bash -euo pipefail -c '
        apt-get update -qq
        rm -rf /usr/src/busybox && mkdir -p /usr/src/busybox && cd /usr/src/busybox
        apt-get source -qq "busybox=$1"
        cd busybox-*/
        cp debian/config/pkg/static .config
        sed -i "${@:2}" .config
        { yes "" || true; } | make oldconfig > /dev/null  # yes dies of SIGPIPE
        make -j"$(nproc)" busybox
        install -m 0755 busybox /usr/local/bin/busybox' busybox "${busybox_source}" "${busybox_changes[@]}" \
        > "${root}.busybox.log" 2>&1 || { tail -20 "${root}.busybox.log" >&2; exit 1; }
    echo "${busybox_stamp}" > "${root}/usr/local/bin/busybox.stamp"
fi

cd "${here}/../../.."
python3 -m tests.lab.conformance.images "${kube_dir}" "${root}" "${CACHE_DIR}/go/mod/k8s.io/kubernetes@v${KUBERNETES_VERSION}"
