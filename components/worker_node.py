"""WorkerNode: a prepared host that joins the cluster through the VIP."""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_command import remote

from components.config import Host
from components.node_steps import ClusterContext, JoinTicket, join_cluster, prepare_host


@dataclass(frozen=True)
class WorkerNodeArgs:
    host: Host
    cluster: ClusterContext
    join: JoinTicket


class WorkerNode(pulumi.ComponentResource):
    """One worker host. Workers join in parallel, each with its own fresh token."""

    ready: remote.Command

    def __init__(self, name: str, args: WorkerNodeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("kubeha:index:WorkerNode", name, None, opts)
        prepared = prepare_host(name, args.host, args.cluster, parent=self)
        self.ready = join_cluster(name, args.host, args.cluster, args.join, control_plane=False,
                                  prepared=prepared, parent=self)
        self.register_outputs({})
