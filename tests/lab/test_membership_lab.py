"""Nodes come and go on the lab's shared `ha` cluster (tests/lab/clusters.py), after its upgrade:
a worker added (preflight refusals, a failed join and its retry first), a drain a disruption
budget blocks, the worker removed; cp1, the control plane that initialised the cluster, removed
under load and joined again as a new host; the kubeconfig reissued without it; certificates
renewed by `up` while the cluster serves; an unreachable worker removed without touching it;
an unreachable control plane removed without a drain and replaced by cp5.

The cluster runs kubeha's firewall (firewall.mode managed): a node's own firewall step,
`firewall-<node>`, comes and goes with the node.
"""
from __future__ import annotations

import datetime
import json
from dataclasses import dataclass

import pytest
import yaml

from tests.lab.cluster import (
    PORT,
    VIP,
    LabStack,
    changed_steps,
    etcd_members,
    kubectl,
    ready_nodes,
    resource_name,
    wait_for,
)
from tests.lab.hosts import lab
from tests.lab.probe import Prober

pytestmark = pytest.mark.lab


def own_resource(name: str, node: str) -> bool:
    """A resource of the node's own: its component, its steps, its firewall, its etcd backups."""
    return name in (node, f"firewall-{node}", f"etcd-backup-{node}", f"etcd-backup-{node}-status") \
        or name.startswith(f"{node}-")


def test_adding_a_worker_previews_only_the_new_workers_resources(lab_stack):
    w3 = lab_stack.add_host("w3")
    lab_stack.pulumi("config", "set", "--path", "workers[2].name", "w3")
    lab_stack.pulumi("config", "set", "--path", "workers[2].address", w3.address)
    steps = changed_steps(lab_stack.pulumi("preview", "--diff", "--json").stdout)
    # w3's own resources, and the wait for every node Ready, which now includes w3.
    created = {resource_name(step["urn"]) for step in steps if step["op"] == "create"}
    assert created and all(own_resource(name, "w3") for name in created), created
    # ... the wait for every node Ready, which now includes w3, the preflight, which checks w3, the
    # settings guard's record of the nodes (an upgrade is refused in a run that changes them) and
    # the record of the hosts' SSH keys (w3's is read at `up`).
    assert {(step["op"], resource_name(step["urn"])) for step in steps if step["op"] != "create"} == {
        ("update", "network-nodes-ready"), ("update", "cluster-preflight"), ("update", "cluster-settings"),
        ("update", "cluster-host-keys")}


# Listeners on a new worker's ports, for preflight to find: the kubelet's on w3, a NodePort on w4.
BLOCKERS = {"w3": ("kubeha-test-kubelet-port", 10250), "w4": ("kubeha-test-node-port", 30080)}
BOOTSTRAP_TOKENS = "kube-system secret --field-selector type=bootstrap.kubernetes.io/token"


@dataclass(frozen=True)
class RefusedRuns:
    preview: str  # `pulumi preview` with preflight.onPreview
    up: str  # `pulumi up` without it


@pytest.fixture(scope="module")
def refused_by_preflight(lab_stack) -> RefusedRuns:
    """w3 (in the config already) and a new w4 each have one of their ports taken; a preview told
    to run the preflight, then an `up` (which always runs it). w4 leaves the config again
    afterwards."""
    w4 = lab_stack.add_host("w4")
    lab_stack.pulumi("config", "set", "--path", "workers[3].name", "w4")
    lab_stack.pulumi("config", "set", "--path", "workers[3].address", w4.address)
    for name, (unit, port) in BLOCKERS.items():
        lab_stack.hosts[name].run(f"systemd-run --unit={unit} socat TCP-LISTEN:{port},reuseaddr,fork EXEC:/bin/true")
    try:
        lab_stack.pulumi("config", "set", "--path", "preflight.onPreview", "true")
        preview = lab_stack.pulumi("preview", "--diff", check=False)
        lab_stack.pulumi("config", "rm", "--path", "preflight.onPreview")
        up = lab_stack.pulumi("up", "--yes", "--skip-preview", check=False)
    finally:
        for name, (unit, _) in BLOCKERS.items():
            lab_stack.hosts[name].run(f"systemctl stop {unit}")
        lab_stack.pulumi("config", "rm", "--path", "workers[3]")
    assert preview.returncode != 0 and up.returncode != 0
    return RefusedRuns(preview.stdout + preview.stderr, up.stdout + up.stderr)


