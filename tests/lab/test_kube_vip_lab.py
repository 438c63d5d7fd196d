"""loadBalancer.mode kube-vip on the lab's real Kubernetes: kube-vip 1.2.3 (built from its source
snapshot, under the image name the product pins) runs as a static pod on every control plane.

Real end to end: the first kube-vip takes its Lease with super-admin.conf during `kubeadm init`
(Kubernetes >= 1.29 binds admin.conf only at the end of init), every kube-vip then uses
admin.conf, the Lease holder holds the VIP, and when the holder's kube-vip goes the VIP moves.
"""
from __future__ import annotations

import json

import pytest

from tests.lab.cluster import assert_readyz_through, kubectl, running_pod, wait_for
from tests.lab.clusters import TOPOLOGIES
from tests.lab.hosts import VIP

pytestmark = pytest.mark.lab
CONTROL_PLANES = ("cp1", "cp2", "cp3")
WORKERS = TOPOLOGIES["kube-vip"].options.workers  # one: a second proved the same again
MANIFEST = "/etc/kubernetes/manifests/kube-vip.yaml"
MANIFEST_AWAY = "/etc/kubernetes/kube-vip.yaml.stopped-by-test"


def lease_holder(kubeconfig_file) -> str:
    result = kubectl(kubeconfig_file, "-n", "kube-system", "get", "lease", "plndr-cp-lock", "-o", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["spec"]["holderIdentity"]


def test_the_first_kube_vip_bootstrapped_the_vip_with_super_admin_conf(lab_stack):
    # kubeadm init reaches the cluster through the VIP, which only the first kube-vip can claim.
    assert "cp1: kube-vip uses super-admin.conf until kubeadm init is done" in lab_stack.up_output
    assert "Your Kubernetes control-plane has initialized successfully" in \
        lab_stack.hosts["cp1"].run("cat /var/log/kubeha/kubeadm-init.log").stdout


@pytest.mark.parametrize("node", CONTROL_PLANES)
def test_every_kube_vip_manifest_mounts_admin_conf_after_init(lab_stack, node):
    for path in (MANIFEST, "/etc/kubernetes/kubeha/manifests/kube-vip.yaml"):
        manifest = lab_stack.hosts[node].run(f"cat {path}").stdout
        assert "      path: /etc/kubernetes/admin.conf\n" in manifest, (node, path)
        assert "super-admin.conf\n" not in manifest.replace("super-admin.conf until", ""), (node, path)


@pytest.mark.parametrize("node", CONTROL_PLANES)
def test_kube_vip_runs_on_every_control_plane(lab_stack, kubeconfig_file, node):
    pod = running_pod(kubeconfig_file, f"kube-vip-{node}")
    assert pod["spec"]["containers"][0]["image"] == "ghcr.io/kube-vip/kube-vip:v1.2.3"


def test_the_lease_holder_holds_the_vip_and_serves_the_apiserver(lab_stack, kubeconfig_file):
    holder = lease_holder(kubeconfig_file)
    assert [name for name in CONTROL_PLANES if lab_stack.hosts[name].holds(VIP)] == [holder]
    assert_readyz_through(kubeconfig_file, f"{VIP}:6443")


@pytest.mark.parametrize("node", WORKERS)  # control planes: their own apiserver (kubeadm >= 1.33)
def test_nodes_joined_through_the_vip(lab_stack, node):
    kubelet_conf = lab_stack.hosts[node].run("cat /etc/kubernetes/kubelet.conf").stdout
    assert f"server: https://{VIP}:6443" in kubelet_conf


def test_a_second_up_changes_nothing(lab_stack):
    result = lab_stack.pulumi("preview", "--diff", "--expect-no-changes")
    assert result.returncode == 0


def test_the_vip_moves_when_the_holders_kube_vip_stops(lab_stack, kubeconfig_file):
    holder = lease_holder(kubeconfig_file)
    host = lab_stack.hosts[holder]
    host.run(f"mv {MANIFEST} {MANIFEST_AWAY}")  # the kubelet stops the pod: kube-vip leaves gracefully
    try:
        assert wait_for(lambda: not host.holds(VIP), 60), f"{holder} kept the VIP"
        others = [name for name in CONTROL_PLANES if name != holder]
        assert wait_for(lambda: any(lab_stack.hosts[name].holds(VIP) for name in others), 30), "no new holder"
        assert wait_for(lambda: kubectl(kubeconfig_file, "get", "--raw", "/readyz").returncode == 0, 30)
        assert lease_holder(kubeconfig_file) in others
    finally:
        host.run(f"mv {MANIFEST_AWAY} {MANIFEST}")
