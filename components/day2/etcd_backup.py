"""EtcdBackups: scheduled, encrypted and verified etcd backups on every control plane (etcd.backup).

With stacked etcd, losing two of three control planes loses quorum, and only a snapshot brings
the cluster back. Each control plane gets a systemd timer (`kubeha-etcd-backup.timer`, on
etcd.backup.schedule) whose service takes a snapshot with etcd's own etcdctl, checks it with
etcdutl (status and a trial restore), packs it with the PKI a restore onto new hosts needs,
encrypts the file with the backup key and keeps the newest etcd.backup.keep
(templates/etcd-backup/kubeha-etcd-backup.sh.j2).

The key is a Pulumi secret: etcd.backup.encryptionKey, or one generated once and kept in the
state (`etcdBackupKey`). It reaches the hosts on stdin only. The `etcdBackups` output lists the
newest verified backup of each control plane; `pulumi up` re-reads it once it is older than two
schedule intervals, and warns when it still is (a timer that stopped working shows at the next
`up`).

etcd.backup.copyTo sends every verified backup on to a host of the site's over SSH, with a key
of its own (a secret, on stdin too) and that host's pinned key: the copy a restore onto new hosts
starts from (`copiedTo` in `etcdBackups`).
"""
from __future__ import annotations

import base64
import datetime
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any, Optional

import pulumi
from pulumi import dynamic

from components.config.model import BackupCopySettings, ClusterConfig, EtcdBackupSettings, NodeHost
from components.dynamic_resource import DynamicResource
from components.render import render
from components.ssh.remote import SshAccess, run_script
from components.ssh.ssh_session import RemoteScriptFailed, SshTarget, run_over_ssh

# The newest backup is stale (re-read, then warned about) past this many schedule intervals.
STALE_AFTER_INTERVALS = 2


class _BackupKeyProvider(dynamic.ResourceProvider):
    """A key made once (its create) and never changed: every backup of the stack uses it."""

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        return dynamic.CreateResult(id_="etcd-backup-key", outs={"key": secrets.token_urlsafe(48)})

    def diff(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> dynamic.DiffResult:
        return dynamic.DiffResult(changes=False)


class EtcdBackupKey(DynamicResource):
    """The generated backup key (when etcd.backup.encryptionKey is unset); `key` is a secret."""

    key: pulumi.Output[str]

    def __init__(self, name: str, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["key"]))
        super().__init__(_BackupKeyProvider(), name, {"key": None}, opts)


def _taken_at(newest: Optional[dict[str, Any]]) -> Optional[float]:
    if not newest or not newest.get("time"):
        return None
    return datetime.datetime.fromisoformat(str(newest["time"]).replace("Z", "+00:00")).timestamp()


def is_stale(record: dict[str, Any], now: float) -> bool:
    """The recorded newest backup is missing, or older than STALE_AFTER_INTERVALS schedule
    intervals (an unknown interval: never stale by age)."""
    taken = _taken_at(record.get("newest"))
    if taken is None:
        return True
    interval = float(record.get("interval_seconds") or 0)
    return interval > 0 and now - taken > STALE_AFTER_INTERVALS * interval


def parse_status(stdout: str) -> dict[str, Any]:
    """The status script's JSON as the record's fields."""
    status = json.loads(stdout)
    return {"newest": status.get("latest"), "interval_seconds": int(status.get("intervalSeconds") or 0),
            "last_result": str(status.get("lastResult") or "")}


