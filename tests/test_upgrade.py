"""The upgrade: its plan from the cluster's status (what is left, in kubeadm's order), its provider
(steps run in that order), the guard's check of the package repository, and its scripts."""
from __future__ import annotations

from typing import Any

import pytest

from components.day2 import upgrade
from components.day2.upgrade import (
    ClusterStatus,
    StepKind,
    UpgradeStep,
    _UpgradeProvider,
    plan,
    planned_steps,
)
from components.gates import release_check
from components.gates.release_check import RELEASE_MISSING
from components.gates.settings_guard import SETTINGS, _GuardProvider
from components.ssh.ssh_session import RemoteScriptFailed, ScriptResult
from tests.validators import inner_script

CONTROL_PLANES, WORKERS = ["cp1", "cp2", "cp3"], ["w1", "w2", "w3"]
ALL_AT_1_34_3 = """cluster v1.34.3
node cp1 v1.34.3
node cp2 v1.34.3
node cp3 v1.34.3
node w1 v1.34.3
node w2 v1.34.3
node w3 v1.34.3
apiserver cp1 registry.k8s.io/kube-apiserver:v1.34.3
apiserver cp2 registry.k8s.io/kube-apiserver:v1.34.3
apiserver cp3 registry.k8s.io/kube-apiserver:v1.34.3
"""
ALL_AT_1_34_4 = ALL_AT_1_34_3.replace("v1.34.3", "v1.34.4")
# Stopped half way: applied, cp2 upgraded, cp3 not; every control plane's kubelet and w1 done; w2
# drained by kubeha (held) and upgraded, but not uncordoned.
HALF_WAY = """cluster v1.34.4
node cp1 v1.34.4
node cp2 v1.34.4
node cp3 v1.34.4
node w1 v1.34.4
node w2 v1.34.4 true
node w3 v1.34.3
apiserver cp1 registry.k8s.io/kube-apiserver:v1.34.4
apiserver cp2 registry.k8s.io/kube-apiserver:v1.34.4
apiserver cp3 registry.k8s.io/kube-apiserver:v1.34.3
"""


def steps(status_text: str, max_unavailable: int = 1) -> list[tuple[StepKind, tuple[str, ...]]]:
    return [(step.kind, step.nodes)
            for step in plan(ClusterStatus.parse(status_text), "1.34.4", CONTROL_PLANES, WORKERS, max_unavailable)]


def test_the_status_is_read_from_the_scripts_lines():
    status = ClusterStatus.parse(HALF_WAY)
    assert status.configured == "v1.34.4"
    assert status.kubelets["w3"] == "v1.34.3" and status.held == frozenset({"w2"})
    assert status.apiservers == {"cp1": "v1.34.4", "cp2": "v1.34.4", "cp3": "v1.34.3"}


def test_a_whole_upgrade_is_apply_then_control_planes_then_kubelets_one_at_a_time():
    assert steps(ALL_AT_1_34_3) == [
        (StepKind.APPLY, ("cp1",)), (StepKind.CONTROL_PLANE, ("cp2",)), (StepKind.CONTROL_PLANE, ("cp3",)),
        (StepKind.KUBELET, ("cp1",)), (StepKind.KUBELET, ("cp2",)), (StepKind.KUBELET, ("cp3",)),
        (StepKind.KUBELET, ("w1",)), (StepKind.KUBELET, ("w2",)), (StepKind.KUBELET, ("w3",))]


def test_workers_go_in_batches_of_max_unavailable_workers():
    assert [nodes for kind, nodes in steps(ALL_AT_1_34_3, max_unavailable=2) if nodes[0].startswith("w")] == [
        ("w1", "w2"), ("w3",)]


def test_an_upgrade_stopped_half_way_goes_on_from_where_it_stopped():
    # w2 is at the release but still cordoned by kubeha: its step runs again, to uncordon it.
    assert steps(HALF_WAY) == [(StepKind.CONTROL_PLANE, ("cp3",)), (StepKind.KUBELET, ("w2",)),
                               (StepKind.KUBELET, ("w3",))]


def test_a_cluster_at_the_release_has_nothing_to_do():
    assert steps(ALL_AT_1_34_4) == []


