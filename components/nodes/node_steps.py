"""Steps shared by control-plane and worker nodes: host preparation, joining, membership."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
from pulumi_command import remote

from components.config.grammar import APISERVER_PORT
from components.config.model import (
    ClusterConfig,
    ContainerdSettings,
    Host,
    KubernetesSettings,
    NodeHost,
    PackageSettings,
    kubernetes_package_source,
)
from components.loadbalancer.node_load_balancer import STATIC_PODS_PREFLIGHT, NodeLoadBalancing
from components.nodes.kubeadm_join import NOT_A_MEMBER, JoinScripts, KubeadmJoin
from components.render import render
from components.ssh.remote import SshAccess, run_script

CRI_SOCKET = "unix:///var/run/containerd/containerd.sock"
# Join material is made as each join runs and its token deleted right after; the lifetime only
# bounds a token whose deletion failed, and is well beyond a slow join.
JOIN_TOKEN_TTL = "30m"


@dataclass(frozen=True)
class ClusterContext:
    """What every node needs to know about the cluster it belongs to."""

    kubernetes: KubernetesSettings
    containerd: ContainerdSettings
    control_plane_endpoint: str  # VIP:port (127.0.0.1:port in local-nginx mode), the only way in
    cert_sans: list[str]
    ssh: SshAccess
    packages: PackageSettings
    load_balancing: NodeLoadBalancing
    # The server in the kubeconfig output, for clients off the cluster.
    kubeconfig_server: str

    @classmethod
    def for_config(cls, config: ClusterConfig, ssh: SshAccess) -> "ClusterContext":
        return cls(kubernetes=config.kubernetes, containerd=config.containerd,
                   control_plane_endpoint=config.control_plane_endpoint,
                   cert_sans=[str(config.load_balancer.endpoint_address)], ssh=ssh, packages=config.packages,
                   kubeconfig_server=config.apiserver_endpoint,
                   load_balancing=NodeLoadBalancing(settings=config.load_balancer, kubernetes=config.kubernetes,
                                                    control_planes=config.control_planes, packages=config.packages))

    @property
    def ignored_preflight_errors(self) -> list[str]:
        """Static pods placed before kubeadm runs make its manifests-folder check fail, on purpose."""
        return [STATIC_PODS_PREFLIGHT] if self.load_balancing.static_pods else []


@dataclass(frozen=True)
class JoinTicket:
    """What a joining node needs: the CA hash to pin, the control plane that runs its
    cluster-side steps (join material, membership, removal), and the steps it must follow (that
    control plane a member, and for a control plane the previous join: etcd grows one at a time)."""

    ca_cert_hash: pulumi.Output[str]
    cluster_side: Host
    after: list[pulumi.Resource]


def render_hosts_tomls(containerd: ContainerdSettings) -> dict[str, str]:
    """containerd's hosts.toml per mirrored registry (certs.d/<registry>/hosts.toml)."""
    return {registry: render("node/hosts.toml.j2", registry=registry, upstream=containerd.upstream(registry),
                             mirrors=mirrors)
            for registry, mirrors in sorted(containerd.registry_mirrors.items())}


def prepare_host(name: str, host: Host, cluster: ClusterContext, parent: pulumi.Resource) -> remote.Command:
    """The host prepared (containerd installed), then kubeadm/kubelet/kubectl installed; returns
    the packages step."""
    script = render("node/prepare-host.sh.j2", host=host, package_proxy=cluster.packages.proxy,
                    ipv6=host.address.version == 6 or cluster.kubernetes.pod_subnet.version == 6)
    prepared = run_script(f"{name}-prepare", host=host, ssh=cluster.ssh, create=script,
                          opts=pulumi.ResourceOptions(parent=parent))
    # Made once: a later kubernetes.version is the upgrade's (components/day2/upgrade), not this step's.
    return run_script(
        f"{name}-kubernetes-packages", host=host, ssh=cluster.ssh,
        create=render("node/kubernetes-packages.sh.j2", host=host,
                      **kubernetes_package_source(cluster.kubernetes, cluster.packages)), runs_once=True,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[prepared]))


