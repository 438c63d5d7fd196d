"""etcd.restore on the lab's real Kubernetes: the static-pods cluster (3 control planes holding the
VIP by keepalived, 1 worker) loses two control planes, and with them etcd's quorum, and comes
back from a backup of cp1's; then two new control planes join it.

Real etcd 3.6 (etcdutl snapshot restore in etcd's own image), real apiservers and kubelets. The
last module on this cluster: it leaves cp2 and cp3 powered off and gone, cp4 and cp5 in their
place.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.lab.cluster import PORT, VIP, LabStack, changed_steps, etcd_members, kubectl, ready_nodes, wait_for
from tests.lab.quorum_loss import backup_by_hand, configmaps_back, lose_quorum, set_restore, write_configmaps

pytestmark = pytest.mark.lab
CONFIGMAPS = 200


def preview_with_restore(stack: LabStack, backup: str) -> str:
    """A preview with etcd.restore set (and taken out again); what it printed."""
    stack.set_config_value("etcd", {"restore": {"backup": backup, "on": "cp1"}})
    try:
        result = stack.pulumi("preview", check=False)
    finally:
        stack.pulumi("config", "rm", "etcd")
    assert result.returncode != 0
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def backup(lab_stack, kubeconfig_file, tmp_path_factory) -> str:
    """200 ConfigMaps written, then a backup taken by hand on cp1: its path there."""
    write_configmaps(kubeconfig_file, CONFIGMAPS, tmp_path_factory.mktemp("restore") / "configmaps.yaml")
    return backup_by_hand(lab_stack)


def test_a_restore_on_a_healthy_cluster_is_refused_at_preview(lab_stack, backup):
    output = preview_with_restore(lab_stack, backup)
    assert "kubeha:etcd.restore: etcd on cp1 still has a quorum" in output


def test_a_damaged_backup_is_refused_at_preview(lab_stack, backup):
    damaged = backup.replace("-cp1.tar.enc", "-cp9.tar.enc")
    host = lab_stack.hosts["cp1"]
    host.run(f"cp {backup} {damaged} && printf 'x' | dd of={damaged} bs=1 seek=4096 conv=notrunc status=none")
    try:
        output = preview_with_restore(lab_stack, damaged)
    finally:
        host.run(f"rm -f {damaged}")
    assert f"kubeha:etcd.restore.backup: {damaged} does not decrypt with the stack's backup key or is damaged" in output


@dataclass(frozen=True)
class Restored:
    report: str  # the etcdRestore output
    pods_before: set[str]  # the worker's pods (uids) before the control planes were lost


@pytest.fixture(scope="module")
def restored(lab_stack, backup, kubeconfig_file) -> Restored:
    """cp2 and cp3 powered off (etcd loses its quorum), then the documented change: both marked
    unreachable, etcd.restore from cp1's backup, `pulumi up`."""
    pods_before = pods_on(kubeconfig_file, "w1")
    lose_quorum(lab_stack, kubeconfig_file)
    set_restore(lab_stack, backup)
    lab_stack.pulumi("up", "--yes", "--skip-preview", timeout=1200)
    return Restored(str(lab_stack.output("etcdRestore")), pods_before)


def pods_on(kubeconfig_file, node: str) -> set[str]:
    listed = kubectl(kubeconfig_file, "get", "pods", "-A", "--field-selector", f"spec.nodeName={node}",
                     "-o", "jsonpath={range .items[*]}{.metadata.uid}{'\\n'}{end}")
    assert listed.returncode == 0, listed.stderr
    return set(listed.stdout.split())


def test_the_restore_brings_the_api_back_through_the_vip(restored, kubeconfig_file):
    assert restored.report.startswith("cp1: etcd restored from")
    result = kubectl(kubeconfig_file, "--server", f"https://{VIP}:{PORT}", "get", "--raw", "/readyz")
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_every_configmap_written_before_the_backup_is_back(restored, kubeconfig_file):
    assert configmaps_back(kubeconfig_file) == CONFIGMAPS


def test_etcd_has_one_member_and_the_lost_control_planes_are_gone(restored, kubeconfig_file):
    assert etcd_members(kubeconfig_file, on="cp1") == [("started", "cp1")]
    nodes = kubectl(kubeconfig_file, "get", "nodes", "-o", "name").stdout
    assert "node/cp2" not in nodes and "node/cp3" not in nodes


def test_the_worker_kept_its_pods_and_is_ready(restored, kubeconfig_file):
    assert wait_for(lambda: "w1" in ready_nodes(kubeconfig_file), 180)
    assert restored.pods_before <= pods_on(kubeconfig_file, "w1")  # the same pods, not new ones


def test_the_restore_left_in_place_is_not_done_again(restored, lab_stack):
    steps = changed_steps(lab_stack.pulumi("preview", "--diff", "--json").stdout)
    assert [step for step in steps if step["urn"].endswith("::etcd-restore")] == []


def test_new_control_planes_join_the_restored_cluster(restored, lab_stack, kubeconfig_file):
    entries = [entry for entry in lab_stack.config_value("controlPlanes") if entry["name"] not in ("cp2", "cp3")]
    for name in ("cp4", "cp5"):
        entries.append({"name": name, "address": lab_stack.add_host(name).address})
    lab_stack.set_config_value("controlPlanes", entries)
    lab_stack.pulumi("up", "--yes", "--skip-preview", timeout=1200)
    assert sorted(etcd_members(kubeconfig_file, on="cp1")) == [("started", name) for name in ("cp1", "cp4", "cp5")]
    assert {"cp4", "cp5"} <= ready_nodes(kubeconfig_file)
