#!/usr/bin/env bash
# The lab: Debian hosts as systemd-nspawn containers (real systemd, sshd, keepalived, haproxy)
# on a private bridge. Usage: lab.sh up [HOST...] | down | status | running
#        | init-pid HOST | power-off HOST | power-on HOST | address HOST | ssh HOST CMD...
# LAB_INSTANCE=N (0 by default): one of several labs side by side on this machine, each with its
# own bridge khlabN, addresses 10.250.N.0/24 (bridge .1, hosts from .11, VIP .100), folder
# build/lab (N=0) or build/labN, host disks and cgroups. Lab 0 is `make lab-up`'s; the lab tests
# run a second one beside it (tests/lab/clusters.py). An `unreachable` route covers 10.250.0.0/16
# so nothing addressed to any lab can leave through the uplink.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
LAB_INSTANCE="${LAB_INSTANCE:-0}"
[[ "${LAB_INSTANCE}" =~ ^[0-9]$ ]] || { echo "LAB_INSTANCE ${LAB_INSTANCE}: 0 to 9" >&2; exit 2; }
suffix="${LAB_INSTANCE#0}"  # "" for lab 0, so its paths stay build/lab and its hosts cp1, w1, ...
CACHE_DIR="${CACHE_DIR:-/var/cache/kubeha}"
LAB_DIR="${LAB_DIR:-${here}/../../build/lab${suffix}}"
BRIDGE="khlab${LAB_INSTANCE}"
NETWORK="10.250.${LAB_INSTANCE}"
BRIDGE_ADDRESS="${NETWORK}.1"
LAB_RANGE=10.250.0.0/16
DEFAULT_HOSTS="lb1 lb2 cp1 cp2 cp3 w1 w2"
HOSTS_DIR="${CACHE_DIR}/lab/hosts${suffix}"
# What every lab on this machine shares: the saved inotify limit, put back when the last lab goes.
SHARED_DIR=/run/kubeha-lab
# Built by tests/lab/kubernetes (make lab-kubernetes): images loaded into each host's containerd,
# and the package repository served at http://BRIDGE_ADDRESS:8080/ while the lab is up.
KUBE_DIR="${KUBE_DIR:-${CACHE_DIR}/kubernetes/v1.34.4}"
# LAB_UPGRADE_FROM=VERSION: the hosts get that release's control-plane images too (built by
# `make lab-kubernetes` as UPGRADE_FROM_VERSION), for a cluster built at it and then upgraded.
LAB_UPGRADE_FROM="${LAB_UPGRADE_FROM:-}"
REPOSITORY_DIR="${REPOSITORY_DIR:-${CACHE_DIR}/kubernetes/repository}"
REPOSITORY_PORT=8080
INOTIFY_INSTANCES=2048
# LAB_CPU_SHARES: each host's weight in the cpu cgroup (1024 is the kernel's default). Lab 0's hosts
# keep it; a lab beside it gets 128, so it runs on the CPU lab 0 leaves idle and lab 0's
# timing-sensitive tests (probes with 1 s timeouts, failover times) see the CPU they would alone.
if [ "${LAB_INSTANCE}" = 0 ]; then LAB_CPU_SHARES="${LAB_CPU_SHARES:-1024}"; else LAB_CPU_SHARES="${LAB_CPU_SHARES:-128}"; fi
mkdir -p "${LAB_DIR}"
LAB_DIR="$(cd "${LAB_DIR}" && pwd)"

address_of() {  # lb1 lb2 cp1 cp2 cp3 w1 w2 ... -> 10.250.0.11, .12, .21, .22, .23, .31, .32
    local name="$1" base index
    case "${name}" in
        lb*) base=10 ;; cp*) base=20 ;; w*) base=30 ;; *) echo "unknown lab host ${name}" >&2; return 1 ;;
    esac
    index="${name##*[a-z]}"
    echo "${NETWORK}.$((base + index))"
}

owner_file() { echo "${SHARED_DIR}/lab${LAB_INSTANCE}.owner"; }

