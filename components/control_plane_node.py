"""ControlPlaneNode: the first one runs `kubeadm init`; the others join as control planes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import yaml
from pulumi_command import remote

from components.config import APISERVER_PORT, Host
from components.node_steps import CRI_SOCKET, ClusterContext, JoinTicket, join_cluster, prepare_node
from components.remote import run_script
from components.render import render


@dataclass(frozen=True)
class ControlPlaneNodeArgs:
    host: Host
    cluster: ClusterContext
    # None for the first control plane (it initialises the cluster); others join with it.
    join: Optional[JoinTicket]
    # The dedicated load balancer must serve the VIP before kubeadm talks through it.
    load_balancer_ready: Optional[pulumi.Resource]
    # The previous node's load-balancing step (modes with static pods or node-local proxies).
    load_balancing_after: Optional[pulumi.Resource] = None


def _yaml_fields(settings: dict[str, object]) -> str:
    """Top-level YAML fields of a component configuration, as given (keys sorted)."""
    return yaml.safe_dump(settings, sort_keys=True, default_flow_style=False).rstrip("\n") if settings else ""


def render_kubeadm_init_config(host: Host, cluster: ClusterContext) -> str:
    kubernetes = cluster.kubernetes
    return render(
        "control-plane/kubeadm-config.yaml.j2", host=host, api_version=kubernetes.kubeadm_api_version,
        apiserver_port=APISERVER_PORT, cri_socket=CRI_SOCKET, cluster_name=kubernetes.cluster_name,
        kubernetes_version=kubernetes.version, control_plane_endpoint=cluster.control_plane_endpoint,
        cert_sans=cluster.cert_sans, pod_subnet=kubernetes.pod_subnet, service_subnet=kubernetes.service_subnet,
        image_repository=kubernetes.image_repository, ignored_preflight_errors=cluster.ignored_preflight_errors,
        cgroup_driver=cluster.containerd.cgroup_driver.value, kubelet_settings=_yaml_fields(kubernetes.kubelet),
        kube_proxy_settings=_yaml_fields(kubernetes.kube_proxy))


class ControlPlaneNode(pulumi.ComponentResource):
    """One control-plane host: prepared, then initialised (first) or joined (the rest)."""

    ready: remote.Command  # init or join; the next control plane waits for it
    load_balancing_done: Optional[pulumi.Resource]
    ca_cert_hash: Optional[pulumi.Output[str]] = None  # first node only
    kubeconfig: Optional[pulumi.Output[str]] = None  # first node only, secret

    def __init__(self, name: str, args: ControlPlaneNodeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("kubeha:index:ControlPlaneNode", name, None, opts)
        host, cluster = args.host, args.cluster
        prepared = prepare_node(name, host, cluster, load_balancing_after=args.load_balancing_after, parent=self)
        self.load_balancing_done = prepared.load_balancing_done
        outputs: dict[str, pulumi.Output[str]] = {}
        if args.join is None:
            before_init = [prepared.ready, *([args.load_balancer_ready] if args.load_balancer_ready else [])]
            self.ready = self._initialise(name, host, cluster, before_init)
            self.ca_cert_hash = run_script(
                f"{name}-ca-cert-hash", host=host, ssh=cluster.ssh,
                create=render("control-plane/ca-cert-hash.sh.j2"),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.ready])).stdout
            self.kubeconfig = run_script(
                f"{name}-kubeconfig", host=host, ssh=cluster.ssh,
                create=render("control-plane/read-kubeconfig.sh.j2", server=cluster.kubeconfig_server),
                secret_stdout=True,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.ready])).stdout
            outputs = {"caCertHash": self.ca_cert_hash, "kubeconfig": self.kubeconfig}
        else:
            self.ready = join_cluster(name, host, cluster, args.join, control_plane=True, prepared=prepared.ready,
                                      parent=self)
        self.register_outputs(outputs)

    def _initialise(self, name: str, host: Host, cluster: ClusterContext,
                    depends_on: list[pulumi.Resource]) -> remote.Command:
        script = render(
            "control-plane/kubeadm-init.sh.j2", host=host,
            kubeadm_config=render_kubeadm_init_config(host, cluster).rstrip("\n"),
            control_plane_endpoint=cluster.control_plane_endpoint,
            kube_vip_bootstrap=cluster.load_balancing.kube_vip_bootstrap,
            restore_static_pods=cluster.load_balancing.static_pods)
        return run_script(f"{name}-init", host=host, ssh=cluster.ssh, create=script,
                          delete=render("node/kubeadm-reset.sh.j2", host=host),
                          opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on))
