"""Faults beyond a clean LB failover, on the lab's shared `ha` cluster (tests/lab/clusters.py;
firewall.mode managed); generous bounds only.

On real Kubernetes (the kubelet restarts a control plane's static pods after a reboot). CPU load
on the VIP holder must not move the VIP; rebooted hosts bring their services back by themselves; both LB hosts restarted one after the other leave a working endpoint; SSH to a host
cut during `pulumi up` fails the run naming the host, and the next `up` converges without
re-running finished steps elsewhere; the worker that run added (w5) is removed again at the end,
so the modules after this one find the cluster they expect. The numbers live in the benchmark
(make bench-failover).
"""
from __future__ import annotations

import subprocess
import time

import pytest

from tests.lab.cluster import PORT, VIP, LabStack, wait_for
from tests.lab.hosts import LabHost, lab
from tests.lab.probe import Prober

pytestmark = pytest.mark.lab
# Bounded: this many busy loops per CPU for this long.
BURN_SECONDS = 20
BURN = (f"for _ in $(seq $(( $(nproc) * 2 ))); do timeout {BURN_SECONDS} sh -c 'while :; do :; done' & done; "
        "wait")


def connects(lab_stack: LabStack, source: str, target: str, port: int) -> bool:
    """Whether a TCP connection from host `source` to host `target`'s port opens (3 s at most)."""
    address = lab_stack.hosts[target].address
    return lab_stack.hosts[source].run(f"timeout 3 bash -c '</dev/tcp/{address}/{port}'", check=False).returncode == 0


def test_the_firewall_keeps_etcd_to_the_control_planes_and_the_apiserver_open(lab_stack):
    assert not connects(lab_stack, "w1", "cp1", 2379)
    assert connects(lab_stack, "w1", "cp1", 6443)
    assert connects(lab_stack, "cp2", "cp1", 2379)
    assert connects(lab_stack, "w2", "w1", 10250)
    ruleset = lab_stack.hosts["cp1"].run("nft list table inet kubeha").stdout
    assert "tcp dport 2379-2380" in ruleset
    # Only kubeha's table was added: kube-proxy's and flannel's rules are there as before.
    assert "KUBE-SERVICES" in lab_stack.hosts["cp1"].run("iptables-save").stdout


def serving(lab_stack: LabStack) -> bool:
    prober = Prober(VIP, PORT, lab_stack.cluster_ca, timeout=1)
    return prober.probe_once()[0]


def test_cpu_load_on_the_vip_holder_does_not_move_the_vip(lab_stack):
    assert wait_for(lab_stack.pair_healthy, 60)
    holder = lab_stack.vip_holders()[0]
    prober = Prober(VIP, PORT, lab_stack.cluster_ca, interval=0.05, timeout=1, max_seconds=BURN_SECONDS + 10).start()
    lab_stack.hosts[holder].run(BURN, timeout=BURN_SECONDS + 30)
    prober.stop()
    assert lab_stack.vip_holders() == [holder]
    transitions = lab_stack.hosts[holder].run(
        f"journalctl -u keepalived --since '-{BURN_SECONDS + 5}s' --no-pager -o cat | grep -c 'Entering\\|entering' || true")
    assert transitions.stdout.strip() == "0", "keepalived changed state under CPU load"
    assert prober.failures == []


def test_a_rebooted_control_plane_comes_back_by_itself(lab_stack):
    lab("power-off", "cp2")
    assert wait_for(lambda: lab_stack.backend_status("lb1")["cp2"].startswith("DOWN"), 15)
    assert serving(lab_stack)
    lab("power-on", "cp2")
    # The kubelet starts at boot and brings the control plane's static pods back.
    assert wait_for(lab_stack.pair_healthy, 180)


def test_a_rebooted_vip_holder_comes_back_and_one_host_holds_the_vip(lab_stack):
    holder = lab_stack.vip_holders()[0]
    lab("power-off", holder)
    assert wait_for(lambda: serving(lab_stack), 10)
    lab("power-on", holder)
    assert wait_for(lambda: lab_stack.hosts[holder].run("systemctl is-active keepalived haproxy",
                                                        check=False).returncode == 0, 60)
    assert wait_for(lab_stack.pair_healthy, 60)
    time.sleep(3)
    assert len(lab_stack.vip_holders()) == 1


def test_both_load_balancers_restarted_one_after_the_other_recover_without_action(lab_stack):
    for lb in ("lb1", "lb2"):
        lab("power-off", lb)
        lab("power-on", lb)
    assert wait_for(lambda: serving(lab_stack), 60)
    assert wait_for(lab_stack.pair_healthy, 60)


@pytest.fixture
def w5(lab_stack) -> LabHost:
    """A new worker, w5, booted and put in the config; removed from the cluster again afterwards
    (an ordinary removal: drained, deleted, reset), so the cluster has the nodes it had."""
    host = lab_stack.add_host("w5")
    index = len(lab_stack.config_value("workers"))
    lab_stack.pulumi("config", "set", "--path", f"workers[{index}].name", "w5")
    lab_stack.pulumi("config", "set", "--path", f"workers[{index}].address", host.address)
    yield host
    lab_stack.set_config_value("workers", [entry for entry in lab_stack.config_value("workers")
                                           if entry["name"] != "w5"])
    lab_stack.pulumi("up", "--yes", "--skip-preview")


def test_ssh_cut_during_up_fails_naming_the_host_and_the_next_up_converges(lab_stack, w5):
    lab_stack.pulumi("config", "set", "--path", "loadBalancer.statsPort", "9092")
    # w5's link goes down for a bounded time: the provider's dial limit ends the attempt.
    subprocess.run(["ip", "link", "set", "vb-w5", "down"], check=True)
    try:
        # The preflight is the first to reach w5: it stops the run before any host is changed.
        refused = lab_stack.pulumi("up", "--yes", "--skip-preview", check=False, timeout=600)
        # A site that skips that check gets as far as w5's first step, which fails on its own.
        lab_stack.pulumi("config", "set", "--path", "preflight.skip[1]", "ssh")
        failed = lab_stack.pulumi("up", "--yes", "--skip-preview", check=False, timeout=600)
    finally:
        subprocess.run(["ip", "link", "set", "vb-w5", "up"], check=True)
        lab_stack.pulumi("config", "rm", "--path", "preflight.skip[1]")
    assert refused.returncode != 0
    assert "cluster-preflight" in refused.stdout and w5.address in refused.stdout, refused.stdout[-3000:]
    assert "lb-lb1-config" not in refused.stdout  # nothing else ran
    assert failed.returncode != 0
    # w5's first step is its firewall (firewall.mode managed here).
    assert "firewall-w5" in failed.stdout and w5.address in failed.stdout, failed.stdout[-3000:]
    assert wait_for(lambda: w5.run("true", check=False).returncode == 0, 30)
    before = lab_stack.ssh_sessions()
    lab_stack.pulumi("up", "--yes", "--skip-preview")
    after = lab_stack.ssh_sessions()
    # Every step waited for every host's firewall, so the LB change waited too: it runs now, with
    # w5's steps (and its token on cp1); no other host is touched.
    assert {name for name in after if after[name] - before[name] > 1} == {"w5", "cp1", "lb1", "lb2"}
    assert w5.run("test -e /etc/kubernetes/kubelet.conf", check=False).returncode == 0
