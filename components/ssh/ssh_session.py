"""Runs a wrapped script on a host over SSH (paramiko), for the steps that must hold a secret only
in memory between two hosts (see kubeadm_join). Every other remote step goes through
pulumi-command; both are reached through SshAccess, the one place that knows how to log in."""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, cast

import paramiko

# Like the command provider's limits (remote.py): a dead host fails the step instead of hanging it.
_CONNECT_ATTEMPTS = 6
_CONNECT_TIMEOUT_S = 10
_RETRY_PAUSE_S = 5
# A `kubeadm join` waits up to about five minutes for its node; this is well beyond that.
_SCRIPT_TIMEOUT_S = 1200
# The end of a failed script's stderr that goes into the error (the scripts print what went wrong
# last, and never a secret).
_STDERR_TAIL_LINES = 40
_KEY_TYPES: tuple[type[paramiko.PKey], ...] = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)


@dataclass(frozen=True)
class SshTarget:
    """One host's login, without the private key (which is a secret and travels on its own)."""

    address: str
    port: int
    user: str
    host_key: Optional[str] = None  # an OpenSSH public-key line: pinned when set

    @classmethod
    def from_dict(cls, value: dict[str, object]) -> "SshTarget":
        # A dynamic provider's inputs come back through protobuf: the port as a float (22.0).
        return cls(address=str(value["address"]), port=int(cast(float, value["port"])), user=str(value["user"]),
                   host_key=str(value["host_key"]) if value.get("host_key") else None)


class RemoteScriptFailed(Exception):
    """A script exited non-zero, or its host could not be reached; the message says which and why."""


@dataclass(frozen=True)
class ScriptResult:
    status: int
    stdout: str
    stderr: str


def _private_key(text: str) -> paramiko.PKey:
    for key_type in _KEY_TYPES:
        try:
            return key_type.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError):
            continue
    raise RemoteScriptFailed("the SSH private key is not an Ed25519, ECDSA or RSA key paramiko can read")


def _client(target: SshTarget) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    if target.host_key:
        # Pinned: exactly this key, else the handshake fails before anything is sent.
        key_type, key_data = target.host_key.split()[:2]
        pinned = paramiko.PKey.from_type_string(key_type, base64.b64decode(key_data))
        host = target.address if target.port == 22 else f"[{target.address}]:{target.port}"
        client.get_host_keys().add(host, key_type, pinned)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
    else:
        # Unpinned hosts are accepted as they are, as the command provider accepts them.
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    return client


def offered_host_key(address: str, port: int) -> Optional[str]:
    """The host key `address` offers, as an OpenSSH public-key line ("type base64"), read by a
    handshake alone (no login); None when nothing answers there."""
    try:
        sock = socket.create_connection((address, port), timeout=_CONNECT_TIMEOUT_S)
    except OSError:
        return None
    return host_key_over(sock)


def host_key_over(sock: socket.socket) -> Optional[str]:
    """The host key the SSH server at the other end of `sock` offers (paramiko's preference
    order: ed25519 first, as the command provider pins it); None if no handshake completes."""
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=_CONNECT_TIMEOUT_S)
        key = transport.get_remote_server_key()
        return f"{key.get_name()} {key.get_base64()}"
    except (OSError, EOFError, paramiko.SSHException):
        return None
    finally:
        transport.close()