def test_the_preview_plan_names_every_node_and_step():
    assert planned_steps("1.34.4", ["cp1", "cp2"], ["w1", "w2", "w3"], 2) == [
        "cp1: kubeadm upgrade apply v1.34.4", "cp2: kubeadm upgrade node v1.34.4",
        "cp1: drain, kubelet and kubectl, uncordon v1.34.4", "cp2: drain, kubelet and kubectl, uncordon v1.34.4",
        "w1, w2: drain, kubelet and kubectl, uncordon v1.34.4", "w3: drain, kubelet and kubectl, uncordon v1.34.4"]


def target(address: str) -> dict[str, Any]:
    return {"address": address, "port": 22, "user": "root"}


ADDRESSES = {"cp1": "10.0.0.1", "cp2": "10.0.0.2", "cp3": "10.0.0.3", "w1": "10.0.0.11", "w2": "10.0.0.12",
             "w3": "10.0.0.13"}
NAMES = {address: name for name, address in ADDRESSES.items()}


def props(version: str = "1.34.4") -> dict[str, Any]:
    node_scripts = {name: {"control_plane": None if name.startswith("w") else f"CP {name}", "drain": f"DRAIN {name}",
                           "kubelet": f"KUBELET {name}", "uncordon": f"UNCORDON {name}"} for name in ADDRESSES}
    return {"version": version, "control_planes": CONTROL_PLANES,
            "workers": WORKERS, "max_unavailable_workers": 1, "cluster_side": "cp1", "private_key": "KEY",
            "nodes": [{"name": name, "target": target(address)} for name, address in ADDRESSES.items()],
            "status": "STATUS", "scripts": node_scripts}


REPOSITORY_HAS_IT = ScriptResult(0, "", "")  # repository-check.sh: the release is there


class FakeCluster:
    """Answers the upgrade's scripts as the cluster would; records (host, script) in order."""

    def __init__(self, statuses: list[str], repository: ScriptResult = REPOSITORY_HAS_IT) -> None:
        self.statuses, self.repository = statuses, repository
        self.sessions: list[tuple[str, str]] = []

    def __call__(self, target, private_key, command, *, label, stdin="", check=True) -> ScriptResult:
        assert private_key == "KEY"
        self.sessions.append((NAMES[target.address], command))
        if command == "STATUS":
            return ScriptResult(0, self.statuses.pop(0), "")
        if command == "REPOSITORY":
            return self.repository
        return ScriptResult(0, "", "")


@pytest.fixture
def cluster(monkeypatch) -> FakeCluster:
    fake = FakeCluster([ALL_AT_1_34_3, ALL_AT_1_34_4])
    monkeypatch.setattr(upgrade, "run_over_ssh", fake)
    monkeypatch.setattr(release_check, "run_over_ssh", fake)
    return fake


def test_an_update_runs_each_step_on_its_host_in_order(cluster):
    _UpgradeProvider().update("kubernetes-upgrade", props("1.34.3"), props())
    assert cluster.sessions[:5] == [("cp1", "STATUS"), ("cp1", "CP cp1"), ("cp2", "CP cp2"), ("cp3", "CP cp3"),
                                    ("cp1", "DRAIN cp1")]
    # Each kubelet: drained and uncordoned from the cluster side, upgraded on the node.
    assert cluster.sessions[5:8] == [("cp1", "KUBELET cp1"), ("cp1", "UNCORDON cp1"), ("cp1", "DRAIN cp2")]
    assert cluster.sessions[-4:] == [("cp1", "DRAIN w3"), ("w3", "KUBELET w3"), ("cp1", "UNCORDON w3"),
                                     ("cp1", "STATUS")]


def test_a_new_cluster_at_its_release_is_read_once_and_left_alone(cluster):
    cluster.statuses = [ALL_AT_1_34_4]
    _UpgradeProvider().create(props())
    assert cluster.sessions == [("cp1", "STATUS")]


def test_an_upgrade_the_cluster_does_not_show_done_fails_naming_what_is_left(cluster):
    cluster.statuses = [ALL_AT_1_34_3, HALF_WAY]
    with pytest.raises(RemoteScriptFailed, match="w2: drain, kubelet and kubectl, uncordon v1.34.4; w3"):
        _UpgradeProvider().update("kubernetes-upgrade", props("1.34.3"), props())


def test_only_a_release_change_is_a_reason_to_run():
    provider = _UpgradeProvider()
    assert provider.diff("id", props(), {**props(), "workers": ["w1"]}).changes is False
    assert provider.diff("id", props("1.34.3"), props()).changes is True


