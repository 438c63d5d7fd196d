#!/usr/bin/env bash
# Build, once, the Debian bookworm root filesystem every lab host boots from (cached outside the
# clone). Packages a real host would fetch are pre-installed, because lab hosts have no route
# out; the product's install steps still run on them and must find them installed.
set -euo pipefail
CACHE_DIR="${CACHE_DIR:-/var/cache/kubeha}"
image="${CACHE_DIR}/lab/image-bookworm"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
packages=systemd,systemd-sysv,dbus,iproute2,iputils-ping,openssh-server,ca-certificates,curl,openssl,procps,kmod,keepalived,haproxy,nginx,libnginx-mod-stream,containerd,python3,python3-yaml,python3-cffi-backend,python3-cryptography
# The marker holds the package list: a changed list builds a new image.
if [ "$(cat "${image}/.kubeha-image-complete" 2>/dev/null)" = "${packages}" ]; then
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
# nginx is there for loadBalancer.mode local-nginx, whose step enables it; not before.
chroot "${image}.partial" systemctl disable nginx >/dev/null 2>&1
# Lab hosts get no package updates: make the product's `apt-get update` fail fast, not hang.
echo 'Acquire::Retries "0"; Acquire::http::Timeout "3";' > "${image}.partial/etc/apt/apt.conf.d/90kubeha-lab"
echo "${packages}" > "${image}.partial/.kubeha-image-complete"
rm -rf "${image}"
mv "${image}.partial" "${image}"
echo "lab image built: ${image}"
