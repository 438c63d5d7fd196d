#!/usr/bin/env bash
# The `lab` stack of the product on the lab hosts. Usage: lab-stack.sh up | destroy
#   up:      boot the lab if it is not running (fresh hosts, fresh state), write Pulumi.lab.yaml
#            and build/lab/env, then `pulumi up` — a real run of the product on local hosts.
#   destroy: `pulumi destroy` on the lab stack while its hosts run; then forget the state.
# Needs: KUBEHA_ROOT (the clone), ENGINE_DIR. LAB_TOPOLOGY=NAME: a topology of the lab tests
# (tests/lab/clusters.py), which sets the LAB_* settings below as the tests do; or, one by one:
# LAB_LB_MODE picks loadBalancer.mode
# (keepalived-haproxy by default; static-pods, local-nginx and kube-vip boot no LB hosts; external
# boots lb1 as "the site's balancer": a plain haproxy the lab itself configures, not kubeha, in
# front of cp1-cp3's 6443, at lb1:8443, which is loadBalancer.endpoint). The
# hosts run Kubernetes 1.34.4 built by `make lab-kubernetes`, installed by the product from the
# lab's package repository. LAB_SSH_USER: the login (root by default; `kubeha` has passwordless
# sudo on every lab host). LAB_FIREWALL=managed: firewall.mode managed (unmanaged by default).
# LAB_PACKAGE_PROXY=URL: packages.proxy. LAB_WORKERS: the workers beside cp1-cp3 ("w1 w2" by
# default). LAB_KUBERNETES_VERSION: kubernetes.version (1.34.4 by default; another release built
# by `make lab-kubernetes` boots hosts with its images too, and the upgrade test then sets 1.34.4).
# LAB_INSTANCE=N: the stack of lab N (lab.sh): stack labN, Pulumi.labN.yaml, build/labN (N=0:
# stack lab, Pulumi.lab.yaml, build/lab), on that lab's addresses.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="${KUBEHA_ROOT:-$(cd "${here}/../.." && pwd)}"
instance="${LAB_INSTANCE:-0}"
suffix="${instance#0}"
lab_dir="${root}/build/lab${suffix}"
lab="${here}/lab.sh"
stack_name="lab${suffix}"
stack="organization/kubeha/${stack_name}"
stack_file="${root}/Pulumi.${stack_name}.yaml"
network="10.250.${instance}"
if [ -n "${LAB_TOPOLOGY:-}" ]; then
    # LAB_TOPOLOGY: one of the lab tests' topologies (tests/lab/clusters.py), with its settings.
    settings="$(cd "${root}" && python3 -m tests.lab.clusters env "${LAB_TOPOLOGY}")"
    eval "${settings}"
fi
mode="${LAB_LB_MODE:-keepalived-haproxy}"
workers="${LAB_WORKERS:-w1 w2}"
if ! [[ "${workers}" =~ ^w[0-9]+( w[0-9]+)*$ ]]; then
    echo "LAB_WORKERS ${workers}: worker names w1, w2, ... separated by spaces" >&2
    exit 2
fi
case "${mode}" in
    keepalived-haproxy) hosts="lb1 lb2 cp1 cp2 cp3 ${workers}" ;;
    static-pods|local-nginx|kube-vip) hosts="cp1 cp2 cp3 ${workers}" ;;
    external) hosts="lb1 cp1 cp2 cp3 ${workers}" ;;
    *) echo "LAB_LB_MODE ${mode}: the lab runs keepalived-haproxy, static-pods, local-nginx, kube-vip or external" >&2
       exit 2 ;;
esac

version="${LAB_KUBERNETES_VERSION:-1.34.4}"
if [ "${version}" != 1.34.4 ]; then
    export LAB_UPGRADE_FROM="${version}"  # lab.sh: the hosts load that release's images too
fi

# What this stack is built with; a running lab built with anything else is not reused (its
# `pulumi up` would be an edit, an upgrade or a refusal, not the cluster asked for).
options="mode=${mode} user=${LAB_SSH_USER:-root} firewall=${LAB_FIREWALL:-unmanaged} proxy=${LAB_PACKAGE_PROXY:-} version=${version} workers=${workers}"