def reports_both_taken_ports(output: str) -> bool:
    rows = [line.split()[:5] for line in output.splitlines()]
    return ["w3", "ports", "in", "use:", "10250"] in rows and ["w4", "ports", "in", "use:", "30080"] in rows


def test_preflight_reports_every_new_hosts_problem_in_one_table(refused_by_preflight):
    assert reports_both_taken_ports(refused_by_preflight.up), refused_by_preflight.up[-3000:]


def test_a_preview_with_on_preview_reports_the_same_table(refused_by_preflight):
    assert reports_both_taken_ports(refused_by_preflight.preview), refused_by_preflight.preview[-3000:]


def test_preflight_stopped_the_run_before_any_host_was_changed(lab_stack, refused_by_preflight):
    for name in ("w3", "w4"):  # neither got its packages
        assert lab_stack.hosts[name].run("command -v kubeadm", check=False).returncode != 0, name
    assert "w3-prepare" not in refused_by_preflight.up


# What kubeadm's join preflight refuses on w3 (kubeha's preflight does not look for it): a CA.
PLANTED_CA = "/etc/kubernetes/pki/ca.crt"


def join_tokens(stack: LabStack) -> str:
    """The bootstrap tokens kubeadm lists on cp1 that kubeha made for a join."""
    listed = stack.hosts["cp1"].run("kubeadm token list --kubeconfig /etc/kubernetes/admin.conf").stdout
    return "\n".join(line for line in listed.splitlines() if "kubeha: join" in line)


@pytest.fixture(scope="module")
def failed_worker_join(lab_stack, refused_by_preflight) -> str:
    """w3's first join fails (kubeadm's preflight: a CA is there already). Returns the run's output."""
    lab_stack.hosts["w3"].run(f"mkdir -p /etc/kubernetes/pki && openssl req -x509 -newkey ed25519 -nodes "
                              f"-subj /CN=x -keyout /dev/null -out {PLANTED_CA} 2>/dev/null")
    result = lab_stack.pulumi("up", "--yes", "--skip-preview", check=False)
    assert result.returncode != 0
    return result.stdout + result.stderr


def test_a_failed_worker_join_says_why_and_leaves_no_token(lab_stack, failed_worker_join):
    output = failed_worker_join
    assert "w3-kubeadm-join" in output and "FileAvailable--etc-kubernetes-pki-ca.crt" in output, output[-3000:]
    assert join_tokens(lab_stack) == ""


def test_the_join_retried_after_every_token_was_deleted_succeeds_touching_only_w3_and_cp1(
        lab_stack, kubeconfig_file, failed_worker_join):
    kubectl(kubeconfig_file, "delete", "-n", *BOOTSTRAP_TOKENS.split())
    lab_stack.hosts["w3"].run(f"rm -f {PLANTED_CA}")
    # (The failed run's preflight read every host once, comparing w3 with them; the retry has
    # nothing left to check.)
    before = lab_stack.ssh_sessions()
    lab_stack.pulumi("up", "--yes", "--skip-preview")
    after = lab_stack.ssh_sessions()
    touched = {name for name in after if after[name] - before.get(name, 0) > 1}
    assert touched == {"w3", "cp1"}, touched  # cp1 makes w3's join token and waits for it to be Ready
    # `up` returned only once w3 was Ready, with the pod network on it.
    assert "w3" in ready_nodes(kubeconfig_file)
    assert join_tokens(lab_stack) == ""


def test_no_bootstrap_token_of_kubeadm_init_is_left(lab_stack):
    listed = lab_stack.hosts["cp1"].run("kubeadm token list --kubeconfig /etc/kubernetes/admin.conf").stdout
    assert "generated by 'kubeadm init'" not in listed, listed


# A pod on w3 that a PodDisruptionBudget keeps from being evicted.
DRAIN_BLOCKER = """\
apiVersion: v1
kind: Pod
metadata: {name: drain-blocker, namespace: default, labels: {app: drain-blocker}}
spec:
  nodeName: w3
  containers: [{name: pause, image: registry.k8s.io/pause:3.10.1, imagePullPolicy: Never}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: drain-blocker, namespace: default}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: drain-blocker}}
"""