claim_lab() {  # this clone's LAB_DIR owns lab N, or it is refused: a lab in use by another clone is not touched
    local owner pid_file
    mkdir -p "${SHARED_DIR}"
    owner="$(cat "$(owner_file)" 2>/dev/null || true)"
    if [ -n "${owner}" ] && [ "${owner}" != "${LAB_DIR}" ]; then
        for pid_file in "${owner}"/*.pid; do
            if [ -f "${pid_file}" ] && kill -0 "$(cat "${pid_file}")" 2>/dev/null; then
                echo "lab ${LAB_INSTANCE} is in use by ${owner} (its hosts run); stop it there, or use another LAB_INSTANCE" >&2
                return 1
            fi
        done
    fi
    echo "${LAB_DIR}" > "$(owner_file)"
}

owns_lab() {  # no other clone owns lab N
    local owner
    owner="$(cat "$(owner_file)" 2>/dev/null || true)"
    [ -z "${owner}" ] || [ "${owner}" = "${LAB_DIR}" ]
}

network_up() {
    claim_lab
    # Two labs may start or stop at once (CI): what they share (the route, the inotify limit, the
    # nspawn tmpfs) is set up, and put back by the last one down, by one lab at a time.
    mkdir -p "${SHARED_DIR}"
    {
        flock 9
        ip route replace unreachable "${LAB_RANGE}"
        if ! ip link show "${BRIDGE}" >/dev/null 2>&1; then
            ip link add "${BRIDGE}" type bridge
            ip address add "${BRIDGE_ADDRESS}/24" dev "${BRIDGE}"
        fi
        ip link set "${BRIDGE}" up
        # Every systemd and kubelet in the lab takes inotify instances from one machine-wide budget
        # (128 by default): raised while the lab runs, the old value put back by `down` (LAB-NOTES).
        if [ ! -f "${SHARED_DIR}/inotify-instances.saved" ] \
            && [ "$(sysctl -n fs.inotify.max_user_instances)" -lt "${INOTIFY_INSTANCES}" ]; then
            sysctl -n fs.inotify.max_user_instances > "${SHARED_DIR}/inotify-instances.saved"
            sysctl -qw fs.inotify.max_user_instances="${INOTIFY_INSTANCES}"
        fi
        # nspawn needs a private tmpfs here on a machine without systemd as PID 1 (LAB-NOTES); a
        # second mount would hide the first lab's files.
        mkdir -p /run/systemd/nspawn
        mountpoint -q /run/systemd/nspawn || mount -t tmpfs tmpfs /run/systemd/nspawn
    } 9> "${SHARED_DIR}/lock"
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
    # No resolver is reachable from the lab: the bridge address (nothing listens on 53) refuses at
    # once, so CoreDNS's upstream fails fast for outside names and no query leaves the lab.
    echo "nameserver ${BRIDGE_ADDRESS}" > "${root}/etc/resolv.conf"
    cat > "${root}/etc/systemd/network/80-container-host0.network" <<NETWORK
[Match]
Name=host0

[Network]
Address=$(address_of "${name}")/24

# Lab hosts have no default route (nothing may leave the lab). A real host's default route is
# also what carries a host-network pod's first packet to a Service IP (flanneld to the
# kubernetes Service) until kube-proxy's DNAT sends it to an apiserver: the lab's Service range
# (the default kubernetes.serviceSubnet) gets an on-link route instead, which stays on the bridge.
[Route]
Destination=10.96.0.0/12
NETWORK
    install -d -m 0700 "${root}/root/.ssh"
    install -m 0600 "${LAB_DIR}/id_ed25519.pub" "${root}/root/.ssh/authorized_keys"
    install -D -m 0600 "${LAB_DIR}/id_ed25519.pub" "${root}/home/kubeha/.ssh/authorized_keys"
    chmod 0700 "${root}/home/kubeha/.ssh"
    chroot "${root}" chown -R kubeha:kubeha /home/kubeha/.ssh
    rm -f "${root}"/etc/ssh/ssh_host_*
    ssh-keygen -A -f "${root}" >/dev/null
    # Plain hosts: the LB daemons are installed (no route out) but off, as on a host that never
    # had them; the product enables them where its mode runs them on the host, and in the
    # static-pods mode their configs must not start a second copy beside the pods at a reboot.
    rm -f "${root}"/etc/systemd/system/multi-user.target.wants/{haproxy,keepalived}.service
}

host_cgroups() {  # a host's own cgroup in every hierarchy, so two kubelets never share one (LAB-NOTES)
    local name="$1" hierarchy memory_base
    memory_base="$(awk -F: '$2 == "memory" {print $3}' /proc/self/cgroup)"
    for hierarchy in /sys/fs/cgroup/*/; do
        hierarchy="${hierarchy%/}"
        case "${hierarchy##*/}" in
            memory) echo "${hierarchy}${memory_base%/}/kubeha-lab${suffix}-${name}" ;;
            *) echo "${hierarchy}/kubeha-lab${suffix}-${name}" ;;
        esac
    done
}

