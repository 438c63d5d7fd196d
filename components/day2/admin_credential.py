"""AdminCredential: the stack's `kubeconfig` output, a credential of its own that `pulumi up` renews.

The cluster's admin.conf is the wrong thing to hand out: its client certificate lives a year,
belongs to a group bound by kubeadm itself, and cannot be revoked. So kubeha issues its own:
`kubeadm kubeconfig user` for a user named after the moment it was issued
(`kubeha-admin-<UTC time>`), bound to cluster-admin by a ClusterRoleBinding of the same name.
- Renewal: the resource's diff compares the clock with the time recorded when it was issued; past
  two thirds of the validity (`kubernetes.kubeconfigValidityHours`), or with another validity,
  `pulumi up` issues a new one and then deletes the old one's binding, which revokes it.
- Revocation on demand: `pulumi up --replace` on this resource issues a new one and revokes the old.
- It is issued on the first control plane (lead first) that answers, so a lost lead does not stop
  a renewal. The kubeconfig is read into memory over SSH and is a secret output; only the user
  name (not a secret) ever reaches a command's stdin.
"""
from __future__ import annotations

import base64
import datetime
import re
import time
from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import yaml
from cryptography import x509
from pulumi import dynamic

from components.dynamic_resource import DynamicResource
from components.ssh.ssh_session import RemoteScriptFailed, SshTarget, StackLogin, run_over_ssh

USER_PREFIX = "kubeha-admin-"
# Past this share of its validity, the next `pulumi up` renews the credential.
RENEW_AFTER_SHARE = 2 / 3


@dataclass(frozen=True)
class CredentialScripts:
    """Both scripts, each wrapped by remote.as_remote_command; each reads the user name on stdin."""

    issue: str
    revoke: str


def certificate_not_after(kubeconfig: str) -> datetime.datetime:
    """When the client certificate of a kubeconfig (kubeadm writes one user) expires."""
    data = yaml.safe_load(kubeconfig)["users"][0]["user"]["client-certificate-data"]
    return x509.load_pem_x509_certificate(base64.b64decode(data)).not_valid_after_utc


def with_server(kubeconfig: str, server: str) -> str:
    """The kubeconfig with `server` as its cluster's server (kubeadm writes one cluster): the
    program sets it, so it follows the endpoint settings (the lead's address in local-nginx)."""
    return re.sub(r"(?m)^(\s*server:) .*$", lambda match: f"{match.group(1)} {server}", kubeconfig)


def renewal_due(outs: dict[str, Any], now: float) -> bool:
    return now >= float(outs.get("renew_at", 0))


def _user_name(now: float) -> str:
    return USER_PREFIX + datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime("%Y%m%d%H%M%S")


class _AdminCredentialProvider(dynamic.ResourceProvider):
    # The stack's login of the day (configure), for a revocation whose recorded key was rotated.
    _today: Optional[StackLogin] = None

    def configure(self, req: dynamic.ConfigureRequest) -> None:
        self._today = StackLogin.from_config(req.config.get)

    def _run_on_a_control_plane(self, props: dict[str, Any], script: str, user: str, label: str) -> str:
        """`script` on the first control plane that answers; its stdout."""
        errors: list[str] = []
        for candidate in props["control_planes"]:
            try:
                return run_over_ssh(SshTarget.from_dict(candidate["target"]), props["private_key"], props[script],
                                    label=f"{label} on {candidate['name']}", stdin=user + "\n").stdout
            except RemoteScriptFailed as error:
                errors.append(str(error))
        raise RemoteScriptFailed(f"{label}: no control plane could do it:\n" + "\n".join(errors))

    def _issue(self, props: dict[str, Any]) -> dict[str, Any]:
        now = time.time()
        user = _user_name(now)
        kubeconfig = self._run_on_a_control_plane(props, "issue", user, f"kubeconfig for {user}")
        not_after = certificate_not_after(kubeconfig)
        lifetime = not_after.timestamp() - now
        return {**props, "user": user, "kubeconfig": kubeconfig, "not_after": not_after.isoformat(),
                "renew_at": now + lifetime * RENEW_AFTER_SHARE}

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        # Where it is issued, and the scripts' text, are no reason to issue another. Nor to record
        # them: an update shows its outputs unknown in a preview, and the kubeconfig feeds the pod
        # network's provider, whose every object a changed kubeconfig would replace. A new login
        # reaches this record with the next renewal (its revocation before that is best effort).
        changed = olds.get("validity_hours") != news.get("validity_hours") or renewal_due(olds, time.time())
        return dynamic.DiffResult(changes=changed, replaces=[], delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        outs = self._issue(props)
        return dynamic.CreateResult(id_=outs["user"], outs=outs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        outs = self._issue(news)
        # The new one works before the old one stops working.
        self._run_on_a_control_plane(news, "revoke", olds["user"], f"revoking {olds['user']}")
        return dynamic.UpdateResult(outs=outs)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        # With the login it recorded, else (a key rotated since: `pulumi up --replace` after a
        # rotation) with the stack's login of the day. Best effort: on `pulumi destroy` the
        # cluster goes anyway, and an unreachable cluster must not keep a stack from being destroyed.
        for login in self._logins(props):
            try:
                self._run_on_a_control_plane(login, "revoke", props["user"], f"revoking {props['user']}")
                return
            except RemoteScriptFailed:
                continue

    def _logins(self, props: dict[str, Any]) -> list[dict[str, Any]]:
        """The recorded login, then today's if it differs."""
        today = self._today
        if today is None or not today.private_key or today.private_key == props["private_key"]:
            return [props]
        return [props, {**props, "private_key": today.private_key,
                        "control_planes": [{**candidate, "target": today.target(candidate["target"])}
                                           for candidate in props["control_planes"]]}]


class AdminCredential(DynamicResource):
    """The `kubeconfig` output's credential (see the module docstring); `kubeconfig` is a secret."""

    kubeconfig: pulumi.Output[str]
    not_after: pulumi.Output[str]
    user: pulumi.Output[str]

    def __init__(self, name: str, *, control_planes: list[dict[str, Any]], validity_hours: int,
                 private_key: pulumi.Input[str], scripts: CredentialScripts,
                 opts: Optional[pulumi.ResourceOptions] = None) -> None:
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
            additional_secret_outputs=["private_key", "kubeconfig"]))
        super().__init__(_AdminCredentialProvider(), name, {
            "control_planes": control_planes, "validity_hours": validity_hours,
            "private_key": pulumi.Output.secret(private_key), "issue": scripts.issue, "revoke": scripts.revoke,
            "user": None, "kubeconfig": None, "not_after": None, "renew_at": None}, opts)
