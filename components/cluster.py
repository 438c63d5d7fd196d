"""The root component: wires the gates, the load balancers, the nodes and the day-2 steps into one
HA cluster (kubeha:index:Cluster) and returns the stack's outputs.

Every resource of the stack is its descendant. Stacks built before it existed had these resources
at the top level; each child it registers directly carries an alias to that old place (its
descendants inherit it), so such a stack updates with no change."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Optional, Sequence

import pulumi

from components.config.grammar import APISERVER_PORT, host_port
from components.config.model import (
    ClusterConfig,
    FirewallMode,
    Host,
    LoadBalancerMode,
    NodeHost,
    kubernetes_package_source,
)
from components.day2.admin_credential import AdminCredential, CredentialScripts, with_server
from components.day2.certificates import CertificateScripts, ControlPlaneCertificates
from components.day2.etcd_backup import EtcdBackups, EtcdBackupsArgs, with_copy_key
from components.day2.etcd_restore import EtcdRestore, RestoreScripts
from components.day2.upgrade import KubernetesUpgrade, KubernetesUpgradeArgs, NodeScripts, UpgradeScripts
from components.gates.preflight import Preflight
from components.gates.release_check import release_check
from components.gates.settings_guard import SettingsGuard
from components.loadbalancer.load_balancer_pair import LoadBalancerPair, LoadBalancerPairArgs
from components.network.firewall import Firewall, FirewallArgs
from components.network.pod_network import PodNetwork, PodNetworkArgs
from components.nodes.cluster_bootstrap import (
    RESTORED_ETCD_PREFLIGHT,
    ClusterBootstrap,
    ClusterBootstrapArgs,
    render_kubeadm_init_config,
)
from components.nodes.control_plane_node import ControlPlaneNode, ControlPlaneNodeArgs
from components.nodes.node_steps import CRI_SOCKET, ClusterContext, JoinTicket
from components.nodes.worker_node import WorkerNode, WorkerNodeArgs
from components.render import render
from components.ssh.host_keys import HostKeys, warn_unpinned
from components.ssh.remote import SshAccess, run_script


def _top(parent: pulumi.Resource, opts: Optional[pulumi.ResourceOptions] = None) -> pulumi.ResourceOptions:
    """Options of a child the root registers itself: under it, and known by its old place too
    (the top of the stack, before the root existed)."""
    return pulumi.ResourceOptions.merge(pulumi.ResourceOptions(
        parent=parent, aliases=[pulumi.Alias(parent=pulumi.ROOT_STACK_RESOURCE)]), opts)


def _host_list(hosts: Sequence[Host]) -> list[dict[str, str]]:
    return [{"name": host.name, "address": host.ip} for host in hosts]


def _backends(config: ClusterConfig) -> list[dict[str, str]]:
    """What the site's balancer (loadBalancer.mode external) must forward to, and how to check it."""
    return [{"name": host.name, "address": host_port(host.address, APISERVER_PORT),
             "healthCheck": "GET /readyz over HTTPS (the cluster CA), expect 200"} for host in config.control_planes]


def _join_order(config: ClusterConfig) -> list[NodeHost]:
    """The control planes in the order they join, one at a time (etcd grows by one member at a
    time). The lead's own join comes after the next one by name, which makes its join material;
    on a new cluster the lead is initialised already and that join does nothing."""
    lead = config.lead_control_plane
    second = config.cluster_side_host(lead)
    others = [host for host in config.control_plane_entries if host.name not in (lead.name, second.name)]
    return [second, lead, *others] if second.name != lead.name else [lead, *others]


