"""WorkerNode: a prepared host that joins the cluster through the VIP."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi

from components.config.model import NodeHost
from components.nodes.node_steps import ClusterContext, JoinTicket, join_cluster, prepare_node, record_membership


@dataclass(frozen=True)
class WorkerNodeArgs:
    host: NodeHost
    cluster: ClusterContext
    join: JoinTicket
    # The join of the control plane its cluster-side steps run on (its record waits for it).
    cluster_side_joined: pulumi.Resource
    # The previous node's load-balancing step (local-nginx mode rolls one node at a time).
    load_balancing_after: Optional[pulumi.Resource] = None


class WorkerNode(pulumi.ComponentResource):
    """One worker host. Workers join in parallel, each with its own fresh token."""

    ready: pulumi.Resource  # the membership record (the join, when decommissioned): its last step
    load_balancing_done: Optional[pulumi.Resource]

    def __init__(self, name: str, args: WorkerNodeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("kubeha:index:WorkerNode", name, None, opts)
        prepared = prepare_node(name, args.host, args.cluster, load_balancing_after=args.load_balancing_after,
                                parent=self)
        self.load_balancing_done = prepared.load_balancing_done
        joined = join_cluster(name, args.host, args.cluster, args.join, control_plane=False,
                              prepared=prepared.ready, parent=self)
        self.ready = record_membership(name, args.host, args.cluster, args.join.cluster_side, control_plane=False,
                                       joined=joined, cluster_side_joined=args.cluster_side_joined, parent=self)
        self.register_outputs({})