def render_containerd_config(host: Host, cluster: ClusterContext) -> str:
    """templates/node/containerd-config.sh.j2 for `host`."""
    return render(
        "node/containerd-config.sh.j2", host=host, package_proxy=cluster.packages.proxy, containerd=cluster.containerd,
        sandbox_image=cluster.kubernetes.pause_image,
        # Direct for containerd whatever packages.proxy says: loopback and the cluster's own ranges.
        no_proxy=["localhost", "127.0.0.1", str(cluster.kubernetes.pod_subnet), str(cluster.kubernetes.service_subnet),
                  ".svc", ".cluster.local"],
        hosts_tomls=render_hosts_tomls(cluster.containerd))


def configure_containerd(name: str, host: Host, cluster: ClusterContext, *, prepared: pulumi.Resource,
                         after: Optional[pulumi.Resource], parent: pulumi.Resource) -> remote.Command:
    """containerd's settings on the host (`{name}-containerd`), after the previous node's rolling
    step: a change that restarts containerd goes one node at a time."""
    return run_script(f"{name}-containerd", host=host, ssh=cluster.ssh, create=render_containerd_config(host, cluster),
                      opts=pulumi.ResourceOptions(parent=parent, depends_on=[prepared, *([after] if after else [])]))


@dataclass(frozen=True)
class PreparedNode:
    ready: remote.Command  # the node's last step before kubeadm runs on it
    # The last rolling step so far (containerd's settings, the load balancing); the next node's follows it.
    load_balancing_done: Optional[pulumi.Resource]


def prepare_node(name: str, host: Host, cluster: ClusterContext, *,
                 load_balancing_after: Optional[pulumi.Resource], parent: pulumi.Resource) -> PreparedNode:
    """Host preparation, then, one node at a time, containerd's settings and the node's share of
    the load balancing."""
    prepared = prepare_host(name, host, cluster, parent=parent)
    containerd = configure_containerd(name, host, cluster, prepared=prepared, after=load_balancing_after, parent=parent)
    placed = cluster.load_balancing.place(name, host, cluster.ssh, prepared=prepared, after=containerd, parent=parent)
    done = placed if placed is not None else containerd
    return PreparedNode(done, done)


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
                  join_config=join_config.rstrip("\n"), control_plane_endpoint=cluster.control_plane_endpoint,
                  audit=cluster.kubernetes.audit)


def render_join_material_script(host: Host, cluster: ClusterContext, *, control_plane: bool,
                                cluster_side: Host) -> str:
    return render("control-plane/join-material.sh.j2", joiner=host.name, control_plane=control_plane,
                  token_ttl=JOIN_TOKEN_TTL, host=cluster_side, api_version=cluster.kubernetes.kubeadm_api_version,
                  kubernetes_version=cluster.kubernetes.version, cri_socket=CRI_SOCKET)


def _join_scripts(name: str, host: NodeHost, cluster: ClusterContext, cluster_side: Host, *, control_plane: bool,
                  ca_cert_hash: str) -> JoinScripts:
    def wrapped(script: str, step: str) -> str:
        return cluster.ssh.command(script, f"{name}-{step}")

    return JoinScripts(
        member_check=wrapped(render("node/member-check.sh.j2", host=host, not_a_member=NOT_A_MEMBER), "member-check"),
        mint=wrapped(render_join_material_script(host, cluster, control_plane=control_plane, cluster_side=cluster_side),
                     "join-material"),
        join=wrapped(render_join_script(host, cluster, control_plane=control_plane, ca_cert_hash=ca_cert_hash),
                     "join"),
        forget=wrapped(render("control-plane/forget-join-token.sh.j2", host=cluster_side, joiner=host.name),
                       "forget-join-token"))