def _admin_credential(parent: pulumi.Resource, config: ClusterConfig, cluster: ClusterContext,
                      after: list[pulumi.Resource]) -> AdminCredential:
    """The `kubeconfig` output's credential, issued on the lead or, failing that, the next control
    plane by name."""
    lead, ssh, kubernetes = config.lead_control_plane, cluster.ssh, config.kubernetes
    candidates = [lead, *(host for host in config.control_planes if host.name != lead.name)]
    validity = kubernetes.kubeconfig_validity_hours

    def wrapped(template: str, label: str) -> str:
        return ssh.command(render(template, validity_hours=validity, api_version=kubernetes.kubeadm_api_version,
                                  cluster_name=kubernetes.cluster_name, kubernetes_version=kubernetes.version,
                                  control_plane_endpoint=cluster.control_plane_endpoint), label)

    return AdminCredential(
        "cluster-admin-credential",
        control_planes=[{"name": host.name, "target": ssh.target(host)} for host in candidates],
        validity_hours=validity, private_key=ssh.private_key,
        scripts=CredentialScripts(issue=wrapped("control-plane/admin-kubeconfig.sh.j2", "admin-kubeconfig"),
                                  revoke=wrapped("control-plane/revoke-admin-kubeconfig.sh.j2",
                                                 "revoke-admin-kubeconfig")),
        opts=ssh.gated(_top(parent, pulumi.ResourceOptions(depends_on=after))))


def _certificates(config: ClusterConfig, cluster: ClusterContext, control_planes: dict[str, ControlPlaneNode],
                  after: list[pulumi.Resource]) -> pulumi.Output[str]:
    """Each control plane's certificates, renewed one control plane at a time (each waits for the
    one before by name); returns the earliest expiry of them all."""
    ssh = cluster.ssh
    previous: list[pulumi.Resource] = after
    expiries: list[pulumi.Output[str]] = []
    for host in config.control_planes:
        def wrapped(template: str, step: str, host: Host = host) -> str:
            return ssh.command(render(template, host=host, cri_socket=CRI_SOCKET, apiserver_port=APISERVER_PORT,
                                      package_proxy=config.packages.proxy), f"{host.name}-{step}")
        certificates = ControlPlaneCertificates(
            f"{host.name}-certificates", node_name=host.name, node=ssh.target(host),
            private_key=ssh.private_key, renew_before_days=config.certificates.renew_before_days,
            scripts=CertificateScripts(expiry=wrapped("control-plane/certificate-expiry.sh.j2", "certificate-expiry"),
                                       renew=wrapped("control-plane/renew-certificates.sh.j2", "renew-certificates")),
            opts=ssh.gated(pulumi.ResourceOptions(parent=control_planes[host.name], depends_on=previous)))
        previous = [certificates]
        expiries.append(certificates.earliest_expiry)
    return pulumi.Output.all(*expiries).apply(lambda dates: min(dates) if dates else None)


def _one_node_at_a_time(step: str, hosts: Sequence[Host], script_for: Callable[[Host], str], ssh: SshAccess,
                        parents: Mapping[str, pulumi.Resource], after: list[pulumi.Resource]) -> list[pulumi.Resource]:
    """`<node>-<step>` on each of `hosts` in turn, each waiting for the one before (the first for
    `after`), under its node's component; returns the last."""
    previous = after
    for host in hosts:
        previous = [run_script(f"{host.name}-{step}", host=host, ssh=ssh, create=script_for(host),
                               opts=pulumi.ResourceOptions(parent=parents[host.name], depends_on=previous))]
    return previous


def _control_plane_settings(config: ClusterConfig, cluster: ClusterContext,
                            control_planes: dict[str, ControlPlaneNode],
                            after: list[pulumi.Resource]) -> list[pulumi.Resource]:
    """The apiserver, controller manager and scheduler settings (kubernetes.apiServer,
    .controllerManager, .scheduler, .audit) on each control plane, one at a time: a change rolls out
    node by node, each step waiting for the one before (templates/control-plane/
    reconfigure-control-plane.sh.j2). On a new cluster, and on a control plane that joins, the
    step finds its settings in place already and restarts nothing."""
    def script_for(host: Host) -> str:
        return render("control-plane/reconfigure-control-plane.sh.j2", host=host, cri_socket=CRI_SOCKET,
                      apiserver_port=APISERVER_PORT, audit=config.kubernetes.audit,
                      kubeadm_config=render_kubeadm_init_config(host, cluster, kubelet=False,
                                                                kube_proxy=False).rstrip("\n"))
    return _one_node_at_a_time("control-plane-settings", config.control_planes, script_for, cluster.ssh,
                               control_planes, after)


