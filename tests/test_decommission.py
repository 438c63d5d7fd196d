"""`decommission: unreachable`: a dead host leaves the cluster without anything connecting to it."""
from __future__ import annotations

import pytest

from components.config.loading import parse_cluster_config
from components.config.model import ConfigError
from components.render import render
from tests.harness import unsecret
from tests.jail import run_in_jail

COMMAND = "command:remote:Command"


@pytest.fixture
def w2_unreachable(stack_config):
    stack_config["workers"][1]["decommission"] = "unreachable"
    return stack_config


@pytest.fixture
def cp3_unreachable(stack_config):
    stack_config["controlPlanes"][2]["decommission"] = "unreachable"
    return stack_config


def test_every_step_on_the_host_is_kept_as_it_is_and_leaves_without_its_delete(deploy, w2_unreachable):
    on_w2 = [r for r in deploy(w2_unreachable).of_type(COMMAND) if r.target_host == "198.51.100.32"]
    assert {r.name for r in on_w2} == {"w2-prepare", "w2-kubernetes-packages", "w2-containerd", "w2-join"}
    for step in on_w2:
        assert step.retain_on_delete, step.name
        assert {"connection", "create", "delete", "stdin"} <= set(step.ignore_changes), step.name


def test_its_membership_goes_so_its_removal_runs_on_a_control_plane(deploy, w2_unreachable):
    names = {r.name for r in deploy(w2_unreachable).registrations}
    assert "w2-membership" not in names and "w1-membership" in names


def test_it_is_marked_unreachable_on_a_control_plane(deploy, w2_unreachable):
    mark = deploy(w2_unreachable).named("w2-unreachable")
    assert mark.target_host == "198.51.100.21"
    assert "kubectl annotate node \"${node}\" kubeha.io/decommission=unreachable --overwrite" in mark.inputs["create"]


def removal(jail, ready: str, marked: str) -> list[list[str]]:
    """The commands the removal of w2 runs, against a cluster that answers as given."""
    script = render("control-plane/remove-node.sh.j2", node="w2", control_plane=False, cluster_side="cp1",
                    drain_timeout=180)
    node = "kubectl get node w2 -o jsonpath="
    return run_in_jail(jail, script, {"kubectl -n kube-system get configmap kubeha-teardown": ("", 1),  # no teardown
                                      "mktemp": "/tmp/drain.log",
                                      "kubectl get node w2 --ignore-not-found -o name": "node/w2",
                                      f"{node}{{.status.conditions": ready, f"{node}{{.metadata.annotations": marked})


def test_a_node_marked_unreachable_is_deleted_without_a_drain_while_it_still_reports_ready(jail):
    commands = removal(jail, ready="True", marked="unreachable")
    assert not any(command[:2] == ["kubectl", "drain"] for command in commands), commands
    assert ["kubectl", "delete", "pods", "--all-namespaces", "--field-selector", "spec.nodeName=w2", "--force",
            "--grace-period=0", "--wait=false"] in commands
    assert ["kubectl", "delete", "node", "w2", "--ignore-not-found"] in commands


def test_a_ready_node_not_marked_is_drained(jail):
    commands = removal(jail, ready="True", marked="")
    assert any(command[:3] == ["kubectl", "drain", "w2"] for command in commands), commands


def test_the_removal_deletes_a_node_that_is_not_ready_without_a_drain(deployment):
    delete = deployment.named("w2-membership").inputs["delete"]
    assert 'if [ "${ready}" = True ]; then' in delete
    assert "deleted without a drain" in delete


def test_it_is_left_out_of_the_wait_and_the_outputs(deploy, w2_unreachable):
    deployment = deploy(w2_unreachable)
    assert "w2" not in unsecret(deployment.named("network-nodes-ready").inputs["create"])
    assert [worker["name"] for worker in deployment.exports["workers"]] == ["w1"]


def test_a_decommissioned_control_plane_leaves_the_load_balancers(deploy, cp3_unreachable):
    create = deploy(cp3_unreachable).named("lb-lb1-config").inputs["create"]
    assert "server cp2 198.51.100.22:6443" in create
    assert "server cp3 " not in create


def test_the_other_steps_of_a_decommissioned_control_plane_run_elsewhere(deploy, cp3_unreachable):
    deployment = deploy(cp3_unreachable)
    assert "cp3-membership" not in {r.name for r in deployment.registrations}
    assert deployment.named("cp2-membership").target_host == "198.51.100.21"


def test_every_control_plane_decommissioned_is_refused(stack_config):
    for host in stack_config["controlPlanes"]:
        host["decommission"] = "unreachable"
    with pytest.raises(ConfigError, match="^kubeha:controlPlanes: needs at least one control plane that is not "
                                          "decommissioned"):
        parse_cluster_config(stack_config)


def test_a_load_balancer_host_cannot_be_decommissioned(stack_config):
    stack_config["loadBalancer"]["hosts"][0]["decommission"] = "unreachable"
    with pytest.raises(ConfigError, match=r"^kubeha:loadBalancer.hosts\[0\].decommission: is not a known key"):
        parse_cluster_config(stack_config)


def test_an_unknown_decommission_value_is_refused(stack_config):
    stack_config["workers"][0]["decommission"] = "gone"
    with pytest.raises(ConfigError, match=r"^kubeha:workers\[0\].decommission: "):
        parse_cluster_config(stack_config)
