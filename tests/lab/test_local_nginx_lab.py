"""loadBalancer.mode local-nginx on the lab: nginx on every node at 127.0.0.1:8443, no VIP.

Real nginx (Debian's, with its stream module) on five real hosts in front of real Kubernetes
1.34 apiservers. The probe runs on a worker, against its own local proxy, while one apiserver is
stopped. This stack logs in as `kubeha`, a non-root user with passwordless sudo: every step runs
through `sudo -n`. Its hosts download every package through `packages.proxy`, a recording
proxy on the lab bridge (tests/lab/package_proxy.py).
"""
from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.lab.cluster import LabStack, kubectl
from tests.lab.clusters import TOPOLOGIES, LabClusters
from tests.lab.hosts import LAB_DIR, LAB_SCRIPT, VIP, lab_address
from tests.lab.package_proxy import ADDRESS as PROXY_ADDRESS
from tests.lab.package_proxy import PackageProxy, ProxiedRequest
from tests.lab.probe import __file__ as PROBE_MODULE

pytestmark = pytest.mark.lab
LOCAL_PORT = 8443
WORKERS = TOPOLOGIES["local-nginx"].options.workers
NODES = ("cp1", "cp2", "cp3", *WORKERS)
VICTIM = "cp2"
# Runs on the worker: the lab's Prober against 127.0.0.1 for a bounded time, one retry per
# probe; prints "ready" once probing, then a JSON summary. A probe may take up to 3 s: lab 1 runs
# at a low CPU weight beside lab 0, and a TLS handshake starved for over a second there is a slow
# answer, not a refused one (client-go and kubectl wait far longer). Refused or reset connections
# still fail at once.
PROBE_DRIVER = """
import json, time
ca_pem = {ca_pem!r}
prober = Prober("127.0.0.1", {port}, ca_pem, interval=0.02, timeout=3.0, max_seconds=30, max_probes=1000,
                retries=1).start()
time.sleep(1)
print("ready", flush=True)
time.sleep({seconds})
results = prober.stop()
print(json.dumps({{"probes": len(results), "failed": [f"{{r.at}} s: {{r.detail}}" for r in results if not r.ok]}}),
      flush=True)
"""


REPOSITORY_LOG = LAB_DIR / "repository.log"


@dataclass(frozen=True)
class ProxiedBuild:
    stack: LabStack
    proxied: list[ProxiedRequest]  # what the package proxy saw while the cluster was built
    direct_downloads: list[str]  # requests the lab's repository got from anything but the proxy


@pytest.fixture(scope="module")
def built(lab_clusters: LabClusters) -> ProxiedBuild:
    """The cluster, built with packages.proxy pointing at the lab's recording proxy. Fresh, even
    if one runs already: the proxy must see every download of the build."""
    proxy = PackageProxy().start()
    try:
        stack = lab_clusters.cluster("local-nginx", fresh=True)
        # The repository's log starts anew with the lab: it holds this build's requests only.
        direct = [line for line in REPOSITORY_LOG.read_text().splitlines()
                  if not line.startswith(f"{PROXY_ADDRESS[0]} ")]
        yield ProxiedBuild(stack, list(proxy.seen), direct)
    finally:
        proxy.stop()


@pytest.fixture(scope="module")
def lab_stack(built) -> LabStack:
    return built.stack


def test_every_package_download_went_through_the_package_proxy(built):
    assert [line for line in built.direct_downloads if "GET" in line] == []
    fetched = [request.url for request in built.proxied if request.status == 200]
    assert any(url.endswith("/Release.key") for url in fetched)  # curl --proxy
    for package in ("kubeadm_", "kubelet_", "kubectl_", "cri-tools_"):
        downloads = [request.client for request in built.proxied if package in request.url and request.status == 200]
        assert sorted(set(downloads)) == sorted(built.stack.hosts[node].address for node in NODES), package
    assert [request for request in built.proxied if request.status == 403] == []  # nothing off the lab asked for


def test_a_non_root_user_with_sudo_built_the_cluster(lab_stack):
    # (The tests' own checks log in as root; the product's steps are kubeha's, through sudo.)
    for node in NODES:
        host = lab_stack.hosts[node]
        logins = host.run("journalctl -u ssh --no-pager -o cat | grep 'Accepted publickey'").stdout
        assert "for kubeha from" in logins, node
        steps = host.run("journalctl --no-pager -o cat _COMM=sudo | grep -c 'kubeha : .*USER=root ; COMMAND=.*bash -c' "
                         "|| true").stdout.strip()
        assert int(steps or 0) >= 2, node  # its preparation and its join at least
    assert "sudo: a password is required" not in lab_stack.up_output


