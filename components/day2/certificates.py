"""ControlPlaneCertificates: a control plane's kubeadm certificates, renewed by `pulumi up` before
they expire.

kubeadm's certificates (apiserver, etcd, front-proxy client, the control-plane kubeconfigs) live a
year; a cluster whose certificates lapse stops serving. One resource per control plane records
when its earliest certificate expires (`kubeadm certs check-expiration`). Its diff compares the
clock with that date less `certificates.renewBeforeDays`: once inside that window, `pulumi up`
runs `kubeadm certs renew all` there and restarts its static pods one by one; the resources wait
for each other, so one control plane at a time renews. A no-op `pulumi up` connects to no host;
`pulumi refresh` (or `up --refresh`) re-reads the dates from the hosts, so certificates renewed or
replaced by hand are seen. The CAs (ten years) are not renewed: kubeadm cannot renew them.
"""
from __future__ import annotations

import datetime
import json
import time
from dataclasses import dataclass
from typing import Any, Optional

import pulumi
from pulumi import dynamic

from components.dynamic_resource import DynamicResource
from components.ssh.ssh_session import RemoteScriptFailed, SshTarget, run_over_ssh

DAY_S = 86400


@dataclass(frozen=True)
class CertificateScripts:
    """Both scripts, each wrapped by remote.as_remote_command."""

    expiry: str  # prints `kubeadm certs check-expiration -o json`
    renew: str


def earliest_expiry(check_expiration_json: str) -> datetime.datetime:
    """The earliest expiry among the certificates kubeadm manages and renews (not the CAs, not
    externally managed or missing ones)."""
    report = json.loads(check_expiration_json)
    dates = [datetime.datetime.fromisoformat(certificate["expirationDate"].replace("Z", "+00:00"))
             for certificate in report.get("certificates", [])
             if not certificate.get("missing") and not certificate.get("externallyManaged")]
    if not dates:
        raise ValueError("kubeadm reported no certificate it manages")
    return min(dates)


def _renew_at(props: dict[str, Any], expires: datetime.datetime) -> float:
    """When the renewal window opens: `renew_before_days` before the earliest expiry."""
    return expires.timestamp() - int(props["renew_before_days"]) * DAY_S


def _recorded(props: dict[str, Any], expires: datetime.datetime) -> dict[str, Any]:
    return {**props, "earliest_expiry": expires.isoformat(), "renew_at": _renew_at(props, expires)}


class _CertificatesProvider(dynamic.ResourceProvider):
    @staticmethod
    def _run(props: dict[str, Any], script: str, label: str) -> str:
        return run_over_ssh(SshTarget.from_dict(props["node"]), props["private_key"], props[script],
                            label=f"{props['node_name']}: {label}").stdout

    def _expiry(self, props: dict[str, Any]) -> datetime.datetime:
        return earliest_expiry(self._run(props, "expiry", "certificate expiry"))

    def _converge(self, props: dict[str, Any]) -> dict[str, Any]:
        """The dates read; renewed first if they are inside the window."""
        expires = self._expiry(props)
        if _renew_at(props, expires) <= time.time():
            self._run(props, "renew", "certificate renewal")
            expires = self._expiry(props)
        return _recorded(props, expires)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        # The scripts' text is no reason to read again; a new login (a rotated key, another user
        # or port) is recorded by a read over it, so a later refresh uses it. Renewal only when due.
        due = time.time() >= float(olds.get("renew_at") or 0)
        login = any(olds.get(key) != news.get(key) for key in ("node", "private_key"))
        window = olds.get("renew_before_days") != news.get("renew_before_days")
        return dynamic.DiffResult(changes=due or login or window)

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        outs = self._converge(props)
        return dynamic.CreateResult(id_=props["node_name"], outs=outs)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        return dynamic.UpdateResult(outs=self._converge(news))

    def read(self, id_: str, props: dict[str, Any]) -> dynamic.ReadResult:
        try:
            return dynamic.ReadResult(id_, _recorded(props, self._expiry(props)))
        except RemoteScriptFailed:
            # A host that is down (or on its way out) keeps what was recorded: a refresh of the
            # rest of the stack goes on.
            return dynamic.ReadResult(id_, props)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None  # the node's reset is its join's delete


class ControlPlaneCertificates(DynamicResource):
    """One control plane's certificates, with the date its earliest one expires."""

    earliest_expiry: pulumi.Output[str]

    def __init__(self, name: str, *, node_name: str, node: dict[str, Any], private_key: pulumi.Input[str],
                 renew_before_days: int, scripts: CertificateScripts,
                 opts: Optional[pulumi.ResourceOptions] = None) -> None:
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["private_key"]))
        super().__init__(_CertificatesProvider(), name, {
            "node_name": node_name, "node": node, "private_key": pulumi.Output.secret(private_key),
            "renew_before_days": renew_before_days, "expiry": scripts.expiry, "renew": scripts.renew,
            "earliest_expiry": None, "renew_at": None}, opts)
