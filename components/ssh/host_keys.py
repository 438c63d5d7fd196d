"""HostKeys: the SSH host key of every host, required on every connection of every kind (the
command provider's, paramiko's and the dynamic providers').

A key pinned in ssh.hostKeys is used as it is. Any other host is trusted on first use: the key it
offers the first time kubeha sees it (a handshake, no login) is recorded in the state and required
from then on. Each `pulumi up` reads every host's key again first (a preview too with
preflight.onPreview; otherwise a preview connects nowhere): a host that offers another key than
the one recorded stops the run before any step connects to it, naming the host and both
fingerprints. A host reinstalled on purpose gets its new key pinned in ssh.hostKeys.

The keys are this resource's inputs, set by its check, so they are known in a preview (a dynamic
provider's outputs there are its inputs): a connection's pinned key never shows as a change.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Optional

import pulumi
from pulumi import dynamic

from components.config.model import ClusterConfig
from components.dynamic_resource import DynamicResource
from components.ssh.ssh_session import fingerprint, offered_host_key

KEYS = "keys"
# Whether this run reads the hosts' keys: always in `pulumi up`; in a preview only with
# preflight.onPreview, as a preview opens no connection otherwise. Never stored.
SCAN = "scan"
_PARALLEL_HOSTS = 16
Scan = Callable[[str, int], Optional[str]]


def _reach(host: dict[str, Any]) -> tuple[str, int]:
    return str(host["address"]), int(host["port"])  # the port comes back from the engine as a float


def _no_scan(_address: str, _port: int) -> Optional[str]:
    return None


def required_keys(project: str, olds: dict[str, Any], news: dict[str, Any],
                  scan: Scan) -> tuple[dict[str, str], list[str]]:
    """The key each host of `news` must offer, and a message per host that offers another key
    than the one recorded for it. `scan` reads the key a host offers (None: no answer); with
    news' `scan` off (a preview, unless preflight.onPreview), nothing is read and a new host has
    no key yet."""
    if not news.get(SCAN):
        scan = _no_scan
    hosts: list[dict[str, Any]] = news.get("hosts") or []
    recorded: dict[str, str] = (olds or {}).get(KEYS) or {}
    recorded_at = {host["name"]: _reach(host) for host in (olds or {}).get("hosts") or []}
    with ThreadPoolExecutor(max_workers=_PARALLEL_HOSTS) as pool:
        # A pinned host's key is the pin: nothing to read there.
        offered = dict(zip([host["name"] for host in hosts],
                           pool.map(lambda host: None if host.get("pinned") else scan(*_reach(host)), hosts),
                           strict=True))
    keys: dict[str, str] = {}
    changed: list[str] = []
    for host in hosts:
        name, now = host["name"], offered[host["name"]]
        if host.get("pinned"):
            keys[name] = host["pinned"]
        elif name in recorded and recorded_at.get(name) == _reach(host):
            keys[name] = recorded[name]
            if now is not None and now.split()[:2] != recorded[name].split()[:2]:
                changed.append(
                    f"{project}:ssh.hostKeys: {name} ({host['address']}) offers the host key {fingerprint(now)}, not "
                    f"{fingerprint(recorded[name])}, the one it offered when kubeha first reached it. Someone may "
                    f"be in the middle; if the host was reinstalled, pin its new key: pulumi config set --path "
                    f"'ssh.hostKeys.{name}' '{now}'. Refused; nothing was changed.")
        elif now is not None:
            keys[name] = now
    return keys, changed


@dataclass(frozen=True)
class _HostKeysProvider(dynamic.ResourceProvider):
    project: str

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.CheckResult:
        keys, changed = required_keys(self.project, olds, news, offered_host_key)
        inputs = {key: value for key, value in news.items() if key != SCAN}
        return dynamic.CheckResult({**inputs, KEYS: keys}, [dynamic.CheckFailure(KEYS, message) for message in changed])

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        return dynamic.DiffResult(changes=any(olds.get(key) != news.get(key) for key in ("hosts", KEYS)))

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        return dynamic.CreateResult(id_="host-keys", outs=props)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        return dynamic.UpdateResult(outs=news)


def warn_unpinned(keys: dict[str, str], pinned: dict[str, str]) -> None:
    """One warning per host whose key is trusted on first use, with the setting that pins it."""
    for name, key in sorted((keys or {}).items()):
        if name not in pinned:
            pulumi.log.warn(f"{name}: its SSH host key is not pinned in the config: kubeha trusted the key it offered "
                            f"on first contact ({fingerprint(key)}) and requires it from then on. Check it on the host "
                            f"(ssh-keygen -lf) and pin it: pulumi config set --path 'ssh.hostKeys.{name}' '{key}'")


class HostKeys(DynamicResource):
    """Every host's required SSH host key, by name (see the module docstring)."""

    keys: pulumi.Output[dict[str, str]]

    def __init__(self, name: str, config: ClusterConfig, project: str,
                 opts: Optional[pulumi.ResourceOptions] = None) -> None:
        # Decommissioned hosts are left out: nothing connects to them any more.
        hosts = [{"name": host.name, "address": host.ip, "port": config.ssh.port,
                  "pinned": config.ssh.host_keys.get(host.name)}
                 for _, host in sorted(config.live_hosts_with_keys(), key=lambda keyed: keyed[1].name)]
        scan = not pulumi.runtime.is_dry_run() or config.preflight.on_preview
        super().__init__(_HostKeysProvider(project), name, {"hosts": hosts, KEYS: None, SCAN: scan}, opts)
