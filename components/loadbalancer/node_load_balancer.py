"""The load balancing that lives on the cluster's own nodes (every mode but the dedicated pair).

- static-pods: keepalived + haproxy static pods on every control plane (the VIP lives there);
- kube-vip: a kube-vip static pod on every control plane;
- local-nginx: nginx (or haproxy) on every node at 127.0.0.1, no VIP.

Each node gets one step, before its `kubeadm init`/`join`. The steps run one node at a time
(a rolling update): when the control-plane list changes, every node's files change with it,
`pulumi preview` lists every node's step, and no two nodes reload at once.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
from pulumi_command import remote

from components.config.grammar import APISERVER_PORT
from components.config.model import (
    LOCAL_PROXY_ADDRESS,
    Host,
    KubernetesSettings,
    LoadBalancerMode,
    LoadBalancerSettings,
    LocalProxy,
    PackageSettings,
)
from components.loadbalancer.lb_files import (
    backends_for,
    render_check_script,
    render_haproxy_cfg,
    render_keepalived_conf,
)
from components.render import render
from components.ssh.remote import SshAccess, run_script

MANIFESTS_DIR = "/etc/kubernetes/manifests"
# A copy of each static pod manifest: `kubeadm reset` after a failed init/join empties
# MANIFESTS_DIR, and the next attempt puts them back from here (restore-static-pods.sh.j2).
KUBEHA_MANIFESTS_DIR = "/etc/kubernetes/kubeha/manifests"
HAPROXY_CFG = "/etc/haproxy/haproxy.cfg"
KEEPALIVED_CONF = "/etc/keepalived/keepalived.conf"
CHECK_SCRIPT = "/etc/keepalived/check_apiserver.sh"
NGINX_CONF = "/etc/nginx/nginx.conf"
# kubeadm refuses a non-empty manifests folder unless told this check may fail.
STATIC_PODS_PREFLIGHT = "DirAvailable--etc-kubernetes-manifests"
# From 1.29 on, admin.conf has no rights until `kubeadm init` binds them (super-admin.conf does).
SUPER_ADMIN_SINCE = (1, 29, 0)


@dataclass(frozen=True)
class NodeFile:
    path: str
    content: str
    mode: str = "0644"


def _sha256(*texts: str) -> str:
    return hashlib.sha256("\0".join(texts).encode()).hexdigest()


@dataclass(frozen=True)
class NodeLoadBalancing:
    """Renders and places each node's share of the load balancing for the configured mode."""

    settings: LoadBalancerSettings
    kubernetes: KubernetesSettings
    control_planes: Sequence[Host]
    packages: PackageSettings

    @property
    def mode(self) -> LoadBalancerMode:
        return self.settings.mode

    @property
    def static_pods(self) -> bool:
        """Whether control planes get static pods before kubeadm runs (kubeadm must allow it)."""
        return self.mode in (LoadBalancerMode.STATIC_PODS, LoadBalancerMode.KUBE_VIP)

    @property
    def kube_vip_bootstrap(self) -> bool:
        """Whether the initialising control plane's kube-vip needs super-admin.conf during init."""
        return self.mode is LoadBalancerMode.KUBE_VIP and self.kubernetes.version_tuple >= SUPER_ADMIN_SINCE

    def image(self, name: str) -> str:
        return self.settings.images.reference(name, self.kubernetes.image_repository)

    def files_for(self, host: Host) -> list[NodeFile]:
        """The files `host` gets, mounted files before manifests; none for a worker with a VIP."""
        control_plane = host in self.control_planes
        if self.mode is LoadBalancerMode.LOCAL_NGINX:
            return [self._local_proxy_file(host)]
        if not (self.static_pods and control_plane):
            return []
        manifests = self.static_pod_manifests(host)
        mounted = self._mounted_files(host) if self.mode is LoadBalancerMode.STATIC_PODS else []
        return [*mounted,
                *(NodeFile(f"{KUBEHA_MANIFESTS_DIR}/{name}", text, "0600") for name, text in manifests.items()),
                *(NodeFile(f"{MANIFESTS_DIR}/{name}", text, "0600") for name, text in manifests.items())]

    def static_pod_manifests(self, host: Host) -> dict[str, str]:
        """File name -> static pod manifest, for a control plane."""
        if self.mode is LoadBalancerMode.KUBE_VIP:
            return {"kube-vip.yaml": self.render_kube_vip_manifest(host)}
        mounted = {file.path: file.content for file in self._mounted_files(host)}
        return {
            "haproxy.yaml": render("static-pods/haproxy.yaml.j2", host=host, image=self.image("haproxy"),
                                   health_port=self.settings.health_port, haproxy_cfg_path=HAPROXY_CFG,
                                   config_sha256=_sha256(mounted[HAPROXY_CFG])),
            "keepalived.yaml": render("static-pods/keepalived.yaml.j2", host=host, image=self.image("keepalived"),
                                      keepalived_conf_path=KEEPALIVED_CONF, check_script_path=CHECK_SCRIPT,
                                      config_sha256=_sha256(mounted[KEEPALIVED_CONF], mounted[CHECK_SCRIPT])),
        }

    def _mounted_files(self, host: Host) -> list[NodeFile]:
        """The configs the static-pods mode's pods mount from the host."""
        return [NodeFile(HAPROXY_CFG, render_haproxy_cfg(host, self.settings, self.control_planes, in_static_pod=True)),
                NodeFile(KEEPALIVED_CONF, render_keepalived_conf(host, self.settings, self.control_planes,
                                                                 track_file=None)),
                NodeFile(CHECK_SCRIPT, render_check_script(self.settings), "0755")]

    def render_kube_vip_manifest(self, host: Host) -> str:
        vip = self.settings.vip
        assert vip is not None
        return render("static-pods/kube-vip.yaml.j2", host=host, image=self.image("kube_vip"), vip=vip,
                      vip_prefix=vip.max_prefixlen, interface=self.settings.interface_of(host),
                      apiserver_port=APISERVER_PORT,
                      kube_vip=self.settings.kube_vip)

    def _local_proxy_file(self, host: Host) -> NodeFile:
        bind_address = str(LOCAL_PROXY_ADDRESS)
        if self.settings.local_proxy is LocalProxy.HAPROXY:
            return NodeFile(HAPROXY_CFG, render_haproxy_cfg(host, self.settings, self.control_planes,
                                                            bind_address=bind_address))
        return NodeFile(NGINX_CONF, render(
            "local-proxy/nginx.conf.j2", host=host, bind_address=bind_address, port=self.settings.listen_port,
            backends=backends_for(self.control_planes), health_port=self.settings.health_port))

    def render_script(self, host: Host) -> Optional[str]:
        """The step's script for `host`, or None when the host gets nothing."""
        files = self.files_for(host)
        if not files:
            return None
        if self.mode is LoadBalancerMode.LOCAL_NGINX:
            (config,) = files
            return render("local-proxy/apply-local-proxy.sh.j2", host=host, proxy=self.settings.local_proxy.value,
                          config=config.content.rstrip("\n"), config_path=config.path,
                          bind_address=str(LOCAL_PROXY_ADDRESS), port=self.settings.listen_port,
                          health_port=self.settings.health_port)
        return render("static-pods/place-static-pods.sh.j2", host=host, mode=self.mode.value, files=files)

    def place(self, name: str, host: Host, ssh: SshAccess, *, prepared: pulumi.Resource,
              after: Optional[pulumi.Resource], parent: pulumi.Resource) -> Optional[remote.Command]:
        """The node's step (`{name}-load-balancing`), after its preparation and after the
        previous node's step; None when the host gets nothing."""
        script = self.render_script(host)
        if script is None:
            return None
        if self.mode is LoadBalancerMode.LOCAL_NGINX:
            # Packages install on every node at once; only the config rolls node by node.
            prepared = run_script(
                f"{name}-local-proxy-install", host=host, ssh=ssh,
                create=render("local-proxy/install-local-proxy.sh.j2", proxy=self.settings.local_proxy.value,
                              package_proxy=self.packages.proxy),
                opts=pulumi.ResourceOptions(parent=parent, depends_on=[prepared]))
        return run_script(f"{name}-load-balancing", host=host, ssh=ssh, create=script,
                          opts=pulumi.ResourceOptions(parent=parent,
                                                      depends_on=[prepared, *([after] if after else [])]))
