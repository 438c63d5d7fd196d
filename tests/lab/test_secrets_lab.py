"""No secret escapes when a step that handles one fails, with the real command provider.

The real command provider logs command output and puts the command and its whole output into
the error of a failed step, which the engine prints and keeps in the state; the join step
(KubeadmJoin, over paramiko) puts the end of a failed script's stderr into its error. Two
failures are provoked on the product's lab cluster: a worker's `kubeadm join` failing after it
read its token from stdin, and a new control plane's join material failing after kubeadm made
its token and certificate key. (On the lab's shared `ha` cluster, after the membership module:
the new nodes are w6 and cp4.) Then the SSH key, every token and certificate key cp1 minted and
the kubeconfig's client key are looked for in the failed runs' output, in every file of the
local state backend (checkpoints, history, backups) and in `pulumi stack history`.
"""
from __future__ import annotations

import base64
import json

import pytest
import yaml

from components.ssh.ssh_session import fingerprint
from tests.lab.cluster import LabStack
from tests.lab.clusters import LabClusters
from tests.lab.hosts import LAB_DIR

pytestmark = pytest.mark.lab
# Put ahead of the real kubeadm on cp1 (/usr/local/sbin comes first in PATH): it records every
# token and certificate key kubeadm mints, for this test to search for, and fails on demand.
RECORD = "/root/kubeha-test-minted-secrets"
RECORDING_KUBEADM = f"""#!/bin/bash
set -euo pipefail
real="$(PATH=/usr/local/bin:/usr/bin:/bin command -v kubeadm)"
case "$*" in
    "token create"*|"certs certificate-key"*)
        minted="$("${{real}}" "$@")"
        printf '%s\\n' "${{minted}}" >> {RECORD}
        printf '%s\\n' "${{minted}}" ;;
    "init phase upload-certs"*)
        [ ! -e /root/kubeha-test-fail-upload ] || {{ echo "upload-certs failed (test)" >&2; exit 1; }}
        exec "${{real}}" "$@" ;;
    *) exec "${{real}}" "$@" ;;
esac
"""


@pytest.fixture(scope="module")
def lab_stack(lab_clusters: LabClusters) -> LabStack:
    """The shared cluster, with the recording kubeadm on cp1 while this module runs."""
    stack = lab_clusters.cluster("ha")
    cp1 = stack.hosts["cp1"]
    cp1.run(f"umask 077; cat > /usr/local/sbin/kubeadm <<'KUBEADM'\n{RECORDING_KUBEADM}KUBEADM\n"
            "chmod 0700 /usr/local/sbin/kubeadm")
    yield stack
    cp1.run(f"rm -f /usr/local/sbin/kubeadm {RECORD} /root/kubeha-test-fail-upload")


def add_node(stack: LabStack, name: str, role: str) -> None:
    """A new host `name`, booted and put at the end of `role` (controlPlanes or workers)."""
    host = stack.add_host(name)
    index = len(stack.config_value(role))
    stack.pulumi("config", "set", "--path", f"{role}[{index}].name", name)
    stack.pulumi("config", "set", "--path", f"{role}[{index}].address", host.address)


def secrets_that_exist(stack: LabStack) -> dict[str, str]:
    """Every secret value there is now, by a name for the failure message."""
    key_lines = (LAB_DIR / "id_ed25519").read_text().splitlines()[1:-1]
    found = {f"ssh key line {number}": line for number, line in enumerate(key_lines)}
    minted = stack.hosts["cp1"].run(f"cat {RECORD} 2>/dev/null || true").stdout.split()
    found.update({f"minted {number}": value for number, value in enumerate(minted)})
    user = yaml.safe_load(stack.kubeconfig())["users"][0]["user"]
    client_key = base64.b64decode(user["client-key-data"]).decode().splitlines()
    found.update({f"kubeconfig client key line {number}": line for number, line in enumerate(client_key[1:-1])})
    found["kubeconfig client-key-data"] = user["client-key-data"]
    found["etcd backup key"] = str(stack.output("etcdBackupKey", show_secrets=True))
    return found


