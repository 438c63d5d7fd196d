"""kubernetes.kubelet and kubernetes.kubeProxy changed on a built cluster: each node's kubelet
one node at a time (the lead's step updates the cluster's kubelet-config first), kube-proxy by
one step on the lead. The lab rolls both out on real Kubernetes (tests/lab/test_cluster_lab.py)."""
from __future__ import annotations

from typing import Any

from tests.harness import Deployment
from tests.validators import heredoc, inner_script, kubeadm_validate

NODES = ("cp1", "cp2", "cp3", "w1", "w2")
KUBE_PROXY = "cluster-kube-proxy-settings"


def kubelet_step(node: str) -> str:
    return f"{node}-kubelet-settings"


def script(deployment: Deployment, name: str) -> str:
    return inner_script(deployment.named(name).inputs["create"])


def test_one_kubelet_changes_at_a_time_control_planes_first(deployment):
    for earlier, later in zip(NODES, NODES[1:], strict=False):
        assert deployment.depends_on(kubelet_step(later), kubelet_step(earlier)), later


def test_the_kubelets_and_kube_proxy_change_after_the_upgrade(deployment):
    assert deployment.depends_on(kubelet_step("cp1"), "kubernetes-upgrade")
    assert deployment.depends_on(KUBE_PROXY, "kubernetes-upgrade")


def test_only_the_leads_step_updates_the_clusters_kubelet_config(deployment):
    assert 'kubeadm_logged "${log}" init phase upload-config kubelet' in script(deployment, kubelet_step("cp1"))
    for node in NODES[1:]:
        assert "upload-config" not in script(deployment, kubelet_step(node)), node


def test_the_leads_kubeadm_configuration_carries_the_kubelet_settings(deploy, stack_config: dict[str, Any]):
    stack_config["kubernetes"]["kubelet"] = {"maxPods": 50}
    config = heredoc(script(deploy(stack_config), kubelet_step("cp1")), "KUBEHA_KUBEADM_CONFIG")
    kubeadm_validate(config)
    assert "maxPods: 50" in config


def test_a_kubelet_change_changes_every_nodes_step_and_nothing_else(deploy, stack_config: dict[str, Any]):
    before = deploy(stack_config)
    stack_config["kubernetes"]["kubelet"] = {"maxPods": 50}
    after = deploy(stack_config)
    for node in NODES:
        assert script(before, kubelet_step(node)) != script(after, kubelet_step(node)), node
    for name in (KUBE_PROXY, "cp1-control-plane-settings"):
        assert script(before, name) == script(after, name), name


def test_a_kube_proxy_change_changes_its_step_and_no_kubelets(deploy, stack_config: dict[str, Any]):
    before = deploy(stack_config)
    stack_config["kubernetes"]["kubeProxy"] = {"conntrack": {"maxPerCore": 0}}
    after = deploy(stack_config)
    assert script(before, KUBE_PROXY) != script(after, KUBE_PROXY)
    for name in (*(kubelet_step(node) for node in NODES), "cp1-control-plane-settings"):
        assert script(before, name) == script(after, name), name


def test_kube_proxy_is_reconfigured_on_the_lead(deployment):
    assert deployment.named(KUBE_PROXY).target_host == "198.51.100.21"
