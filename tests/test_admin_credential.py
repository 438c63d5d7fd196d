"""The `kubeconfig` output's own credential: where it is issued, when it is renewed, that the old
one is revoked, and that it stays secret. The lab issues and renews it on real Kubernetes
(tests/lab/test_cluster_lab.py)."""
from __future__ import annotations

import base64
import datetime
import json
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pulumi import dynamic

from components.config.loading import parse_cluster_config
from components.config.model import ConfigError
from components.day2 import admin_credential
from components.day2.admin_credential import RENEW_AFTER_SHARE, _AdminCredentialProvider, certificate_not_after
from components.ssh.ssh_session import RemoteScriptFailed, ScriptResult, StackLogin

VALID_HOURS = 3


def kubeconfig_valid_for(hours: float) -> str:
    """A kubeconfig as `kubeadm kubeconfig user` prints it, with a certificate valid `hours`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "kubeha-admin-1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(hours=hours))
                   .sign(key, hashes.SHA256()))
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "users": [{"name": "kubeha-admin-1", "user": {
        "client-certificate-data": base64.b64encode(pem).decode(), "client-key-data": "S0VZ"}}]})


def props(*control_planes: str, validity_hours: int = VALID_HOURS) -> dict[str, Any]:
    return {"control_planes": [{"name": name, "target": {"address": f"10.0.0.{name[-1]}", "port": 22, "user": "root"}}
                               for name in control_planes],
            "validity_hours": validity_hours, "private_key": "KEY", "issue": "ISSUE", "revoke": "REVOKE",
            "user": None, "kubeconfig": None, "not_after": None, "renew_at": None}


@pytest.fixture
def runs(monkeypatch) -> list[tuple[str, str, str]]:
    """Control planes answer (cp1 is down); records (host, script, stdin) of every run."""
    recorded: list[tuple[str, str, str]] = []

    def run_over_ssh(target, private_key, command, *, label, stdin="", check=True) -> ScriptResult:
        host = {"10.0.0.1": "cp1", "10.0.0.2": "cp2", "10.0.0.3": "cp3"}[target.address]
        if host == "cp1":
            raise RemoteScriptFailed(f"{label}: no SSH session after 6 attempts")
        recorded.append((host, command, stdin))
        return ScriptResult(0, kubeconfig_valid_for(VALID_HOURS) if command == "ISSUE" else "revoked", "")
    monkeypatch.setattr(admin_credential, "run_over_ssh", run_over_ssh)
    return recorded


def test_it_is_issued_on_the_first_control_plane_that_answers(runs):
    outs = _AdminCredentialProvider().create(props("cp1", "cp2", "cp3")).outs
    assert [(host, script) for host, script, _ in runs] == [("cp2", "ISSUE")]
    assert runs[0][2] == outs["user"] + "\n" and outs["user"].startswith("kubeha-admin-")


def test_it_is_renewed_after_two_thirds_of_its_validity(runs):
    outs = _AdminCredentialProvider().create(props("cp2")).outs
    expires = datetime.datetime.fromisoformat(outs["not_after"]).timestamp()
    assert outs["renew_at"] == pytest.approx(expires - VALID_HOURS * 3600 * (1 - RENEW_AFTER_SHARE), abs=5)


def test_before_its_renewal_time_nothing_changes(monkeypatch):
    monkeypatch.setattr(admin_credential.time, "time", lambda: 1000.0)
    old = {**props("cp1"), "renew_at": 2000.0, "user": "kubeha-admin-1"}
    assert not _AdminCredentialProvider().diff("id", old, props("cp1", "cp2")).changes
    assert not _AdminCredentialProvider().diff("id", old, {**props("cp1"), "private_key": "ROTATED"}).changes


def test_past_its_renewal_time_it_changes(monkeypatch):
    monkeypatch.setattr(admin_credential.time, "time", lambda: 2000.0)
    old = {**props("cp1"), "renew_at": 2000.0, "user": "kubeha-admin-1"}
    assert _AdminCredentialProvider().diff("id", old, props("cp1")).changes


def test_another_validity_issues_a_new_one(monkeypatch):
    monkeypatch.setattr(admin_credential.time, "time", lambda: 1000.0)
    old = {**props("cp1"), "renew_at": 2000.0, "user": "kubeha-admin-1"}
    assert _AdminCredentialProvider().diff("id", old, props("cp1", validity_hours=48)).changes


def test_a_renewal_issues_the_new_one_then_revokes_the_old_one(runs):
    old = {**props("cp2"), "user": "kubeha-admin-1", "renew_at": 0.0}
    outs = _AdminCredentialProvider().update("id", old, props("cp2", "cp3")).outs
    assert [(host, script, stdin) for host, script, stdin in runs] == [
        ("cp2", "ISSUE", outs["user"] + "\n"), ("cp2", "REVOKE", "kubeha-admin-1\n")]


def test_deleting_it_revokes_it_and_an_unreachable_cluster_does_not_stop_a_destroy(runs):
    _AdminCredentialProvider().delete("id", {**props("cp2"), "user": "kubeha-admin-1"})
    assert runs == [("cp2", "REVOKE", "kubeha-admin-1\n")]
    _AdminCredentialProvider().delete("id", {**props("cp1"), "user": "kubeha-admin-1"})


def test_a_revocation_whose_recorded_key_was_rotated_uses_the_stacks_login_of_the_day(monkeypatch):
    """`pulumi up --replace` after a key rotation: the old credential's delete has only the old key."""
    keys: list[tuple[str, str, int]] = []

    def run_over_ssh(target, private_key, command, *, label, stdin="", check=True) -> ScriptResult:
        keys.append((private_key, target.user, target.port))
        if private_key != "ROTATED":
            raise RemoteScriptFailed(f"{label}: no SSH session after 6 attempts: Authentication failed.")
        return ScriptResult(0, "revoked", "")
    monkeypatch.setattr(admin_credential, "run_over_ssh", run_over_ssh)
    provider = _AdminCredentialProvider()
    config = {"kubeha:sshPrivateKey": "ROTATED", "kubeha:ssh": '{"user": "kubeha", "port": 2222}'}
    provider.configure(dynamic.ConfigureRequest(dynamic.Config(config, "kubeha")))
    provider.delete("id", {**props("cp2"), "user": "kubeha-admin-1"})
    assert keys == [("KEY", "root", 22), ("ROTATED", "kubeha", 2222)]