def test_a_removal_whose_drain_a_disruption_budget_blocks_says_so_and_keeps_the_node(
        lab_stack, kubeconfig_file, tmp_path):
    lab_stack.pulumi("config", "set", "--path", "kubernetes.drainTimeoutSeconds", "20")
    lab_stack.pulumi("up", "--yes", "--skip-preview")  # the records take the shorter drain
    manifest = tmp_path / "drain-blocker.yaml"
    manifest.write_text(DRAIN_BLOCKER)
    assert kubectl(kubeconfig_file, "apply", "-f", str(manifest)).returncode == 0
    assert kubectl(kubeconfig_file, "wait", "--for=condition=Ready", "pod/drain-blocker", "--timeout=60s",
                   timeout=90).returncode == 0
    w3 = lab_stack.config_value("workers")[2]
    lab_stack.pulumi("config", "rm", "--path", "workers[2]")
    try:
        result = lab_stack.pulumi("up", "--yes", "--skip-preview", check=False)
        output = result.stdout + result.stderr
        assert result.returncode != 0
        assert "w3: drain blocked by a PodDisruptionBudget for 20 s" in output, output[-3000:]
        node = json.loads(kubectl(kubeconfig_file, "get", "node", "w3", "-o", "json").stdout)
        assert node["spec"].get("unschedulable") is True  # cordoned, still a node, not reset
        assert lab_stack.hosts["w3"].run("test -e /etc/kubernetes/kubelet.conf", check=False).returncode == 0
    finally:
        kubectl(kubeconfig_file, "delete", "-f", str(manifest), "--wait=false")
        workers = lab_stack.config_value("workers")
        lab_stack.set_config_value("workers", [*workers, w3])


def test_removing_the_worker_drains_deletes_and_resets_it(lab_stack, kubeconfig_file):
    lab_stack.pulumi("config", "rm", "--path", "workers[2]")
    steps = changed_steps(lab_stack.pulumi("preview", "--diff", "--json").stdout)
    deleted = [resource_name(step["urn"]) for step in steps if step["op"] == "delete"]
    assert deleted and all(own_resource(name, "w3") for name in deleted), deleted
    # (The Ready wait may have dropped w3 already, in the run the disruption budget stopped.)
    assert {(step["op"], resource_name(step["urn"])) for step in steps if step["op"] != "delete"} <= {
        ("update", "network-nodes-ready"), ("update", "cluster-settings"), ("update", "cluster-host-keys")}
    before = lab_stack.ssh_sessions()
    result = lab_stack.pulumi("up", "--yes", "--skip-preview")
    after = lab_stack.ssh_sessions()
    assert {name for name in after if after[name] - before[name] > 1} == {"w3", "cp1"}
    assert "w3: drained" in result.stdout and "w3: deleted from the cluster" in result.stdout
    assert "w3: cluster state removed" in result.stdout  # kubeadm reset -f ran on w3
    assert lab_stack.hosts["w3"].run("test -e /etc/kubernetes/kubelet.conf", check=False).returncode != 0
    assert lab_stack.hosts["w3"].run("pgrep -x kubelet", check=False).returncode != 0
    assert "w3" not in kubectl(kubeconfig_file, "get", "nodes").stdout


def test_removing_the_control_plane_that_initialised_the_cluster_is_an_ordinary_removal(lab_stack, kubeconfig_file):
    entries = lab_stack.config_value("controlPlanes")
    lab_stack.set_config_value("controlPlanes", [entry for entry in entries if entry["name"] != "cp1"])
    steps = changed_steps(lab_stack.pulumi("preview", "--diff", "--json").stdout)
    # Only cp1's own resources go; nothing is replaced, and no other node is reset.
    assert {step["op"] for step in steps} <= {"update", "delete", "create"}, steps
    deleted = {resource_name(step["urn"]) for step in steps if step["op"] == "delete"}
    assert deleted and all(own_resource(name, "cp1") for name in deleted), deleted
    prober = Prober(VIP, PORT, lab_stack.cluster_ca, interval=0.05, max_seconds=600, retries=1).start()
    try:
        result = lab_stack.pulumi("up", "--yes", "--skip-preview")
    finally:
        results = prober.stop()
    assert len(results) > 20
    # The cluster kept serving through the VIP (a client that retries once saw no failure).
    assert prober.failures == [], prober.failures[:5]
    assert "cp1: etcd keeps its quorum without it" in result.stdout
    assert "cp1: etcd member" in result.stdout and "cp1: cluster state removed" in result.stdout
    assert etcd_members(kubeconfig_file, on="cp2") == [("started", "cp2"), ("started", "cp3")]
    assert "cp1" not in kubectl(kubeconfig_file, "get", "nodes").stdout
    assert wait_for(lambda: "cp1" not in lab_stack.backend_status("lb1"), 60)
    for name in ("cp2", "cp3"):  # untouched: still members, still serving
        assert lab_stack.hosts[name].run("test -e /etc/kubernetes/admin.conf", check=False).returncode == 0