boot_host() {
    local name="$1" cgroup images=()
    for cgroup in $(host_cgroups "${name}"); do
        mkdir -p "${cgroup}"
        if [[ "${cgroup}" == */cpuset/* ]]; then  # a new cpuset is empty until given CPUs and memory nodes
            cat /sys/fs/cgroup/cpuset/cpuset.cpus > "${cgroup}/cpuset.cpus"
            cat /sys/fs/cgroup/cpuset/cpuset.mems > "${cgroup}/cpuset.mems"
        fi
        [[ "${cgroup}" != */cpu/* ]] || echo "${LAB_CPU_SHARES}" > "${cgroup}/cpu.shares"
    done
    # Kubernetes nodes get the images (load balancer hosts run no kubelet).
    local images_dir
    images_dir="$(cat "${LAB_DIR}/images-dir" 2>/dev/null || echo "${KUBE_DIR}/images")"
    [[ "${name}" == lb* ]] || [ ! -f "${images_dir}/list" ] \
        || images=("--bind-ro=${images_dir}:/opt/kubeha-lab/images")
    # The host's nspawn starts inside its own cgroups; kubelet-ready flags (LAB-NOTES): every
    # capability, the keyring and bpf system calls, /dev/kmsg, and only /proc/sys/net writable.
    # shellcheck disable=SC2016 # $$ and "$@" belong to the inner shell
    setsid bash -c 'for cgroup in $1; do echo $$ > "${cgroup}/cgroup.procs"; done; shift; exec "$@"' boot \
        "$(host_cgroups "${name}")" env SYSTEMD_NSPAWN_API_VFS_WRITABLE=network systemd-nspawn --quiet --directory="${HOSTS_DIR}/${name}" \
        --machine="${suffix:+lab${suffix}-}${name}" --hostname="${name}" --boot --keep-unit --register=no --console=pipe --network-bridge="${BRIDGE}" \
        --capability=all --private-users=no --system-call-filter="@keyring bpf" --bind=/dev/kmsg \
        --resolv-conf=off "${images[@]}" \
        < /dev/null > "${LAB_DIR}/${name}.console.log" 2>&1 &
    echo "$!" > "${LAB_DIR}/${name}.pid"
}

choose_images() {  # the folder of images every Kubernetes host of this lab loads, kept in LAB_DIR/images-dir
    local combined="${CACHE_DIR}/kubernetes/images-${KUBE_DIR##*/}-with-v${LAB_UPGRADE_FROM}" archive
    if [ -z "${LAB_UPGRADE_FROM}" ]; then
        echo "${KUBE_DIR}/images" > "${LAB_DIR}/images-dir"
        return 0
    fi
    # Both releases' archives in one folder (hard links, same cache file system), named apart.
    rm -rf "${combined}"
    mkdir -p "${combined}"
    for archive in "${KUBE_DIR}"/images/*.tar; do ln "${archive}" "${combined}/"; done
    for archive in "${CACHE_DIR}/kubernetes/v${LAB_UPGRADE_FROM}"/images/*.tar; do
        ln "${archive}" "${combined}/v${LAB_UPGRADE_FROM}-${archive##*/}"
    done
    cat "${KUBE_DIR}/images/list" "${CACHE_DIR}/kubernetes/v${LAB_UPGRADE_FROM}/images/list" > "${combined}/list"
    echo "${combined}" > "${LAB_DIR}/images-dir"
}

remove_host_cgroups() {  # after the host stopped: its cgroups, deepest first (what the kubelet made in them too)
    local cgroup
    for cgroup in $(host_cgroups "$1"); do
        [ -d "${cgroup}" ] && find "${cgroup}" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
}

