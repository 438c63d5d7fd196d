"""The one SSH connection builder and the one command helper every component uses."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, cast

import pulumi
from pulumi_command import remote

from components.config.model import Host, NodeHost, SshSettings
from components.render import render

# The provider stops retrying a host after this many failed dials (about a minute and a half
# with the default per-dial timeout), so a dead host fails `pulumi up` instead of hanging it.
_DIAL_ERROR_LIMIT = 10
_PER_DIAL_TIMEOUT_S = 10
# Every input of a remote.Command: on a decommissioned host nothing may differ from the state,
# or the engine would connect to the host to apply it.
_EVERY_INPUT = ["connection", "create", "delete", "update", "stdin", "triggers", "environment", "logging",
                "addPreviousOutputInEnv"]


@dataclass(frozen=True)
class SshAccess:
    """How to reach every host: one user/port and one secret private key. Every command waits for
    the gates (the preflight after the settings guard: a refused edit or a bad new host stops the
    run before any host is changed; then the firewall's steps)."""

    settings: SshSettings
    private_key: pulumi.Output[str]
    gates: tuple[pulumi.Resource, ...] = ()
    # Every host's required host key (components/ssh/host_keys): pinned, or trusted on first use.
    host_keys: Optional[pulumi.Output[dict[str, str]]] = None

    def host_key(self, host: Host) -> pulumi.Input[Optional[str]]:
        """The key `host` must offer: ssh.hostKeys' pin, else the one recorded on first use."""
        pinned = self.settings.host_keys.get(host.name)
        if pinned is not None or self.host_keys is None:
            return pinned
        return self.host_keys.apply(lambda keys: (keys or {}).get(host.name))

    def connection(self, host: Host) -> remote.ConnectionArgs:
        return remote.ConnectionArgs(
            host=host.ip,
            port=self.settings.port,
            user=self.settings.user,
            private_key=self.private_key,
            # Pinned: the provider accepts exactly this key, else it stops before sending anything.
            host_key=cast(Optional[pulumi.Input[str]], self.host_key(host)),
            dial_error_limit=_DIAL_ERROR_LIMIT,
            per_dial_timeout=_PER_DIAL_TIMEOUT_S,
        )

    def target(self, host: Host) -> dict[str, Any]:
        """The same login for the steps that run over paramiko (ssh_session.SshTarget.from_dict
        reads it in their providers); the private key goes apart."""
        return {"address": host.ip, "port": self.settings.port, "user": self.settings.user,
                "host_key": self.host_key(host)}

    @property
    def sudo(self) -> bool:
        return self.settings.user != "root"

    def command(self, script: str, label: str) -> str:
        """`script` wrapped for this login (as_remote_command, through sudo unless root): every
        remote script, the command provider's and the paramiko steps', goes through here."""
        return as_remote_command(script, label, sudo=self.sudo)

    def gated(self, opts: pulumi.ResourceOptions) -> pulumi.ResourceOptions:
        """`opts` waiting for the gates: every step that reaches a host uses it."""
        if not self.gates:
            return opts
        return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=list(self.gates)))


def as_remote_command(script: str, label: str, *, sudo: bool = False) -> str:
    """Wrap a bash script so it runs under bash whatever the login shell is, as root: through
    `sudo -n` (passwordless sudo; it fails at once rather than wait for a password) when the
    login is not root.

    The script text stays verbatim in the command (so `pulumi preview --diff` shows reviewers the
    real script) and the session's stdin stays free for secrets (sudo passes it on).
    """
    return render("remote-command.sh.j2", script=script.rstrip("\n"), label=label, sudo=sudo)


def run_script(
    resource_name: str,
    *,
    host: Host,
    ssh: SshAccess,
    create: pulumi.Input[str],
    delete: Optional[str] = None,
    stdin: Optional[pulumi.Input[str]] = None,
    secret_stdout: bool = False,
    triggers: Optional[Sequence[pulumi.Input[object]]] = None,
    runs_once: bool = False,
    hands_off: bool = False,
    opts: pulumi.ResourceOptions,
) -> remote.Command:
    """One remote.Command running rendered bash on `host`.

    With secret_stdout the command's stdout is a Pulumi secret and is not logged, so a token or a
    kubeconfig never appears in the engine's output. A `runs_once` step is not run again when its
    script or its connection changes (its host may be another one by then: a new lead). If it has
    a delete step, a new connection (a rotated key, another user or port) is recorded by a script
    that changes nothing, so that the delete reaches the host with the login of the day.
    A `hands_off` step (as every step on a decommissioned host) is kept as it is in the state, and
    leaves the stack without its delete step.
    """
    update = None
    if runs_once:
        kept = ["create"] if delete else ["create", "connection"]
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(ignore_changes=kept))
        update = render("connection-updated.sh.j2", step=resource_name) if delete else None
    if secret_stdout:
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["stdout"]))
    if hands_off or (isinstance(host, NodeHost) and host.decommission is not None):
        # Hands off: kept as it is in the state, and when its entry goes, it leaves the stack
        # without its delete step (which would have to reach the host).
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(retain_on_delete=True,
                                                                         ignore_changes=_EVERY_INPUT))
    return remote.Command(
        resource_name,
        connection=ssh.connection(host),
        create=pulumi.Output.from_input(create).apply(lambda script: ssh.command(script, f"{resource_name}-create")),
        delete=ssh.command(delete, f"{resource_name}-delete") if delete else None,
        update=ssh.command(update, f"{resource_name}-update") if update else None,
        stdin=stdin,
        triggers=list(triggers) if triggers else None,
        logging=remote.Logging.STDERR if secret_stdout else None,
        # The previous stdout may hold a secret; never hand it to the next run's environment.
        add_previous_output_in_env=False,
        opts=ssh.gated(opts),
    )