lab_running() {  # exactly this mode's hosts run, built with these options (another lab does not count)
    # shellcheck disable=SC2086 # word splitting of the host list is wanted
    "${lab}" running ${hosts} && ! grep -q stopped <<< "$("${lab}" status)" \
        && { [ "${mode}" = keepalived-haproxy ] || [ "${mode}" = external ] || ! grep -q '^lb' "${lab_dir}/hosts"; } \
        && [ "$(cat "${lab_dir}/options" 2>/dev/null)" = "${options}" ]
}

host_list() {  # YAML flow list of the lab hosts whose name starts with $1
    local prefix="$1" items=()
    while read -r name; do
        [[ "${name}" == "${prefix}"* ]] && items+=("{name: ${name}, address: $("${lab}" address "${name}")}")
    done < "${lab_dir}/hosts"
    local IFS=,
    echo "[${items[*]}]"
}

kubernetes_settings() {
    # What this machine needs and says so (LAB-NOTES), as any user of such hosts would set it:
    # cgroup v1 (maintenance mode: the kubelet refuses it unless told), no CAP_SYS_RESOURCE in
    # the containers (containerd must not lower OOM scores), systemd not owning the cgroups,
    # kube-proxy not touching the machine-global conntrack sysctls, every kubelet's disk-pressure
    # thresholds lowered and its image garbage collection off (all hosts share the machine's disk,
    # which is rarely 15 % free: the defaults would taint every node at once, and delete images the
    # lab preloaded and cannot pull again — the pause image first, which containerd 1.6 does not
    # pin). The thresholds are absolute: a share of the machine's whole disk means little when a
    # dozen hosts fill it together; CI's busiest minutes left 14 GB of 252 free (5.6 %), and at 5 %
    # the kubelet removes every unused image, the next release's too (docs/conformance.md), and flannel told its
    # interface (lab hosts have no default route, which flannel would pick it by). Preflight's
    # time-sync check is skipped: a container's clock is its machine's, and no time service runs
    # in a container (systemd-timesyncd will not start there), so none can report a sync.
    # Pulls from registry.k8s.io go to a mirror on the lab bridge first, as at a site with a
    # pull-through cache; test_cluster_lab runs one there to see them (the images are preloaded,
    # so nothing else pulls, and a mirror that does not answer is skipped by containerd).
    # The control plane's flags as a hardened site sets them (profiling off, as the CIS benchmark
    # asks) and its audit log on (metadata): test_cluster_lab finds them on every control plane,
    # the joined ones too.
    echo '  kubeha:preflight:
    skip: [time-sync]
  kubeha:kubernetes:
    version: "'"${version}"'"
    packageRepository: http://'"${network}"'.1:8080/kubernetes
    kubelet:
      failCgroupV1: false
      evictionHard:
        memory.available: 100Mi
        nodefs.available: 1Gi
        imagefs.available: 1Gi
        nodefs.inodesFree: 5%
      imageGCHighThresholdPercent: 100
      imageGCLowThresholdPercent: 99
    audit:
      policy: metadata
    apiServer:
      extraArgs: {profiling: "false"}
    controllerManager:
      extraArgs: {profiling: "false"}
    scheduler:
      extraArgs: {profiling: "false"}
    kubeProxy:
      mode: iptables
      conntrack:
        maxPerCore: 0
        tcpEstablishedTimeout: 0s
        tcpCloseWaitTimeout: 0s
  kubeha:containerd:
    cgroupDriver: cgroupfs
    restrictOomScoreAdj: true
    registryMirrors:
      registry.k8s.io: ["http://'"${network}"'.1:5000"]
  kubeha:network:
    flannel:
      interface: host0'
    if [ -n "${LAB_PACKAGE_PROXY:-}" ]; then
        # LAB_PACKAGE_PROXY=URL: packages.proxy, as at a site whose hosts download through one.
        echo "  kubeha:packages:
    proxy: ${LAB_PACKAGE_PROXY}"
    fi
    if [ "${LAB_FIREWALL:-unmanaged}" = managed ]; then
        # LAB_FIREWALL=managed: kubeha's nftables rules on every host (the failover tests and the
        # benchmark run with them); the lab's nodes are all in the bridge's network.
        echo "  kubeha:firewall:
    mode: managed
    nodeNetworks: [${network}.0/24]"
    fi
}