def fingerprint(key_line: str) -> str:
    """OpenSSH's SHA256 fingerprint of a public-key line, as `ssh-keygen -l` prints it."""
    digest = hashlib.sha256(base64.b64decode(key_line.split()[1])).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _connect(target: SshTarget, private_key: str) -> paramiko.SSHClient:
    key = _private_key(private_key)
    last_error: Exception = RemoteScriptFailed("no attempt made")
    for attempt in range(_CONNECT_ATTEMPTS):
        client = _client(target)
        try:
            client.connect(target.address, port=target.port, username=target.user, pkey=key,
                           timeout=_CONNECT_TIMEOUT_S, banner_timeout=_CONNECT_TIMEOUT_S,
                           auth_timeout=_CONNECT_TIMEOUT_S, allow_agent=False, look_for_keys=False)
            return client
        except paramiko.BadHostKeyException as error:
            client.close()
            raise RemoteScriptFailed(f"{target.address}: host key mismatch: the host offered "
                                     f"{error.key.get_name()} {error.key.get_base64()}, which is not the pinned key"
                                     ) from None
        except (OSError, socket.timeout, paramiko.SSHException) as error:
            client.close()
            last_error = error
            if attempt + 1 < _CONNECT_ATTEMPTS:
                time.sleep(_RETRY_PAUSE_S)
    raise RemoteScriptFailed(f"{target.address}: no SSH session after {_CONNECT_ATTEMPTS} attempts: {last_error}")


def run_over_ssh(target: SshTarget, private_key: str, command: str, *, label: str, stdin: str = "",
                 check: bool = True) -> ScriptResult:
    """Run `command` (a script wrapped by remote.as_remote_command) on `target`, feeding `stdin`.
    With check, a non-zero exit raises RemoteScriptFailed with `label` and the end of stderr;
    stdout (which may hold a secret) is never put into an error."""
    try:
        client = _connect(target, private_key)
    except RemoteScriptFailed as error:
        raise RemoteScriptFailed(f"{label}: {error}") from None
    try:
        stdin_stream, stdout_stream, stderr_stream = client.exec_command(command, timeout=_SCRIPT_TIMEOUT_S)
        if stdin:
            stdin_stream.write(stdin)
        stdin_stream.channel.shutdown_write()
        stdout = stdout_stream.read().decode(errors="replace")
        stderr = stderr_stream.read().decode(errors="replace")
        status = stdout_stream.channel.recv_exit_status()
    except (OSError, socket.timeout, paramiko.SSHException) as error:
        raise RemoteScriptFailed(f"{label} on {target.address}: the session failed: {error}") from None
    finally:
        client.close()
    if check and status != 0:
        tail = "\n".join(stderr.rstrip().splitlines()[-_STDERR_TAIL_LINES:])
        raise RemoteScriptFailed(f"{label} on {target.address} failed (exit {status}):\n{tail}")
    return ScriptResult(status, stdout, stderr)


@dataclass(frozen=True)
class StackLogin:
    """The stack's login of the day, from the stack config a dynamic provider is configured with
    (`configure`). A delete step has only what its resource recorded; once that key no longer logs
    in (it was rotated since), it tries this one."""

    private_key: Optional[str] = None
    user: Optional[str] = None
    port: Optional[int] = None

    @classmethod
    def from_config(cls, get: Callable[[str], Any]) -> "StackLogin":
        """From the provider config's getter (`dynamic.Config.get`): `sshPrivateKey`, or the file
        `ssh.privateKeyPath` names; `ssh.user` and `ssh.port`. What is missing stays None."""
        settings = get("ssh") or {}
        if isinstance(settings, str):
            try:
                settings = json.loads(settings)
            except ValueError:
                settings = {}
        private_key = get("sshPrivateKey")
        path = settings.get("privateKeyPath") if isinstance(settings, dict) else None
        if not private_key and path:
            try:
                private_key = Path(os.path.expanduser(str(path))).read_text()
            except OSError:
                private_key = None
        port = settings.get("port") if isinstance(settings, dict) else None
        user = settings.get("user") if isinstance(settings, dict) else None
        return cls(private_key=str(private_key) if private_key else None, user=str(user) if user else None,
                   port=int(port) if port else None)

    def target(self, recorded: dict[str, Any]) -> dict[str, Any]:
        """A recorded target (SshTarget.from_dict's shape) with today's user and port."""
        return {**recorded, **({"user": self.user} if self.user else {}), **({"port": self.port} if self.port else {})}
