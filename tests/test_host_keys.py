"""HostKeys (components/ssh/host_keys): which key each host must offer, pinned or trusted on first
use, and that every connection of every kind requires it."""
from __future__ import annotations

import io
import socket
import threading
from typing import Optional

import paramiko
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from components.ssh import host_keys
from components.ssh.host_keys import required_keys, warn_unpinned
from components.ssh.ssh_session import fingerprint, host_key_over
from tests.conftest import FAKE_PRIVATE_KEY
from tests.harness import run_program

# Real-format ed25519 key lines (their blobs name their own type).
KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
KEY_B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKmW3Wk+Bs5j6Cqd0jy7nCvTz1MpBrjBO8D7kK3v5c9X"


def hosts(**pinned: str) -> list[dict]:
    return [{"name": name, "address": f"10.0.0.{index}", "port": 22.0, "pinned": pinned.get(name)}
            for index, name in enumerate(["cp1", "w1"], start=1)]


def scan_offering(**offered: Optional[str]):
    by_address = {f"10.0.0.{index}": offered.get(name) for index, name in enumerate(["cp1", "w1"], start=1)}
    return lambda address, port: by_address[address]


def test_a_new_host_is_trusted_on_first_use():
    keys, changed = required_keys("kubeha", {}, {"hosts": hosts(), "scan": True}, scan_offering(cp1=KEY_A, w1=KEY_B))
    assert (keys, changed) == ({"cp1": KEY_A, "w1": KEY_B}, [])


def test_a_recorded_key_is_required_from_then_on():
    olds = {"hosts": hosts(), "keys": {"cp1": KEY_A, "w1": KEY_B}}
    keys, changed = required_keys("kubeha", olds, {"hosts": hosts(), "scan": True}, scan_offering(cp1=KEY_A, w1=KEY_A))
    assert keys == {"cp1": KEY_A, "w1": KEY_B}
    [message] = changed
    assert message.startswith(f"kubeha:ssh.hostKeys: w1 (10.0.0.2) offers the host key {fingerprint(KEY_A)}, not "
                              f"{fingerprint(KEY_B)}")
    assert f"pulumi config set --path 'ssh.hostKeys.w1' '{KEY_A}'" in message


def test_a_pin_overrides_what_was_recorded():
    olds = {"hosts": hosts(), "keys": {"cp1": KEY_A, "w1": KEY_B}}
    keys, changed = required_keys("kubeha", olds, {"hosts": hosts(w1=KEY_A), "scan": True}, scan_offering(cp1=KEY_A, w1=KEY_A))
    assert (keys["w1"], changed) == (KEY_A, [])


def test_a_host_that_does_not_answer_keeps_its_recorded_key():
    olds = {"hosts": hosts(), "keys": {"cp1": KEY_A, "w1": KEY_B}}
    keys, changed = required_keys("kubeha", olds, {"hosts": hosts(), "scan": True}, scan_offering(cp1=KEY_A, w1=None))
    assert (keys["w1"], changed) == (KEY_B, [])


def test_a_host_at_a_new_address_is_met_anew():
    olds = {"hosts": [{**host, "address": "10.0.0.9"} if host["name"] == "w1" else host for host in hosts()],
            "keys": {"cp1": KEY_A, "w1": KEY_B}}
    keys, changed = required_keys("kubeha", olds, {"hosts": hosts(), "scan": True}, scan_offering(cp1=KEY_A, w1=KEY_A))
    assert (keys["w1"], changed) == (KEY_A, [])


def test_the_fingerprint_is_openssh_s():
    assert fingerprint(KEY_A) == "SHA256:" + fingerprint(KEY_A).split(":", 1)[1]
    assert len(fingerprint(KEY_A)) == len("SHA256:") + 43


@pytest.mark.parametrize("step", ["cp2-prepare", "w1-join"])
def test_every_command_requires_the_hosts_key(deployment, step):
    # Under mocks the recorded keys are empty, so the connection carries none; the wiring is what
    # matters: the command waits for the keys.
    assert deployment.depends_on(step, "cluster-host-keys")


def test_the_preflight_requires_the_keys_too(deployment):
    assert deployment.depends_on("cluster-preflight", "cluster-host-keys")


def test_decommissioned_hosts_are_left_out(deploy, stack_config):
    stack_config["workers"][0]["decommission"] = "unreachable"
    names = [host["name"] for host in deploy(stack_config).named("cluster-host-keys").inputs["hosts"]]
    assert "w1" not in names and "w2" in names


def test_each_host_trusted_on_first_use_is_warned_about_with_the_setting_that_pins_it(monkeypatch):
    warnings: list[str] = []
    monkeypatch.setattr(host_keys.pulumi.log, "warn", warnings.append)
    warn_unpinned({"cp1": KEY_A, "w1": KEY_B}, pinned={"w1": KEY_B})
    [warning] = warnings
    assert f"pulumi config set --path 'ssh.hostKeys.cp1' '{KEY_A}'" in warning and fingerprint(KEY_A) in warning


def test_the_key_a_real_ssh_server_offers_is_read_without_a_login():
    """paramiko's own server at the other end of a socket pair: the handshake alone gives its key."""
    private = Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption())
    server_key = paramiko.Ed25519Key.from_private_key(io.StringIO(private.decode()))
    client_side, server_side = socket.socketpair()
    server = paramiko.Transport(server_side)
    server.add_server_key(server_key)
    def serve() -> None:
        try:
            server.start_server(server=paramiko.ServerInterface())
        except (paramiko.SSHException, EOFError, OSError):
            pass  # the client leaves after the key exchange, as it should

    threading.Thread(target=serve, daemon=True).start()
    try:
        assert host_key_over(client_side) == f"ssh-ed25519 {server_key.get_base64()}"
    finally:
        server.close()


def test_nothing_answering_gives_no_key():
    client_side, server_side = socket.socketpair()
    server_side.close()
    assert host_key_over(client_side) is None


def test_a_preview_reads_no_key_and_keeps_the_recorded_ones():
    olds = {"hosts": hosts()[:1], "keys": {"cp1": KEY_A}}
    keys, changed = required_keys("kubeha", olds, {"hosts": hosts(), "scan": False}, scan_offering(cp1=KEY_B, w1=KEY_B))
    assert (keys, changed) == ({"cp1": KEY_A}, [])  # w1 is new: it gets its key at `up`


def test_the_scan_flag_is_never_stored(monkeypatch):
    monkeypatch.setattr(host_keys, "offered_host_key", lambda address, port: None)
    inputs = host_keys._HostKeysProvider("kubeha").check({}, {"hosts": hosts(), "keys": None, "scan": True}).inputs
    assert "scan" not in inputs


@pytest.mark.parametrize("preview, on_preview, scan", [(True, False, False), (True, True, True), (False, False, True)])
def test_keys_are_read_at_up_and_in_a_preview_only_when_told(stack_config, preview, on_preview, scan):
    # (The dev stack's `make preview` must connect nowhere: its hosts are documentation addresses.)
    stack_config["preflight"] = {"onPreview": on_preview}
    deployment = run_program(stack_config, {"sshPrivateKey": FAKE_PRIVATE_KEY}, preview=preview)
    assert deployment.named("cluster-host-keys").inputs["scan"] is scan


def test_a_pinned_host_is_not_read():
    read: list[str] = []
    required_keys("kubeha", {}, {"hosts": hosts(w1=KEY_A), "scan": True},
                  lambda address, port: read.append(address) or KEY_B)
    assert read == ["10.0.0.1"]  # cp1 only
