"""Scheduled etcd backups (etcd.backup) on the lab's real Kubernetes: the local-nginx cluster,
logged in as `kubeha` through sudo, so the key travels on stdin through `sudo -n`.

Real etcd 3.6 (its etcdctl and etcdutl, run by containerd's `ctr` in etcd's own image), real
systemd timers and units, real OpenSSL. The cluster's build took one backup per control plane;
these tests read them, decrypt one with the key from the stack's state, take more by hand and
through `pulumi up`, check that `keep` holds, and break a run on purpose.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import pytest

from tests.lab.cluster import LabStack, changed_steps, kubectl
from tests.lab.copy_host import DIRECTORY as DIRECTORY_THERE
from tests.lab.copy_host import USER, make_copy_host, set_copy_to
from tests.lab.hosts import LAB_DIR

pytestmark = pytest.mark.lab
CONTROL_PLANES = ("cp1", "cp2", "cp3")
DIRECTORY = "/var/lib/kubeha/etcd-backup"
SERVICE = "kubeha-etcd-backup.service"
KEY_FILE = "/etc/kubeha/etcd-backup.key"
DECRYPT = f"openssl enc -d -aes-256-cbc -pbkdf2 -iter 200000 -md sha256 -pass file:{KEY_FILE}"


def latest(stack: LabStack, node: str) -> dict:
    return json.loads(stack.hosts[node].run(f"cat {DIRECTORY}/latest.json").stdout)


def backup_files(stack: LabStack, node: str) -> list[str]:
    listing = stack.hosts[node].run(f"find {DIRECTORY} -maxdepth 1 -name 'kubeha-etcd-*.tar.enc' | sort").stdout
    return listing.split()


TIMER = "kubeha-etcd-backup.timer"


@pytest.fixture(scope="module", autouse=True)
def timers_at_module_start(lab_stack) -> Iterator[dict[str, str]]:
    """Each control plane's timer state as the build left it; then the timers pause for this module.

    The schedule is hourly: a run at the top of the hour, during these tests, would add a backup
    that their counts do not expect (a CI run crossed 11:00 and failed three tests that way). The
    build's own backup is the oldest file; a scheduled run before this module only adds newer ones.
    """
    states = {node: lab_stack.hosts[node].run(f"systemctl is-active {TIMER}", check=False).stdout.strip()
              for node in CONTROL_PLANES}
    for node in CONTROL_PLANES:
        lab_stack.hosts[node].run(f"systemctl stop {TIMER}")
    yield states
    for node in CONTROL_PLANES:
        lab_stack.hosts[node].run(f"systemctl start {TIMER}")


def test_the_build_left_a_verified_backup_on_every_control_plane(lab_stack):
    listed = {entry["host"]: entry for entry in lab_stack.output("etcdBackups")}
    assert sorted(listed) == list(CONTROL_PLANES)
    for node in CONTROL_PLANES:
        record = latest(lab_stack, node)
        assert record["verified"] is True and record["revision"] > 0, node
        assert listed[node]["revision"] > 0 and backup_files(lab_stack, node)[0] == listed[node]["path"], node
    # What each took and weighs, for docs/benchmarks.md (the lab's own record; no assertion on it).
    (LAB_DIR / "etcd-backups.json").write_text(json.dumps({node: latest(lab_stack, node) for node in CONTROL_PLANES},
                                                          indent=2) + "\n")


def test_the_timer_runs_on_the_schedule(lab_stack, timers_at_module_start):
    assert timers_at_module_start == {node: "active" for node in CONTROL_PLANES}
    for node in CONTROL_PLANES:
        host = lab_stack.hosts[node]
        assert host.run(f"systemctl is-enabled {TIMER}").stdout.strip() == "enabled", node
        calendar = host.run(f"systemctl show -p TimersCalendar --value {TIMER}").stdout
        assert "OnCalendar=*-*-* *:00:00" in calendar, (node, calendar)  # hourly, the default


def test_only_root_can_read_the_backups_and_the_key(lab_stack):
    host = lab_stack.hosts["cp1"]
    record = latest(lab_stack, "cp1")
    modes = host.run(f"stat -c '%a %U' {DIRECTORY} {record['file']} {KEY_FILE}").stdout.split("\n")
    assert modes[:3] == ["700 root", "600 root", "600 root"]


def test_a_backup_file_holds_no_plaintext_and_decrypts_with_the_stacks_key(lab_stack):
    host = lab_stack.hosts["cp1"]
    record = latest(lab_stack, "cp1")
    key = str(lab_stack.output("etcdBackupKey", show_secrets=True))
    assert host.run(f"sha256sum < {KEY_FILE}").stdout.split()[0] == hashlib.sha256(key.encode()).hexdigest()
    assert host.run(f"grep -ac 'PRIVATE KEY' {record['file']} || true").stdout.strip() == "0"
    members = host.run(f"{DECRYPT} -in {record['file']} | tar -tf -").stdout.split()
    assert sorted(members) == sorted(["manifest.json", "snapshot.db", "pki/ca.crt", "pki/ca.key", "pki/sa.key",
                                      "pki/sa.pub", "pki/front-proxy-ca.crt", "pki/front-proxy-ca.key",
                                      "pki/etcd/ca.crt", "pki/etcd/ca.key"])
    manifest = json.loads(host.run(f"{DECRYPT} -in {record['file']} | tar -xOf - manifest.json").stdout)
    assert manifest["caCertHash"] == lab_stack.output("caCertHash")
    assert manifest["revision"] == record["revision"] and manifest["host"] == "cp1"
    snapshot_sha256 = host.run(f"{DECRYPT} -in {record['file']} | tar -xOf - snapshot.db | sha256sum").stdout.split()[0]
    assert snapshot_sha256 == manifest["snapshotSha256"]


def test_a_backup_started_by_hand_holds_what_was_written_before_it(lab_stack, kubeconfig_file):
    before = latest(lab_stack, "cp2")
    files_before = backup_files(lab_stack, "cp2")
    created = kubectl(kubeconfig_file, "create", "configmap", "kubeha-backup-marker", "--from-literal=a=b")
    assert created.returncode == 0, created.stderr
    lab_stack.hosts["cp2"].run(f"systemctl start {SERVICE}")
    after = latest(lab_stack, "cp2")
    assert after["file"] != before["file"] and after["revision"] > before["revision"]
    assert backup_files(lab_stack, "cp2") == [*files_before, after["file"]]


def test_a_failed_backup_fails_its_unit_and_leaves_nothing_behind(lab_stack):
    host = lab_stack.hosts["cp3"]
    before = latest(lab_stack, "cp3")
    names_before = [path.rsplit("/", 1)[1] for path in backup_files(lab_stack, "cp3")]
    host.run(f"mv {KEY_FILE} {KEY_FILE}.away")  # openssl cannot encrypt: the run fails after the snapshot
    try:
        result = host.run(f"systemctl start {SERVICE}", check=False)
        state = host.run(f"systemctl show -p Result --value {SERVICE}").stdout.strip()
        leftovers = host.run(f"ls -A {DIRECTORY}; ctr -n k8s.io containers ls -q | grep kubeha-etcd-backup || true").stdout
    finally:
        host.run(f"mv {KEY_FILE}.away {KEY_FILE}")
    assert result.returncode != 0 and state == "exit-code"
    assert latest(lab_stack, "cp3") == before  # the newest verified backup is still the one before
    assert sorted(leftovers.split()) == sorted([".lock", "latest.json", *names_before])
    host.run(f"systemctl start {SERVICE}")  # and the next run works again


def test_a_keep_change_rolls_out_takes_a_backup_and_prunes(lab_stack):
    lab_stack.pulumi("config", "set", "--path", "etcd.backup.keep", "2")
    steps = changed_steps(lab_stack.pulumi("preview", "--diff", "--json").stdout)
    assert {(step["op"], step["urn"].rsplit("::", 1)[1]) for step in steps} == {
        *(("update", f"etcd-backup-{node}") for node in CONTROL_PLANES),
        *(("update", f"etcd-backup-{node}-status") for node in CONTROL_PLANES)}
    lab_stack.pulumi("up", "--yes", "--skip-preview")
    listed = {entry["host"]: entry for entry in lab_stack.output("etcdBackups")}
    for node in CONTROL_PLANES:
        files = backup_files(lab_stack, node)
        assert len(files) == 2, (node, files)  # cp2 and cp3 had at least three
        assert listed[node]["path"] == files[-1] == latest(lab_stack, node)["file"], node


KNOWN_HOSTS = "/etc/kubeha/etcd-backup-copy.known_hosts"


@pytest.fixture(scope="module")
def copy_key(lab_stack, tmp_path_factory) -> str:
    """w1 stands in for the site's copy host (tests/lab/copy_host); the backups' private key."""
    return make_copy_host(lab_stack.hosts["w1"], tmp_path_factory.mktemp("copy-key"))


def copies(stack: LabStack, node: str) -> list[str]:
    listing = stack.hosts["w1"].run(f"find {DIRECTORY_THERE} -maxdepth 1 -name 'kubeha-etcd-*-{node}.tar.enc' "
                                    f"-printf '%f\\n' | sort").stdout
    return listing.split()


def test_with_copy_to_every_new_backup_goes_to_the_copy_host_with_its_checksum(lab_stack, copy_key):
    w1 = lab_stack.hosts["w1"]
    set_copy_to(lab_stack, w1, copy_key)
    lab_stack.pulumi("up", "--yes", "--skip-preview")  # each install takes a backup, now copied
    listed = {entry["host"]: entry for entry in lab_stack.output("etcdBackups")}
    for node in CONTROL_PLANES:
        record = latest(lab_stack, node)
        name = record["file"].rsplit("/", 1)[1]
        assert record["copiedTo"] == listed[node]["copiedTo"] == f"{w1.address}:{DIRECTORY_THERE}/{name}", node
        local = lab_stack.hosts[node].run(f"sha256sum < {record['file']}").stdout.split()[0]
        assert w1.run(f"sha256sum < {DIRECTORY_THERE}/{name}").stdout.split()[0] == local, node
        assert w1.run(f"stat -c '%a %U' {DIRECTORY_THERE}/{name}").stdout.strip() == f"600 {USER}", node
    assert copy_key.splitlines()[1] not in lab_stack.pulumi("stack", "export").stdout  # a secret in the state


def test_the_copy_host_keeps_the_newest_keep_of_each_control_plane(lab_stack, copy_key):
    for _ in range(2):
        lab_stack.hosts["cp1"].run(f"systemctl start {SERVICE}")
    local = [path.rsplit("/", 1)[1] for path in backup_files(lab_stack, "cp1")]
    assert copies(lab_stack, "cp1") == local and len(local) == 2  # etcd.backup.keep is 2


def test_a_copy_host_offering_another_key_gets_nothing_and_the_unit_fails(lab_stack, copy_key):
    host = lab_stack.hosts["cp1"]
    before = copies(lab_stack, "cp1")
    other = lab_stack.hosts["cp2"].run("cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[:2]
    host.run(f"cp -p {KNOWN_HOSTS} {KNOWN_HOSTS}.kept && printf 'kubeha-etcd-backup-copy %s %s\\n' {' '.join(other)} "
             f"> {KNOWN_HOSTS}")
    try:
        failed = host.run(f"systemctl start {SERVICE}", check=False)
        journal = host.run(f"journalctl -u {SERVICE} -n 5 --no-pager -o cat").stdout
        record = latest(lab_stack, "cp1")
    finally:
        host.run(f"mv -f {KNOWN_HOSTS}.kept {KNOWN_HOSTS}")
    assert failed.returncode != 0 and "the copy to" in journal, journal
    assert record["verified"] is True and record["copiedTo"] == ""  # the local backup still counts
    assert copies(lab_stack, "cp1") == before
    host.run(f"systemctl start {SERVICE}")  # with the right key again, the next run copies
    assert latest(lab_stack, "cp1")["copiedTo"]


def test_a_no_op_preview_reads_no_backup_status(lab_stack):
    assert changed_steps(lab_stack.pulumi("preview", "--diff", "--json").stdout) == []
