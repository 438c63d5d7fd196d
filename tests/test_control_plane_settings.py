"""The control plane's settings changed on a built cluster (kubernetes.apiServer,
.controllerManager, .scheduler, .audit): one step per control plane, one at a time, after the
upgrade and before certificate renewals. The lab rolls a change out on real Kubernetes
(tests/lab/test_cluster_lab.py)."""
from __future__ import annotations

from typing import Any

import pytest

from tests.harness import Deployment
from tests.validators import heredoc, inner_script, kubeadm_validate, shellcheck

STEP = "{}-control-plane-settings"


def script(deployment: Deployment, node: str) -> str:
    return inner_script(deployment.named(STEP.format(node)).inputs["create"])


@pytest.fixture
def hardened(deploy, stack_config) -> Deployment:
    """Flags on all three components and an audit policy of its own."""
    stack_config["kubernetes"].update(
        apiServer={"extraArgs": {"profiling": "false"}}, scheduler={"extraArgs": {"profiling": "false"}},
        controllerManager={"extraArgs": {"profiling": "false"}},
        audit={"policy": {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{"level": "Metadata"}]}})
    return deploy(stack_config)


def test_one_control_plane_changes_at_a_time(deployment):
    assert deployment.depends_on(STEP.format("cp2"), STEP.format("cp1"))
    assert deployment.depends_on(STEP.format("cp3"), STEP.format("cp2"))


def test_the_change_comes_after_the_upgrade_and_before_certificate_renewals(deployment):
    assert deployment.depends_on(STEP.format("cp1"), "kubernetes-upgrade")
    assert deployment.depends_on("cp1-certificates", STEP.format("cp3"))


def test_each_step_runs_on_its_own_control_plane(deployment):
    for node, address in (("cp1", "198.51.100.21"), ("cp2", "198.51.100.22"), ("cp3", "198.51.100.23")):
        assert deployment.named(STEP.format(node)).target_host == address


def test_the_kubeadm_configuration_of_each_step_is_valid_and_its_own(hardened):
    for node, address in (("cp1", "198.51.100.21"), ("cp3", "198.51.100.23")):
        config = heredoc(script(hardened, node), "KUBEHA_KUBEADM_CONFIG")
        kubeadm_validate(config)
        assert f'advertiseAddress: "{address}"' in config and "value: \"false\"" in config


def test_the_script_with_an_audit_policy_passes_shellcheck(hardened):
    shellcheck(script(hardened, "cp2"))


def test_an_audit_policy_change_changes_every_step(deploy, stack_config: dict[str, Any]):
    stack_config["kubernetes"]["audit"] = {"policy": "metadata"}
    before = deploy(stack_config)
    stack_config["kubernetes"]["audit"] = {"policy": "request"}
    after = deploy(stack_config)
    for node in ("cp1", "cp2", "cp3"):
        assert script(before, node) != script(after, node), node
        assert "level: Request" in script(after, node)


def test_a_flag_change_changes_every_step(deploy, stack_config: dict[str, Any]):
    before = deploy(stack_config)
    stack_config["kubernetes"]["scheduler"] = {"extraArgs": {"v": "2"}}
    after = deploy(stack_config)
    for node in ("cp1", "cp2", "cp3"):
        assert script(before, node) != script(after, node), node
