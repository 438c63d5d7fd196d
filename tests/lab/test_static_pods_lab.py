"""loadBalancer.mode static-pods on the lab's real Kubernetes: haproxy and keepalived run as static
pods on every control plane, placed before `kubeadm init`/`join`, under the image names the
product pins (the lab's images hold Debian's haproxy and keepalived; see docs/lab.md).

Real end to end: the kubelets start the pods before the apiservers exist, keepalived puts the
VIP on one control plane, every node joins through VIP:8443, and when the holder's haproxy goes
its keepalived gives the VIP up.
"""
from __future__ import annotations

import pytest

from tests.lab.cluster import PORT, VIP, LabStack, assert_readyz_through, kubectl, running_pod, wait_for
from tests.lab.clusters import TOPOLOGIES
from tests.lab.hosts import lab_address

pytestmark = pytest.mark.lab
CONTROL_PLANES = ("cp1", "cp2", "cp3")
WORKERS = TOPOLOGIES["static-pods"].options.workers  # one: a second proved the same again
HAPROXY_MANIFEST = "/etc/kubernetes/manifests/haproxy.yaml"
HAPROXY_AWAY = "/etc/kubernetes/haproxy.yaml.stopped-by-test"


def holders(lab_stack: LabStack) -> list[str]:
    return [name for name in CONTROL_PLANES if lab_stack.hosts[name].holds(VIP)]


@pytest.mark.parametrize("pod, image", [("haproxy", "docker.io/library/haproxy:3.0.7"),
                                        ("keepalived", "docker.io/osixia/keepalived:2.0.20")])
@pytest.mark.parametrize("node", CONTROL_PLANES)
def test_the_load_balancer_pods_run_on_every_control_plane(kubeconfig_file, node, pod, image):
    assert running_pod(kubeconfig_file, f"{pod}-{node}")["spec"]["containers"][0]["image"] == image


def test_one_control_plane_holds_the_vip_and_it_serves_the_apiserver(lab_stack, kubeconfig_file):
    assert len(holders(lab_stack)) == 1
    assert_readyz_through(kubeconfig_file, f"{VIP}:{PORT}")


@pytest.mark.parametrize("node", WORKERS)  # control planes: their own apiserver (kubeadm >= 1.33)
def test_nodes_joined_through_the_vip(lab_stack, node):
    kubelet_conf = lab_stack.hosts[node].run("cat /etc/kubernetes/kubelet.conf").stdout
    assert f"server: https://{VIP}:{PORT}" in kubelet_conf


@pytest.mark.parametrize("node", CONTROL_PLANES)
def test_every_haproxy_balances_over_the_three_apiservers(lab_stack, node):
    config = lab_stack.hosts[node].run("cat /etc/haproxy/haproxy.cfg").stdout
    for address in (lab_address(21), lab_address(22), lab_address(23)):
        assert f" {address}:6443\n" in config, (node, address)


def test_no_host_daemon_runs_beside_the_pods(lab_stack):
    for name in CONTROL_PLANES:
        result = lab_stack.hosts[name].run("systemctl is-active haproxy keepalived", check=False)
        assert result.stdout.split() == ["inactive", "inactive"], name


def test_a_second_up_changes_nothing(lab_stack):
    result = lab_stack.pulumi("preview", "--diff", "--expect-no-changes")
    assert result.returncode == 0


def test_the_vip_moves_when_the_holders_haproxy_stops(lab_stack, kubeconfig_file):
    [holder] = holders(lab_stack)
    host = lab_stack.hosts[holder]
    host.run(f"mv {HAPROXY_MANIFEST} {HAPROXY_AWAY}")  # the kubelet stops haproxy; the check fails
    try:
        assert wait_for(lambda: not host.holds(VIP), 60), f"{holder} kept the VIP"
        assert wait_for(lambda: len(holders(lab_stack)) == 1, 30), "no new holder"
        assert wait_for(lambda: kubectl(kubeconfig_file, "get", "--raw", "/readyz").returncode == 0, 30)
    finally:
        host.run(f"mv {HAPROXY_AWAY} {HAPROXY_MANIFEST}")