def _kubelet_settings(config: ClusterConfig, cluster: ClusterContext, nodes: dict[str, pulumi.Resource],
                      after: list[pulumi.Resource]) -> list[pulumi.Resource]:
    """kubernetes.kubelet on every node, one node at a time, control planes first: the lead's step
    updates the cluster's kubelet-config first (templates/node/kubelet-settings.sh.j2)."""
    lead = config.lead_control_plane
    settings_text = json.dumps(config.kubernetes.kubelet, sort_keys=True)

    def script_for(host: Host) -> str:
        upload = host.name == lead.name
        return render("node/kubelet-settings.sh.j2", host=host, upload=upload, settings_text=settings_text,
                      kubeadm_config=render_kubeadm_init_config(host, cluster, kube_proxy=False).rstrip("\n")
                      if upload else "")
    ordered = [lead, *(host for host in config.control_planes if host.name != lead.name), *config.workers]
    return _one_node_at_a_time("kubelet-settings", ordered, script_for, cluster.ssh, nodes, after)


def _kube_proxy_settings(parent: pulumi.Resource, config: ClusterConfig, cluster: ClusterContext,
                         after: list[pulumi.Resource]) -> pulumi.Resource:
    """kubernetes.kubeProxy: its ConfigMap and DaemonSet applied again on the lead, and kube-proxy
    restarted when they changed (templates/control-plane/kube-proxy-settings.sh.j2)."""
    lead = config.lead_control_plane
    script = render("control-plane/kube-proxy-settings.sh.j2", host=lead,
                    settings_text=json.dumps(config.kubernetes.kube_proxy, sort_keys=True),
                    kubeadm_config=render_kubeadm_init_config(lead, cluster, kubelet=False).rstrip("\n"))
    return run_script("cluster-kube-proxy-settings", host=lead, ssh=cluster.ssh, create=script,
                      opts=_top(parent, pulumi.ResourceOptions(depends_on=after)))


def _upgrade(parent: pulumi.Resource, config: ClusterConfig, cluster: ClusterContext,
             after: list[pulumi.Resource]) -> KubernetesUpgrade:
    """The cluster at kubernetes.version: `kubeadm upgrade apply` on the lead, then the other
    control planes, then the kubelets (components/day2/upgrade); cluster-side steps on the lead."""
    ssh, lead = cluster.ssh, config.lead_control_plane
    control_planes = [lead, *(host for host in config.control_planes if host.name != lead.name)]
    source = kubernetes_package_source(config.kubernetes, config.packages)

    def wrapped(template: str, host: Host, label: str, **values: object) -> str:
        return ssh.command(render(f"upgrade/{template}", host=host, **source, **values), label)

    def node_scripts(host: NodeHost, worker: bool) -> NodeScripts:
        return NodeScripts(
            control_plane=None if worker else wrapped("control-plane.sh.j2", host, f"{host.name}-upgrade-control-plane",
                                                      first=host.name == lead.name),
            drain=wrapped("drain.sh.j2", lead, f"{host.name}-upgrade-drain", node=host.name,
                          drain_timeout=config.kubernetes.drain_timeout_seconds),
            kubelet=wrapped("kubelet.sh.j2", host, f"{host.name}-upgrade-kubelet", worker=worker),
            uncordon=wrapped("uncordon.sh.j2", lead, f"{host.name}-upgrade-uncordon", node=host.name))

    scripts = UpgradeScripts(
        status=wrapped("cluster-status.sh.j2", lead, "upgrade-cluster-status"),
        nodes={**{host.name: node_scripts(host, worker=False) for host in control_planes},
               **{host.name: node_scripts(host, worker=True) for host in config.workers}})
    return KubernetesUpgrade("kubernetes-upgrade", KubernetesUpgradeArgs(
        version=config.kubernetes.version,
        control_planes=[host.name for host in control_planes], workers=[host.name for host in config.workers],
        max_unavailable_workers=config.upgrade.max_unavailable_workers,
        targets={host.name: ssh.target(host) for host in [*control_planes, *config.workers]},
        private_key=ssh.private_key, scripts=scripts),
        opts=ssh.gated(_top(parent, pulumi.ResourceOptions(depends_on=after))))