class _BackupStatusProvider(dynamic.ResourceProvider):
    @staticmethod
    def _read(props: dict[str, Any]) -> dict[str, Any]:
        stdout = run_over_ssh(SshTarget.from_dict(props["node"]), props["private_key"], props["status"],
                              label=f"{props['node_name']}: etcd backup status").stdout
        return {**props, **parse_status(stdout)}

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        # Read again after the backups were (re)installed, or once the record is stale; a no-op
        # `up` otherwise connects to no host.
        reinstalled = olds.get("installed") != news.get("installed")
        return dynamic.DiffResult(changes=reinstalled or is_stale(olds, time.time()))

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        return dynamic.CreateResult(id_=props["node_name"], outs=self._read(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        return dynamic.UpdateResult(outs=self._read(news))

    def read(self, id_: str, props: dict[str, Any]) -> dynamic.ReadResult:
        try:
            return dynamic.ReadResult(id_, self._read(props))
        except RemoteScriptFailed:
            return dynamic.ReadResult(id_, props)  # a host that is down keeps its record

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None  # a record only; the schedule's removal is its install step's delete


class EtcdBackupStatus(DynamicResource):
    """One control plane's newest verified backup (`newest`: file, time, revision, sizeBytes,
    durationSeconds), its schedule's interval and the last run's result."""

    newest: pulumi.Output[Optional[dict[str, Any]]]
    interval_seconds: pulumi.Output[int]
    last_result: pulumi.Output[str]

    def __init__(self, name: str, *, node_name: str, node: dict[str, Any], private_key: pulumi.Input[str],
                 status_script: str, installed: pulumi.Input[str],
                 opts: Optional[pulumi.ResourceOptions] = None) -> None:
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["private_key"]))
        super().__init__(_BackupStatusProvider(), name, {
            "node_name": node_name, "node": node, "private_key": pulumi.Output.secret(private_key),
            "status": status_script, "installed": installed,
            "newest": None, "interval_seconds": None, "last_result": None}, opts)