write_stack_config() {
    local load_balancer salt
    # The stack's secrets key is derived from the salt `pulumi stack init` wrote here; a stack
    # that is reused keeps it (a new salt would not open the state's secrets).
    salt="$(grep '^encryptionsalt:' "${stack_file}" 2>/dev/null || true)"
    if [ "${mode}" = local-nginx ]; then
        load_balancer="    mode: local-nginx"
    elif [ "${mode}" = external ]; then
        load_balancer="    mode: external
    endpoint: $("${lab}" address lb1):8443"
    elif [ "${mode}" = kube-vip ]; then
        load_balancer="    mode: kube-vip
    vip: ${network}.100
    interface: host0"
    elif [ "${mode}" = static-pods ]; then
        load_balancer="    mode: static-pods
    vip: ${network}.100
    interface: host0
    virtualRouterId: 51"
    else
        load_balancer="    mode: ${mode}
    vip: ${network}.100
    interface: host0
    virtualRouterId: 51
    hosts: $(host_list lb)"
    fi
    cat > "${stack_file}" <<CONFIG
# Written by tests/lab/lab-stack.sh for the local lab (systemd-nspawn hosts); not for editing.
config:
  kubeha:ssh:
    user: ${LAB_SSH_USER:-root}
    privateKeyPath: build/lab${suffix}/id_ed25519
  kubeha:loadBalancer:
${load_balancer}
  kubeha:controlPlanes: $(host_list cp)
  kubeha:workers: $(host_list w)
$(kubernetes_settings)
${salt}
CONFIG
}

write_env() {
    cat > "${lab_dir}/env" <<ENV
# source this: pulumi (the engine kubeha built, or yours) on PATH, the lab stack and its state.
export KUBEHA_ROOT="${root}" ENGINE_DIR="${ENGINE_DIR}" STATE_DIR="${lab_dir}/state"
source "${root}/tools/engine/env.sh"
export PULUMI_STACK=${stack}
ENV
}

site_balancer() {  # LAB_LB_MODE=external: haproxy on lb1 in front of the control planes, the lab's own
    local servers=() name
    while read -r name; do
        [[ "${name}" == cp* ]] && servers+=("    server ${name} $("${lab}" address "${name}"):6443 check check-ssl verify none")
    done < "${lab_dir}/hosts"
    "${lab}" ssh lb1 "{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy; } </dev/null >/dev/null && cat > /etc/haproxy/haproxy.cfg && systemctl restart haproxy" <<SITE
# The site's balancer of the lab (tests/lab/lab-stack.sh, LAB_LB_MODE=external): not kubeha's.
global
    log /dev/log local0
defaults
    mode tcp
    retries 3
    option redispatch
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend apiserver
    bind :8443
    default_backend apiserver
backend apiserver
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 1s fall 2 rise 2
$(printf '%s\n' "${servers[@]}")
SITE
}

up() {
    if ! lab_running; then
        "${lab}" down >/dev/null 2>&1 || true
        rm -rf "${lab_dir}/state" "${stack_file}"   # fresh hosts: no state to keep
        # shellcheck disable=SC2086 # word splitting of the host list is wanted
        "${lab}" up ${hosts}
        echo "${options}" > "${lab_dir}/options"
    else
        echo "lab-stack: reusing the running lab (${options})"
    fi
    mkdir -p "${lab_dir}/state"
    if [ "${mode}" = external ]; then
        site_balancer
    fi
    write_stack_config
    write_env
    # shellcheck source=/dev/null
    source "${lab_dir}/env"
    cd "${root}"
    pulumi stack select --create "${stack}" >/dev/null
    local started=${EPOCHREALTIME}
    pulumi up --yes --skip-preview --non-interactive
    awk -v now="${EPOCHREALTIME}" -v started="${started}" 'BEGIN {printf "%.1f\n", now - started}' \
        > "${lab_dir}/last-up.seconds"
    echo "lab stack up in $(cat "${lab_dir}/last-up.seconds") s; run \`source build/lab${suffix}/env\` to use pulumi against it"
}

destroy() {
    if [ -s "${lab_dir}/hosts" ] && ! grep -q stopped <<< "$("${lab}" status)" && [ -f "${lab_dir}/env" ]; then
        # shellcheck source=/dev/null
        source "${lab_dir}/env"
        cd "${root}"
        pulumi destroy --yes --skip-preview --non-interactive || echo "pulumi destroy failed; the hosts go anyway" >&2
    fi
    rm -rf "${lab_dir}/state" "${lab_dir}/env" "${stack_file}"
}

case "${1:-}" in
    up) up ;;
    destroy) destroy ;;
    *) echo "usage: $0 up | destroy" >&2; exit 2 ;;
esac
