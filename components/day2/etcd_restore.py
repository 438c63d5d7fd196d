"""EtcdRestore: the cluster brought back from an etcd backup after etcd lost its quorum
(etcd.restore: {backup, on, force}).

One resource per restore, keyed by the backup file: made once, it restores; left in the config,
it changes nothing more; another file (or host) is another restore. It is a gate: every other
host step waits for it, since none of them can reach a cluster without a quorum.

Its check runs on the `on` control plane before anything changes, in `pulumi preview` too: a
restore is refused while etcd there still has a quorum (unless `force`), and when the file does
not decrypt with the stack's backup key, fails its checksum, or was taken on another cluster.
The restore itself: templates/etcd-backup/restore-etcd.sh.j2.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

import pulumi
from pulumi import dynamic

from components.config.model import host_key_problem
from components.dynamic_resource import DynamicResource
from components.ssh.ssh_session import SshTarget, run_over_ssh

_SAME_RESTORE = ("backup", "on")


def refusals(project: str, status: dict[str, Any], props: dict[str, Any]) -> list[dynamic.CheckFailure]:
    """What the check script's answer (`quorum`, `problem`) refuses, as failures naming the key."""
    failures = []
    if status.get("problem"):
        failures.append(dynamic.CheckFailure("backup", f"{project}:etcd.restore.backup: {status['problem']}. Refused; "
                                                       f"nothing was changed."))
    if status.get("quorum") and not props.get("force"):
        failures.append(dynamic.CheckFailure("on", (
            f"{project}:etcd.restore: etcd on {props['on']} still has a quorum; a restore would rewind a working "
            f"cluster to the backup and lose everything written since. Remove etcd.restore, or set "
            f"etcd.restore.force: true if that is what you want. Refused; nothing was changed.")))
    return failures


def host_key_known(node: dict[str, Any]) -> bool:
    """Whether the target's host key is known (a key line, or none pinned): in a preview, the key
    of a host first seen in this run is a placeholder."""
    host_key = node.get("host_key")
    return not host_key or host_key_problem(str(host_key)) is None


@dataclass(frozen=True)
class _RestoreProvider(dynamic.ResourceProvider):
    project: str

    @staticmethod
    def _run(props: dict[str, Any], script: str, label: str) -> str:
        return run_over_ssh(SshTarget.from_dict(props["node"]), props["private_key"], props[script],
                            label=f"{props['on']}: {label}", stdin=props["key"]).stdout

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.CheckResult:
        # A restore done (the same file on the same host) is not checked again: its cluster has a
        # quorum now, by design.
        if olds and all(olds.get(key) == news.get(key) for key in _SAME_RESTORE):
            return dynamic.CheckResult(news, [])
        # A new host's key is not known in a preview (it is trusted on first use, at `up`): its
        # check runs at `up`, once the host is prepared and before the restore changes anything.
        if not host_key_known(news["node"]):
            return dynamic.CheckResult(news, [])
        status = json.loads(self._run(news, "check", "etcd restore check"))
        return dynamic.CheckResult(news, refusals(self.project, status, news))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        replaces = [key for key in _SAME_RESTORE if olds.get(key) != news.get(key)]
        return dynamic.DiffResult(changes=bool(replaces), replaces=replaces, delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        report = self._run(props, "restore", "etcd restore").strip().splitlines()
        return dynamic.CreateResult(id_=props["backup"].rsplit("/", 1)[1],
                                    outs={**props, "report": report[-1] if report else ""})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None  # a restore is not undone; the setting's removal only forgets it


@dataclass(frozen=True)
class RestoreScripts:
    check: str  # prints {"quorum": bool, "problem": str}
    restore: str


class EtcdRestore(DynamicResource):
    """One restore of etcd from `backup` on the control plane `on` (see the module docstring)."""

    report: pulumi.Output[str]

    def __init__(self, name: str, *, project: str, backup: str, on: str, force: bool, node: dict[str, Any],
                 private_key: pulumi.Input[str], key: pulumi.Input[str], scripts: RestoreScripts,
                 opts: Optional[pulumi.ResourceOptions] = None) -> None:
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
            additional_secret_outputs=["private_key", "key"]))
        super().__init__(_RestoreProvider(project), name, {
            "backup": backup, "on": on, "force": force, "node": node,
            "private_key": pulumi.Output.secret(private_key), "key": pulumi.Output.secret(key),
            "check": scripts.check, "restore": scripts.restore, "report": None}, opts)
