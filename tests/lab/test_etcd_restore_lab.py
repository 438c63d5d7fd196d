"""etcd.restore on the lab's real Kubernetes: the static-pods cluster (3 control planes holding the
VIP by keepalived, 1 worker) loses two control planes, and with them etcd's quorum, and comes
back from a backup of cp1's; then two new control planes join it. Then it loses every control
plane, and comes back on three new hosts (cp6-cp8, new addresses) from the copy of a backup that
etcd.backup.copyTo sent to lb1, which stands in for the site's copy host.

Real etcd 3.6 (etcdutl snapshot restore in etcd's own image), real apiservers, kubelets and
kubeadm, real OpenSSH between the hosts. The last module on this cluster: it leaves cp1-cp5
powered off and gone, cp6-cp8 in their place.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.lab.cluster import PORT, VIP, LabStack, changed_steps, etcd_members, kubectl, ready_nodes, wait_for
from tests.lab.quorum_loss import (
    NAMESPACE,
    NEW_HOSTS,
    backup_by_hand,
    backup_copied,
    configmaps_back,
    copy_backups_to_lb1,
    lose_every_control_plane,
    lose_quorum,
    set_restore,
    set_restore_onto_new_hosts,
    write_configmaps,
)

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
    """The node's pods, each as `uid namespace/name` (a new pod of the same name has another uid)."""
    listed = kubectl(kubeconfig_file, "get", "pods", "-A", "--field-selector", f"spec.nodeName={node}",
                     "-o", "jsonpath={range .items[*]}{.metadata.uid} {.metadata.namespace}/{.metadata.name}"
                           "{'\\n'}{end}")
    assert listed.returncode == 0, listed.stderr
    return set(listed.stdout.strip().splitlines())


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
    gone = restored.pods_before - pods_on(kubeconfig_file, "w1")
    assert not gone, gone  # the same pods, not new ones


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


KUBELET_CONF = "/etc/kubernetes/kubelet.conf"


@dataclass(frozen=True)
class RestoredOntoNewHosts:
    copied: str  # the copy restored from, on lb1
    pods_before: set[str]
    kubelet_conf_before: str  # the worker's kubelet.conf checksum before every control plane was lost
    kubeconfig: Path  # the stack's kubeconfig output after the restore


@pytest.fixture(scope="module")
def onto_new_hosts(restored, lab_stack, kubeconfig_file, tmp_path_factory) -> RestoredOntoNewHosts:
    """lb1 made the copy host (etcd.backup.copyTo); a marker ConfigMap written, then a backup taken
    by hand on cp4 and copied; every control plane (cp1, cp4, cp5) powered off; then the
    documented change: all three marked unreachable, cp6-cp8 added, etcd.restore from lb1's copy
    on cp6 (fromCopyHost), `pulumi up`."""
    assert {"cp4", "cp5"} <= ready_nodes(kubeconfig_file)  # (the joins above)
    copy_backups_to_lb1(lab_stack, tmp_path_factory.mktemp("copy-key"))
    marker = kubectl(kubeconfig_file, "-n", NAMESPACE, "create", "configmap", "before-every-loss", "--from-literal=a=b")
    assert marker.returncode == 0, marker.stderr
    copied = backup_copied(lab_stack, "cp4")
    pods_before = pods_on(kubeconfig_file, "w1")
    kubelet_conf = lab_stack.hosts["w1"].run(f"sha256sum < {KUBELET_CONF}").stdout
    assert lose_every_control_plane(lab_stack, kubeconfig_file) == ["cp1", "cp4", "cp5"]
    set_restore_onto_new_hosts(lab_stack, copied)
    lab_stack.pulumi("up", "--yes", "--skip-preview", timeout=1800)
    kubeconfig = tmp_path_factory.mktemp("kube-new") / "config"
    kubeconfig.write_text(lab_stack.kubeconfig())
    kubeconfig.chmod(0o600)
    return RestoredOntoNewHosts(copied, pods_before, kubelet_conf, kubeconfig)


def test_onto_new_hosts_the_api_answers_through_the_vip(onto_new_hosts, lab_stack):
    assert str(lab_stack.output("etcdRestore")).startswith("cp6: etcd restored from")
    result = kubectl(onto_new_hosts.kubeconfig, "--server", f"https://{VIP}:{PORT}", "get", "--raw", "/readyz")
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_onto_new_hosts_the_data_of_the_copy_is_back(onto_new_hosts):
    assert configmaps_back(onto_new_hosts.kubeconfig) == CONFIGMAPS
    marker = kubectl(onto_new_hosts.kubeconfig, "-n", NAMESPACE, "get", "configmap", "before-every-loss")
    assert marker.returncode == 0, marker.stderr


def test_onto_new_hosts_etcd_has_the_three_new_members_and_the_old_nodes_are_gone(onto_new_hosts):
    assert etcd_members(onto_new_hosts.kubeconfig, on="cp6") == [("started", name) for name in NEW_HOSTS]
    nodes = set(kubectl(onto_new_hosts.kubeconfig, "get", "nodes", "-o", "name").stdout.split())
    assert nodes == {f"node/{name}" for name in (*NEW_HOSTS, "w1")}


def test_onto_new_hosts_the_worker_kept_its_pods_without_a_new_join(onto_new_hosts, lab_stack):
    assert wait_for(lambda: {"w1", *NEW_HOSTS} <= ready_nodes(onto_new_hosts.kubeconfig), 300)
    gone = onto_new_hosts.pods_before - pods_on(onto_new_hosts.kubeconfig, "w1")
    assert not gone, gone
    # Not joined again: its kubelet kept its credentials and its way in (the VIP).
    assert lab_stack.hosts["w1"].run(f"sha256sum < {KUBELET_CONF}").stdout == onto_new_hosts.kubelet_conf_before


def test_onto_new_hosts_the_new_control_planes_back_up_to_the_copy_host(onto_new_hosts, lab_stack):
    listed = {entry["host"]: entry for entry in lab_stack.output("etcdBackups")}
    assert sorted(listed) == list(NEW_HOSTS)
    assert all(listed[name]["copiedTo"] for name in NEW_HOSTS), listed


def test_onto_new_hosts_a_no_op_preview_changes_nothing(onto_new_hosts, lab_stack):
    assert changed_steps(lab_stack.pulumi("preview", "--diff", "--json").stdout) == []
