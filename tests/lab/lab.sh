#!/usr/bin/env bash
# The lab: Debian hosts as systemd-nspawn containers (real systemd, sshd, keepalived, haproxy)
# on a private bridge. Usage: lab.sh up [HOST...] | down | status | running | refresh-standins
#        | init-pid HOST | power-off HOST | power-on HOST | address HOST | ssh HOST CMD...
# Addresses: bridge 10.250.0.1/24, hosts from 10.250.0.11, VIP 10.250.0.100. An `unreachable`
# route covers 10.250.0.0/16 so nothing addressed to the lab can leave through the uplink.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
CACHE_DIR="${CACHE_DIR:-/var/cache/kubeha}"
LAB_DIR="${LAB_DIR:-${here}/../../build/lab}"
BRIDGE=khlab0
BRIDGE_ADDRESS=10.250.0.1
LAB_RANGE=10.250.0.0/16
DEFAULT_HOSTS="lb1 lb2 cp1 cp2 cp3 w1 w2"
HOSTS_DIR="${CACHE_DIR}/lab/hosts"
mkdir -p "${LAB_DIR}"
LAB_DIR="$(cd "${LAB_DIR}" && pwd)"

address_of() {  # lb1 lb2 cp1 cp2 cp3 w1 w2 ... -> 10.250.0.11, .12, .21, .22, .23, .31, .32
    local name="$1" base index
    case "${name}" in
        lb*) base=10 ;; cp*) base=20 ;; w*) base=30 ;; *) echo "unknown lab host ${name}" >&2; return 1 ;;
    esac
    index="${name##*[a-z]}"
    echo "10.250.0.$((base + index))"
}

network_up() {
    ip route replace unreachable "${LAB_RANGE}"
    if ! ip link show "${BRIDGE}" >/dev/null 2>&1; then
        ip link add "${BRIDGE}" type bridge
        ip address add "${BRIDGE_ADDRESS}/24" dev "${BRIDGE}"
    fi
    ip link set "${BRIDGE}" up
    # nspawn needs a private tmpfs here on a machine without systemd as PID 1 (LAB-NOTES).
    mkdir -p /run/systemd/nspawn
    mountpoint -q /run/systemd/nspawn || mount -t tmpfs tmpfs /run/systemd/nspawn
}

