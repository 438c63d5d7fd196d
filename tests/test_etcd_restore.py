"""etcd.restore (components/etcd_restore) under Pulumi mocks: what is refused, what runs where,
and that every other host step waits for the restore."""
from __future__ import annotations

import pytest

from components.config import ConfigError, parse_cluster_config
from components.etcd_restore import refusals
from components.settings_guard import fixed_settings
from components.settings_guard import refusals as guard_refusals
from tests.harness import COMMAND, DYNAMIC, unsecret
from tests.validators import inner_script, shellcheck

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
    assert restore.type == DYNAMIC
    assert unsecret(restore.inputs["node"])["address"] == control_plane_hosts[0]["address"]
    assert restore.input_is_secret("key") and restore.input_is_secret("private_key")


def test_every_host_step_waits_for_the_restore(deploy, restoring):
    deployment = deploy(restoring)
    for command in deployment.of_type(COMMAND):
        assert deployment.depends_on(command.name, "etcd-restore"), command.name


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