def _restore(parent: pulumi.Resource, config: ClusterConfig, cluster: ClusterContext, project: str,
             key: pulumi.Output[str], after: list[pulumi.Resource]) -> EtcdRestore:
    """etcd.restore on its control plane, once that host is prepared (components/day2/etcd_restore)."""
    restore, ssh, settings = config.etcd.restore, cluster.ssh, config.etcd.backup
    assert restore is not None
    host = next(host for host in config.control_planes if host.name == restore.on)
    copy = settings.copy_to if restore.from_copy_host else None
    values = {"host": host, "backup": restore.backup, "cri_socket": CRI_SOCKET, "apiserver_port": APISERVER_PORT,
              "peer_url": f"https://{host_port(host.address, 2380)}", "copy": copy, "directory": settings.directory,
              "control_plane_endpoint": cluster.control_plane_endpoint,
              "lost": [entry.name for entry in config.control_plane_entries if entry.decommission is not None]}
    # A new host becomes a control plane of the restored cluster by kubeadm init on the restored
    # data, with the backup's CAs (templates/etcd-backup/restore-etcd.sh.j2).
    init_config = render_kubeadm_init_config(host, cluster, extra_ignored=[RESTORED_ETCD_PREFLIGHT])
    scripts = RestoreScripts(
        check=ssh.command(render("etcd-backup/etcd-restore-check.sh.j2", **values), f"{host.name}-etcd-restore-check"),
        restore=ssh.command(render("etcd-backup/restore-etcd.sh.j2", **values,
                                   kubeadm_config=init_config.rstrip("\n"), audit=config.kubernetes.audit,
                                   restore_static_pods=cluster.load_balancing.static_pods),
                            f"{host.name}-etcd-restore"))
    return EtcdRestore("etcd-restore", project=project, backup=restore.backup, on=restore.on, force=restore.force,
                       node=ssh.target(host), private_key=ssh.private_key, key=with_copy_key(key, copy),
                       scripts=scripts,
                       opts=ssh.gated(_top(parent, pulumi.ResourceOptions(depends_on=after))))


@dataclass(frozen=True)
class ClusterArgs:
    config: ClusterConfig
    ssh: SshAccess  # the stack's login and key; the root adds its gates
    project: str  # the config namespace, for the settings guard's messages (`kubeha:<key>`)