def join_cluster(name: str, host: NodeHost, cluster: ClusterContext, ticket: JoinTicket, *, control_plane: bool,
                 prepared: remote.Command, parent: pulumi.Resource) -> remote.Command:
    """`prepared`: the node's last step before the join (its load balancing, if it has any).
    Returns the node's membership of the cluster on its host; its membership record
    (record_membership) comes once the cluster-side control plane's own join exists. The same
    steps for every node, the one that initialised the cluster included (it is a member already
    and gets no join material), so no node's resources depend on which one that was."""
    ssh = cluster.ssh
    # Join material made on the cluster-side control plane as the join runs, in the same step
    # (see kubeadm_join): a retry at any later time has valid material.
    kubeadm_join = KubeadmJoin(
        f"{name}-kubeadm-join", node_name=host.name, node=ssh.target(host),
        cluster_side_name=ticket.cluster_side.name, cluster_side=ssh.target(ticket.cluster_side),
        private_key=ssh.private_key,
        scripts=ticket.ca_cert_hash.apply(lambda ca_hash: _join_scripts(
            name, host, cluster, ticket.cluster_side, control_plane=control_plane, ca_cert_hash=ca_hash)),
        opts=ssh.gated(pulumi.ResourceOptions(parent=parent, depends_on=[*ticket.after, prepared])))
    # The node as a member, on its host: its deletion (the node removed from the stack) resets
    # the host. Named `-join` as the step that joined in earlier kubeha versions, so stacks built
    # by them keep it and their nodes are not reset by the upgrade; made once like the join.
    return run_script(
        f"{name}-join", host=host, ssh=ssh,
        create=render("node/member-check.sh.j2", host=host, not_a_member=NOT_A_MEMBER),
        delete=render("node/kubeadm-reset.sh.j2", host=host), runs_once=True,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[kubeadm_join], ignore_changes=["stdin"]))


def record_membership(name: str, host: NodeHost, cluster: ClusterContext, cluster_side: Host, *, control_plane: bool,
                      joined: pulumi.Resource, cluster_side_joined: pulumi.Resource, parent: pulumi.Resource,
                      removed_by_restore: bool = False) -> pulumi.Resource:
    """The node's last step. Depends on its own join and on the cluster-side control plane's, so
    on removal or destroy it is deleted before either reset: drain, delete and (for a control
    plane) the etcd member's removal run on a control plane that is still a member. When the
    cluster-side control plane changes (it left), the record moves with it (an update that
    re-runs the harmless create), so a later removal runs where the cluster still is.
    A decommissioned node gets none: the deletion of its old record removes it from the cluster,
    and its own steps stay as they are (see run_script). It gets a mark on the cluster side
    instead, made before that deletion (Pulumi deletes last), so the removal does not drain it.
    A control plane an etcd restore lost (`removed_by_restore`) is removed by the restore (the
    restored etcd has one member; it deletes the Node): its record is kept hands off, since it
    would run on a control plane that may be lost too, and leaves without its delete step."""
    membership = render("control-plane/node-membership.sh.j2", node=host.name, cluster_side=cluster_side.name)
    removal = render("control-plane/remove-node.sh.j2", node=host.name, control_plane=control_plane,
                     cluster_side=cluster_side.name, drain_timeout=cluster.kubernetes.drain_timeout_seconds)
    if host.decommission is not None and not removed_by_restore:
        return run_script(
            f"{name}-unreachable", host=cluster_side, ssh=cluster.ssh,
            create=render("control-plane/mark-unreachable.sh.j2", node=host.name, cluster_side=cluster_side.name),
            opts=pulumi.ResourceOptions(parent=parent, depends_on=[cluster_side_joined]))
    return run_script(
        f"{name}-membership", host=cluster_side, ssh=cluster.ssh, create=membership, delete=removal,
        hands_off=host.decommission is not None,  # decommissioned here: the restore removed it
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[joined, cluster_side_joined]))