lab_key() {
    [ -f "${LAB_DIR}/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C kubeha-lab -f "${LAB_DIR}/id_ed25519"
}

make_host_root() {
    local name="$1" root="${HOSTS_DIR}/$1"
    rm -rf "${root}"
    mkdir -p "${HOSTS_DIR}"
    cp -a "${CACHE_DIR}/lab/image-bookworm" "${root}"
    echo "${name}" > "${root}/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 %s\n' "${name}" > "${root}/etc/hosts"
    cat > "${root}/etc/systemd/network/80-container-host0.network" <<NETWORK
[Match]
Name=host0

[Network]
Address=$(address_of "${name}")/24
NETWORK
    install -d -m 0700 "${root}/root/.ssh"
    install -m 0600 "${LAB_DIR}/id_ed25519.pub" "${root}/root/.ssh/authorized_keys"
    rm -f "${root}"/etc/ssh/ssh_host_*
    ssh-keygen -A -f "${root}" >/dev/null
    install_standins "${root}"
}

install_standins() {  # the TEST STAND-INS for kubeadm, kubelet, kube-apiserver, etcd and kubectl
    local root="$1"
    install -m 0755 "${here}"/standins/bin/* "${root}/usr/local/bin/"
    install -d "${root}/usr/local/lib/kubeha-standins"
    install -m 0644 "${here}"/standins/lib/*.py "${here}/../kubeadm_config_check.py" "${root}/usr/local/lib/kubeha-standins/"
    install -m 0644 "${here}"/standins/units/*.service "${root}/lib/systemd/system/"
}

boot_host() {
    local name="$1"
    systemd-nspawn --quiet --directory="${HOSTS_DIR}/${name}" --machine="${name}" --boot --keep-unit \
        --register=no --console=pipe --network-bridge="${BRIDGE}" \
        > "${LAB_DIR}/${name}.console.log" 2>&1 &
    echo "$!" > "${LAB_DIR}/${name}.pid"
}

ssh_host() {
    local name="$1"; shift
    ssh -i "${LAB_DIR}/id_ed25519" -o BatchMode=yes -o StrictHostKeyChecking=no \
        -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=2 "root@$(address_of "${name}")" "$@"
}

wait_for_ssh() {
    local name="$1"
    for _ in $(seq 1 60); do
        if ssh_host "${name}" true 2>/dev/null; then
            echo "${name}: up at $(address_of "${name}")"
            return 0
        fi
        sleep 1
    done
    echo "${name}: no SSH after 60 s; console log: ${LAB_DIR}/${name}.console.log" >&2
    return 1
}

up() {
    local hosts=("$@")
    [ "${#hosts[@]}" -gt 0 ] || read -r -a hosts <<< "${DEFAULT_HOSTS}"
    "${here}/build-image.sh"
    network_up
    lab_key
    for name in "${hosts[@]}"; do
        make_host_root "${name}"
        boot_host "${name}"
    done
    for name in "${hosts[@]}"; do
        wait_for_ssh "${name}"
    done
    # Hosts booted later (a worker added to a running lab) join the list.
    printf '%s\n' "${hosts[@]}" >> "${LAB_DIR}/hosts"
    sort -u -o "${LAB_DIR}/hosts" "${LAB_DIR}/hosts"
}

down() {
    # Only what this lab started: the nspawn processes by their recorded PIDs.
    for pid_file in "${LAB_DIR}"/*.pid; do
        [ -f "${pid_file}" ] || continue
        pid="$(cat "${pid_file}")"
        if kill -0 "${pid}" 2>/dev/null; then
            kill -TERM "${pid}" 2>/dev/null || true
            for _ in $(seq 1 20); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.5; done
            kill -KILL "${pid}" 2>/dev/null || true
        fi
        rm -f "${pid_file}"
    done
    for veth in $(ip -o link show master "${BRIDGE}" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
        ip link delete "${veth}" 2>/dev/null || true
    done
    ip link delete "${BRIDGE}" 2>/dev/null || true
    ip route delete unreachable "${LAB_RANGE}" 2>/dev/null || true
    rm -f "${LAB_DIR}/hosts"
    echo "lab down"
}

container_init() {  # the container's PID 1 (as seen from here): a descendant of its nspawn process
    local pid child
    for pid in $(pgrep -P "$1"); do
        if awk '/^NSpid:/ {exit !($NF == 1)}' "/proc/${pid}/status" 2>/dev/null; then echo "${pid}"; return 0; fi
        child="$(container_init "${pid}")" && [ -n "${child}" ] && { echo "${child}"; return 0; }
    done
    return 1
}

init_pid() {  # a running host's PID 1, so a caller can pull the plug itself at a known instant
    container_init "$(cat "${LAB_DIR}/$1.pid")"
}

power_off() {  # pull the plug: SIGKILL the container's PID 1, which takes every process in it down
    local name="$1" init
    # Already gone when the caller killed PID 1 itself (init-pid); then only wait and clean up.
    if init="$(init_pid "${name}")"; then kill -KILL "${init}" 2>/dev/null || true; fi
    for _ in $(seq 1 50); do kill -0 "$(cat "${LAB_DIR}/${name}.pid")" 2>/dev/null || break; sleep 0.1; done
    rm -f "${LAB_DIR}/${name}.pid"
    echo "${name}: powered off"
}

power_on() {  # boot an existing host again, with the state it had (no fresh copy of the image)
    boot_host "$1"
    wait_for_ssh "$1"
}

running() {  # exit 0 when every named host (default: the default hosts) runs
    local name names=("$@")
    [ "${#names[@]}" -gt 0 ] || read -r -a names <<< "${DEFAULT_HOSTS}"
    for name in "${names[@]}"; do
        [ -f "${LAB_DIR}/${name}.pid" ] && kill -0 "$(cat "${LAB_DIR}/${name}.pid")" 2>/dev/null || return 1
    done
}

status() {
    for pid_file in "${LAB_DIR}"/*.pid; do
        [ -f "${pid_file}" ] || continue
        name="$(basename "${pid_file}" .pid)"
        if kill -0 "$(cat "${pid_file}")" 2>/dev/null; then echo "${name}: running"; else echo "${name}: stopped"; fi
    done
}

case "${1:-}" in
    up) shift; up "$@" ;;
    down) down ;;
    status) status ;;
    running) shift; running "$@" ;;
    address) address_of "$2" ;;
    init-pid) init_pid "$2" ;;
    power-off) power_off "$2" ;;
    power-on) power_on "$2" ;;
    refresh-standins) while read -r name; do install_standins "${HOSTS_DIR}/${name}"; done < "${LAB_DIR}/hosts" ;;
    ssh) shift; ssh_host "$@" ;;
    *) echo "usage: $0 up [HOST...] | down | status | running [HOST...] | refresh-standins | init-pid HOST | power-off HOST | power-on HOST | address HOST | ssh HOST CMD..." >&2; exit 2 ;;
esac
