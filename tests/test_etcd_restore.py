"""etcd.restore (components/day2/etcd_restore) under Pulumi mocks: what is refused, what runs where,
and that every other host step waits for the restore."""
from __future__ import annotations

import base64
import json

import pytest

from components.config.loading import parse_cluster_config
from components.config.model import ConfigError
from components.day2.etcd_restore import host_key_known, refusals
from components.gates.settings_guard import fixed_settings
from components.gates.settings_guard import refusals as guard_refusals
from tests.conftest import COPY_TO, FAKE_PRIVATE_KEY
from tests.harness import COMMAND, dynamic, run_program, unsecret
from tests.validators import heredoc, inner_script, kubeadm_validate, shellcheck

BACKUP = "/var/lib/kubeha/etcd-backup/kubeha-etcd-20261204T100000Z-cp1.tar.enc"


@pytest.fixture
def restoring(stack_config) -> dict:
    """cp2 and cp3 dead, cp1 restoring from its own backup."""
    for entry in stack_config["controlPlanes"][1:]:
        entry["decommission"] = "unreachable"
    stack_config["etcd"] = {"restore": {"backup": BACKUP, "on": "cp1"}}
    return stack_config


def test_a_restore_on_a_host_that_is_no_live_control_plane_is_refused(restoring):
    restoring["etcd"]["restore"]["on"] = "cp2"
    with pytest.raises(ConfigError, match=r"^kubeha:etcd.restore.on: 'cp2' is not a control plane"):
        parse_cluster_config(restoring)


@pytest.mark.parametrize("path", ["backup.tar.enc", "/var/lib/kubeha/etcd-backup/other.tar",
                                  "/var/lib/kubeha/x/kubeha-etcd-20261204T100000Z-cp1.tar.enc; rm -rf /"])
def test_a_backup_path_that_is_no_backup_file_is_refused(restoring, path):
    restoring["etcd"]["restore"]["backup"] = path
    with pytest.raises(ConfigError, match=r"^kubeha:etcd.restore.backup: must be the absolute path of a kubeha backup"):
        parse_cluster_config(restoring)


def test_the_guard_lets_a_restore_take_the_lost_control_planes_away_in_one_run(restoring, stack_config):
    built = fixed_settings(parse_cluster_config({**restoring, "etcd": {}, "controlPlanes": [
        {k: v for k, v in entry.items() if k != "decommission"} for entry in restoring["controlPlanes"]]}))
    assert guard_refusals("kubeha", built, fixed_settings(parse_cluster_config(restoring))) == []


def test_without_a_restore_the_guard_still_refuses_two_removals(restoring):
    restoring["etcd"] = {}
    plain = {**restoring, "controlPlanes": [{k: v for k, v in entry.items() if k != "decommission"}
                                            for entry in restoring["controlPlanes"]]}
    messages = guard_refusals("kubeha", fixed_settings(parse_cluster_config(plain)),
                              fixed_settings(parse_cluster_config(restoring)))
    assert any("removes 2 control planes at once" in message for message in messages)


def test_the_restore_runs_on_its_control_plane_with_the_key_as_a_secret(deploy, restoring, control_plane_hosts):
    restore = deploy(restoring).named("etcd-restore")
    assert restore.type == dynamic("EtcdRestore")
    assert unsecret(restore.inputs["node"])["address"] == control_plane_hosts[0]["address"]
    assert restore.input_is_secret("key") and restore.input_is_secret("private_key")


# What comes before the restore: its own host's preparation (a new host's too) and the load
# balancers that must forward to it; nothing of them reaches the cluster.
BEFORE_THE_RESTORE = ("cp1-prepare", "cp1-kubernetes-packages", "cp1-containerd", "lb-")


def test_every_other_host_step_waits_for_the_restore(deploy, restoring):
    deployment = deploy(restoring)
    for command in deployment.of_type(COMMAND):
        if not command.name.startswith(BEFORE_THE_RESTORE):
            assert deployment.depends_on(command.name, "etcd-restore"), command.name


def test_the_restore_waits_for_its_hosts_preparation_and_the_load_balancers(deploy, restoring):
    deployment = deploy(restoring)
    for name in ("cp1-containerd", "lb-lb1-install", "lb-lb2-install"):
        assert deployment.depends_on("etcd-restore", name), name


def test_the_restore_host_rolls_first(deploy, stack_config):
    stack_config["controlPlanes"][0]["decommission"] = "unreachable"
    stack_config["etcd"] = {"restore": {"backup": BACKUP, "on": "cp3"}}
    deployment = deploy(stack_config)
    assert deployment.depends_on("cp2-containerd", "cp3-containerd")
    assert not deployment.depends_on("cp3-containerd", "cp2-containerd")


def test_the_lost_control_planes_records_are_kept_hands_off(deploy, restoring):
    deployment = deploy(restoring)
    for name in ("cp2", "cp3"):
        record = deployment.named(f"{name}-membership")
        assert record.retain_on_delete and "create" in record.ignore_changes
        assert f"{name}-unreachable" not in [r.name for r in deployment.registrations]


def test_the_restore_deletes_the_lost_control_planes_nodes(deploy, restoring):
    script = inner_script(deploy(restoring).scripts()["etcd-restore:restore"])
    assert "kubectl delete node cp2 --ignore-not-found" in script
    assert "kubectl delete node cp3 --ignore-not-found" in script


