"""The quorum-loss scenarios on the lab's static-pods cluster, shared by the restore tests
(test_etcd_restore_lab) and the restore benchmark (bench/restore):
- quorum lost: data written, a backup taken by hand on cp1, cp2 and cp3 powered off, then the
  documented change for `etcd.restore`;
- every control plane lost: lb1 made the copy host (etcd.backup.copyTo), a backup taken by hand
  and copied, every control plane powered off, then the documented change for a restore onto new
  hosts cp6-cp8 from the copy.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.lab.cluster import LabStack, kubectl, wait_for
from tests.lab.copy_host import make_copy_host, set_copy_to
from tests.lab.hosts import lab

DIRECTORY = "/var/lib/kubeha/etcd-backup"
NAMESPACE = "kubeha-restore"
LOST = ("cp2", "cp3")
NEW_HOSTS = ("cp6", "cp7", "cp8")
COPY_HOST = "lb1"  # outside the cluster in the static-pods topology


def newest_backup(stack: LabStack, node: str) -> str:
    return json.loads(stack.hosts[node].run(f"cat {DIRECTORY}/latest.json").stdout)["file"]


def write_configmaps(kubeconfig: Path, count: int, manifests: Path) -> None:
    """`count` ConfigMaps data-0.. in NAMESPACE."""
    manifests.write_text("\n---\n".join(
        [f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NAMESPACE}}}"]
        + [f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: data-{index}, namespace: {NAMESPACE}}}\n"
           f"data: {{index: '{index}'}}" for index in range(count)]) + "\n")
    # Idempotent, so tried again: on a loaded machine a fresh cluster's first large write may meet
    # a TLS handshake timeout (kubectl's 10 s), which is about the machine, not the cluster.
    for _ in range(3):
        applied = kubectl(kubeconfig, "apply", "-f", str(manifests), timeout=180)
        if applied.returncode == 0:
            break
    assert applied.returncode == 0, applied.stderr


def backup_by_hand(stack: LabStack) -> str:
    """A backup taken now on cp1 (`systemctl start kubeha-etcd-backup.service`): its path there."""
    stack.hosts["cp1"].run("systemctl start kubeha-etcd-backup.service")
    return newest_backup(stack, "cp1")


def configmaps_back(kubeconfig: Path) -> int:
    listed = kubectl(kubeconfig, "-n", NAMESPACE, "get", "configmaps", "-o", "name")
    return len([line for line in listed.stdout.split() if line.startswith("configmap/data-")])


def api_answers(kubeconfig: Path) -> bool:
    """Whether /readyz answers ok within 10 s (without a quorum a request may hang, not fail)."""
    try:
        return kubectl(kubeconfig, "get", "--raw", "/readyz", timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def lose_quorum(stack: LabStack, kubeconfig: Path) -> None:
    """cp2 and cp3 powered off; returns once the API stops answering (etcd has no quorum)."""
    for name in LOST:
        lab("power-off", name)
        stack.hosts.pop(name)
    assert wait_for(lambda: not api_answers(kubeconfig), 120)


def set_restore(stack: LabStack, backup: str) -> None:
    """The documented change: the lost control planes marked unreachable, etcd.restore on cp1."""
    entries = stack.config_value("controlPlanes")
    for entry in entries:
        if entry["name"] in LOST:
            entry["decommission"] = "unreachable"
    stack.set_config_value("controlPlanes", entries)
    stack.set_config_value("etcd", {"restore": {"backup": backup, "on": "cp1"}})


def copy_backups_to_lb1(stack: LabStack, folder: Path) -> None:
    """lb1 booted and made the copy host; etcd.backup.copyTo set to it and rolled out (each
    control plane's install takes a backup, copied there)."""
    host = stack.add_host(COPY_HOST)
    set_copy_to(stack, host, make_copy_host(host, folder))
    stack.pulumi("up", "--yes", "--skip-preview", timeout=1200)


def backup_copied(stack: LabStack, node: str) -> str:
    """A backup taken now on `node`, and copied: its path on the copy host."""
    stack.hosts[node].run("systemctl start kubeha-etcd-backup.service")
    copied = json.loads(stack.hosts[node].run(f"cat {DIRECTORY}/latest.json").stdout)["copiedTo"]
    assert copied.startswith(f"{stack.hosts[COPY_HOST].address}:"), copied
    return copied.split(":", 1)[1]


def lose_every_control_plane(stack: LabStack, kubeconfig: Path) -> list[str]:
    """Every control plane powered off; returns their names once the API stops answering."""
    lost = [entry["name"] for entry in stack.config_value("controlPlanes") if not entry.get("decommission")]
    for name in lost:
        lab("power-off", name)
        stack.hosts.pop(name)
    assert wait_for(lambda: not api_answers(kubeconfig), 120)
    return lost


def set_restore_onto_new_hosts(stack: LabStack, copied: str) -> None:
    """The documented change: every old control plane marked unreachable, cp6-cp8 booted and
    added, etcd.restore from the copy host's `copied` on cp6."""
    entries = [{**entry, "decommission": "unreachable"} for entry in stack.config_value("controlPlanes")]
    entries += [{"name": name, "address": stack.add_host(name).address} for name in NEW_HOSTS]
    stack.set_config_value("controlPlanes", entries)
    for key, value in (("backup", copied), ("on", NEW_HOSTS[0]), ("fromCopyHost", "true")):
        stack.pulumi("config", "set", "--path", f"etcd.restore.{key}", value)
