"""The last of the lab's shared `ha` cluster (tests/lab/clusters.py): a consumer program reads its
outputs through a StackReference, then `pulumi destroy`, with one worker dead (marked unreachable
first), leaves every live host without cluster state.
"""
from __future__ import annotations

import json

import pytest

from tests.lab.cluster import PORT, ROOT, VIP
from tests.lab.hosts import lab

pytestmark = pytest.mark.lab
CONSUMER = ROOT / "examples" / "cluster-consumer"


def test_a_consumer_program_reads_the_outputs_through_a_stack_reference(lab_stack):
    consumer = "organization/kubeha-consumer/lab"
    lab_stack.pulumi("stack", "select", "--create", consumer, cwd=CONSUMER)
    lab_stack.pulumi("config", "set", "clusterStack", "organization/kubeha/lab", cwd=CONSUMER, stack=consumer)
    lab_stack.pulumi("up", "--yes", "--skip-preview", cwd=CONSUMER, stack=consumer)
    outputs = json.loads(lab_stack.pulumi("stack", "output", "--json", cwd=CONSUMER, stack=consumer).stdout)
    assert outputs["apiserverEndpoint"] == f"https://{VIP}:{PORT}"
    assert outputs["kubeconfig"] == "[secret]"
    assert outputs["controlPlaneCount"] == len(lab_stack.config_value("controlPlanes"))
    revealed = json.loads(lab_stack.pulumi("stack", "output", "--json", "--show-secrets", cwd=CONSUMER,
                                           stack=consumer).stdout)
    assert "certificate-authority-data" in revealed["kubeconfig"]
    lab_stack.pulumi("stack", "rm", "--yes", "--force", cwd=CONSUMER, stack=consumer)


def test_a_dead_worker_marked_unreachable_is_out_of_the_way_of_the_destroy(lab_stack):
    """The last live worker (w6 after the secrets module) powered off, then the documented way to
    destroy a cluster with a dead node: mark it `decommission: unreachable` and `pulumi up` (no
    step connects to it, its resources leave the stack without their delete steps); the destroy
    below then never dials it."""
    entries = lab_stack.config_value("workers")
    dead = [entry["name"] for entry in entries if "decommission" not in entry][-1]
    lab("power-off", dead)
    lab_stack.hosts.pop(dead)
    lab_stack.set_config_value("workers", [{**entry, "decommission": "unreachable"} if entry["name"] == dead else entry
                                           for entry in entries])
    lab_stack.pulumi("up", "--yes", "--skip-preview")


def test_destroy_leaves_the_hosts_without_cluster_state(lab_stack):
    nodes = [entry["name"] for entry in (*lab_stack.config_value("controlPlanes"), *lab_stack.config_value("workers"))
             if "decommission" not in entry]
    lab_stack.pulumi("destroy", "--yes", "--skip-preview")
    for name in nodes:
        host = lab_stack.hosts[name]
        # kubeadm reset empties the PKI and etcd folders (it keeps the folders themselves).
        assert host.run("find /etc/kubernetes/pki /var/lib/etcd /etc/kubernetes/admin.conf /etc/kubernetes/kubelet.conf "
                        "-type f 2>/dev/null || true").stdout.strip() == "", name
        assert host.run("pgrep -x 'kube-apiserver|etcd|kubelet'", check=False).returncode != 0, name
        # The backup timer and its key went with the control plane (the backups taken stay).
        assert host.run("test -e /etc/systemd/system/kubeha-etcd-backup.timer -o -e /etc/kubeha/etcd-backup.key",
                        check=False).returncode != 0, name
    for name in ("lb1", "lb2"):
        host = lab_stack.hosts[name]
        assert not host.holds(VIP), name
        assert host.run("test -e /etc/haproxy/haproxy.cfg", check=False).returncode != 0, name
