"""Firewall: with `firewall.mode: managed`, kubeha's own nftables table on every host, guarding
the cluster's ports by source (kubeadm-ha's port table).

Only the ports the cluster owns are guarded, and only kubeha's table (`inet kubeha`) is written:
SSH, other services, kube-proxy's and the pod network's own rules and the site's tables stay as
they are, and no firewall is ever switched off. Per role:
- every node: the kubelet API (10250) from the nodes and the pods; the pod network's VXLAN
  (flannel 8472/udp, calico 4789/udp) from the nodes;
- control planes: etcd (2379-2380) from the control planes; the controller manager and scheduler
  (10257, 10259) from the host itself only; the apiserver (6443) from anywhere;
- hosts that run keepalived: VRRP only from their peers; the load balancer's health and stats
  ports from the host itself only; its listen port from anywhere.
Every host's step runs before any other step on any host (the node and load-balancer steps wait
for this component), so a new control plane's etcd peers let it in before it joins. Unmanaged
(the default), there are no steps; switching back removes the table.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Iterable, Optional

import pulumi

from components.config.model import ClusterConfig, Host, LoadBalancerMode, NetworkPlugin
from components.render import render
from components.ssh.remote import SshAccess, run_script

KUBELET_PORT = 10250
ETCD_PORTS = "2379-2380"
LOCAL_ONLY_CONTROL_PLANE_PORTS = (10257, 10259)  # kube-controller-manager, kube-scheduler
VXLAN_PORTS = {NetworkPlugin.FLANNEL: 8472, NetworkPlugin.CALICO: 4789}
VRRP_PROTOCOL = 112


@dataclass(frozen=True)
class Source:
    """A named set of addresses a guarded port accepts, split by family for nftables."""

    name: str
    description: str
    v4: list[str] = field(default_factory=list)
    v6: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, name: str, description: str, networks: Iterable[str]) -> "Source":
        parsed = sorted({ipaddress.ip_network(network, strict=False) for network in networks},
                        key=lambda network: (network.version, network))
        return cls(name, description, v4=[str(network) for network in parsed if network.version == 4],
                   v6=[str(network) for network in parsed if network.version == 6])


@dataclass(frozen=True)
class Rule:
    description: str
    match: str  # an nftables match, e.g. `tcp dport 2379-2380`
    source: Optional[str] = None  # the Source it accepts; None: only the host itself (loopback)


@dataclass(frozen=True)
class HostFirewall:
    host: Host
    roles: list[str]
    rules: list[Rule]
    sources: list[Source]


def _vrrp_peers(config: ClusterConfig) -> list[Host]:
    mode = config.load_balancer.mode
    if mode is LoadBalancerMode.KEEPALIVED_HAPROXY:
        return list(config.load_balancer.hosts)
    if mode is LoadBalancerMode.STATIC_PODS:
        return list(config.control_planes)
    return []


def _load_balancer_rules(config: ClusterConfig) -> list[Rule]:
    balancer = config.load_balancer
    return [Rule("VRRP (keepalived): its peers only", f"meta l4proto {VRRP_PROTOCOL}", "vrrp_peers"),
            Rule("the load balancer's health and stats ports: this host only",
                 f"tcp dport {{ {balancer.health_port}, {balancer.stats_port} }}")]


def host_firewall(config: ClusterConfig, host: Host) -> HostFirewall:
    """The roles, rules and sources of one host's table."""
    control_planes = {cp.name for cp in config.control_planes}
    workers = {worker.name for worker in config.workers}
    peers = _vrrp_peers(config)
    roles: list[str] = []
    rules: list[Rule] = []
    if host.name in {lb.name for lb in config.load_balancer.hosts}:
        roles.append("load balancer")
        rules += _load_balancer_rules(config)
    if host.name in control_planes:
        roles.append("control plane")
        rules += [Rule("etcd: the control planes only", f"tcp dport {ETCD_PORTS}", "control_planes"),
                  Rule("kube-controller-manager and kube-scheduler: this host only",
                       "tcp dport { " + ", ".join(map(str, LOCAL_ONLY_CONTROL_PLANE_PORTS)) + " }")]
        if config.load_balancer.mode is LoadBalancerMode.STATIC_PODS:
            rules += _load_balancer_rules(config)
    if host.name in workers:
        roles.append("worker")
    if host.name in control_planes | workers:
        rules.append(Rule("the kubelet API: the nodes and the pods", f"tcp dport {KUBELET_PORT}", "nodes"))
        vxlan_port = VXLAN_PORTS.get(config.network.plugin)
        if vxlan_port is not None:
            rules.append(Rule(f"the pod network's VXLAN ({config.network.plugin.value}): the nodes",
                              f"udp dport {vxlan_port}", "nodes"))
    nodes = [*config.control_planes, *config.workers]
    sources = {
        "control_planes": Source.of("control_planes", "the control planes", (cp.ip for cp in config.control_planes)),
        "nodes": Source.of("nodes", "every node (firewall.nodeNetworks, if set) and the pod subnet",
                           [*(map(str, config.firewall.node_networks) if config.firewall.node_networks
                              else (node.ip for node in nodes)), str(config.kubernetes.pod_subnet)]),
        "vrrp_peers": Source.of("vrrp_peers", "the hosts that run keepalived", (peer.ip for peer in peers)),
    }
    used = {rule.source for rule in rules if rule.source}
    return HostFirewall(host, roles, rules, [sources[name] for name in sorted(used)])


def render_ruleset(firewall: HostFirewall) -> str:
    return render("firewall/kubeha.nft.j2", host_name=firewall.host.name, roles=firewall.roles,
                  rules=firewall.rules, sources=firewall.sources)


@dataclass(frozen=True)
class FirewallArgs:
    config: ClusterConfig
    ssh: SshAccess


class Firewall(pulumi.ComponentResource):
    """Every host's table, before any other host step (see the module docstring); made only with
    firewall.mode managed."""

    def __init__(self, name: str, args: FirewallArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("kubeha:index:Firewall", name, None, opts)
        config = args.config
        # Decommissioned entries keep their step as it is (nothing reaches their host).
        for host in [*config.load_balancer.hosts, *config.control_plane_entries, *config.worker_entries]:
            firewall = host_firewall(config, host)
            run_script(f"{name}-{host.name}", host=host, ssh=args.ssh,
                       create=render("firewall/apply-firewall.sh.j2", host_name=host.name, roles=firewall.roles,
                                     ruleset=render_ruleset(firewall), package_proxy=config.packages.proxy),
                       delete=render("firewall/remove-firewall.sh.j2", host_name=host.name),
                       opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({})