def test_the_login_of_the_day_is_read_from_the_key_file_the_config_names(tmp_path):
    (tmp_path / "key").write_text("FROM-FILE")
    config = {"kubeha:ssh": json.dumps({"privateKeyPath": str(tmp_path / "key")})}
    login = StackLogin.from_config(dynamic.Config(config, "kubeha").get)
    assert login == StackLogin(private_key="FROM-FILE")


def test_the_expiry_is_read_from_the_client_certificate():
    expires = certificate_not_after(kubeconfig_valid_for(10))
    remaining = expires - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(hours=9.9) < remaining <= datetime.timedelta(hours=10)


# Wiring ----------------------------------------------------------------------------------------

def test_it_is_issued_on_the_lead_first_then_the_others_by_name(deploy, stack_config):
    stack_config["controlPlanes"].reverse()
    candidates = deploy(stack_config).named("cluster-admin-credential").inputs["control_planes"]
    assert [candidate["name"] for candidate in candidates] == ["cp1", "cp2", "cp3"]


def test_its_ssh_key_and_kubeconfig_are_secret(deployment):
    assert {"private_key", "kubeconfig"} <= set(deployment.named("cluster-admin-credential").secret_outputs)


def test_it_comes_after_every_membership_so_a_destroy_revokes_it_before_any_reset(deployment):
    for name in ("cp1-membership", "cp3-membership", "w2-membership"):
        assert deployment.depends_on("cluster-admin-credential", name), name


def test_the_scripts_get_the_validity_and_the_user_on_stdin_only(deployment):
    inputs = deployment.named("cluster-admin-credential").inputs
    assert '--validity-period "8760h"' in inputs["issue"] and 'read -r user' in inputs["revoke"]


def test_its_expiry_is_a_stack_output(deployment):
    assert deployment.exports["kubeconfigExpires"] == "2027-12-03T00:00:00+00:00"


def test_a_validity_out_of_range_is_refused_naming_the_key(stack_config):
    stack_config["kubernetes"]["kubeconfigValidityHours"] = 0
    with pytest.raises(ConfigError, match=r"kubeha:kubernetes.kubeconfigValidityHours"):
        parse_cluster_config(stack_config)