def test_nginx_serves_the_endpoint_on_every_node(lab_stack):
    for node in NODES:
        host = lab_stack.hosts[node]
        assert host.run("systemctl is-active nginx").stdout.strip() == "active", node
        listening = host.run(f"ss -Hltn 'sport = :{LOCAL_PORT}'").stdout
        assert f"127.0.0.1:{LOCAL_PORT}" in listening, node


def test_no_vip_and_no_load_balancer_hosts(lab_stack):
    assert lab_stack.output("vip") is None
    assert lab_stack.output("loadBalancers") == []
    assert lab_stack.output("controlPlaneEndpoint") == f"https://127.0.0.1:{LOCAL_PORT}"


def test_workers_joined_through_their_local_proxy(lab_stack):
    for node in WORKERS:
        kubelet_conf = lab_stack.hosts[node].run("cat /etc/kubernetes/kubelet.conf").stdout
        assert f"server: https://127.0.0.1:{LOCAL_PORT}" in kubelet_conf, node


def test_a_control_planes_kubelet_talks_to_its_own_apiserver(lab_stack):
    """kubeadm 1.33+ (ControlPlaneKubeletLocalMode): a joined control plane's kubelet uses its
    local apiserver, not the endpoint; the join's discovery still went through the proxy."""
    kubelet_conf = lab_stack.hosts["cp2"].run("cat /etc/kubernetes/kubelet.conf").stdout
    assert f"server: https://{lab_address(22)}:6443" in kubelet_conf


def test_a_worker_keeps_reaching_the_apiservers_while_one_is_stopped(lab_stack):
    probe = Path(PROBE_MODULE).read_text() + PROBE_DRIVER.format(port=LOCAL_PORT, seconds=12,
                                                                ca_pem=lab_stack.cluster_ca)
    worker = subprocess.Popen([str(LAB_SCRIPT), "ssh", "w1", "python3", "-"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    worker.stdin.write(probe)
    worker.stdin.close()
    assert worker.stdout.readline().strip() == "ready"
    lab_stack.stop_apiserver(VICTIM)
    try:
        summary = json.loads(worker.stdout.readline())
        worker.wait(timeout=30)
    finally:
        lab_stack.start_apiserver(VICTIM)
    assert summary["probes"] >= 100  # it probed all along the outage
    assert summary["failed"] == [], summary


def test_kubeconfig_output_reaches_the_lead_control_plane_directly(lab_stack, tmp_path):
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(lab_stack.kubeconfig())
    assert f"server: https://{lab_address(21)}:6443" in kubeconfig.read_text()
    result = kubectl(kubeconfig, "get", "--raw", "/readyz")  # TLS verified against the cluster CA
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_adding_a_control_plane_previews_an_update_of_every_nodes_proxy(lab_stack):
    lab_stack.pulumi("config", "set", "--path", "controlPlanes[3].name", "cp4")
    lab_stack.pulumi("config", "set", "--path", "controlPlanes[3].address", lab_address(24))
    try:
        steps = json.loads(lab_stack.pulumi("preview", "--json").stdout)["steps"]
    finally:
        lab_stack.pulumi("config", "rm", "--path", "controlPlanes[3]")
    updated = {step["urn"].rsplit("::", 1)[1] for step in steps if step["op"] == "update"}
    assert {f"{node}-load-balancing" for node in NODES} <= updated



def test_a_mode_change_is_refused_before_any_host_is_touched(lab_stack):
    sessions = lab_stack.ssh_sessions()
    lab_stack.pulumi("config", "set", "--path", "loadBalancer.mode", "static-pods")
    lab_stack.pulumi("config", "set", "--path", "loadBalancer.vip", VIP)
    lab_stack.pulumi("config", "set", "--path", "loadBalancer.virtualRouterId", "51")
    try:
        result = lab_stack.pulumi("up", "--yes", "--skip-preview", check=False)
    finally:
        lab_stack.pulumi("config", "rm", "--path", "loadBalancer.vip")
        lab_stack.pulumi("config", "rm", "--path", "loadBalancer.virtualRouterId")
        lab_stack.pulumi("config", "set", "--path", "loadBalancer.mode", "local-nginx")
    assert result.returncode != 0
    assert "kubeha:loadBalancer.mode: this cluster was built with local-nginx" in result.stdout + result.stderr
    # One more login per host: the one that counts them.
    assert lab_stack.ssh_sessions() == {name: count + 1 for name, count in sessions.items()}

