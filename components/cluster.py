"""Wires the components into one HA cluster and exports the stack outputs."""
from __future__ import annotations

import pulumi

from components.config import ClusterConfig, Host
from components.control_plane_node import ControlPlaneNode, ControlPlaneNodeArgs
from components.load_balancer_pair import LoadBalancerPair, LoadBalancerPairArgs
from components.node_steps import ClusterContext, JoinTicket
from components.remote import SshAccess
from components.worker_node import WorkerNode, WorkerNodeArgs


def _host_list(hosts: list[Host]) -> list[dict[str, str]]:
    return [{"name": host.name, "address": host.ip} for host in hosts]


def build_cluster(config: ClusterConfig, ssh: SshAccess) -> None:
    load_balancer = LoadBalancerPair("lb", LoadBalancerPairArgs(
        settings=config.load_balancer, control_planes=config.control_planes, ssh=ssh, packages=config.packages))
    cluster = ClusterContext(
        kubernetes=config.kubernetes, control_plane_endpoint=config.load_balancer.endpoint_host_port,
        cert_sans=[str(config.load_balancer.vip)], first_control_plane=config.first_control_plane, ssh=ssh,
        packages=config.packages)

    first = ControlPlaneNode(config.first_control_plane.name, ControlPlaneNodeArgs(
        host=config.first_control_plane, cluster=cluster, join=None, load_balancer_ready=load_balancer.ready))
    assert first.ca_cert_hash is not None and first.kubeconfig is not None
    # Control planes join one at a time: etcd grows by one member at a time, with quorum kept.
    previous = first.ready
    for host in config.control_planes[1:]:
        node = ControlPlaneNode(host.name, ControlPlaneNodeArgs(
            host=host, cluster=cluster, join=JoinTicket(first.ca_cert_hash, after=previous),
            load_balancer_ready=load_balancer.ready))
        previous = node.ready
    # Workers join in parallel, as soon as the cluster is initialised.
    for host in config.workers:
        WorkerNode(host.name, WorkerNodeArgs(
            host=host, cluster=cluster, join=JoinTicket(first.ca_cert_hash, after=first.ready)))

    pulumi.export("apiserverEndpoint", config.apiserver_endpoint)
    pulumi.export("vip", str(config.load_balancer.vip))
    pulumi.export("kubeconfig", pulumi.Output.secret(first.kubeconfig))
    pulumi.export("caCertHash", first.ca_cert_hash)
    pulumi.export("controlPlanes", _host_list(config.control_planes))
    pulumi.export("workers", _host_list(config.workers))
    pulumi.export("loadBalancers", _host_list(config.load_balancer.hosts))
    pulumi.export("kubernetesVersion", config.kubernetes.version)