def test_a_restore_on_a_third_control_plane_is_refused(stack_config):
    stack_config["etcd"] = {"restore": {"backup": BACKUP, "on": "cp3", "force": True}}
    with pytest.raises(ConfigError, match=r"^kubeha:etcd.restore.on: must be the lead control plane \(cp1"):
        parse_cluster_config(stack_config)


def test_from_copy_host_needs_a_copy_host(restoring):
    restoring["etcd"]["restore"]["fromCopyHost"] = True
    with pytest.raises(ConfigError, match=r"^kubeha:etcd.restore.fromCopyHost: needs etcd.backup.copyTo"):
        parse_cluster_config(restoring)


def test_no_restore_no_restore_resource(deployment):
    assert "etcd-restore" not in [r.name for r in deployment.registrations]
    assert deployment.exports["etcdRestore"] is None


def test_the_restore_reports_through_an_output(deploy, restoring):
    deployment = deploy(restoring)
    assert "etcdRestore" in deployment.exports


@pytest.mark.parametrize("phase", ["check", "restore"])
def test_the_restore_scripts_pass_shellcheck(deploy, restoring, phase):
    shellcheck(inner_script(deploy(restoring).scripts()[f"etcd-restore:{phase}"]))


def test_quorum_refuses_unless_forced():
    props = {"on": "cp1", "force": False}
    failures = refusals("kubeha", {"quorum": True, "problem": ""}, props)
    assert [failure.property for failure in failures] == ["on"]
    assert failures[0].reason.startswith("kubeha:etcd.restore: etcd on cp1 still has a quorum")
    assert refusals("kubeha", {"quorum": True, "problem": ""}, {**props, "force": True}) == []


def test_a_bad_backup_is_refused_even_when_forced():
    failures = refusals("kubeha", {"quorum": False, "problem": "x.tar.enc was taken on another cluster"},
                        {"on": "cp1", "force": True})
    assert [failure.reason for failure in failures] == [
        "kubeha:etcd.restore.backup: x.tar.enc was taken on another cluster. Refused; nothing was changed."]


COPIED = "/srv/kubeha/kubernetes/kubeha-etcd-20261204T100000Z-cp1.tar.enc"


@pytest.fixture
def onto_new_hosts(stack_config) -> dict:
    """Every control plane lost: cp1-cp3 marked unreachable, cp4-cp6 new, cp4 restoring from the
    copy host's copy of a backup of cp1's."""
    for entry in stack_config["controlPlanes"]:
        entry["decommission"] = "unreachable"
    stack_config["controlPlanes"] += [{"name": f"cp{i}", "address": f"198.51.100.{40 + i}"} for i in (4, 5, 6)]
    stack_config["etcd"] = {"backup": {"copyTo": COPY_TO}, "restore": {"backup": COPIED, "on": "cp4",
                                                                       "fromCopyHost": True}}
    return stack_config


@pytest.fixture
def new_hosts_deployment(onto_new_hosts):
    secret = {"sshPrivateKey": FAKE_PRIVATE_KEY, "etcd": json.dumps(onto_new_hosts.pop("etcd"))}
    return run_program(onto_new_hosts, secret)


@pytest.mark.parametrize("phase", ["check", "restore"])
def test_a_restore_from_the_copy_host_passes_shellcheck(new_hosts_deployment, phase):
    shellcheck(inner_script(new_hosts_deployment.scripts()[f"etcd-restore:{phase}"]))


def test_the_restore_fetches_from_the_copy_host_to_its_pinned_key(new_hosts_deployment):
    script = inner_script(new_hosts_deployment.scripts()["etcd-restore:restore"])
    assert f"\"cat '{COPIED}'\"" in script and "-o StrictHostKeyChecking=yes" in script
    assert "backup=/var/lib/kubeha/etcd-backup/kubeha-etcd-20261204T100000Z-cp1.tar.enc\n" in script


def test_the_copy_hosts_key_reaches_the_restore_on_stdin(new_hosts_deployment):
    restore = new_hosts_deployment.named("etcd-restore")
    assert restore.input_is_secret("key")
    assert base64.b64decode(unsecret(restore.inputs["key"]).splitlines()[1]).decode() == FAKE_PRIVATE_KEY


def test_a_new_host_is_initialised_on_the_restored_data(new_hosts_deployment):
    script = inner_script(new_hosts_deployment.scripts()["etcd-restore:restore"])
    config = heredoc(script, "KUBEHA_KUBEADM_CONFIG")
    assert "- DirAvailable--var-lib-etcd" in config and "name: cp4" in config
    kubeadm_validate(config)


def test_the_new_restore_host_is_prepared_before_the_restore_and_the_others_after(new_hosts_deployment):
    deployment = new_hosts_deployment
    assert deployment.depends_on("etcd-restore", "cp4-containerd")
    assert not deployment.depends_on("cp4-containerd", "etcd-restore")
    assert deployment.depends_on("cp5-prepare", "etcd-restore")
    assert deployment.depends_on("cp4-join", "etcd-restore")


def test_a_host_key_not_known_yet_leaves_the_check_to_up():
    assert not host_key_known({"address": "198.51.100.44", "host_key": "04da6b54-80e4-46f7-96ec-b56ff0331ba9"})
    assert host_key_known({"address": "198.51.100.44", "host_key": COPY_TO["hostKey"]})
    assert host_key_known({"address": "198.51.100.44", "host_key": None})
