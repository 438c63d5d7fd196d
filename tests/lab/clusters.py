"""The lab's clusters: one per topology, shared by every test module that can use it.

Building a cluster from bare hosts takes minutes, so a cluster is an expensive session fixture:
LabClusters boots a topology the first time a module asks for it, keeps it while the next modules
use it, and tears it down only when a module asks for another one (a lab holds one at a time: one
bridge, fixed addresses). ORDER is the one place the lab's order is written: the modules run in
that order (tests/lab/conftest.py sorts them so), grouped by topology. A module that changes its
cluster either restores what it changed, or runs after every module that needs it unchanged.

Each topology also names its lab (tests/lab/lab.sh, LAB_INSTANCE): `make lab-test` runs lab 0's
modules and lab 1's side by side, one pytest each (tests/lab/run.py). The `ha` modules take most of
the time, so the small topologies boot and run in lab 1 meanwhile.

CI's `make lab-up VERSION=<UPGRADE_FROM_VERSION>` builds the `ha` topology exactly (same lab stack
settings); the test session then adopts that running cluster instead of building another.
"""
from __future__ import annotations

import shlex
import sys
import time
from dataclasses import dataclass, field

from tests.lab.cluster import UPGRADE_FROM_VERSION, LabOptions, LabStack, boot_cluster, forget_cluster, stack_settings
from tests.lab.hosts import LabHost, boot_hosts, lab_down
from tests.lab.package_proxy import URL as PROXY_URL


@dataclass(frozen=True)
class Topology:
    name: str
    description: str
    options: LabOptions | None = None  # the lab stack's settings; None: bare hosts, no cluster
    bare_hosts: tuple[str, ...] = ()  # with options None: the hosts to boot
    lab: int = 0  # the lab it runs in (LAB_INSTANCE) under `make lab-test`


ONE_WORKER = ("w1",)
TOPOLOGIES: dict[str, Topology] = {topology.name: topology for topology in (
    Topology("ha", "keepalived-haproxy on lb1/lb2, cp1-cp3, w1-w2, firewall.mode managed, built at "
             f"{UPGRADE_FROM_VERSION} (the upgrade module takes it to the lab's release)",
             LabOptions(firewall="managed", kubernetes_version=UPGRADE_FROM_VERSION)),
    Topology("lb-pair", "lb1 and lb2, bare: no cluster", bare_hosts=("lb1", "lb2"), lab=1),
    # The modes that balance on the nodes themselves need three control planes (a VIP that moves,
    # etcd that keeps quorum) and one worker: a second one only repeated what the first proved.
    Topology("static-pods", "static-pods on cp1-cp3, w1", LabOptions(mode="static-pods", workers=ONE_WORKER), lab=1),
    Topology("kube-vip", "kube-vip on cp1-cp3, w1", LabOptions(mode="kube-vip", workers=ONE_WORKER), lab=1),
    Topology("external-lb", "loadBalancer.mode external: the site's balancer, a plain haproxy on lb1 that the lab "
             "configures (not kubeha), in front of cp1-cp3; w1", LabOptions(mode="external", workers=ONE_WORKER), lab=1),
    Topology("local-nginx", "local-nginx on cp1-cp3, w1, logged in as kubeha (sudo), packages through "
             "the lab's recording proxy", LabOptions(mode="local-nginx", ssh_user="kubeha", package_proxy=PROXY_URL,
                                                     workers=ONE_WORKER), lab=1),
)}


@dataclass(frozen=True)
class Step:
    module: str  # a test module's name
    topology: str
    leaves: str  # what the module leaves changed on its cluster, for the modules after it


