"""Scheduled etcd backups (components/day2/etcd_backup) under Pulumi mocks and real validators: what
reaches each control plane, the key's secrecy, the order, and the staleness the output warns of."""
from __future__ import annotations

import base64
import datetime
import json
import re
import shutil
import subprocess

import pytest

from components.config.loading import parse_cluster_config
from components.config.model import ConfigError
from components.day2.etcd_backup import is_stale, parse_status, stale_warning
from tests.conftest import COPY_HOST_KEY, COPY_TO, FAKE_PRIVATE_KEY
from tests.harness import COMMAND, run_program, run_program_expecting_error, unsecret
from tests.validators import heredoc, inner_script, shellcheck

CONTROL_PLANES = ("cp1", "cp2", "cp3")
HOUR = 3600.0


@pytest.fixture
def install(deployment) -> str:
    """cp1's install step, the script inside its remote command."""
    return inner_script(unsecret(deployment.named("etcd-backup-cp1").inputs["create"]))


def test_every_control_plane_gets_an_install_step_and_a_status_record(deployment):
    installs = sorted(r.name for r in deployment.of_type(COMMAND) if r.name.startswith("etcd-backup-"))
    records = sorted(r.name for r in deployment.dynamic_resources() if r.name.endswith("-status"))
    assert installs == [f"etcd-backup-{name}" for name in CONTROL_PLANES]
    assert records == [f"etcd-backup-{name}-status" for name in CONTROL_PLANES]


def test_each_install_targets_its_own_control_plane(deployment, control_plane_hosts):
    for host in control_plane_hosts:
        assert deployment.named(f"etcd-backup-{host['name']}").target_host == host["address"]


def test_the_generated_key_reaches_the_hosts_on_stdin_as_a_secret(deployment):
    install = deployment.named("etcd-backup-cp1")
    assert install.input_is_secret("stdin")
    key = unsecret(install.inputs["stdin"])
    assert len(key) >= 32
    assert all(key not in script for script in deployment.scripts().values())


def test_the_key_output_and_the_kubeconfig_are_the_only_secret_outputs(deployment):
    assert deployment.secret_exports == {"kubeconfig", "etcdBackupKey"}


def test_a_configured_key_is_used_and_no_key_is_generated(stack_config):
    key = "k" * 40
    secret = {"sshPrivateKey": FAKE_PRIVATE_KEY, "etcd": json.dumps({"backup": {"encryptionKey": key}})}
    deployment = run_program(stack_config, secret)
    assert unsecret(deployment.named("etcd-backup-cp1").inputs["stdin"]) == key
    assert [r.name for r in deployment.dynamic_resources() if r.name == "etcd-backup-key"] == []


def test_a_key_stored_in_plain_text_is_refused_naming_the_key(stack_config):
    stack_config["etcd"] = {"backup": {"encryptionKey": "k" * 40}}
    error, registered = run_program_expecting_error(stack_config, {"sshPrivateKey": FAKE_PRIVATE_KEY})
    assert str(error).startswith("kubeha:etcd.backup.encryptionKey: is stored in plain text")
    assert registered == []


def test_backups_off_registers_no_backup_step(deploy, stack_config):
    stack_config["etcd"] = {"backup": {"enabled": False}}
    deployment = deploy(stack_config)
    assert [r.name for r in deployment.registrations if r.name.startswith("etcd-backup-")] == []
    assert deployment.exports["etcdBackups"] == []
    assert deployment.exports["etcdBackupKey"] is None


def test_an_upgrade_waits_for_the_backups(deployment):
    for name in CONTROL_PLANES:
        assert deployment.depends_on("kubernetes-upgrade", f"etcd-backup-{name}")


def test_the_backups_wait_for_every_node_to_be_a_member(deployment):
    assert deployment.depends_on("etcd-backup-cp1", "w2-membership")


def test_a_decommissioned_control_plane_keeps_its_step_and_loses_its_record(deploy, stack_config):
    stack_config["controlPlanes"][2]["decommission"] = "unreachable"
    deployment = deploy(stack_config)
    assert deployment.named("etcd-backup-cp3").inputs
    assert "etcd-backup-cp3-status" not in [r.name for r in deployment.registrations]


