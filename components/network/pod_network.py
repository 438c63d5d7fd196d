"""PodNetwork: the cluster's pod network through its own API, and the wait for every node Ready.

The manifests are templates of kubeha's (templates/network/), rendered with the stack's settings
and applied by one pulumi-kubernetes Provider made from the kubeconfig output, so `pulumi
preview --diff` shows each object like every host script. `pulumi up` ends only when every node
of the stack is Ready and CoreDNS is available, or fails naming the nodes that are not and why.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import pulumi_kubernetes as kubernetes
import yaml

from components.config.grammar import CALICO_HEALTHZ_PORT, FLANNEL_HEALTHZ_PORT
from components.config.model import Host, KubernetesSettings, NetworkPlugin, NetworkSettings
from components.render import render
from components.ssh.remote import SshAccess, run_script


@dataclass(frozen=True)
class CalicoResource:
    """One of calico's custom resource kinds (crd.projectcalico.org/v1)."""

    kind: str
    plural: str
    scope: str = "Cluster"
    status: bool = False


# Every kind calico's components read or write; their CRDs come with the network.
CALICO_CRDS = [
    CalicoResource("BGPConfiguration", "bgpconfigurations"), CalicoResource("BGPFilter", "bgpfilters"),
    CalicoResource("BGPPeer", "bgppeers"), CalicoResource("BlockAffinity", "blockaffinities"),
    CalicoResource("CalicoNodeStatus", "caliconodestatuses", status=True),
    CalicoResource("ClusterInformation", "clusterinformations"),
    CalicoResource("FelixConfiguration", "felixconfigurations"),
    CalicoResource("GlobalNetworkPolicy", "globalnetworkpolicies"),
    CalicoResource("GlobalNetworkSet", "globalnetworksets"), CalicoResource("HostEndpoint", "hostendpoints"),
    CalicoResource("IPAMBlock", "ipamblocks"), CalicoResource("IPAMConfig", "ipamconfigs"),
    CalicoResource("IPAMHandle", "ipamhandles"), CalicoResource("IPPool", "ippools"),
    CalicoResource("IPReservation", "ipreservations"),
    CalicoResource("KubeControllersConfiguration", "kubecontrollersconfigurations", status=True),
    CalicoResource("NetworkPolicy", "networkpolicies", scope="Namespaced"),
    CalicoResource("NetworkSet", "networksets", scope="Namespaced"),
    CalicoResource("StagedGlobalNetworkPolicy", "stagedglobalnetworkpolicies"),
    CalicoResource("StagedKubernetesNetworkPolicy", "stagedkubernetesnetworkpolicies", scope="Namespaced"),
    CalicoResource("StagedNetworkPolicy", "stagednetworkpolicies", scope="Namespaced"),
    CalicoResource("Tier", "tiers"),
]


@dataclass(frozen=True)
class PodNetworkArgs:
    settings: NetworkSettings
    kubernetes: KubernetesSettings
    kubeconfig: pulumi.Output[str]  # secret; its server is the cluster's endpoint
    nodes: list[Host]  # every node of the stack: the wait is for these
    control_plane: Host  # where the wait runs (its admin.conf)
    ssh: SshAccess
    # Every node's init or join. The objects wait for them all: then a destroy removes them through
    # the API before any node leaves (a node's reset would cut the requests in flight).
    joined: list[pulumi.Resource]


def flannel_net_conf(settings: NetworkSettings, kubernetes_settings: KubernetesSettings) -> str:
    subnet = kubernetes_settings.pod_subnet
    backend: dict[str, object] = {"Type": "vxlan"}
    if settings.flannel.mtu is not None:
        backend["MTU"] = settings.flannel.mtu
    conf: dict[str, object] = ({"Network": str(subnet)} if subnet.version == 4 else
                               {"EnableIPv4": False, "EnableIPv6": True, "IPv6Network": str(subnet)})
    conf.update({"EnableNFTables": False, "Backend": backend})
    return json.dumps(conf, indent=2)


def render_flannel_manifest(settings: NetworkSettings, kubernetes_settings: KubernetesSettings) -> str:
    return render("network/kube-flannel.yaml.j2", version=settings.version,
                  net_conf=flannel_net_conf(settings, kubernetes_settings),
                  flannel_image=settings.image("flannel"), cni_plugin_image=settings.image("flannel_cni_plugin"),
                  interface=settings.flannel.interface, healthz_port=FLANNEL_HEALTHZ_PORT)


