"""ControlPlaneNode: a prepared control-plane host that joins the cluster (or, for the one that
initialised it, finds itself a member already)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
from pulumi_command import remote

from components.config import NodeHost
from components.node_steps import ClusterContext, JoinTicket, join_cluster, prepare_node


@dataclass(frozen=True)
class ControlPlaneNodeArgs:
    host: NodeHost
    cluster: ClusterContext
    # The previous node's load-balancing step (modes with static pods or node-local proxies).
    load_balancing_after: Optional[pulumi.Resource] = None


class ControlPlaneNode(pulumi.ComponentResource):
    """One control-plane host, in two steps: constructed, it is prepared (`prepared`); `join()`
    then adds the join and the membership record. Two steps because `kubeadm init` (a cluster
    step of its own) runs between the lead control plane's preparation and its join."""

    prepared: remote.Command  # the last step before kubeadm runs here
    load_balancing_done: Optional[pulumi.Resource]
    ready: remote.Command  # the membership record, once joined; the next control plane waits for it

    def __init__(self, name: str, args: ControlPlaneNodeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("kubeha:index:ControlPlaneNode", name, None, opts)
        self._name, self._host, self._cluster = name, args.host, args.cluster
        prepared = prepare_node(name, args.host, args.cluster, load_balancing_after=args.load_balancing_after,
                                parent=self)
        self.prepared, self.load_balancing_done = prepared.ready, prepared.load_balancing_done

    def join(self, ticket: JoinTicket) -> remote.Command:
        self.ready = join_cluster(self._name, self._host, self._cluster, ticket, control_plane=True,
                                  prepared=self.prepared, parent=self)
        self.register_outputs({})
        return self.ready
