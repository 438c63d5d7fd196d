"""A Kubernetes upgrade on the lab's shared `ha` cluster (tests/lab/clusters.py): the 7-host cluster
built at UPGRADE_FROM_VERSION (1.34.3), already checked and put through faults by the modules before, is
upgraded to the lab's release (1.34.4) by `pulumi up` after `kubernetes.version` is changed, both
releases real builds served by the lab's package repository, while a 20 Hz probe reads /readyz
through the VIP. The first `up` is cut off: w2's sshd is stopped, so the run fails at w2 after
the control planes and w1 are done; the next `up` finishes it. (The numbers of an uncut upgrade:
make bench-upgrade.)
"""
from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.lab.cluster import KUBERNETES_VERSION, PORT, UPGRADE_FROM_VERSION, VIP, LabStack, etcd_members, kubectl
from tests.lab.hosts import lab
from tests.lab.probe import Prober, ProbeResult

pytestmark = pytest.mark.lab
NODES = ("cp1", "cp2", "cp3", "w1", "w2")


def sshd_on(host: str, action: str) -> None:
    """Start or stop sshd inside a lab host (through its init's namespaces: SSH is what is cut)."""
    subprocess.run(["nsenter", "-t", lab("init-pid", host), "-a", "systemctl", action, "ssh.service"], check=True,
                   timeout=60)


@dataclass(frozen=True)
class Upgrade:
    preview: str
    cut_off: subprocess.CompletedProcess  # the `up` that met w2 without sshd
    w2_after_cut: dict  # w2's node object between the two runs
    finished: subprocess.CompletedProcess
    probes: list[ProbeResult]
    seconds: dict[str, float]


@pytest.fixture(scope="module")
def upgrade(lab_stack: LabStack, kubeconfig_file) -> Upgrade:
    assert lab_stack.kubernetes_version == UPGRADE_FROM_VERSION, "the upgrade starts from a cluster at that release"
    lab_stack.pulumi("config", "set", "--path", "kubernetes.version", KUBERNETES_VERSION)
    preview = lab_stack.pulumi("preview", "--diff").stdout
    # Each probe retried once at once, as in the cluster module's removal and renewal probes (a
    # client's retry): a request that meets an apiserver as it stops is retried on another.
    prober = Prober(VIP, PORT, lab_stack.cluster_ca, interval=0.05, timeout=1, max_seconds=1800,
                    max_probes=36000, retries=1).start()
    started = time.monotonic()
    sshd_on("w2", "stop")
    try:
        cut_off = lab_stack.pulumi("up", "--yes", "--skip-preview", check=False, timeout=1500)
    finally:
        sshd_on("w2", "start")
    cut_at = time.monotonic()
    w2 = json.loads(kubectl(kubeconfig_file, "get", "node", "w2", "-o", "json").stdout)
    finished = lab_stack.pulumi("up", "--yes", "--skip-preview", check=False, timeout=1500)
    done_at = time.monotonic()
    probes = prober.stop()
    seconds = {"cut_off_up": round(cut_at - started, 1), "finishing_up": round(done_at - cut_at, 1)}
    print(f"\nupgrade {UPGRADE_FROM_VERSION} -> {KUBERNETES_VERSION}: {seconds}, "
          f"{sum(not probe.ok for probe in probes)} failed of {len(probes)} probes, "
          f"{sum(probe.attempts > 1 for probe in probes)} retried")
    return Upgrade(preview, cut_off, w2, finished, probes, seconds)


def test_the_preview_shows_the_plan_per_node(upgrade):
    for step in (f"cp1: kubeadm upgrade apply v{KUBERNETES_VERSION}", f"cp2: kubeadm upgrade node v{KUBERNETES_VERSION}",
                 f"cp3: drain, kubelet and kubectl, uncordon v{KUBERNETES_VERSION}",
                 f"w2: drain, kubelet and kubectl, uncordon v{KUBERNETES_VERSION}"):
        assert step in upgrade.preview, upgrade.preview[-3000:]