RELEASE_CHECK = {"node": "cp1", "target": target("10.0.0.1"), "script": "REPOSITORY",
                 "repository": "http://repo/kubernetes/v1.34"}


def guard_failures(old: str, new: str) -> list[str]:
    """The settings guard's check of a release change, with the lead's repository check."""
    built = {"kubernetes.version": old, "controlPlanes": "cp1", "workers": "w1"}
    wanted = {**built, "kubernetes.version": new}
    result = _GuardProvider("kubeha").check({SETTINGS: built}, {SETTINGS: wanted, "release_check": RELEASE_CHECK,
                                                                 "private_key": "KEY"})
    return [failure.reason for failure in result.failures or []]


def test_a_release_the_repository_lacks_is_refused_by_the_guard(cluster):
    cluster.repository = ScriptResult(RELEASE_MISSING, "kubeadm kubelet kubectl\n", "")
    [message] = guard_failures("1.34.3", "1.34.9")
    assert message.startswith("kubeha:kubernetes.version: the package repository http://repo/kubernetes/v1.34 has "
                              "no kubeadm kubelet kubectl 1.34.9")
    assert cluster.sessions == [("cp1", "REPOSITORY")]


def test_a_release_the_repository_has_passes_the_guard(cluster):
    assert guard_failures("1.34.3", "1.34.4") == []


@pytest.mark.parametrize("old", ["1.34.4", "1.34.5"], ids=["same", "downgrade"])
def test_no_repository_read_without_an_upgrade(cluster, old):
    guard_failures(old, "1.34.4")
    assert cluster.sessions == []


@pytest.fixture
def upgrade_scripts(deployment) -> dict[str, str]:
    return {name.removeprefix("kubernetes-upgrade:"): inner_script(script)
            for name, script in deployment.scripts().items() if name.startswith("kubernetes-upgrade:")}


def test_kubeadm_upgrade_apply_runs_on_the_lead_and_upgrade_node_on_the_others(upgrade_scripts):
    assert "kubeadm upgrade apply --yes v1.34.4" in upgrade_scripts["cp1:control_plane"]
    assert "kubeadm upgrade apply" not in upgrade_scripts["cp2:control_plane"]
    assert "kubeadm upgrade node" in upgrade_scripts["cp2:control_plane"]


def test_a_worker_takes_its_kubelet_configuration_from_the_cluster_a_control_plane_has_it(upgrade_scripts):
    assert "kubeadm upgrade node" in upgrade_scripts["w1:kubelet"]
    assert "kubeadm upgrade node" not in upgrade_scripts["cp2:kubelet"]


def test_the_drain_marks_what_kubeha_cordons_and_uses_the_drain_timeout(upgrade_scripts):
    drain = upgrade_scripts["w1:drain"]
    assert "kubectl annotate node \"${node}\" kubeha.io/upgrade-cordoned=true" in drain
    assert "--timeout=180s" in drain


def test_the_repository_check_reads_the_minor_releases_index(deployment):
    script = inner_script(deployment.named("cluster-settings").inputs["release_check"]["script"])
    assert 'index_url=https://pkgs.k8s.io/core:/stable:/v1.34/deb/Packages\n' in script
    assert f"exit {RELEASE_MISSING}" in script


def test_a_node_installs_kubernetes_once_and_a_member_is_left_to_the_upgrade(deployment):
    packages = deployment.named("w1-kubernetes-packages")
    assert "[ ! -f /etc/kubernetes/kubelet.conf ]" in packages.inputs["create"]
    assert "install_kubernetes_packages 1.34.4 kubeadm kubelet kubectl" in packages.inputs["create"]
    assert "1.34.4" not in deployment.named("w1-prepare").inputs["create"]


def test_the_upgrade_waits_for_every_membership_and_certificate_renewals_wait_for_it(deployment):
    assert deployment.depends_on("kubernetes-upgrade", "w1-membership")
    assert deployment.depends_on("cp1-certificates", "kubernetes-upgrade")


def test_a_step_is_described_with_its_nodes_and_release():
    assert UpgradeStep(StepKind.KUBELET, ("w1", "w2")).describe("1.34.4") == (
        "w1, w2: drain, kubelet and kubectl, uncordon v1.34.4")
