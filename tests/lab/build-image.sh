#!/usr/bin/env bash
# Build, once, the Debian bookworm root filesystem every lab host boots from (cached outside the
# clone). Debian packages a real host would fetch are pre-installed, because lab hosts have no
# route out; the product's install steps still run on them and must find them installed. The
# Kubernetes packages are not: the product installs them from the lab's package repository.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
CACHE_DIR="${CACHE_DIR:-/var/cache/kubeha}"
image="${CACHE_DIR}/lab/image-bookworm"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
packages=systemd,systemd-sysv,dbus,iproute2,iputils-ping,openssh-server,sudo,ca-certificates,curl,gpg,openssl,procps,kmod,keepalived,haproxy,nginx,libnginx-mod-stream,containerd,iptables,nftables,conntrack,ethtool,socat,python3,python3-yaml,python3-cffi-backend,python3-cryptography
# Two stamps: the package list (a change debootstraps a new image, minutes) and the lab's own
# host units (a change only reinstalls them into the image, seconds).
marker="${packages}"
units="$(cat "${here}"/host/* | sha256sum | cut -d' ' -f1)"

install_host_units() {  # $1: an image root; what a kubelet needs inside a container here (LAB-NOTES)
    install -D -m 0755 "${here}/host/kubeha-lab-early.sh" "$1/usr/local/lib/kubeha-lab/early.sh"
    install -D -m 0755 "${here}/host/kubeha-lab-images.sh" "$1/usr/local/lib/kubeha-lab/images.sh"
    install -m 0644 "${here}"/host/*.service "$1/etc/systemd/system/"
    chroot "$1" systemctl enable kubeha-lab-early.service kubeha-lab-images.service >/dev/null
    echo "${units}" > "$1/.kubeha-units"
}

# (Its first word: an image stamped before the units had their own stamp has them appended.)
if [ "$(cut -d' ' -f1 "${image}/.kubeha-image-complete" 2>/dev/null)" = "${marker}" ]; then
    if [ "$(cat "${image}/.kubeha-units" 2>/dev/null)" != "${units}" ]; then
        install_host_units "${image}"
        echo "lab image's host units updated: ${image}"
    fi
    echo "lab image ready: ${image}"
    exit 0
fi
rm -rf "${image}.partial"
mkdir -p "$(dirname "${image}")"
debootstrap --variant=minbase --include="${packages}" bookworm "${image}.partial" "${mirror}"
# sshd: key auth for root only; each host gets its own host keys when it is created.
cat > "${image}.partial/etc/ssh/sshd_config.d/kubeha-lab.conf" <<'SSHD'
PermitRootLogin prohibit-password
PasswordAuthentication no
SSHD
chroot "${image}.partial" systemctl enable ssh systemd-networkd >/dev/null
# A non-root login with passwordless sudo, as a site would give kubeha (ssh.user: kubeha).
chroot "${image}.partial" useradd --create-home --shell /bin/bash kubeha
echo 'kubeha ALL=(ALL) NOPASSWD:ALL' > "${image}.partial/etc/sudoers.d/kubeha"
chmod 0440 "${image}.partial/etc/sudoers.d/kubeha"
# nginx is there for loadBalancer.mode local-nginx, whose step enables it; not before.
chroot "${image}.partial" systemctl disable nginx >/dev/null 2>&1
# Lab hosts get no Debian updates (everything is pre-installed): the only apt source is the one
# the product adds, the lab's Kubernetes repository on the bridge; a stuck fetch fails fast.
echo '# kubeha lab host: no Debian mirror is reachable; packages are pre-installed' \
    > "${image}.partial/etc/apt/sources.list"
echo 'Acquire::Retries "0"; Acquire::http::Timeout "3";' > "${image}.partial/etc/apt/apt.conf.d/90kubeha-lab"
install_host_units "${image}.partial"
echo "${marker}" > "${image}.partial/.kubeha-image-complete"
rm -rf "${image}"
mv "${image}.partial" "${image}"
echo "lab image built: ${image}"
