"""Wires the components into one HA cluster and exports the stack outputs."""
from __future__ import annotations

from typing import Optional

import pulumi

from components.config import ClusterConfig, Host, LoadBalancerMode
from components.control_plane_node import ControlPlaneNode, ControlPlaneNodeArgs
from components.load_balancer_pair import LoadBalancerPair, LoadBalancerPairArgs
from components.node_steps import ClusterContext, JoinTicket
from components.pod_network import PodNetwork, PodNetworkArgs
from components.remote import SshAccess
from components.worker_node import WorkerNode, WorkerNodeArgs


def _host_list(hosts: list[Host]) -> list[dict[str, str]]:
    return [{"name": host.name, "address": host.ip} for host in hosts]


def build_cluster(config: ClusterConfig, ssh: SshAccess) -> None:
    settings = config.load_balancer
    load_balancer_ready: Optional[pulumi.Resource] = None
    if settings.mode is LoadBalancerMode.KEEPALIVED_HAPROXY:
        load_balancer_ready = LoadBalancerPair("lb", LoadBalancerPairArgs(
            settings=settings, control_planes=config.control_planes, ssh=ssh, packages=config.packages)).ready
    cluster = ClusterContext.for_config(config, ssh)

    first = ControlPlaneNode(config.first_control_plane.name, ControlPlaneNodeArgs(
        host=config.first_control_plane, cluster=cluster, join=None, load_balancer_ready=load_balancer_ready))
    assert first.ca_cert_hash is not None and first.kubeconfig is not None
    # Control planes join one at a time: etcd grows by one member at a time, with quorum kept.
    # Node-side load balancing rolls one node at a time too, control planes first.
    previous, rolling = first.ready, first.load_balancing_done
    joined: list[pulumi.Resource] = [first.ready]
    for host in config.control_planes[1:]:
        node = ControlPlaneNode(host.name, ControlPlaneNodeArgs(
            host=host, cluster=cluster, join=JoinTicket(first.ca_cert_hash, after=previous),
            load_balancer_ready=load_balancer_ready, load_balancing_after=rolling))
        previous, rolling = node.ready, node.load_balancing_done
        joined.append(node.ready)
    # Workers join in parallel, as soon as the cluster is initialised.
    for host in config.workers:
        worker = WorkerNode(host.name, WorkerNodeArgs(
            host=host, cluster=cluster, join=JoinTicket(first.ca_cert_hash, after=first.ready),
            load_balancing_after=rolling))
        rolling = worker.load_balancing_done
        joined.append(worker.ready)
    # The pod network once every node has joined; then the wait for every node Ready.
    PodNetwork("network", PodNetworkArgs(
        settings=config.network, kubernetes=config.kubernetes, kubeconfig=pulumi.Output.secret(first.kubeconfig),
        nodes=[*config.control_planes, *config.workers], control_plane=config.first_control_plane, ssh=ssh,
        joined=joined))

    pulumi.export("apiserverEndpoint", config.apiserver_endpoint)
    pulumi.export("controlPlaneEndpoint", f"https://{config.control_plane_endpoint}")
    pulumi.export("loadBalancerMode", settings.mode.value)
    pulumi.export("vip", str(settings.vip) if settings.vip is not None else None)
    pulumi.export("kubeconfig", pulumi.Output.secret(first.kubeconfig))
    pulumi.export("caCertHash", first.ca_cert_hash)
    pulumi.export("controlPlanes", _host_list(config.control_planes))
    pulumi.export("workers", _host_list(config.workers))
    pulumi.export("loadBalancers", _host_list(settings.hosts))
    pulumi.export("kubernetesVersion", config.kubernetes.version)
    pulumi.export("networkPlugin", config.network.plugin.value)
    pulumi.export("networkVersion", config.network.version)
