#!/bin/sh
# Lab host only: no registry is reachable from the lab, so the container images kubeadm needs
# (built on the machine by tests/lab/kubernetes, bind-mounted read-only here) are loaded into
# containerd's image store at boot, under the exact names kubeadm pulls. Already loaded: no-op.
set -eu
images=/opt/kubeha-lab/images
[ -f "${images}/list" ] || exit 0
for archive in "${images}"/*.tar; do
    ctr --namespace k8s.io images import --all-platforms "${archive}" >/dev/null
done
echo "loaded $(wc -l < "${images}/list") images into containerd"
