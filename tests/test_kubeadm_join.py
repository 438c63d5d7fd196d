"""KubeadmJoin's provider (the order of its four steps, SSH sessions recorded) and its SSH sessions' key handling."""
from __future__ import annotations

import subprocess
from typing import Any

import paramiko
import pytest

from components import kubeadm_join, ssh_session
from components.kubeadm_join import NOT_A_MEMBER, _KubeadmJoinProvider
from components.ssh_session import RemoteScriptFailed, ScriptResult, SshTarget

MATERIAL = "abcdef.0123456789abcdef " + "0f" * 32 + "\n"
PROPS: dict[str, Any] = {
    "node_name": "w3", "cluster_side_name": "cp1", "private_key": "KEY",
    "node": {"address": "10.0.0.3", "port": 22, "user": "root"},
    "cluster_side": {"address": "10.0.0.1", "port": 22, "user": "root"},
    "member_check": "CHECK", "mint": "MINT", "join": "JOIN", "forget": "FORGET"}


class FakeHosts:
    """Answers each script as a host would; records (address, script, stdin)."""

    def __init__(self, *, member: bool = False, join_fails: bool = False) -> None:
        self.member, self.join_fails = member, join_fails
        self.sessions: list[tuple[str, str, str]] = []

    def __call__(self, target, private_key, command, *, label, stdin="", check=True) -> ScriptResult:
        assert private_key == "KEY"
        self.sessions.append((target.address, command, stdin))
        if command == "CHECK":
            return ScriptResult(0 if self.member else NOT_A_MEMBER, "", "")
        if command == "JOIN" and self.join_fails:
            raise RemoteScriptFailed(f"{label} failed")
        return ScriptResult(0, MATERIAL if command == "MINT" else "", "")


@pytest.fixture
def hosts(monkeypatch) -> FakeHosts:
    fake = FakeHosts()
    monkeypatch.setattr(kubeadm_join, "run_over_ssh", fake)
    return fake


def test_a_new_node_gets_fresh_material_on_its_stdin_and_the_token_is_deleted_after(hosts):
    _KubeadmJoinProvider().create(PROPS)
    assert hosts.sessions == [("10.0.0.3", "CHECK", ""), ("10.0.0.1", "MINT", ""), ("10.0.0.3", "JOIN", MATERIAL),
                              ("10.0.0.1", "FORGET", MATERIAL)]


def test_a_member_gets_no_material(hosts):
    hosts.member = True
    _KubeadmJoinProvider().create(PROPS)
    assert [command for _, command, _ in hosts.sessions] == ["CHECK"]


def test_a_failed_join_still_deletes_its_token_and_fails(hosts):
    hosts.join_fails = True
    with pytest.raises(RemoteScriptFailed, match="w3: kubeadm join failed"):
        _KubeadmJoinProvider().create(PROPS)
    assert [command for _, command, _ in hosts.sessions] == ["CHECK", "MINT", "JOIN", "FORGET"]


def test_no_output_holds_the_material_or_the_key(hosts):
    outs = _KubeadmJoinProvider().create(PROPS).outs
    assert "KEY" not in str(outs) and "abcdef" not in str(outs)


def test_no_edit_makes_a_node_join_again():
    assert _KubeadmJoinProvider().diff("w3", PROPS, {**PROPS, "join": "OTHER"}).changes is False



ED25519_HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


@pytest.mark.parametrize("port, known_as", [(22, "10.0.0.3"), (2222, "[10.0.0.3]:2222")])
def test_a_pinned_host_key_is_known_under_the_name_openssh_uses(port, known_as):
    client = ssh_session._client(SshTarget(address="10.0.0.3", port=port, user="root", host_key=ED25519_HOST_KEY))
    assert client.get_host_keys().lookup(known_as)["ssh-ed25519"].get_base64() == ED25519_HOST_KEY.split()[1]


@pytest.mark.parametrize("key_type, paramiko_type", [("ed25519", paramiko.Ed25519Key), ("rsa", paramiko.RSAKey),
                                                     ("ecdsa", paramiko.ECDSAKey)])
def test_the_ssh_key_is_read_whatever_its_type(tmp_path, key_type, paramiko_type):
    subprocess.run(["ssh-keygen", "-q", "-t", key_type, "-N", "", "-f", str(tmp_path / "key")], check=True)
    assert isinstance(ssh_session._private_key((tmp_path / "key").read_text()), paramiko_type)


def test_an_unreadable_ssh_key_is_a_clear_error():
    with pytest.raises(RemoteScriptFailed, match="not an Ed25519, ECDSA or RSA key"):
        ssh_session._private_key("not a key")
