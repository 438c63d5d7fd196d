"""loadBalancer.mode kube-vip on the lab: the first control plane's bootstrap on Kubernetes 1.31.

No kubelet or kube-vip can run here. The kubeadm TEST STAND-IN does at init what kube-vip's
static pod would do on the first control plane (take its Lease with the kubeconfig it mounts,
then hold the VIP) and fails the way the real pair fails when that kubeconfig is admin.conf on
>= 1.29. So this checks the product's super-admin.conf dance end to end — not kube-vip itself,
and not its leader election or failover.
"""
from __future__ import annotations

import pytest

from tests.lab.cluster import LabStack, fresh_cluster, kubectl

pytestmark = pytest.mark.lab
VIP = "10.250.0.100"
MANIFEST = "/etc/kubernetes/manifests/kube-vip.yaml"


@pytest.fixture(scope="module")
def lab_stack() -> LabStack:
    # On the Kubernetes stand-ins until the lab builds the kube-vip image (its emulation lives there).
    with fresh_cluster("kube-vip", kubernetes="standin") as stack:
        yield stack


def test_the_first_kube_vip_took_its_lease_with_super_admin_conf(lab_stack):
    init_log = lab_stack.hosts["cp1"].run("cat /var/log/kubeha/kubeadm-init.log").stdout
    assert "[kube-vip stand-in] leader with super-admin.conf" in init_log


@pytest.mark.parametrize("node", ["cp1", "cp2", "cp3"])
def test_every_kube_vip_manifest_mounts_admin_conf_after_init(lab_stack, node):
    for path in (MANIFEST, "/etc/kubernetes/kubeha/manifests/kube-vip.yaml"):
        manifest = lab_stack.hosts[node].run(f"cat {path}").stdout
        assert "      path: /etc/kubernetes/admin.conf\n" in manifest, (node, path)
        assert "super-admin.conf\n" not in manifest.replace("super-admin.conf until", ""), (node, path)


def test_the_vip_is_on_the_first_control_plane_and_serves_the_apiserver(lab_stack, tmp_path):
    assert lab_stack.hosts["cp1"].holds(VIP)
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(lab_stack.kubeconfig())
    assert f"server: https://{VIP}:6443" in kubeconfig.read_text()
    result = kubectl(kubeconfig, "get", "--raw", "/readyz")  # TLS verified against the cluster CA
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize("node", ["cp2", "w1"])
def test_nodes_joined_through_the_vip(lab_stack, node):
    kubelet_conf = lab_stack.hosts[node].run("cat /etc/kubernetes/kubelet.conf").stdout
    assert f"server: https://{VIP}:6443" in kubelet_conf


def test_a_second_up_changes_nothing(lab_stack):
    result = lab_stack.pulumi("preview", "--diff", "--expect-no-changes")
    assert result.returncode == 0
