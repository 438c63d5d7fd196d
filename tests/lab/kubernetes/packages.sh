#!/usr/bin/env bash
# Package the binaries build.sh made the way the official Kubernetes Debian packages are laid
# out (names, `1.34.4-1.1` versions, files, the kubelet unit and kubeadm's drop-in from
# packaging/), and publish them as a signed flat apt repository in the cache. Like pkgs.k8s.io,
# the minor's repository holds every patch release built: KUBERNETES_VERSIONS (default: the
# lab's release and the one the upgrade test starts from, each built by build.sh):
#   $REPOSITORY_DIR/kubernetes/v1.34/deb/{*.deb,Packages,Packages.gz,Release,InRelease,Release.gpg,Release.key}
# lab.sh serves $REPOSITORY_DIR on the lab bridge, so the product's `kubernetes.packageRepository`
# is http://10.250.0.1:8080/kubernetes and its host preparation installs from it for real.
# The signing key is made once, in the cache; it never leaves this machine's lab.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
CACHE_DIR="${CACHE_DIR:-/var/cache/kubeha}"
KUBERNETES_VERSIONS="${KUBERNETES_VERSIONS:-1.34.3 1.34.4}"
REPOSITORY_DIR="${REPOSITORY_DIR:-${CACHE_DIR}/kubernetes/repository}"
export GNUPGHOME="${CACHE_DIR}/kubernetes/signing-key"
# pkgs.k8s.io's revision suffix; the lab's packages carry the same so version pins look alike.
REVISION=1.1
CRI_TOOLS_VERSION=1.34.0
CNI_PLUGINS_VERSION=1.7.1
# The lab's main release (the last one listed) brings cri-tools and the CNI plugins.
main_version="${KUBERNETES_VERSIONS##* }"
minor="v$(cut -d. -f1,2 <<< "${main_version}")"
deb_dir="${REPOSITORY_DIR}/kubernetes/${minor}/deb"
bin_of() {  # $1 release: where build.sh put its binaries
    echo "${CACHE_DIR}/kubernetes/v$1/bin"
}
for version in ${KUBERNETES_VERSIONS}; do
    if [ "v$(cut -d. -f1,2 <<< "${version}")" != "${minor}" ]; then
        echo "KUBERNETES_VERSIONS: ${version} is not a ${minor} release" >&2
        exit 1
    fi
done

# package NAME VERSION DEPENDS SECTION DESCRIPTION, with its files already in $staging
package() {
    local name="$1" version="$2-${REVISION}" depends="$3" section="$4" description="$5"
    local deb="${deb_dir}/${name}_${version}_amd64.deb"
    {
        echo "Package: ${name}"
        echo "Version: ${version}"
        echo "Architecture: amd64"
        echo "Maintainer: kubeha lab (built from the Go module proxy) <lab@kubeha.invalid>"
        [ -z "${depends}" ] || echo "Depends: ${depends}"
        echo "Section: ${section}"
        echo "Priority: optional"
        echo "Homepage: https://kubernetes.io"
        echo "Description: ${description}"
    } > "${staging}/DEBIAN/control"
    [ ! -d "${staging}/etc" ] || (cd "${staging}" && find etc -type f | sed 's#^#/#') > "${staging}/DEBIAN/conffiles"
    dpkg-deb --root-owner-group -Zgzip -z1 --build "${staging}" "${deb}" >/dev/null
    echo "packaged $(basename "${deb}")"
    rm -rf "${staging}"
}

fresh_staging() {
    staging="$(mktemp -d)"
    chmod 0755 "${staging}"
    install -d -m 0755 "${staging}/DEBIAN"
}

# The kubelet's unit reloads systemd when systemd runs, as the official package's scripts do.
kubelet_postinst() {
    cat > "${staging}/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
POSTINST
    chmod 0755 "${staging}/DEBIAN/postinst"
}

