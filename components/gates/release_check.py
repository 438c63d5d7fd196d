"""Whether the package repository has a Kubernetes release, asked read only on the lead: the
settings guard asks before it accepts a new kubernetes.version (templates/upgrade/repository-check.sh.j2)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from components.config.model import ClusterConfig, kubernetes_package_source
from components.render import render
from components.ssh.remote import SshAccess
from components.ssh.ssh_session import RemoteScriptFailed, SshTarget, run_over_ssh

# repository-check.sh.j2 exits with this when a package of the release is not in the repository.
RELEASE_MISSING = 3


@dataclass(frozen=True)
class ReleaseCheck:
    """How to ask, read only, whether the package repository has a release (repository-check.sh.j2
    on the lead): the settings guard asks before it accepts a new kubernetes.version."""

    node: str
    target: dict[str, object]  # SshAccess.target()
    script: str  # wrapped by remote.as_remote_command
    repository: str  # the minor release's repository, for the message

    def to_dict(self) -> dict[str, object]:
        return {"node": self.node, "target": self.target, "script": self.script, "repository": self.repository}


def release_check(config: ClusterConfig, ssh: SshAccess) -> ReleaseCheck:
    """The check of config's kubernetes.version against the package repository, on the lead."""
    lead, kubernetes = config.lead_control_plane, config.kubernetes
    script = render("upgrade/repository-check.sh.j2", host=lead, missing_status=RELEASE_MISSING,
                    **kubernetes_package_source(kubernetes, config.packages))
    return ReleaseCheck(node=lead.name, target=ssh.target(lead),
                        script=ssh.command(script, "upgrade-repository-check"),
                        repository=f"{kubernetes.package_repository}/{kubernetes.minor}")


def release_problem(check: dict[str, Any], private_key: str, version: str) -> Optional[str]:
    """None when the repository has kubeadm, kubelet and kubectl `version`; else what is wrong."""
    try:
        result = run_over_ssh(SshTarget.from_dict(check["target"]), private_key, check["script"],
                              label=f"{check['node']}: package repository check", check=False)
    except RemoteScriptFailed as error:
        return f"{check['repository']} could not be checked: {error}"
    if result.status == 0:
        return None
    if result.status == RELEASE_MISSING:
        return f"the package repository {check['repository']} has no {result.stdout.strip()} {version}"
    return f"the package repository {check['repository']} could not be read from {check['node']}: " \
           f"{result.stderr.strip()[-300:]}"