def leaks(texts: dict[str, str], secrets: dict[str, str]) -> list[str]:
    return [f"{secret} in {where}" for where, text in texts.items()
            for secret, value in secrets.items() if len(value) >= 6 and value in text]


def stored_state(stack: LabStack) -> dict[str, str]:
    """Every file of the local backend, and what `pulumi stack history` shows."""
    files = {str(path): path.read_text(errors="replace") for path in (LAB_DIR / "state").rglob("*") if path.is_file()}
    files["pulumi stack history"] = stack.pulumi("stack", "history", "--json").stdout
    return files


HOST_KEY = "cat /etc/ssh/ssh_host_ed25519_key.pub"
LOGINS = "journalctl -u ssh --no-pager -o cat | grep -c 'Accepted publickey' || true"


@pytest.fixture(scope="module")
def failed_pin(lab_stack) -> tuple[str, int]:
    """w6 pinned to another host's key (w1's): the run fails at w6's first session. Returns the
    output and how many logins w6 saw."""
    add_node(lab_stack, "w6", "workers")
    w6 = lab_stack.hosts["w6"]
    before = int(w6.run(LOGINS).stdout.strip() or 0)
    lab_stack.pulumi("config", "set", "--path", "ssh.hostKeys.w6", lab_stack.hosts["w1"].run(HOST_KEY).stdout.strip())
    result = lab_stack.pulumi("up", "--yes", "--skip-preview", check=False)
    logins = int(w6.run(LOGINS).stdout.strip() or 0) - before - 1  # the count itself is one login
    lab_stack.pulumi("config", "set", "--path", "ssh.hostKeys.w6", w6.run(HOST_KEY).stdout.strip())
    assert result.returncode != 0
    return result.stdout + result.stderr, logins


def test_a_wrong_pinned_host_key_fails_before_any_login(failed_pin):
    output, logins = failed_pin
    # Preflight is the first to connect to a new host.
    assert "cluster-preflight" in output and "host key mismatch" in output, output[-3000:]
    assert logins == 0  # the handshake failed: no authentication, no command, no secret sent


@pytest.fixture(scope="module")
def failed_join(lab_stack, failed_pin) -> str:
    """w6's join fails after it read its material: kubeadm's preflight finds a CA already there.
    (w6 is pinned to its own key now.)"""
    lab_stack.hosts["w6"].run("mkdir -p /etc/kubernetes/pki && openssl req -x509 -newkey ed25519 -nodes -subj /CN=x "
                              "-keyout /dev/null -out /etc/kubernetes/pki/ca.crt 2>/dev/null")
    result = lab_stack.pulumi("up", "--yes", "--skip-preview", check=False)
    assert result.returncode != 0
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def failed_material(lab_stack, failed_join) -> str:
    """cp4's join material fails after kubeadm minted a token and a certificate key."""
    lab_stack.hosts["w6"].run("rm -f /etc/kubernetes/pki/ca.crt")
    lab_stack.hosts["cp1"].run("touch /root/kubeha-test-fail-upload")
    add_node(lab_stack, "cp4", "controlPlanes")
    result = lab_stack.pulumi("up", "--yes", "--skip-preview", check=False)
    assert result.returncode != 0
    return result.stdout + result.stderr


def test_a_failed_join_names_its_step_and_kubeadms_reason(failed_join):
    assert "w6-kubeadm-join" in failed_join and "w6: kubeadm join" in failed_join
    assert "FileAvailable--etc-kubernetes-pki-ca.crt" in failed_join


def test_failed_join_material_names_its_step(failed_material):
    assert "cp4-kubeadm-join" in failed_material and "cp4: join material on cp1" in failed_material
    assert "upload-certs failed (test)" in failed_material


def test_no_token_made_for_the_failed_joins_is_left_on_the_cluster(lab_stack, failed_join, failed_material):
    tokens = lab_stack.hosts["cp1"].run("kubeadm token list --kubeconfig /etc/kubernetes/admin.conf").stdout
    assert "kubeha: join" not in tokens, tokens