def backup_entry(host: str, newest: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """One `etcdBackups` item: where the newest verified backup of `host` is, and what it holds."""
    if not newest:
        return None
    return {"host": host, "path": newest.get("file"), "time": newest.get("time"),
            "revision": newest.get("revision"), "sizeBytes": newest.get("sizeBytes"),
            "copiedTo": newest.get("copiedTo") or None}


def stale_warning(host: str, record: dict[str, Any], now: float) -> Optional[str]:
    """What `pulumi up` says about a control plane whose newest backup is missing or stale."""
    newest: dict[str, Any] = record.get("newest") or {}
    last_run = record.get("last_result") or "unknown"
    if not is_stale(record, now):
        if last_run in ("success", "unknown"):
            return None
        # A fresh backup, but the run after it failed (its copy to etcd.backup.copyTo, say).
        return (f"etcd.backup: the last backup run on {host} failed ({last_run}); its newest verified backup is "
                f"from {newest['time']}; see `journalctl -u kubeha-etcd-backup.service` on {host}")
    what = (f"the newest verified etcd backup of {host} is from {newest['time']}, older than "
            f"{STALE_AFTER_INTERVALS} schedule intervals" if newest else f"{host} has no verified etcd backup")
    return f"etcd.backup: {what} (last run: {last_run}); see `journalctl -u kubeha-etcd-backup.service` on {host}"


def with_copy_key(key: pulumi.Output[str], copy: Optional[BackupCopySettings]) -> pulumi.Output[str]:
    """A script's stdin: the backup key's line, then (with a copy host) the copy host's private key
    in base64 on one line (ending in a newline: OpenSSH reads no key file without one)."""
    if copy is None:
        return key
    private_key = copy.private_key.get_secret_value().rstrip("\n") + "\n"
    copy_key = base64.b64encode(private_key.encode()).decode()
    return pulumi.Output.secret(key.apply(lambda value: f"{value}\n{copy_key}\n"))


@dataclass(frozen=True)
class EtcdBackupsArgs:
    config: ClusterConfig


class EtcdBackups(pulumi.ComponentResource):
    """Scheduled backups on every control plane (etcd.backup.enabled), in two steps: constructed,
    it has the backup `key` (a secret; None when backups are off and no key is set), which a
    restore needs before any host step; `schedule()` adds each control plane's timer once every
    node is a member. `backups` is the `etcdBackups` output."""

    backups: pulumi.Output[list[dict[str, Any]]]
    key: Optional[pulumi.Output[str]]
    installs: list[pulumi.Resource]  # a risky change (an upgrade) waits for them

    def __init__(self, name: str, args: EtcdBackupsArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("kubeha:index:EtcdBackups", name, None, opts)
        self._name, self._config = name, args.config
        settings = args.config.etcd.backup
        self.key = self._key(name, settings) if settings.enabled or settings.encryption_key else None

    def schedule(self, ssh: SshAccess, after: list[pulumi.Resource]) -> list[pulumi.Resource]:
        """Each control plane's timer, after `after` (every node a member); returns the installs."""
        name, settings = self._name, self._config.etcd.backup
        self.installs = []
        entries: list[pulumi.Output[Optional[dict[str, Any]]]] = []
        if settings.enabled and self.key is not None:
            stdin = with_copy_key(self.key, settings.copy_to)
            previous: list[pulumi.Resource] = []
            for host in self._config.control_plane_entries:
                install = run_script(
                    f"{name}-{host.name}", host=host, ssh=ssh, stdin=stdin,
                    create=_install_script(self._config, host),
                    delete=render("etcd-backup/remove-etcd-backup.sh.j2", host=host, directory=settings.directory),
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[*after, *previous]))
                previous = [install]
                self.installs.append(install)
                if host.decommission is None:
                    entries.append(self._status(name, host, settings, ssh, install.stdout))
        self.backups = pulumi.Output.all(*entries).apply(lambda items: [item for item in items if item])
        self.register_outputs({"backups": self.backups})
        return self.installs

    def _key(self, name: str, settings: EtcdBackupSettings) -> pulumi.Output[str]:
        if settings.encryption_key is not None:
            return pulumi.Output.secret(settings.encryption_key.get_secret_value())
        return pulumi.Output.secret(EtcdBackupKey(f"{name}-key", opts=pulumi.ResourceOptions(parent=self)).key)

    def _status(self, name: str, host: NodeHost, settings: EtcdBackupSettings, ssh: SshAccess,
                installed: pulumi.Output[str]) -> pulumi.Output[Optional[dict[str, Any]]]:
        script = render("etcd-backup/etcd-backup-status.sh.j2", host=host, directory=settings.directory,
                        schedule=settings.schedule)
        status = EtcdBackupStatus(
            f"{name}-{host.name}-status", node_name=host.name, node=ssh.target(host),
            private_key=ssh.private_key, status_script=ssh.command(script, f"{host.name}-etcd-backup-status"),
            installed=installed, opts=ssh.gated(pulumi.ResourceOptions(parent=self)))

        def entry(values: list[Any]) -> Optional[dict[str, Any]]:
            record = {"newest": values[0], "interval_seconds": values[1], "last_result": values[2]}
            warning = stale_warning(host.name, record, time.time())
            if warning:
                pulumi.log.warn(warning, resource=status)
            return backup_entry(host.name, values[0])

        return pulumi.Output.all(status.newest, status.interval_seconds, status.last_result).apply(entry)


def _install_script(config: ClusterConfig, host: NodeHost) -> str:
    settings = config.etcd.backup
    values = {"host": host, "directory": settings.directory, "schedule": settings.schedule, "keep": settings.keep,
              "cluster_name": config.kubernetes.cluster_name, "copy": settings.copy_to}
    return render("etcd-backup/install-etcd-backup.sh.j2", **values, package_proxy=config.packages.proxy,
                  backup_script=render("etcd-backup/kubeha-etcd-backup.sh.j2", **values).rstrip("\n"),
                  backup_service=render("etcd-backup/kubeha-etcd-backup.service.j2").rstrip("\n"),
                  backup_timer=render("etcd-backup/kubeha-etcd-backup.timer.j2", **values).rstrip("\n"))
