"""A lab host standing in for the site's copy host (etcd.backup.copyTo): a login of its own, with
no sudo, that takes a key made for the backups only. Shared by the backup tests (w1 plays it) and
the restore onto new hosts (lb1, outside the cluster)."""
from __future__ import annotations

import subprocess
from pathlib import Path

from tests.lab.cluster import LabStack
from tests.lab.hosts import LabHost

USER, PATH = "kubeha-backup", "/srv/kubeha-backup"
DIRECTORY = f"{PATH}/kubernetes"  # <path>/<kubernetes.clusterName>


def make_copy_host(host: LabHost, folder: Path) -> str:
    """`host` takes the backups' login; returns the private key (made in `folder`)."""
    folder.mkdir(parents=True, exist_ok=True)
    for made in (folder / "key", folder / "key.pub"):
        made.unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kubeha-lab-copy", "-f", str(folder / "key")],
                   check=True)
    public = (folder / "key.pub").read_text().strip()
    home = f"/home/{USER}"
    host.run(f"id {USER} >/dev/null 2>&1 || useradd -m -s /bin/sh {USER}; usermod -p '*' {USER}; "
             f"install -d -m 0700 -o {USER} -g {USER} {home}/.ssh {PATH}; "
             f"printf '%s\\n' '{public}' > {home}/.ssh/authorized_keys; "
             f"chown {USER}: {home}/.ssh/authorized_keys; chmod 0600 {home}/.ssh/authorized_keys")
    return (folder / "key").read_text()


def set_copy_to(stack: LabStack, host: LabHost, private_key: str) -> None:
    """etcd.backup.copyTo on the stack: `host`, its pinned host key, the key as a secret (only the
    key: Pulumi masks a secret's value wherever it shows, a host name or an address too)."""
    settings = {"host": host.address, "user": USER, "path": PATH,
                "hostKey": host.run("cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.strip()}
    for key, value in settings.items():
        stack.pulumi("config", "set", "--path", f"etcd.backup.copyTo.{key}", value)
    stack.pulumi("config", "set", "--secret", "--path", "etcd.backup.copyTo.privateKey", stdin=private_key)