def test_no_secret_in_the_output_of_the_failed_runs(lab_stack, failed_join, failed_material):
    secrets = secrets_that_exist(lab_stack)
    assert sum(name.startswith("minted") for name in secrets) >= 3  # w6's token, cp4's token and key
    assert leaks({"failed join run": failed_join, "failed material run": failed_material}, secrets) == []


def test_no_secret_in_the_state_or_the_history(lab_stack, failed_join, failed_material):
    assert leaks(stored_state(lab_stack), secrets_that_exist(lab_stack)) == []


def test_the_next_up_finishes_both_joins(lab_stack, failed_material):
    lab_stack.hosts["cp1"].run("rm -f /root/kubeha-test-fail-upload")
    result = lab_stack.pulumi("up", "--yes", "--skip-preview")
    for name in ("w6", "cp4"):
        assert lab_stack.hosts[name].run("test -e /etc/kubernetes/kubelet.conf", check=False).returncode == 0, name
    assert leaks({"converging run": result.stdout + result.stderr}, secrets_that_exist(lab_stack)) == []
    assert leaks(stored_state(lab_stack), secrets_that_exist(lab_stack)) == []
    assert json.loads(lab_stack.pulumi("stack", "output", "--json").stdout)["kubeconfig"] == "[secret]"


# Where a host keeps files (the container images and etcd's data aside: the images hold no secret
# of the stack, and the deleted tokens live on in etcd's history only until it is compacted).
HOST_FOLDERS = "/etc /root /home /tmp /var/tmp /var/log /run /var/lib/kubelet"


def test_no_minted_token_or_certificate_key_is_left_in_any_file_on_any_host(lab_stack, failed_material):
    minted = lab_stack.hosts["cp1"].run(f"cat {RECORD}").stdout.split()
    assert len(minted) >= 3
    patterns = "\n".join(minted)
    found = {}
    for name, host in lab_stack.hosts.items():
        # Every file, binary ones (the journal) included; the test's own record on cp1 aside.
        result = host.run(f"printf '%s\\n' '{patterns}' > /run/kubeha-test-patterns && "
                          f"grep -rlaF -f /run/kubeha-test-patterns {HOST_FOLDERS} 2>/dev/null "
                          f"| grep -v -x -e {RECORD} -e /run/kubeha-test-patterns || true; "
                          "rm -f /run/kubeha-test-patterns", timeout=300)
        if result.stdout.strip():
            found[name] = result.stdout.split()
    assert found == {}


# Last: its own `up` would finish the joins the fixtures above leave failed.
def test_a_host_whose_key_changed_since_first_contact_is_refused_before_any_login(lab_stack):
    """w1's host keys made anew, as a reinstall (or someone in the middle) would: the next `up`
    stops at the key kubeha recorded on first contact, naming w1 and both fingerprints, before any
    step logs in there; pinning the new key lets the runs go on."""
    w1 = lab_stack.hosts["w1"]
    old = w1.run(HOST_KEY).stdout.strip()
    w1.run("rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub && ssh-keygen -A && systemctl restart ssh")
    new = w1.run(HOST_KEY).stdout.strip()
    before = int(w1.run(LOGINS).stdout.strip() or 0)
    result = lab_stack.pulumi("up", "--yes", "--skip-preview", check=False)
    logins = int(w1.run(LOGINS).stdout.strip() or 0) - before - 1  # the count itself is one login
    lab_stack.pulumi("config", "set", "--path", "ssh.hostKeys.w1", new)
    assert result.returncode != 0
    assert (f"kubeha:ssh.hostKeys: w1 ({w1.address}) offers the host key {fingerprint(new)}, not {fingerprint(old)}"
            in result.stdout + result.stderr), (result.stdout + result.stderr)[-3000:]
    assert logins == 0  # a handshake only: no authentication, no command
    lab_stack.pulumi("up", "--yes", "--skip-preview")  # w1's steps take the pinned key