repository_up() {  # the lab's Kubernetes package repository, on the bridge address only
    [ -d "${REPOSITORY_DIR}" ] || return 0
    if [ -f "${LAB_DIR}/repository.pid" ] && kill -0 "$(cat "${LAB_DIR}/repository.pid")" 2>/dev/null; then
        return 0
    fi
    setsid python3 -m http.server "${REPOSITORY_PORT}" --bind "${BRIDGE_ADDRESS}" --directory "${REPOSITORY_DIR}" \
        > "${LAB_DIR}/repository.log" 2>&1 < /dev/null &
    echo "$!" > "${LAB_DIR}/repository.pid"
    for _ in $(seq 1 50); do
        curl -fsS -o /dev/null "http://${BRIDGE_ADDRESS}:${REPOSITORY_PORT}/" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "the package repository did not start; ${LAB_DIR}/repository.log" >&2
    return 1
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
            # Booted means every boot unit ran, the image loading among them.
            ssh_host "${name}" timeout 300 systemctl is-system-running --wait >/dev/null || true
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
    repository_up
    lab_key
    [ -f "${LAB_DIR}/hosts" ] || choose_images  # hosts added to a running lab load what the others did
    # Each host's disk is a copy of the image: copied side by side, then booted.
    local copies=() pid
    for name in "${hosts[@]}"; do
        make_host_root "${name}" &
        copies+=("$!")
    done
    for pid in "${copies[@]}"; do wait "${pid}"; done
    for name in "${hosts[@]}"; do
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
    # Another clone's lab of this number is not ours to take down: its hosts' disks, bridge and
    # cgroups have the same names as ours would.
    if ! owns_lab; then
        echo "lab ${LAB_INSTANCE} belongs to $(cat "$(owner_file)"); not taking it down from ${LAB_DIR}" >&2
        return 0
    fi
    # Only what this lab started: the hosts and the repository server by their recorded PIDs.
    # The hosts are disposable (every `up` copies fresh disks), so each has its plug pulled as
    # power-off does: SIGKILL to its PID 1, which takes every process in it down, pods included
    # (they outlive the nspawn process otherwise, LAB-NOTES). A clean shutdown only cost time.
    local pid_file name pid init pids=() names=()
    for pid_file in "${LAB_DIR}"/*.pid; do
        [ -f "${pid_file}" ] || continue
        name="$(basename "${pid_file}" .pid)"
        pid="$(cat "${pid_file}")"
        if kill -0 "${pid}" 2>/dev/null; then
            pids+=("${pid}")
            init="$(container_init "${pid}" || true)"
            kill -KILL "${init:-${pid}}" 2>/dev/null || true
        fi
        names+=("${name}")
        rm -f "${pid_file}"
    done
    if [ "${#pids[@]}" -gt 0 ]; then
        wait_gone 50 0.1 "${pids[@]}"
        kill -KILL "${pids[@]}" 2>/dev/null || true
        wait_gone 50 0.1 "${pids[@]}"
    fi
    for name in "${names[@]}"; do
        [ "${name}" = repository ] || remove_host_cgroups "${name}"
    done
    # The hosts' disks: every `up` copies a fresh one, and the machine's disk is the kubelets' (it
    # would report disk pressure with the roots of earlier labs left on it).
    rm -rf "${HOSTS_DIR}"
    for veth in $(ip -o link show master "${BRIDGE}" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
        ip link delete "${veth}" 2>/dev/null || true
    done
    rm -f "${LAB_DIR}/hosts" "${LAB_DIR}/images-dir" "${LAB_DIR}/options" "$(owner_file)"
    # The last lab on this machine puts back what they all share.
    mkdir -p "${SHARED_DIR}"
    {
        flock 9
        ip link delete "${BRIDGE}" 2>/dev/null || true
        if ! grep -q ': khlab[0-9]:' <<< "$(ip -o link show type bridge 2>/dev/null)"; then
            ip route delete unreachable "${LAB_RANGE}" 2>/dev/null || true
            if [ -f "${SHARED_DIR}/inotify-instances.saved" ]; then
                sysctl -qw fs.inotify.max_user_instances="$(cat "${SHARED_DIR}/inotify-instances.saved")"
                rm -f "${SHARED_DIR}/inotify-instances.saved"
            fi
        fi
    } 9> "${SHARED_DIR}/lock"
    echo "lab down"
}

wait_gone() {  # $1 tries, $2 seconds between them, PIDs...: until none of the PIDs is alive
    local tries="$1" interval="$2" pid alive
    shift 2
    for _ in $(seq 1 "${tries}"); do
        alive=0
        for pid in "$@"; do kill -0 "${pid}" 2>/dev/null && alive=1 && break; done
        [ "${alive}" = 1 ] || return 0
        sleep "${interval}"
    done
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
    remove_host_cgroups "${name}"
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
    ssh) shift; ssh_host "$@" ;;
    *) echo "usage: $0 up [HOST...] | down | status | running [HOST...] | init-pid HOST | power-off HOST | power-on HOST | address HOST | ssh HOST CMD..." >&2; exit 2 ;;
esac