ORDER: tuple[Step, ...] = (
    Step("test_cluster_lab", "ha", "refused edits set back; loadBalancer.statsPort changed; the apiservers' "
         "event-ttl and audit policy (request), the kubelets' maxPods (120) and kube-proxy's "
         "iptables.minSyncPeriod (2s) changed"),
    Step("test_failover_lab", "ha", "hosts rebooted; w5 joined under a cut link, then removed again"),
    Step("test_upgrade_lab", "ha", f"every node upgraded from {UPGRADE_FROM_VERSION} to the lab's release"),
    Step("test_membership_lab", "ha", "w3 added and removed, cp1 removed and joined again, two control planes' "
         "certificates renewed, kubeconfig reissued, w2 powered off and removed, cp3 powered off and replaced by cp5"),
    Step("test_secrets_lab", "ha", "w6 and cp4 joined after failed runs"),
    Step("test_destroy_lab", "ha", "the cluster destroyed"),
    Step("test_engine_lab", "lb-pair", "nothing (its program's file on lb1 is deleted by its destroy)"),
    Step("test_load_balancer_lab", "lb-pair", "keepalived and haproxy removed again"),
    Step("test_static_pods_lab", "static-pods", "the VIP moved once"),
    Step("test_etcd_restore_lab", "static-pods", "etcd lost its quorum and was restored from a backup on cp1; "
         "cp2 and cp3 powered off and gone, cp4 and cp5 joined; then every control plane lost and the cluster "
         "restored onto cp6-cp8 from lb1's copy"),
    Step("test_kube_vip_lab", "kube-vip", "the VIP moved once"),
    Step("test_pod_network_lab", "kube-vip", "flannel's DaemonSet created again over a label another manager set"),
    Step("test_external_lb_lab", "external-lb", "cp2's apiserver stopped and started again; cp4 joined"),
    Step("test_local_nginx_lab", "local-nginx", "nothing"),
    Step("test_etcd_backup_lab", "local-nginx", "backups taken by hand, one run failed on purpose, "
         "etcd.backup.keep set to 2, etcd.backup.copyTo set to w1"),
    Step("test_containerd_lab", "local-nginx", "packages.proxy removed (containerd restarted node by node)"),
    Step("test_key_rotation_lab", "local-nginx", "the SSH key rotated, the credential replaced, w1 removed"),
)
RANK = {step.module: index for index, step in enumerate(ORDER)}
TOPOLOGY_OF = {step.module: step.topology for step in ORDER}


@dataclass
class TopologyTimes:
    boot_s: float = 0.0
    teardown_s: float = 0.0
    adopted: bool = False  # a running cluster with the same settings was taken over (make lab-up's)
    stack: dict[str, float] = field(default_factory=dict)  # LabStack.timings: its `pulumi up` and others


@dataclass
class LabClusters:
    """The session's one live lab: a cluster (LabStack) or bare hosts, of one topology at a time."""

    active: str | None = None
    stack: LabStack | None = None
    hosts: dict[str, LabHost] = field(default_factory=dict)
    times: dict[str, TopologyTimes] = field(default_factory=dict)

    def cluster(self, topology: str, fresh: bool = False) -> LabStack:
        """The topology's cluster; `fresh`: built from bare hosts now, even if it runs already."""
        self._switch(topology, fresh)
        assert self.stack is not None, f"{topology} has no cluster"
        return self.stack

    def bare_hosts(self, topology: str) -> dict[str, LabHost]:
        self._switch(topology, fresh=False)
        return self.hosts

    def close(self) -> None:
        self._tear_down()

    def _switch(self, topology: str, fresh: bool) -> None:
        if self.active == topology and not fresh:
            return
        self._tear_down()
        wanted = TOPOLOGIES[topology]
        times = self.times.setdefault(topology, TopologyTimes())
        started = time.monotonic()
        if wanted.options is None:
            self.hosts = boot_hosts(list(wanted.bare_hosts))
        else:
            if fresh:
                lab_down()
            self.stack = boot_cluster(wanted.options)
            self.hosts = self.stack.hosts
            times.adopted = "reusing the running lab" in self.stack.up_output
            times.stack = self.stack.timings
        times.boot_s += time.monotonic() - started
        self.active = topology

    def _tear_down(self) -> None:
        if self.active is None:
            return
        started = time.monotonic()
        # The hosts go; their clusters need no `pulumi destroy` (test_destroy_lab proves it once).
        forget_cluster()
        self.times[self.active].teardown_s += time.monotonic() - started
        self.active, self.stack, self.hosts = None, None, {}


def main(arguments: list[str]) -> int:
    """`python3 -m tests.lab.clusters env TOPOLOGY`: its lab stack settings as shell assignments
    (lab-stack.sh, for `make lab-up TOPOLOGY=...`)."""
    if len(arguments) != 2 or arguments[0] != "env" or arguments[1] not in TOPOLOGIES:
        print(f"usage: python3 -m tests.lab.clusters env {{{','.join(TOPOLOGIES)}}}", file=sys.stderr)
        return 2
    options = TOPOLOGIES[arguments[1]].options
    if options is None:
        print(f"topology {arguments[1]} is bare hosts, not a cluster", file=sys.stderr)
        return 2
    for name, value in stack_settings(options).items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