def test_the_installed_backup_script_passes_shellcheck(install):
    shellcheck(heredoc(install, "KUBEHA_BACKUP_SCRIPT"))


def test_the_backup_script_carries_the_settings(deploy, stack_config):
    stack_config["etcd"] = {"backup": {"keep": 7, "directory": "/srv/etcd-backup"}}
    install = inner_script(unsecret(deploy(stack_config).named("etcd-backup-cp2").inputs["create"]))
    script = heredoc(install, "KUBEHA_BACKUP_SCRIPT")
    assert "directory=/srv/etcd-backup\n" in script
    assert "keep=7\n" in script
    assert "-cp2.tar.enc" in script


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_the_timer_unit_takes_the_schedule_systemd_accepts(deploy, stack_config):
    stack_config["etcd"] = {"backup": {"schedule": "*-*-* 02:30:00"}}
    install = inner_script(unsecret(deploy(stack_config).named("etcd-backup-cp1").inputs["create"]))
    timer = heredoc(install, "KUBEHA_BACKUP_TIMER")
    calendar = next(line.split("=", 1)[1] for line in timer.splitlines() if line.startswith("OnCalendar="))
    assert calendar == "*-*-* 02:30:00"
    subprocess.run(["systemd-analyze", "calendar", calendar], check=True, capture_output=True)


def test_the_service_runs_the_installed_script_once_per_start(install):
    service = heredoc(install, "KUBEHA_BACKUP_SERVICE")
    assert "Type=oneshot" in service
    assert "ExecStart=/usr/local/sbin/kubeha-etcd-backup" in service


def test_a_certificate_renewal_and_an_upgrade_take_a_backup_first(deployment):
    scripts = deployment.scripts()
    renew = inner_script(scripts["cp1-certificates:renew"])
    assert renew.index("\netcd_backup_first\n") < renew.index("\nkubeadm certs renew all")
    upgrade = inner_script(scripts["kubernetes-upgrade:cp1:control_plane"])
    assert upgrade.index("\netcd_backup_first\n") < upgrade.index("\nkubeadm upgrade apply")


def test_parse_status_reads_the_hosts_answer():
    record = parse_status('{"latest": {"file": "/b/x.tar.enc", "time": "2026-12-04T10:00:00Z", "revision": 9}, '
                          '"intervalSeconds": 3600, "lastResult": "success"}')
    assert record == {"newest": {"file": "/b/x.tar.enc", "time": "2026-12-04T10:00:00Z", "revision": 9},
                      "interval_seconds": 3600, "last_result": "success"}


def _record(hours_old: float, interval: float = HOUR) -> dict:
    now = 1_800_000_000.0
    taken = datetime.datetime.fromtimestamp(now - hours_old * HOUR, datetime.timezone.utc)
    return {"newest": {"time": taken.strftime("%Y-%m-%dT%H:%M:%SZ")}, "interval_seconds": interval,
            "last_result": "success", "now": now}


def test_a_backup_within_two_intervals_is_fresh():
    record = _record(1.5)
    assert not is_stale(record, record["now"])


def test_a_backup_older_than_two_intervals_is_stale_and_warned_of():
    record = _record(2.5)
    assert is_stale(record, record["now"])
    assert "older than 2 schedule intervals" in stale_warning("cp1", record, record["now"])


def test_no_backup_at_all_is_warned_of():
    assert stale_warning("cp1", {"newest": None, "interval_seconds": HOUR, "last_result": "exit-code"}, 0.0) == (
        "etcd.backup: cp1 has no verified etcd backup (last run: exit-code); see "
        "`journalctl -u kubeha-etcd-backup.service` on cp1")


def test_a_control_planes_removal_takes_a_backup_before_its_member_goes(deployment):
    delete = deployment.named("cp2-membership").inputs["delete"]
    assert delete.index("endpoint health") < delete.index("    etcd_backup_first\n") < delete.index("member remove \"${member_id}\"")
    assert "etcd_backup_first" not in deployment.named("w1-membership").inputs["delete"]




def _with_copy(stack_config: dict, **changes: object) -> dict:
    stack_config["etcd"] = {"backup": {"copyTo": {**COPY_TO, **changes}}}
    return stack_config


