"""ClusterBootstrap: `kubeadm init`, once in the cluster's life, and what is read from it.

`kubeadm init` runs on the lead control plane (the name that sorts first) of a new cluster, and
never again: its resource ignores later changes of host and script, so a reorder, the lead's
removal or a new lead changes nothing here, and it has no delete step (each control plane's own
join resource resets it). The CA's hash is read once too: the CA lives as long as the cluster.
(The `kubeconfig` output is a credential of its own: admin_credential.)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import yaml
from pulumi_command import remote

from components.config.grammar import APISERVER_PORT
from components.config.model import Host
from components.nodes.control_plane_node import ControlPlaneNode
from components.nodes.node_steps import CRI_SOCKET, ClusterContext
from components.render import render
from components.ssh.remote import run_script


def _yaml_fields(settings: dict[str, object]) -> str:
    """Top-level YAML fields of a component configuration, as given (keys sorted)."""
    return yaml.safe_dump(settings, sort_keys=True, default_flow_style=False).rstrip("\n") if settings else ""


# kubeadm init onto etcd data restored from a backup (etcd.restore on a new host): the data folder
# is not empty, on purpose.
RESTORED_ETCD_PREFLIGHT = "DirAvailable--var-lib-etcd"


def render_kubeadm_init_config(host: Host, cluster: ClusterContext, extra_ignored: Sequence[str] = (), *,
                               kubelet: bool = True, kube_proxy: bool = True) -> str:
    """kubeadm's configuration for init on `host`. The day-2 steps that apply one part of it leave
    out the settings of the parts they do not apply (`kubelet`, `kube_proxy`), so that an edit of
    those does not re-run them."""
    kubernetes = cluster.kubernetes
    return render(
        "control-plane/kubeadm-config.yaml.j2", host=host, api_version=kubernetes.kubeadm_api_version,
        apiserver_port=APISERVER_PORT, cri_socket=CRI_SOCKET, cluster_name=kubernetes.cluster_name,
        kubernetes=kubernetes, kubernetes_version=kubernetes.version,
        control_plane_endpoint=cluster.control_plane_endpoint,
        cert_sans=cluster.cert_sans, pod_subnet=kubernetes.pod_subnet, service_subnet=kubernetes.service_subnet,
        image_repository=kubernetes.image_repository,
        ignored_preflight_errors=[*cluster.ignored_preflight_errors, *extra_ignored],
        cgroup_driver=cluster.containerd.cgroup_driver.value,
        kubelet_settings=_yaml_fields(kubernetes.kubelet) if kubelet else "",
        kube_proxy_settings=_yaml_fields(kubernetes.kube_proxy) if kube_proxy else "")


@dataclass(frozen=True)
class ClusterBootstrapArgs:
    cluster: ClusterContext
    lead: ControlPlaneNode  # prepared, not joined yet
    lead_host: Host
    # The dedicated load balancer must serve the VIP before kubeadm talks through it.
    load_balancer_ready: Optional[pulumi.Resource]
    # Stacks built by kubeha before this component had `{first}-init` and its reads under the
    # first entry's ControlPlaneNode; aliases carry them over instead of re-running them.
    former_first: str


class ClusterBootstrap(pulumi.ComponentResource):
    initialised: remote.Command
    ca_cert_hash: pulumi.Output[str]

    def __init__(self, name: str, args: ClusterBootstrapArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("kubeha:index:ClusterBootstrap", name, None, opts)
        cluster, host = args.cluster, args.lead_host
        former_parent = pulumi.create_urn(args.former_first, "kubeha:index:ControlPlaneNode")

        def carried_over(step: str) -> list[pulumi.Alias]:
            return [pulumi.Alias(name=f"{args.former_first}-{step}", parent=former_parent)]

        self.initialised = run_script(
            f"{name}-init", host=host, ssh=cluster.ssh, create=self._init_script(host, cluster), runs_once=True,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[args.lead.prepared, *([args.load_balancer_ready] if args.load_balancer_ready else [])],
                aliases=carried_over("init")))
        self.ca_cert_hash = run_script(
            f"{name}-ca-cert-hash", host=host, ssh=cluster.ssh, create=render("control-plane/ca-cert-hash.sh.j2"),
            runs_once=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.initialised],
                                        aliases=carried_over("ca-cert-hash"))).stdout
        self.register_outputs({"caCertHash": self.ca_cert_hash})

    @staticmethod
    def _init_script(host: Host, cluster: ClusterContext) -> str:
        return render(
            "control-plane/kubeadm-init.sh.j2", host=host,
            kubeadm_config=render_kubeadm_init_config(host, cluster).rstrip("\n"),
            control_plane_endpoint=cluster.control_plane_endpoint,
            kube_vip_bootstrap=cluster.load_balancing.kube_vip_bootstrap,
            restore_static_pods=cluster.load_balancing.static_pods, audit=cluster.kubernetes.audit)
