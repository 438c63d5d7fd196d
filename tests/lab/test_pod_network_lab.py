"""The pod network's objects on the lab's real Kubernetes (the kube-vip cluster, real
pulumi-kubernetes provider and apiserver): an object whose create reached the cluster but not the
stack's state is created again over it, even where another field manager changed it since.
"""
from __future__ import annotations

import json

import pytest

from tests.lab.cluster import kubectl

pytestmark = pytest.mark.lab
DAEMON_SET = ("-n", "kube-flannel", "daemonset", "kube-flannel-ds")


def daemon_set(kubeconfig_file) -> dict:
    result = kubectl(kubeconfig_file, "get", "-o", "json", *DAEMON_SET)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def created_again(lab_stack, kubeconfig_file) -> dict:
    """flannel's DaemonSet taken out of the state (as after a connection reset half way through its
    create), its `tier` label changed by another field manager, then `pulumi up`: the DaemonSet after."""
    uid = daemon_set(kubeconfig_file)["metadata"]["uid"]
    labelled = kubectl(kubeconfig_file, "label", "--overwrite", "--field-manager=someone-else", *DAEMON_SET,
                       "tier=changed")
    assert labelled.returncode == 0, labelled.stderr
    lab_stack.forget("network-daemonset-kube-flannel-ds")
    up = lab_stack.pulumi("up", "--yes", "--skip-preview")
    assert "network-daemonset-kube-flannel-ds" in up.stdout
    after = daemon_set(kubeconfig_file)
    assert after["metadata"]["uid"] == uid  # applied over the object, never deleted and made again
    return after


def test_the_object_is_created_again_over_another_managers_change(created_again):
    assert created_again["metadata"]["labels"]["tier"] == "node"


def test_the_next_preview_changes_nothing(created_again, lab_stack):
    assert lab_stack.pulumi("preview", "--diff", "--expect-no-changes").returncode == 0
