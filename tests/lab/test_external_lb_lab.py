"""loadBalancer.mode external on the lab's real Kubernetes: the site's own balancer in front of the
control planes. The lab plays the site: a plain haproxy on lb1 (Debian's), configured by the lab
itself (tests/lab/lab-stack.sh), never by kubeha, at lb1:8443 = loadBalancer.endpoint, forwarding
to cp1-cp3's 6443 with a `GET /readyz` check. kubeha runs no balancer of its own: the cluster is
built through it, and the `loadBalancerBackends` output says what the site must forward to.
"""
from __future__ import annotations

import pytest

from tests.lab.cluster import assert_readyz_through, kubectl, wait_for
from tests.lab.clusters import TOPOLOGIES
from tests.lab.hosts import lab_address
from tests.lab.probe import Prober

pytestmark = pytest.mark.lab
CONTROL_PLANES = ("cp1", "cp2", "cp3")
WORKERS = TOPOLOGIES["external-lb"].options.workers
ENDPOINT = f"{lab_address(11)}:8443"  # lb1, the site's balancer


def test_the_endpoint_is_the_sites_balancer(lab_stack, kubeconfig_file):
    assert lab_stack.output("controlPlaneEndpoint") == f"https://{ENDPOINT}"
    assert lab_stack.output("vip") is None and lab_stack.output("loadBalancers") == []
    assert_readyz_through(kubeconfig_file, ENDPOINT)  # TLS verified: the endpoint is in the certificate


def test_kubeha_runs_no_balancer_of_its_own(lab_stack):
    for name in (*CONTROL_PLANES, *WORKERS):
        host = lab_stack.hosts[name]
        assert host.run("ls /etc/kubernetes/manifests 2>/dev/null || true").stdout.split() == (
            ["etcd.yaml", "kube-apiserver.yaml", "kube-controller-manager.yaml", "kube-scheduler.yaml"]
            if name in CONTROL_PLANES else []), name
        assert host.run("systemctl is-active nginx haproxy keepalived", check=False).stdout.split() == [
            "inactive"] * 3, name


@pytest.mark.parametrize("node", WORKERS)  # control planes: their own apiserver (kubeadm >= 1.33)
def test_nodes_joined_through_the_sites_balancer(lab_stack, node):
    assert f"server: https://{ENDPOINT}" in lab_stack.hosts[node].run("cat /etc/kubernetes/kubelet.conf").stdout


def test_the_backends_output_is_what_the_site_forwards_to(lab_stack):
    backends = lab_stack.output("loadBalancerBackends")
    assert [(backend["name"], backend["address"]) for backend in backends] == [
        (name, f"{lab_address(21 + index)}:6443") for index, name in enumerate(CONTROL_PLANES)]
    site = lab_stack.hosts["lb1"].run("cat /etc/haproxy/haproxy.cfg").stdout
    assert all(f" {backend['address']} check" in site for backend in backends)


def test_a_second_up_changes_nothing(lab_stack):
    assert lab_stack.pulumi("preview", "--diff", "--expect-no-changes").returncode == 0


def test_a_control_plane_stopped_behind_the_sites_balancer_leaves_the_api_serving(lab_stack):
    host, port = ENDPOINT.rsplit(":", 1)
    prober = Prober(host, int(port), lab_stack.cluster_ca, interval=0.05, timeout=3, max_seconds=60,
                    max_probes=1200, retries=1).start()
    try:
        lab_stack.stop_apiserver("cp2")
        wait_for(lambda: prober.now() > 10, 20)
    finally:
        lab_stack.start_apiserver("cp2")
        results = prober.stop()
    assert len(results) > 100
    assert [result for result in results if not result.ok] == []


def test_a_new_control_plane_is_a_new_backend(lab_stack, kubeconfig_file):
    entries = lab_stack.config_value("controlPlanes")
    lab_stack.set_config_value("controlPlanes", [*entries, {"name": "cp4", "address": lab_stack.add_host("cp4").address}])
    lab_stack.pulumi("up", "--yes", "--skip-preview", timeout=1200)
    assert lab_stack.output("loadBalancerBackends")[-1]["address"] == f"{lab_address(24)}:6443"
    assert "cp4" in kubectl(kubeconfig_file, "get", "nodes").stdout
