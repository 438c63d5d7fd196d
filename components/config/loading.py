"""Reading the stack config: the raw `kubeha:*` values into the model, the SSH key as a secret; a
bad value fails naming its key."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

import pulumi
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from components.config.grammar import GRAMMARS
from components.config.model import PRIVATE_KEY_FILE, ClusterConfig, ConfigError, ConfigKeyError, SshSettings

_TOP_LEVEL_KEYS = ("ssh", "loadBalancer", "controlPlanes", "workers", "kubernetes", "containerd", "packages",
                   "network", "preflight", "certificates", "firewall", "upgrade", "etcd")


def _key_path(location: tuple[Any, ...]) -> str:
    """('loadBalancer', 'hosts', 1, 'address') -> 'loadBalancer.hosts[1].address'."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("IPv4Address", "IPv6Address", "IPv4Network", "IPv6Network") or "[" in str(part):
            continue  # pydantic names the union member it tried; the key is what matters
        else:
            path += f".{part}" if path else str(part)
    return path


def parse_cluster_config(raw: dict[str, Any], project: str = "kubeha") -> ClusterConfig:
    """Validate raw config values; raise ConfigError naming the first bad key."""
    try:
        return ClusterConfig.model_validate(raw)
    except ValidationError as error:
        # A misspelt key (`adress`) first, rather than the key it stands in for being "required".
        first = sorted(error.errors(), key=lambda item: item["type"] != "extra_forbidden")[0]
        nested = first.get("ctx", {}).get("error")
        if isinstance(nested, ConfigKeyError):
            raise ConfigError(f"{project}:{nested.key}: {nested.message}") from None
        key = _key_path(first["loc"]) or "config"
        message = _describe(first)
        raise ConfigError(f"{project}:{key}: {message}") from None


def _describe(error: ErrorDetails) -> str:
    kind, message = error["type"], error["msg"]
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known key (check the spelling)"
    if kind in ("ip_v4_address", "ip_v6_address", "ip_any_address"):
        return f"must be an IP address (got {error.get('input')!r})"
    if kind in ("ip_v4_network", "ip_v6_network", "ip_any_network"):
        return f"must be a network in CIDR form, e.g. 10.244.0.0/16 (got {error.get('input')!r})"
    if kind == "string_pattern_mismatch" and error.get("ctx", {}).get("pattern") in GRAMMARS:
        return f"must be {GRAMMARS[error['ctx']['pattern']]} (got {error.get('input')!r})"
    return message.removeprefix("Value error, ")


# Top-level keys that are not part of the cluster model.
_OTHER_KEYS = ("sshPrivateKey",)


def check_known_keys(keys: Iterable[str], project: str = "kubeha") -> None:
    """Every `project:KEY` of the stack is one kubeha knows: a misspelt top-level key (`workers`
    as `worker`) would otherwise be ignored, and the defaults it leaves locked in by the guard."""
    known = set(_TOP_LEVEL_KEYS) | set(_OTHER_KEYS)
    for key in sorted(keys):
        if key not in known:
            close = [name for name in sorted(known) if name.lower() == key.lower() or name.startswith(key[:4])]
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{project}:{key}: is not a known key{hint}; the keys are {', '.join(sorted(known))}")


def load_cluster_config(config: pulumi.Config) -> ClusterConfig:
    prefix = f"{config.name}:"
    check_known_keys((key[len(prefix):] for key in pulumi.runtime.get_config_env() if key.startswith(prefix)),
                     config.name)
    # Read raw (as get_object does, without its warning): `kubeha:etcd` is a secret when it holds
    # etcd.backup.encryptionKey.
    raw = {key: json.loads(value) for key in _TOP_LEVEL_KEYS
           if (value := pulumi.runtime.get_config(f"{prefix}{key}")) is not None}
    cluster = parse_cluster_config(raw, config.name)
    backup = cluster.etcd.backup
    secret_keys = [key for key, value in (("etcd.backup.encryptionKey", backup.encryption_key),
                                          ("etcd.backup.copyTo.privateKey", backup.copy_to)) if value is not None]
    if secret_keys and not pulumi.runtime.is_config_secret(f"{prefix}etcd"):
        raise ConfigError(f"{config.name}:{secret_keys[0]}: is stored in plain text in the stack's config "
                          f"file; set it as a secret (`pulumi config set --secret --path {secret_keys[0]}`)")
    if len(cluster.control_planes) % 2 == 0:
        pulumi.log.warn(
            f"{config.name}:controlPlanes: {len(cluster.control_planes)} control planes give etcd no extra "
            f"fault tolerance over {len(cluster.control_planes) - 1}; use an odd number for quorum")
    return cluster


def check_private_key(text: str, key: str) -> None:
    """`text` is a private key file's content (PEM or OpenSSH), not a path or a public key."""
    if not PRIVATE_KEY_FILE.search(text):
        raise ConfigError(f"{key}: must be a private key file's content ('-----BEGIN OPENSSH PRIVATE KEY-----...'), "
                          f"not a path or a public key; e.g. `pulumi config set --secret sshPrivateKey < KEYFILE`")


def load_ssh_private_key(config: pulumi.Config, ssh: SshSettings) -> pulumi.Output[str]:
    """The SSH key as a secret: from the secret config key, else from ssh.privateKeyPath."""
    name = f"{config.name}:sshPrivateKey"
    raw = pulumi.runtime.get_config(name)
    if raw is not None:
        if not pulumi.runtime.is_config_secret(name):
            raise ConfigError(f"{name}: is stored in plain text in the stack's config file; set it as a secret "
                              f"(`pulumi config set --secret sshPrivateKey < KEYFILE`) and remove the plain copy")
        check_private_key(raw, name)
        return config.require_secret("sshPrivateKey")
    if ssh.private_key_path is None:
        raise ConfigError(
            f"{config.name}:sshPrivateKey: no SSH credential; set it with "
            f"`pulumi config set --secret sshPrivateKey < KEYFILE` or set ssh.privateKeyPath")
    path = Path(os.path.expanduser(ssh.private_key_path))
    if not path.is_file():
        raise ConfigError(f"{config.name}:ssh.privateKeyPath: no such file {path}")
    text = path.read_text()
    check_private_key(text, f"{config.name}:ssh.privateKeyPath ({path})")
    return pulumi.Output.secret(text)