@pytest.fixture
def copy_deployment(stack_config):
    secret = {"sshPrivateKey": FAKE_PRIVATE_KEY, "etcd": json.dumps({"backup": {"copyTo": COPY_TO}})}
    return run_program(stack_config, secret)


@pytest.fixture
def copy_install(copy_deployment) -> str:
    return inner_script(unsecret(copy_deployment.named("etcd-backup-cp1").inputs["create"]))


def test_the_copy_hosts_private_key_reaches_the_hosts_on_stdin_after_the_backup_key(copy_deployment):
    install = copy_deployment.named("etcd-backup-cp1")
    assert install.input_is_secret("stdin")
    backup_key, copy_key = unsecret(install.inputs["stdin"]).splitlines()
    assert len(backup_key) >= 32
    assert base64.b64decode(copy_key).decode() == FAKE_PRIVATE_KEY
    assert all(copy_key not in script and "not-a-real-key" not in script
               for script in copy_deployment.scripts().values())


def test_the_install_with_a_copy_host_passes_shellcheck_and_pins_its_key(copy_install):
    shellcheck(copy_install)
    assert f"printf 'kubeha-etcd-backup-copy %s\\n' '{COPY_HOST_KEY}'" in copy_install


def test_the_backup_script_with_a_copy_host_passes_shellcheck(copy_install):
    shellcheck(heredoc(copy_install, "KUBEHA_BACKUP_SCRIPT"))


def test_the_backup_script_sends_to_the_pinned_key_only(copy_install):
    script = heredoc(copy_install, "KUBEHA_BACKUP_SCRIPT")
    assert "-o StrictHostKeyChecking=yes" in script and "-o HostKeyAlias=kubeha-etcd-backup-copy" in script
    assert "-l kubeha-backup backup.example)" in script
    assert "copy_dir=/srv/kubeha/kubernetes\n" in script


def test_without_a_copy_host_the_install_removes_its_key(install):
    assert "rm -f /etc/kubeha/etcd-backup-copy.key /etc/kubeha/etcd-backup-copy.known_hosts" in install
    assert "ssh -i" not in heredoc(install, "KUBEHA_BACKUP_SCRIPT")


def test_a_copy_key_stored_in_plain_text_is_refused_naming_the_key(stack_config):
    error, registered = run_program_expecting_error(_with_copy(stack_config), {"sshPrivateKey": FAKE_PRIVATE_KEY})
    assert str(error).startswith("kubeha:etcd.backup.copyTo.privateKey: is stored in plain text")
    assert registered == []


@pytest.mark.parametrize("key, value, message", [
    ("host", "backup host", "must be an IP address or a DNS name"),
    ("host", "$(touch /tmp/kubeha-canary)", "must be an IP address or a DNS name"),
    ("user", "root; id", "must be a login name"),
    ("path", "/srv/x'y", "must be an absolute path"),
    ("hostKey", "ssh-ed25519 AAAA'$(id)", "must be an OpenSSH public key line"),
    ("hostKey", COPY_HOST_KEY.replace("ssh-ed25519", "ssh-rsa"), "is not a ssh-rsa key"),
    ("privateKey", "~/.ssh/id_ed25519", "must be a private key file's content"),
    ("port", 0, "must be a port between 1 and 65535"),
])
def test_a_bad_copy_setting_is_refused_naming_its_key(stack_config, key, value, message):
    with pytest.raises(ConfigError, match=rf"^kubeha:etcd\.backup\.copyTo\.{key}: .*{re.escape(message)}"):
        parse_cluster_config(_with_copy(stack_config, **{key: value}))


def test_a_multi_line_encryption_key_is_refused(stack_config):
    stack_config["etcd"] = {"backup": {"encryptionKey": "k" * 40 + "\n" + "k" * 40}}
    with pytest.raises(ConfigError, match=r"^kubeha:etcd\.backup\.encryptionKey: .*must be one line"):
        parse_cluster_config(stack_config)


def test_a_run_that_failed_after_a_fresh_backup_is_warned_of():
    record = {**_record(0.5), "last_result": "exit-code"}
    assert "the last backup run on cp1 failed (exit-code)" in stale_warning("cp1", record, record["now"])
