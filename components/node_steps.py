"""Steps shared by control-plane and worker nodes: host preparation, joining, membership."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
from pulumi_command import remote

from components.config import APISERVER_PORT, ClusterConfig, ContainerdSettings, Host, KubernetesSettings, PackageSettings
from components.node_load_balancer import STATIC_PODS_PREFLIGHT, NodeLoadBalancing
from components.remote import SshAccess, run_script
from components.render import render

CRI_SOCKET = "unix:///var/run/containerd/containerd.sock"
# Join material is created just before each join; two hours covers a slow join and a retry.
# (The certificate key's uploaded certificates expire after two hours in kubeadm too.)
JOIN_TOKEN_TTL = "2h"


@dataclass(frozen=True)
class ClusterContext:
    """What every node needs to know about the cluster it belongs to."""

    kubernetes: KubernetesSettings
    containerd: ContainerdSettings
    control_plane_endpoint: str  # VIP:port (127.0.0.1:port in local-nginx mode), the only way in
    cert_sans: list[str]
    first_control_plane: Host
    ssh: SshAccess
    packages: PackageSettings
    load_balancing: NodeLoadBalancing
    # The server in the kubeconfig output, for clients off the cluster.
    kubeconfig_server: str

    @classmethod
    def for_config(cls, config: ClusterConfig, ssh: SshAccess) -> "ClusterContext":
        return cls(kubernetes=config.kubernetes, containerd=config.containerd, control_plane_endpoint=config.control_plane_endpoint,
                   cert_sans=[str(config.load_balancer.endpoint_address)],
                   first_control_plane=config.first_control_plane, ssh=ssh, packages=config.packages,
                   kubeconfig_server=config.apiserver_endpoint,
                   load_balancing=NodeLoadBalancing(settings=config.load_balancer, kubernetes=config.kubernetes,
                                                    control_planes=config.control_planes, packages=config.packages))

    @property
    def ignored_preflight_errors(self) -> list[str]:
        """Static pods placed before kubeadm runs make its manifests-folder check fail, on purpose."""
        return [STATIC_PODS_PREFLIGHT] if self.load_balancing.static_pods else []


@dataclass(frozen=True)
class JoinTicket:
    """What a joining node waits for: the CA hash to pin and the step it must follow."""

    ca_cert_hash: pulumi.Output[str]
    after: pulumi.Resource


def prepare_host(name: str, host: Host, cluster: ClusterContext, parent: pulumi.Resource) -> remote.Command:
    script = render(
        "node/prepare-host.sh.j2", host=host, kubernetes_version=cluster.kubernetes.version,
        kubernetes_minor=cluster.kubernetes.minor, package_repository=cluster.kubernetes.package_repository,
        package_proxy=cluster.packages.proxy, containerd=cluster.containerd,
        sandbox_image=cluster.kubernetes.pause_image)
    return run_script(f"{name}-prepare", host=host, ssh=cluster.ssh, create=script,
                      opts=pulumi.ResourceOptions(parent=parent))


@dataclass(frozen=True)
class PreparedNode:
    ready: remote.Command  # the node's last step before kubeadm runs on it
    # The last load-balancing step so far in the rolling order; the next node's follows it.
    load_balancing_done: Optional[pulumi.Resource]


def prepare_node(name: str, host: Host, cluster: ClusterContext, *,
                 load_balancing_after: Optional[pulumi.Resource], parent: pulumi.Resource) -> PreparedNode:
    """Host preparation, then the node's share of the load balancing (one node at a time)."""
    prepared = prepare_host(name, host, cluster, parent=parent)
    placed = cluster.load_balancing.place(name, host, cluster.ssh, prepared=prepared, after=load_balancing_after,
                                          parent=parent)
    if placed is None:
        return PreparedNode(prepared, load_balancing_after)
    return PreparedNode(placed, placed)


def render_join_config(host: Host, cluster: ClusterContext, *, control_plane: bool, token: str,
                       ca_cert_hash: str, certificate_key: str = "") -> str:
    return render(
        "node/kubeadm-join.yaml.j2", host=host, api_version=cluster.kubernetes.kubeadm_api_version,
        control_plane_endpoint=cluster.control_plane_endpoint, token=token, ca_cert_hash=ca_cert_hash,
        cri_socket=CRI_SOCKET, control_plane=control_plane, apiserver_port=APISERVER_PORT,
        certificate_key=certificate_key,
        ignored_preflight_errors=cluster.ignored_preflight_errors if control_plane else [])


def render_join_script(host: Host, cluster: ClusterContext, *, control_plane: bool, ca_cert_hash: str) -> str:
    # The secrets stay shell variables here; the script reads their values from stdin.
    join_config = render_join_config(
        host, cluster, control_plane=control_plane, token="${KUBEADM_TOKEN}", ca_cert_hash=ca_cert_hash,
        certificate_key="${KUBEADM_CERTIFICATE_KEY}")
    return render("node/kubeadm-join.sh.j2", host=host, control_plane=control_plane,
                  restore_static_pods=control_plane and cluster.load_balancing.static_pods,
                  join_config=join_config.rstrip("\n"), control_plane_endpoint=cluster.control_plane_endpoint)


def join_cluster(name: str, host: Host, cluster: ClusterContext, ticket: JoinTicket, *, control_plane: bool,
                 prepared: remote.Command, parent: pulumi.Resource) -> remote.Command:
    """`prepared`: the node's last step before the join (its load balancing, if it has any).
    Returns the node's last step, its membership record: what comes after the node waits for it,
    so that on removal or destroy it goes first (before the node is drained and reset)."""
    # Fresh join material on the first control plane, then `kubeadm join` on this host.
    material = run_script(
        f"{name}-join-material", host=cluster.first_control_plane, ssh=cluster.ssh,
        create=render("control-plane/join-material.sh.j2", joiner=host.name, control_plane=control_plane,
                      token_ttl=JOIN_TOKEN_TTL),
        secret_stdout=True,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[ticket.after, prepared]))
    join = run_script(
        f"{name}-join", host=host, ssh=cluster.ssh,
        create=ticket.ca_cert_hash.apply(
            lambda ca_hash: render_join_script(host, cluster, control_plane=control_plane, ca_cert_hash=ca_hash)),
        delete=render("node/kubeadm-reset.sh.j2", host=host),
        stdin=pulumi.Output.secret(material.stdout),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[material]))
    # Depends on the join, so on removal it runs first: drain and delete before the reset.
    return run_script(
        f"{name}-membership", host=cluster.first_control_plane, ssh=cluster.ssh,
        create=render("control-plane/node-membership.sh.j2", node=host.name,
                      first_control_plane=cluster.first_control_plane.name),
        delete=render("control-plane/remove-node.sh.j2", node=host.name, control_plane=control_plane,
                      first_control_plane=cluster.first_control_plane.name),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[join]))
