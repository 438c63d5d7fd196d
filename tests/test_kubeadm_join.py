"""KubeadmJoin's provider (the order of its four steps, SSH sessions recorded) and its SSH sessions' key handling."""
from __future__ import annotations

import subprocess
from typing import Any

import paramiko
import pytest

from components.nodes import kubeadm_join
from components.nodes.kubeadm_join import NOT_A_MEMBER, _KubeadmJoinProvider
from components.render import TEMPLATES_DIR, render
from components.ssh import ssh_session
from components.ssh.ssh_session import RemoteScriptFailed, ScriptResult, SshTarget

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
                              ("10.0.0.1", "FORGET", "abcdef\n")]  # the token's ID only: its public half


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


FAILED_JOIN_LOG = """[preflight] Running pre-flight checks
I1204 08:00:00.000000    1234 join.go:400] [preflight] found token abcdef.0123456789abcdef in the flags
error execution phase control-plane-prepare/download-certs: error downloading certs: the key {key} is invalid
kubeadm join 10.0.0.100:8443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:{key}
[certs] Using certificateKey {key}
To see the stack trace of this error execute with --v=5 or higher
""".format(key="0f" * 32)


def test_a_failed_joins_log_tail_leaves_every_secret_out(tmp_path):
    log = tmp_path / "kubeadm-join.log"
    log.write_text(FAILED_JOIN_LOG)
    script = render("lib/kubeadm-log-tail.sh.j2") + f'kubeadm_log_tail "{log}"\n'
    shown = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True,
                           check=True).stdout
    assert "0123456789abcdef" not in shown and "0f0f0f" not in shown, shown
    assert "To see the stack trace of this error" in shown  # the rest of the tail is kept


@pytest.mark.parametrize("template, context", [
    ("node/kubeadm-join.sh.j2", "join"), ("control-plane/kubeadm-init.sh.j2", "init")])
def test_both_kubeadm_scripts_show_their_log_through_the_secret_filter(template, context):
    text = (TEMPLATES_DIR / template).read_text()
    assert '{% include "lib/kubeadm-log-tail.sh.j2" %}' in text
    assert f"kubeadm_log_tail /var/log/kubeha/kubeadm-{context}.log >&2" in text
    assert "tail -n" not in text


def test_a_target_read_back_from_a_dynamic_providers_inputs_takes_the_port_as_a_float():
    target = SshTarget.from_dict({"address": "10.0.0.3", "port": 22.0, "user": "root", "host_key": None})
    assert (target.port, type(target.port)) == (22, int)