kubernetes_packages() {  # $1 release: kubeadm, kubelet and kubectl of it
    local version="$1" bin
    bin="$(bin_of "${version}")"
    fresh_staging
    install -D -m 0755 "${bin}/kubeadm" "${staging}/usr/bin/kubeadm"
    install -D -m 0644 "${here}/packaging/10-kubeadm.conf" "${staging}/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf"
    package kubeadm "${version}" "" admin "Command-line utility for administering a Kubernetes cluster"

    fresh_staging
    install -D -m 0755 "${bin}/kubelet" "${staging}/usr/bin/kubelet"
    install -D -m 0644 "${here}/packaging/kubelet.service" "${staging}/usr/lib/systemd/system/kubelet.service"
    install -D -m 0644 "${here}/packaging/kubelet.default" "${staging}/etc/default/kubelet"
    install -d -m 0755 "${staging}/var/lib/kubelet" "${staging}/etc/kubernetes/manifests"
    kubelet_postinst
    package kubelet "${version}" "kubernetes-cni (>= 1.2.0), mount, util-linux" net \
        "Node agent for Kubernetes clusters"

    fresh_staging
    install -D -m 0755 "${bin}/kubectl" "${staging}/usr/bin/kubectl"
    package kubectl "${version}" "" utils "Command-line utility for interacting with a Kubernetes cluster"
}

build_packages() {
    local version bin
    rm -rf "${deb_dir}"
    mkdir -p "${deb_dir}"
    for version in ${KUBERNETES_VERSIONS}; do
        kubernetes_packages "${version}"
    done
    bin="$(bin_of "${main_version}")"
    fresh_staging
    install -D -m 0755 "${bin}/crictl" "${staging}/usr/bin/crictl"
    package cri-tools "${CRI_TOOLS_VERSION}" "" admin "Command-line utility for interacting with a container runtime"

    fresh_staging
    install -d -m 0755 "${staging}/opt/cni/bin"
    install -m 0755 "${bin}"/cni/* "${staging}/opt/cni/bin/"
    package kubernetes-cni "${CNI_PLUGINS_VERSION}" "" net "Binaries required to provision kubernetes container networking"
}

signing_key() {
    install -d -m 0700 "${GNUPGHOME}"
    if ! gpg --batch --list-secret-keys lab@kubeha.invalid >/dev/null 2>&1; then
        gpg --batch --quiet --passphrase '' --quick-gen-key "kubeha lab repository <lab@kubeha.invalid>" ed25519 sign never
    fi
}

index_and_sign() {
    (
        cd "${deb_dir}"
        apt-ftparchive packages . > Packages
        gzip -9nkf Packages
        rm -f Release InRelease Release.gpg
        # Written beside the folder first, so the index does not list a half-written Release.
        apt-ftparchive -o APT::FTPArchive::Release::Origin="kubeha lab" \
            -o APT::FTPArchive::Release::Label="kubeha lab ${minor}" release . > ../Release.partial
        mv ../Release.partial Release
        gpg --batch --yes --local-user lab@kubeha.invalid --clearsign -o InRelease Release
        gpg --batch --yes --local-user lab@kubeha.invalid --armor --detach-sign -o Release.gpg Release
        gpg --batch --yes --armor --export lab@kubeha.invalid > Release.key
    )
}

stamp="${deb_dir}/.built-from"
sources="$(for version in ${KUBERNETES_VERSIONS}; do cat "$(bin_of "${version}")"/*.version; done
            cat "$(bin_of "${main_version}")"/cni/*.version "${here}"/packaging/* "$0" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "${stamp}" 2>/dev/null)" = "${sources}" ]; then
    echo "lab package repository ready: ${deb_dir}"
    exit 0
fi
build_packages
# gpg starts an agent for the key; it is ours, so it goes when we are done.
trap 'gpgconf --kill gpg-agent 2>/dev/null || true' EXIT
signing_key
index_and_sign
echo "${sources}" > "${stamp}"
echo "lab package repository built: ${deb_dir}"