class Cluster(pulumi.ComponentResource):
    """One HA kubeadm cluster on the hosts of the stack config; `outputs` are the stack's."""

    outputs: dict[str, Any]

    def __init__(self, name: str, args: ClusterArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("kubeha:index:Cluster", name, None, opts)
        config = args.config
        # First, an edit the built cluster cannot take stops the run; then new hosts are checked;
        # every host step waits for both.
        guard = SettingsGuard("cluster-settings", config, args.project, release_check=release_check(config, args.ssh),
                              private_key=args.ssh.private_key, opts=_top(self))
        # Then every host's key, pinned or trusted on first use, which every connection requires.
        host_keys = HostKeys("cluster-host-keys", config, args.project,
                             opts=_top(self, pulumi.ResourceOptions(depends_on=[guard])))
        ssh = replace(args.ssh, host_keys=host_keys.keys)
        preflight = Preflight("cluster-preflight", config, ssh,
                              opts=_top(self, pulumi.ResourceOptions(depends_on=[guard])))
        host_keys.keys.apply(lambda keys: warn_unpinned(keys, config.ssh.host_keys))
        # The backup key first: a restore (etcd.restore) needs it.
        backups = EtcdBackups("etcd-backup", EtcdBackupsArgs(config=config), opts=_top(self))
        self._project = args.project
        self.outputs = self._build(config, replace(ssh, gates=(preflight,)), backups)
        self.register_outputs(self.outputs)

    def _build(self, config: ClusterConfig, ssh: SshAccess, backups: EtcdBackups) -> dict[str, Any]:
        # Every host's firewall first (firewall.mode managed): every other step waits for it.
        # Unmanaged there is none (and going back to unmanaged deletes it, which removes kubeha's tables).
        if config.firewall.mode is FirewallMode.MANAGED:
            ssh = replace(ssh, gates=(*ssh.gates, Firewall("firewall", FirewallArgs(config=config, ssh=ssh),
                                                           opts=_top(self))))
        settings = config.load_balancer
        load_balancer_ready: Optional[pulumi.Resource] = None
        if settings.mode is LoadBalancerMode.KEEPALIVED_HAPROXY:
            load_balancer_ready = LoadBalancerPair("lb", LoadBalancerPairArgs(
                settings=settings, control_planes=config.control_planes, ssh=ssh, packages=config.packages),
                opts=_top(self)).ready
        cluster = ClusterContext.for_config(config, ssh)
        lead = config.lead_control_plane

        # Node-side load balancing rolls one node at a time, control planes first; a restore's
        # control plane first of all.
        rolling: Optional[pulumi.Resource] = None
        control_planes: dict[str, ControlPlaneNode] = {}
        restore: Optional[EtcdRestore] = None
        restoring = config.etcd.restore if backups.key is not None else None
        entries = sorted(config.control_plane_entries,
                         key=lambda entry: restoring is None or entry.name != restoring.on)
        for host in entries:
            node = ControlPlaneNode(host.name, ControlPlaneNodeArgs(host=host, cluster=cluster,
                                                                    load_balancing_after=rolling), opts=_top(self))
            control_planes[host.name], rolling = node, node.load_balancing_done
            if restoring is not None and restore is None:
                # The restore is a gate: no later step can reach a cluster whose etcd lost its
                # quorum. Only its own host's preparation (a new host's too), the firewall and the
                # load balancer pair (which must forward to it) come before it.
                assert backups.key is not None
                restore = _restore(self, config, cluster, self._project, backups.key, after=[
                    node.prepared, *([rolling] if rolling else []),
                    *([load_balancer_ready] if load_balancer_ready else [])])
                cluster = replace(cluster, ssh=replace(ssh, gates=(*ssh.gates, restore)))
        restored = [restore] if restore is not None else []
        ssh = cluster.ssh
        bootstrap = ClusterBootstrap("cluster", ClusterBootstrapArgs(
            cluster=cluster, lead=control_planes[lead.name], lead_host=lead, load_balancer_ready=load_balancer_ready,
            former_first=config.control_plane_entries[0].name), opts=_top(self))

        # A node's cluster-side steps wait until their control plane is a member: the lead once the
        # cluster is initialised (and, for every node but the one that makes the lead's own join
        # material, once the lead has joined too, in case it is a new lead); any other once it joined.
        member: dict[str, pulumi.Resource] = {lead.name: bootstrap.initialised}
        previous: pulumi.Resource = bootstrap.initialised
        for host in _join_order(config):
            cluster_side = config.cluster_side_host(host)
            joined = control_planes[host.name].join(JoinTicket(
                bootstrap.ca_cert_hash, cluster_side=cluster_side,
                after=[previous, member[cluster_side.name], *restored]))
            previous, member[host.name] = joined, joined
        # Membership records once every join exists: each waits for the join of the control plane it
        # runs on too, so a destroy deletes it (a no-op then) before that control plane is reset.
        # The control planes a restore lost are removed by the restore itself.
        records: list[pulumi.Resource] = [
            control_planes[host.name].record_membership(member[config.cluster_side_host(host).name],
                                                        removed_by_restore=restore is not None)
            for host in config.control_plane_entries]
        # Workers join in parallel, once the lead is a member.
        workers: dict[str, WorkerNode] = {}
        for host in config.worker_entries:
            worker = WorkerNode(host.name, WorkerNodeArgs(
                host=host, cluster=cluster, join=JoinTicket(bootstrap.ca_cert_hash, cluster_side=lead,
                                                            after=[member[lead.name]]),
                cluster_side_joined=member[lead.name], load_balancing_after=rolling), opts=_top(self))
            rolling, workers[host.name] = worker.load_balancing_done, worker
            records.append(worker.ready)
        # Before any node leaves on `pulumi destroy`, the cluster is marked, so none is drained.
        run_script("cluster-teardown", host=lead, ssh=ssh,
                   create=render("control-plane/teardown-mark.sh.j2", mark=False),
                   delete=render("control-plane/teardown-mark.sh.j2", mark=True),
                   opts=_top(self, pulumi.ResourceOptions(depends_on=records)))
        # The kubeconfig output once every node has joined, so that a destroy revokes it before any
        # control plane is reset.
        credential = _admin_credential(self, config, cluster, records)
        kubeconfig: pulumi.Output[str] = pulumi.Output.secret(
            credential.kubeconfig.apply(lambda text: with_server(text, cluster.kubeconfig_server)))
        # The pod network once every node has joined; then the wait for every node Ready.
        network = PodNetwork("network", PodNetworkArgs(
            settings=config.network, kubernetes=config.kubernetes, kubeconfig=kubeconfig,
            nodes=[*config.control_planes, *config.workers], control_plane=lead, ssh=ssh, joined=records),
            opts=_top(self))
        # Scheduled etcd backups once the cluster is settled (every node Ready): each install takes
        # and verifies a first backup, one control plane at a time, so no two snapshots load the
        # control planes at once.
        installs = backups.schedule(ssh, [*records, *([network.ready] if network.ready else [])])
        # A kubernetes.version change, once every node is a member and the backups run; certificate
        # renewals wait for it (both restart static pods, one control plane at a time each).
        upgraded = _upgrade(self, config, cluster, [*records, *installs])
        # Then a change of the control plane's settings, one control plane at a time; certificate
        # renewals after it (each restarts static pods: one control plane at a time in all).
        reconfigured = _control_plane_settings(config, cluster, control_planes, [*records, upgraded])
        # The kubelets' and kube-proxy's settings after the upgrade too (it rewrites both).
        kubelets = _kubelet_settings(config, cluster, {**control_planes, **workers}, [*records, upgraded])
        _kube_proxy_settings(self, config, cluster, [*records, upgraded])

        return {
            "apiserverEndpoint": config.apiserver_endpoint,
            "controlPlaneEndpoint": f"https://{config.control_plane_endpoint}",
            "loadBalancerMode": settings.mode.value,
            "vip": str(settings.vip) if settings.vip is not None else None,
            "kubeconfig": kubeconfig,
            "kubeconfigExpires": credential.not_after,
            "certificatesExpire": _certificates(config, cluster, control_planes, [*records, *reconfigured, *kubelets]),
            "caCertHash": bootstrap.ca_cert_hash,
            "controlPlanes": _host_list(config.control_planes),
            "workers": _host_list(config.workers),
            "loadBalancers": _host_list(settings.hosts),
            "loadBalancerBackends": _backends(config) if settings.mode is LoadBalancerMode.EXTERNAL else None,
            "kubernetesVersion": config.kubernetes.version,
            "networkPlugin": config.network.plugin.value,
            "networkVersion": config.network.version,
            "etcdBackups": backups.backups,
            "etcdBackupKey": backups.key,
            "etcdRestore": restore.report if restore is not None else None,
        }