def render_calico_manifest(settings: NetworkSettings, kubernetes_settings: KubernetesSettings) -> str:
    subnet = kubernetes_settings.pod_subnet
    return render("network/calico.yaml.j2", version=settings.version, crds=CALICO_CRDS, pod_subnet=str(subnet),
                  ipv6=subnet.version == 6, mtu=settings.calico.mtu or 0, interface=settings.calico.interface,
                  node_image=settings.image("calico_node"), cni_image=settings.image("calico_cni"),
                  kube_controllers_image=settings.image("calico_kube_controllers"), healthz_port=CALICO_HEALTHZ_PORT)


def render_network_manifest(settings: NetworkSettings, kubernetes_settings: KubernetesSettings) -> str:
    """The manifest of the configured plugin (not for `none`)."""
    if settings.plugin is NetworkPlugin.CALICO:
        return render_calico_manifest(settings, kubernetes_settings)
    return render_flannel_manifest(settings, kubernetes_settings)


def kubernetes_type(manifest_object: dict[str, Any]) -> str:
    """The provider's type token of a Kubernetes object: kubernetes:apps/v1:DaemonSet, core/v1 for the core group."""
    api_version = manifest_object["apiVersion"]
    return f"kubernetes:{api_version if '/' in api_version else f'core/{api_version}'}:{manifest_object['kind']}"


# kubeha owns every object it applies. Each attempt to create one applies it (server-side) under a
# new field manager, so after a create that reached the cluster but not the state (a connection
# reset half way, an interrupted `up`), the next attempt would conflict with the first one's fields:
# patchForce takes them over. Deleted, an object goes at once and its pods after it (background):
# a DaemonSet's foreground deletion waited for the pod on a dead node, which never goes, and held a
# `pulumi destroy` for its whole timeout.
OWNED_BY_KUBEHA = {"pulumi.com/patchForce": "true", "pulumi.com/deletionPropagationPolicy": "background"}


def owned_by_kubeha(manifest_object: dict[str, Any]) -> dict[str, Any]:
    """The object with the annotations kubeha's objects carry (OWNED_BY_KUBEHA)."""
    metadata = manifest_object["metadata"]
    return {**manifest_object, "metadata": {**metadata, "annotations": {**metadata.get("annotations", {}),
                                                                         **OWNED_BY_KUBEHA}}}


class PodNetwork(pulumi.ComponentResource):
    """The pod network (flannel, calico, or none) and the wait until the cluster runs pods."""

    ready: Optional[pulumi.Resource]

    def __init__(self, name: str, args: PodNetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("kubeha:index:PodNetwork", name, None, opts)
        self.ready = None
        if args.settings.plugin is NetworkPlugin.NONE:
            pulumi.log.warn("network.plugin is none: the nodes stay NotReady and CoreDNS Pending until you "
                            "deploy a pod network", resource=self)
            self.register_outputs({})
            return
        cluster = kubernetes.Provider(f"{name}-cluster", kubeconfig=args.kubeconfig,
                                      opts=pulumi.ResourceOptions(parent=self))
        objects = self._apply(name, render_network_manifest(args.settings, args.kubernetes), cluster, args.joined)
        names = [host.name for host in args.nodes]
        self.ready = run_script(
            f"{name}-nodes-ready", host=args.control_plane, ssh=args.ssh,
            create=render("network/wait-for-nodes.sh.j2", nodes=names,
                          timeout=args.settings.ready_timeout_seconds),
            # Waits again when the network changes; a change of the nodes changes the script itself.
            triggers=[args.settings.version],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*objects, *args.joined]))
        self.register_outputs({})

    def _apply(self, name: str, manifest: str, cluster: kubernetes.Provider,
               joined: list[pulumi.Resource]) -> list[pulumi.CustomResource]:
        """One resource per object of the manifest, with the object as its inputs (so a preview
        lists every object and field, even before the cluster exists), namespaces first."""
        created: list[pulumi.CustomResource] = []
        namespaces: dict[str, pulumi.CustomResource] = {}
        for manifest_object in (document for document in yaml.safe_load_all(manifest) if document):
            metadata = manifest_object["metadata"]
            # A namespace of the manifest's own comes first (kube-system is the cluster's).
            namespace = namespaces.get(metadata.get("namespace", ""))
            waits_for = [*joined, *([namespace] if namespace else [])]
            resource = pulumi.CustomResource(
                kubernetes_type(manifest_object), f"{name}-{manifest_object['kind'].lower()}-{metadata['name']}",
                owned_by_kubeha(manifest_object),
                opts=pulumi.ResourceOptions(parent=self, provider=cluster, depends_on=waits_for))
            if manifest_object["kind"] == "Namespace":
                namespaces[metadata["name"]] = resource
            created.append(resource)
        return created
