"""ControlPlaneNode: a prepared control-plane host that joins the cluster (or, for the one that
initialised it, finds itself a member already)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
from pulumi_command import remote

from components.config.model import NodeHost
from components.nodes.node_steps import ClusterContext, JoinTicket, join_cluster, prepare_node, record_membership


@dataclass(frozen=True)
class ControlPlaneNodeArgs:
    host: NodeHost
    cluster: ClusterContext
    # The previous node's load-balancing step (modes with static pods or node-local proxies).
    load_balancing_after: Optional[pulumi.Resource] = None


class ControlPlaneNode(pulumi.ComponentResource):
    """One control-plane host, in three steps: constructed, it is prepared (`prepared`); `join()`
    adds its join material and join; `record_membership()` its membership record. Steps because
    `kubeadm init` (a cluster step of its own) runs between the lead's preparation and its join,
    and a record waits for the join of the control plane it runs on, which may come later."""

    prepared: remote.Command  # the last step before kubeadm runs here
    load_balancing_done: Optional[pulumi.Resource]
    joined: remote.Command  # the join; the next control plane's join waits for it
    ready: pulumi.Resource  # the membership record (the join, when decommissioned): its last step

    def __init__(self, name: str, args: ControlPlaneNodeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("kubeha:index:ControlPlaneNode", name, None, opts)
        self._name, self._host, self._cluster = name, args.host, args.cluster
        prepared = prepare_node(name, args.host, args.cluster, load_balancing_after=args.load_balancing_after,
                                parent=self)
        self.prepared, self.load_balancing_done = prepared.ready, prepared.load_balancing_done

    def join(self, ticket: JoinTicket) -> remote.Command:
        """The join (etcd grows by this member); `record_membership` follows once every control
        plane's join exists."""
        self._ticket = ticket
        self.joined = join_cluster(self._name, self._host, self._cluster, ticket, control_plane=True,
                                   prepared=self.prepared, parent=self)
        return self.joined

    def record_membership(self, cluster_side_joined: pulumi.Resource,
                          removed_by_restore: bool = False) -> pulumi.Resource:
        self.ready = record_membership(self._name, self._host, self._cluster, self._ticket.cluster_side,
                                       control_plane=True, joined=self.joined,
                                       cluster_side_joined=cluster_side_joined, parent=self,
                                       removed_by_restore=removed_by_restore)
        self.register_outputs({})
        return self.ready