def test_the_kubeconfig_output_works_after_the_lead_left(lab_stack, tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(lab_stack.kubeconfig())
    assert set(ready_nodes(kubeconfig)) >= {"cp2", "cp3", "w1", "w2"}


MANAGED_BINDINGS = ("get", "clusterrolebinding", "-l", "app.kubernetes.io/managed-by=kubeha", "-o", "name")


def kubeconfig_user(kubeconfig: str) -> str:
    return yaml.safe_load(kubeconfig)["users"][0]["name"]


def test_a_new_validity_renews_the_kubeconfig_without_the_lead_and_revokes_the_old_one(
        lab_stack, kubeconfig_file, tmp_path):
    old = tmp_path / "old-kubeconfig"
    old.write_text(lab_stack.kubeconfig())
    old_user = kubeconfig_user(old.read_text())
    assert old_user.startswith("kubeha-admin-")  # a credential of its own, not admin.conf's
    lab_stack.pulumi("config", "set", "--path", "kubernetes.kubeconfigValidityHours", "48")
    lab_stack.pulumi("up", "--yes", "--skip-preview")  # cp1, the lead it was issued on, is gone
    renewed = lab_stack.kubeconfig()
    kubeconfig_file.write_text(renewed)  # the module's later tests use the renewed one
    assert kubeconfig_user(renewed) not in ("", old_user)
    assert {"cp2", "cp3"} <= ready_nodes(kubeconfig_file)
    refused = kubectl(old, "get", "nodes")
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower(), refused.stderr
    assert kubectl(kubeconfig_file, *MANAGED_BINDINGS).stdout.split() == [
        f"clusterrolebinding.rbac.authorization.k8s.io/{kubeconfig_user(renewed)}"]
    expires = datetime.datetime.fromisoformat(lab_stack.output("kubeconfigExpires"))
    remaining = expires - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(hours=47) < remaining <= datetime.timedelta(hours=48)


def test_a_new_lead_control_plane_joins_etcd_and_the_load_balancers(lab_stack, kubeconfig_file):
    # cp1, reset, comes back as a new host; its name sorts first, so it is the lead again.
    lab_stack.set_config_value("controlPlanes", [{"name": "cp1", "address": lab_stack.hosts["cp1"].address},
                                                 *lab_stack.config_value("controlPlanes")])
    lab_stack.pulumi("up", "--yes", "--skip-preview")
    assert etcd_members(kubeconfig_file, on="cp2") == [("started", name) for name in ("cp1", "cp2", "cp3")]
    assert wait_for(lambda: lab_stack.backend_status("lb1").get("cp1") == "UP", 60)
    assert "cp1" in ready_nodes(kubeconfig_file)
    # kubeadm init did not run again: the cluster is the one built first.
    assert lab_stack.hosts["cp1"].run("test -e /etc/kubernetes/super-admin.conf", check=False).returncode != 0


def shorten_certificates(version: str) -> str:
    """Renews every certificate of a control plane with ten days' validity (the file's own dates)."""
    return f"""cat > /root/kubeha-test-short-certificates.yaml <<'CONFIG'
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: v{version}
certificateValidityPeriod: 240h
CONFIG
kubeadm certs renew all --config /root/kubeha-test-short-certificates.yaml >/dev/null 2>&1
rm -f /root/kubeha-test-short-certificates.yaml"""
APISERVER_CERTIFICATE_END = "openssl x509 -noout -enddate -in /etc/kubernetes/pki/apiserver.crt"


def days_left(lab_stack: LabStack, name: str) -> float:
    end = lab_stack.hosts[name].run(APISERVER_CERTIFICATE_END).stdout.strip().split("=", 1)[1]
    expires = datetime.datetime.strptime(end, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=datetime.timezone.utc)
    return (expires - datetime.datetime.now(datetime.timezone.utc)).total_seconds() / 86400


def test_certificates_about_to_expire_are_renewed_by_up_while_the_cluster_serves(lab_stack):
    """Two of the three control planes due: renewed one after the other (both at once would restart
    two of three etcd members together, and the probes would see the quorum lost); the third,
    not due, is left alone."""
    *due, not_due = sorted(entry["name"] for entry in lab_stack.config_value("controlPlanes"))
    version = lab_stack.kubernetes_version
    for name in due:
        lab_stack.hosts[name].run(shorten_certificates(version))
        assert days_left(lab_stack, name) < 11, name
    not_due_end = lab_stack.hosts[not_due].run(APISERVER_CERTIFICATE_END).stdout
    prober = Prober(VIP, PORT, lab_stack.cluster_ca, interval=0.05, max_seconds=900, retries=1).start()
    try:
        # --refresh: the dates are read again from the hosts (a plain `up` connects to none).
        lab_stack.pulumi("up", "--refresh", "--yes", "--skip-preview")
    finally:
        results = prober.stop()
    assert len(results) > 20
    assert prober.failures == [], prober.failures[:5]
    for name in due:  # renewed with the cluster's own validity, a year
        assert days_left(lab_stack, name) > 360, name
    assert lab_stack.hosts[not_due].run(APISERVER_CERTIFICATE_END).stdout == not_due_end
    expires = datetime.datetime.fromisoformat(lab_stack.output("certificatesExpire"))
    assert expires - datetime.datetime.now(datetime.timezone.utc) > datetime.timedelta(days=360)
    # Nothing is due any more: the next preview changes nothing.
    assert changed_steps(lab_stack.pulumi("preview", "--diff", "--json").stdout) == []


def test_removing_two_control_planes_at_once_is_refused_at_preview(lab_stack):
    entries = lab_stack.config_value("controlPlanes")
    lab_stack.set_config_value("controlPlanes", entries[:1])
    try:
        result = lab_stack.pulumi("preview", check=False)
    finally:
        lab_stack.set_config_value("controlPlanes", entries)
    assert result.returncode != 0
    assert "kubeha:controlPlanes: this change removes 2 control planes at once" in result.stdout + result.stderr


def test_an_unreachable_worker_is_removed_without_touching_it(lab_stack, kubeconfig_file):
    """Marked at once, while the cluster still calls it Ready (its lease has not run out): the
    operator's word is enough, no drain waits for pods that cannot stop on a dead host."""
    lab("power-off", "w2")
    lab_stack.hosts.pop("w2")
    lab_stack.pulumi("config", "set", "--path", "workers[1].decommission", "unreachable")
    result = lab_stack.pulumi("up", "--yes", "--skip-preview")
    assert "w2: marked decommission: unreachable; deleted without a drain" in result.stdout, result.stdout[-3000:]
    assert "w2: drained" not in result.stdout and "w2: deleted from the cluster" in result.stdout
    assert "w2" not in kubectl(kubeconfig_file, "get", "nodes").stdout
    # Then the entry goes, and its resources leave the stack without a delete step on the host.
    lab_stack.pulumi("config", "rm", "--path", "workers[1]")
    steps = changed_steps(lab_stack.pulumi("preview", "--diff", "--json").stdout)
    assert {step["op"] for step in steps} == {"delete"}, steps
    lab_stack.pulumi("up", "--yes", "--skip-preview")


def test_an_unreachable_control_plane_is_removed_without_a_drain_and_a_new_one_joins(lab_stack, kubeconfig_file):
    """cp3 powered off and marked `decommission: unreachable` at once, while the cluster still
    calls it Ready: the next `up` removes it without a drain (two etcd members left, the endpoint
    serving). Then its entry goes and cp5, a new control plane, joins in the same `up`."""
    entries = lab_stack.config_value("controlPlanes")
    index = next(position for position, entry in enumerate(entries) if entry["name"] == "cp3")
    lab("power-off", "cp3")
    lab_stack.hosts.pop("cp3")
    lab_stack.pulumi("config", "set", "--path", f"controlPlanes[{index}].decommission", "unreachable")
    result = lab_stack.pulumi("up", "--yes", "--skip-preview")
    assert "cp3: marked decommission: unreachable; deleted without a drain" in result.stdout, result.stdout[-3000:]
    assert "cp3: drained" not in result.stdout and "cp3: etcd member" in result.stdout
    assert etcd_members(kubeconfig_file, on="cp2") == [("started", "cp1"), ("started", "cp2")]
    assert kubectl(kubeconfig_file, "get", "--raw", "/readyz").returncode == 0
    cp5 = lab_stack.add_host("cp5")
    lab_stack.set_config_value("controlPlanes", [*(entry for entry in entries if entry["name"] != "cp3"),
                                                 {"name": "cp5", "address": cp5.address}])
    lab_stack.pulumi("up", "--yes", "--skip-preview")
    assert etcd_members(kubeconfig_file, on="cp2") == [("started", name) for name in ("cp1", "cp2", "cp5")]
    assert "cp5" in ready_nodes(kubeconfig_file)
