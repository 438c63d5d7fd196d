#!/bin/sh
# Lab host only (a systemd-nspawn container on a machine shared by every lab host), before
# anything else starts: what a real machine gives a kubelet and this container does not.
set -eu
# 1. nspawn mounts the cgroup v1 controllers read-only; the kubelet and runc create cgroups in
#    them. The host runs in a cgroup of its own in every hierarchy (lab.sh), so this is its own.
for controller in /sys/fs/cgroup/*; do
    case "${controller}" in */unified|*/systemd) continue ;; esac
    if mountpoint -q "${controller}"; then mount -o remount,rw,bind "${controller}"; fi
done
# 2. The kubelet sets these three kernel settings, which are global to the machine (only
#    /proc/sys/net is the container's own): files holding the values it wants are mounted over
#    them, so it finds them set and writes nothing the other lab hosts would see.
install -d -m 0755 /run/kubeha-lab/sysctl
for setting in vm/overcommit_memory=1 kernel/panic=10 kernel/panic_on_oops=1; do
    key="${setting%=*}"
    shadow="/run/kubeha-lab/sysctl/$(echo "${key}" | tr / .)"
    echo "${setting#*=}" > "${shadow}"
    mountpoint -q "/proc/sys/${key}" || mount --bind "${shadow}" "/proc/sys/${key}"
done
