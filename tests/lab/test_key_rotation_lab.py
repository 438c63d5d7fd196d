"""A rotated SSH key on the lab's real Kubernetes (the local-nginx cluster, logged in as `kubeha`
through sudo; the last module on it): a new key is authorised on every host, the stack is pointed
at it and `pulumi up` runs; then the old key is removed from the hosts. Every later step must log
in with the new key, the delete steps too: the certificate reads, the credential's revocation, and
a worker's removal (its drain on a control plane, its `kubeadm reset` on the worker).
"""
from __future__ import annotations

import json
import subprocess

import pytest

from tests.lab.cluster import changed_steps, kubectl, ready_nodes
from tests.lab.hosts import LAB_DIR

pytestmark = pytest.mark.lab
LOGIN = "kubeha"
AUTHORIZED = f"/home/{LOGIN}/.ssh/authorized_keys"
CONTROL_PLANES = ("cp1", "cp2", "cp3")


@pytest.fixture(scope="module")
def rotated(lab_stack) -> str:
    """The new key authorised for `kubeha` on every host, the stack pointed at it, `pulumi up`,
    then the old key taken off every host; returns the old key's public line."""
    new_key = LAB_DIR / "id_ed25519_rotated"
    new_key.unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kubeha-lab-rotated", "-f", str(new_key)],
                   check=True)
    new_public = new_key.with_suffix(".pub").read_text().strip()
    old_public = (LAB_DIR / "id_ed25519.pub").read_text().strip()
    for host in lab_stack.hosts.values():
        host.run(f"printf '%s\\n' '{new_public}' >> {AUTHORIZED}")
    lab_stack.pulumi("config", "set", "--path", "ssh.privateKeyPath", str(new_key))
    lab_stack.pulumi("up", "--yes", "--skip-preview", timeout=1200)
    for host in lab_stack.hosts.values():
        host.run(f"grep -vxF '{old_public}' {AUTHORIZED} > {AUTHORIZED}.new; "
                 f"cat {AUTHORIZED}.new > {AUTHORIZED}; rm -f {AUTHORIZED}.new")
    return old_public


def test_the_old_key_no_longer_logs_in(rotated, lab_stack):
    address = lab_stack.hosts["cp1"].address
    result = subprocess.run(["ssh", "-i", str(LAB_DIR / "id_ed25519"), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                             "-o", "ConnectTimeout=5", f"{LOGIN}@{address}", "true"], capture_output=True, timeout=30)
    assert result.returncode != 0


def test_certificates_are_read_with_the_new_key(rotated, lab_stack):
    """A renewal window change makes each control plane's certificate record read its host again
    (no renewal: the certificates are months from expiry); a read failure fails the `up`."""
    before = lab_stack.output("certificatesExpire")
    lab_stack.pulumi("config", "set", "--path", "certificates.renewBeforeDays", "31")
    steps = changed_steps(lab_stack.pulumi("preview", "--diff", "--json").stdout)
    assert {step["urn"].rsplit("::", 1)[1] for step in steps} == {f"{name}-certificates" for name in CONTROL_PLANES}
    lab_stack.pulumi("up", "--yes", "--skip-preview")
    assert lab_stack.output("certificatesExpire") == before


def test_the_credential_is_revoked_with_the_new_key(rotated, lab_stack, kubeconfig_file):
    assert kubectl(kubeconfig_file, "get", "nodes").returncode == 0
    resources = json.loads(lab_stack.pulumi("stack", "export").stdout)["deployment"]["resources"]
    urn = next(resource["urn"] for resource in resources if resource["urn"].endswith("::cluster-admin-credential"))
    lab_stack.pulumi("up", "--yes", "--skip-preview", "--replace", urn)
    refused = kubectl(kubeconfig_file, "get", "nodes")
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower(), refused.stderr  # revoked


def test_a_worker_is_removed_with_the_new_key(rotated, lab_stack, tmp_path):
    fresh = tmp_path / "config"
    fresh.write_text(lab_stack.kubeconfig())
    fresh.chmod(0o600)
    entries = lab_stack.config_value("workers")
    lab_stack.set_config_value("workers", [entry for entry in entries if entry["name"] != "w1"])
    lab_stack.pulumi("up", "--yes", "--skip-preview", timeout=1200)
    assert "w1" not in ready_nodes(fresh)
    assert lab_stack.hosts["w1"].run("test -e /etc/kubernetes/kubelet.conf", check=False).returncode != 0  # reset
