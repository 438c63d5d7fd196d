"""containerd's settings rolled node by node on the lab's real Kubernetes (the local-nginx
cluster, after every module that needs it as built): `packages.proxy`, through which the hosts'
containerd pulled, is removed, and `pulumi up` restarts containerd on one node after another,
control planes first, while a worker probes the apiservers through its local proxy.
"""
from __future__ import annotations

import json
import subprocess
from itertools import pairwise
from pathlib import Path

import pytest

from tests.lab.clusters import TOPOLOGIES
from tests.lab.hosts import LAB_SCRIPT
from tests.lab.probe import __file__ as PROBE_MODULE

pytestmark = pytest.mark.lab
LOCAL_PORT = 8443
NODES = ("cp1", "cp2", "cp3", *TOPOLOGIES["local-nginx"].options.workers)
# The same Prober for as long as the test keeps its stdin open (bounded all the same): 20 probes a
# second, none retried.
STOPPABLE_PROBE_DRIVER = """
import json, sys
ca_pem = {ca_pem!r}
prober = Prober("127.0.0.1", {port}, ca_pem, interval=0.05, timeout=3.0, max_seconds=300, max_probes=6000).start()
print("ready", flush=True)
sys.stdin.readline()
results = prober.stop()
print(json.dumps({{"probes": len(results), "seconds": round(prober.now(), 1),
                  "failed": [f"{{r.at}} s: {{r.detail}}" for r in results if not r.ok]}}), flush=True)
"""
PROBE_FILE = "/root/kubeha-probe.py"


def containerd_restarts(host, since: str) -> list[tuple[float, float]]:
    """(stopping, started) journal times of each containerd restart on the host since `since` (epoch s)."""
    lines = host.run(f"journalctl -u containerd --since @{since} -o short-unix --no-pager "
                     "| grep -E 'Stopping containerd|Started containerd' || true").stdout.splitlines()
    stopping = [float(line.split()[0]) for line in lines if "Stopping containerd" in line]
    started = [float(line.split()[0]) for line in lines if "Started containerd" in line]
    return list(zip(stopping, started, strict=False))


def test_a_package_proxy_change_restarts_containerd_one_node_at_a_time_while_clients_see_no_failure(lab_stack):
    """packages.proxy removed (the hosts' containerd pulled through it): each node's containerd
    restarts, control planes first, the next only once the one before answers again, while a worker
    probes the apiservers through its local proxy 20 times a second without a retry."""
    worker = lab_stack.hosts["w1"]
    worker.run(f"cat > {PROBE_FILE} <<'KUBEHA_PROBE'\n{Path(PROBE_MODULE).read_text()}"
               f"{STOPPABLE_PROBE_DRIVER.format(port=LOCAL_PORT, ca_pem=lab_stack.cluster_ca)}\nKUBEHA_PROBE")
    since = worker.run("date +%s").stdout.strip()
    probe = subprocess.Popen([str(LAB_SCRIPT), "ssh", "w1", "python3", PROBE_FILE], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert probe.stdout.readline().strip() == "ready"
        lab_stack.pulumi("config", "rm", "--path", "packages.proxy")
        up = lab_stack.pulumi("up", "--yes", "--skip-preview")
    finally:
        probe.stdin.write("stop\n")
        probe.stdin.close()
        summary = json.loads(probe.stdout.readline())
        probe.wait(timeout=30)
    restarts = {node: containerd_restarts(lab_stack.hosts[node], since) for node in NODES}
    assert all(len(times) == 1 for times in restarts.values()), restarts
    for before, after in pairwise(NODES):
        assert restarts[after][0][0] > restarts[before][0][1], (before, after, restarts)  # never two at once
    for node in NODES:
        assert f"{node}: containerd restarted with its new settings" in up.stdout, node
        assert lab_stack.hosts[node].run("test ! -e /etc/systemd/system/containerd.service.d/90-kubeha-proxy.conf",
                                         check=False).returncode == 0, node
    assert summary["probes"] >= 200 and summary["failed"] == [], summary