def test_the_cut_off_up_fails_naming_the_node_and_leaves_it_cordoned_by_kubeha(upgrade):
    assert upgrade.cut_off.returncode != 0
    output = upgrade.cut_off.stdout
    assert "w2: kubelet and kubectl" in output, output[output.find("Diagnostics"):][:4000]
    assert upgrade.w2_after_cut["spec"].get("unschedulable") is True
    assert upgrade.w2_after_cut["metadata"]["annotations"].get("kubeha.io/upgrade-cordoned") == "true"


def test_the_next_up_finishes_the_upgrade(upgrade):
    assert upgrade.finished.returncode == 0, upgrade.finished.stdout[-3000:] + upgrade.finished.stderr[-2000:]


def nodes(kubeconfig: Path) -> dict[str, dict]:
    items = json.loads(kubectl(kubeconfig, "get", "nodes", "-o", "json").stdout)["items"]
    return {node["metadata"]["name"]: node for node in items}


def test_every_node_runs_the_new_kubelet_and_is_schedulable(upgrade, kubeconfig_file):
    found = nodes(kubeconfig_file)
    assert {name: node["status"]["nodeInfo"]["kubeletVersion"] for name, node in found.items()} == {
        name: f"v{KUBERNETES_VERSION}" for name in NODES}
    assert [name for name, node in found.items() if node["spec"].get("unschedulable")] == []
    assert [name for name, node in found.items()
            if "kubeha.io/upgrade-cordoned" in node["metadata"].get("annotations", {})] == []


def test_every_control_plane_runs_the_new_control_plane_images(upgrade, kubeconfig_file):
    for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        pods = json.loads(kubectl(kubeconfig_file, "-n", "kube-system", "get", "pods", "-l", f"component={component}",
                                  "-o", "json").stdout)["items"]
        assert {pod["spec"]["nodeName"]: pod["spec"]["containers"][0]["image"].rsplit(":", 1)[1] for pod in pods} == {
            name: f"v{KUBERNETES_VERSION}" for name in ("cp1", "cp2", "cp3")}, component


def test_the_cluster_configuration_names_the_new_release(upgrade, kubeconfig_file):
    configuration = kubectl(kubeconfig_file, "-n", "kube-system", "get", "configmap", "kubeadm-config", "-o",
                            "jsonpath={.data.ClusterConfiguration}").stdout
    assert f"kubernetesVersion: v{KUBERNETES_VERSION}" in configuration


def test_etcd_keeps_three_started_members(upgrade, kubeconfig_file):
    assert etcd_members(kubeconfig_file) == [("started", "cp1"), ("started", "cp2"), ("started", "cp3")]


def test_the_vip_answered_every_probe_through_the_whole_upgrade(upgrade):
    assert len(upgrade.probes) > 2000  # 20 Hz over both runs
    failures = [probe for probe in upgrade.probes if not probe.ok]
    assert failures == [], failures[:5]


def test_after_the_upgrade_a_preview_changes_nothing(upgrade, lab_stack):
    result = lab_stack.pulumi("preview", "--json")
    steps = [step for step in json.loads(result.stdout).get("steps", []) if step["op"] != "same"]
    assert steps == []


def test_the_control_plane_flags_set_before_survive_the_upgrade(upgrade, lab_stack):
    """kubeadm upgrade writes the manifests from the cluster's kubeadm-config, which a settings change
    updates (the cluster module leaves kubernetes.apiServer.extraArgs.event-ttl changed)."""
    got = lab_stack.pulumi("config", "get", "--path", "kubernetes.apiServer.extraArgs.event-ttl", check=False)
    wanted = got.stdout.strip() if got.returncode == 0 else None
    for node in ("cp1", "cp2", "cp3"):
        manifest = lab_stack.hosts[node].run("cat /etc/kubernetes/manifests/kube-apiserver.yaml").stdout
        flags = [line.strip().removeprefix("- ") for line in manifest.splitlines() if "--event-ttl=" in line]
        assert flags == ([f"--event-ttl={wanted}"] if wanted else []), node
