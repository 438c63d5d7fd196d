"""Refuses, at preview, edits of settings a built cluster cannot take; nothing is changed.

Some settings are fixed the moment `kubeadm init` runs: the control-plane endpoint (mode, VIP,
port) is in every certificate and kubeconfig, the subnets and the cluster name are in the
cluster's own configuration, the kubelets keep their cgroup driver and resource manager policies,
and kube-proxy its mode.
Applying such an edit node by node would split or break the cluster, and ignoring it would mislead.
So the values are kept in a resource of their own, registered before anything else, and every
remote command waits for it: its provider's `check` sees the values the cluster was built with (the
old inputs) beside the new ones and fails on a difference, which stops `pulumi preview` and `pulumi
up` before any host is touched.
The values are stored when the guard is first created, which is before the first host step, so
the guard also holds after a first `up` that failed half way.

`kubernetes.version` may change, within what `kubeadm upgrade` can do (components/day2/upgrade): one
minor release up at most, never down, in a run of its own (no node added or removed in it, so
that no node joins at a release the others do not run yet), and only to a release the package
repository has: for that one the guard asks the lead, read only (components/gates/release_check), before
it records the new release.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

import pulumi
from pulumi import dynamic

from components.config.model import ClusterConfig, release_tuple
from components.dynamic_resource import DynamicResource
from components.gates.release_check import ReleaseCheck, release_problem

SETTINGS = "settings"
_CONTROL_PLANES = "controlPlanes"  # the set of names: removals are limited, not forbidden
_WORKERS = "workers"  # the set of names: recorded so an upgrade can be kept to a run of its own
_RESTORE = "etcd.restore"  # the backup a restore brings back: etcd starts again from one member
_LOAD_BALANCERS = "loadBalancer.hosts"  # the set of names: never all replaced at once (the VIP needs a holder)
_VERSION = "kubernetes.version"
_HOSTS = "hosts"  # name -> "<group> <address>" of every entry: a host keeps its address and its role
_RELEASE_CHECK, _PRIVATE_KEY = "release_check", "private_key"
_ENDPOINT = ("would move the control-plane endpoint that every certificate and kubeconfig carries; set it back "
             "to {old}, or build a new stack with the new value and move the workloads")
_MTU = ("is the MTU of every pod's interface, set when the pod starts; pods and nodes would be left on two MTUs, "
        "which drops large packets between them. Set it back to {old}")
_RESOURCE_MANAGER = ("is a policy of the kubelet's CPU, memory or topology manager, which a kubelet takes only on a "
                     "drained node whose manager state file is removed; kubeha restarts kubelets without a drain, "
                     "so it does not change it. Set it back to {old}")
# KubeletConfiguration fields kubeha does not change on a built cluster (the kubelet refuses to start
# with a state file of another policy): kubernetes.kubelet's other fields roll out node by node.
RESOURCE_MANAGER_FIELDS = ("cpuManagerPolicy", "cpuManagerPolicyOptions", "reservedSystemCPUs",
                           "memoryManagerPolicy", "reservedMemory", "topologyManagerPolicy",
                           "topologyManagerScope", "topologyManagerPolicyOptions")
# Why each setting is fixed once the cluster is built, and what to do instead of editing it.
_WHY_FIXED: dict[str, str] = {
    "loadBalancer.mode": _ENDPOINT,
    "loadBalancer.vip": _ENDPOINT,
    "loadBalancer.port": _ENDPOINT,
    "loadBalancer.endpoint": _ENDPOINT,
    "kubernetes.clusterName": "is written into the cluster's configuration and every kubeconfig at kubeadm init, "
                              "and kubeadm cannot rename a cluster; set it back to {old}",
    "kubernetes.podSubnet": "was given to the controller manager and the nodes' pod CIDRs at kubeadm init and "
                            "cannot move under running pods; set it back to {old}",
    "kubernetes.serviceSubnet": "holds every Service IP and the apiserver certificate's service address since "
                                "kubeadm init; set it back to {old}",
    "containerd.cgroupDriver": "must match the cgroup driver the kubelets were configured with at init and join, "
                               "which kubeha does not change on running nodes; set it back to {old}",
    **{f"kubernetes.kubelet.{field}": _RESOURCE_MANAGER for field in RESOURCE_MANAGER_FIELDS},
    "network.plugin": "would replace the pod network under every running pod; set it back to {old}, or build a "
                      "new stack and move the workloads",
    "kubernetes.kubeProxy.mode": "is kube-proxy's proxy mode on every node; the rules of the old mode would have to "
                                 "be cleaned from each node as it switches, which kubeha does not do. Set it back "
                                 "to {old}, or build a new stack with the new mode",
    "loadBalancer.virtualRouterId": "is the VRRP router id every keepalived of the cluster uses; the change rolls "
                                    "one host at a time, and hosts with two ids each claim the VIP (two holders "
                                    "at once). Set it back to {old}",
    "network.flannel.mtu": _MTU,
    "network.calico.mtu": _MTU,
}

# The keys a built cluster refuses a change of (also marked in docs/configuration.md).
FIXED_KEYS: tuple[str, ...] = tuple(_WHY_FIXED)
def _text(value: object) -> str:
    return "(unset)" if value is None else str(value)


def _json_text(value: object) -> str:
    """A component configuration field as recorded: a string as it is, anything else as JSON."""
    return value if isinstance(value, str) else "(unset)" if value is None else json.dumps(value, sort_keys=True)


def _network_mtu(config: ClusterConfig) -> dict[str, str]:
    """The MTU setting of the pod network in use (none for `none`)."""
    plugin = config.network.plugin.value
    settings = getattr(config.network, plugin, None)
    return {} if settings is None else {f"network.{plugin}.mtu": _text(settings.mtu)}


def fixed_settings(config: ClusterConfig) -> dict[str, str]:
    """The settings of `config` that cannot change on a built cluster, as config key -> text."""
    balancer, kubernetes = config.load_balancer, config.kubernetes
    return {
        "loadBalancer.mode": balancer.mode.value,
        "loadBalancer.vip": str(balancer.vip) if balancer.vip is not None else "(none)",
        "loadBalancer.port": str(balancer.listen_port),
        "loadBalancer.endpoint": _text(balancer.endpoint),
        "kubernetes.clusterName": kubernetes.cluster_name,
        "kubernetes.podSubnet": str(kubernetes.pod_subnet),
        "kubernetes.serviceSubnet": str(kubernetes.service_subnet),
        "kubernetes.version": kubernetes.version,
        "containerd.cgroupDriver": config.containerd.cgroup_driver.value,
        **{f"kubernetes.kubelet.{field}": _json_text(kubernetes.kubelet.get(field))
           for field in RESOURCE_MANAGER_FIELDS},
        "kubernetes.kubeProxy.mode": _json_text(kubernetes.kube_proxy.get("mode")),
        "network.plugin": config.network.plugin.value,
        **_network_mtu(config),
        "loadBalancer.virtualRouterId": _text(balancer.virtual_router_id),
        _LOAD_BALANCERS: ",".join(sorted(host.name for host in balancer.hosts)),
        _CONTROL_PLANES: ",".join(sorted(host.name for host in config.control_planes)),
        _WORKERS: ",".join(sorted(host.name for host in config.workers)),
        _RESTORE: config.etcd.restore.backup if config.etcd.restore is not None else "(none)",
        # Decommissioned entries are left out: their steps stay as they are and never reach the
        # machine again, so the entry's removal, or a new host at its address, is safe.
        _HOSTS: json.dumps({host.name: f"{key.split('[')[0]} {host.ip}" for key, host in config.live_hosts_with_keys()},
                           sort_keys=True),
    }


def _host_refusals(project: str, built: dict[str, str], wanted: dict[str, str]) -> list[str]:
    """A host entry that changed its address or its group in place, and a new entry at the address of
    one the same run removes: each would leave a machine prepared but not joined, or reset one that
    is joining. A guard that never recorded the hosts (an older kubeha) records them now."""
    if _HOSTS not in built or _HOSTS not in wanted:
        return []
    old: dict[str, list[str]] = {name: entry.split(" ", 1) for name, entry in json.loads(built[_HOSTS]).items()}
    new: dict[str, list[str]] = {name: entry.split(" ", 1) for name, entry in json.loads(wanted[_HOSTS]).items()}
    messages = []
    for name, (group, address) in sorted(new.items()):
        if name in old and old[name][0] != group:
            messages.append(
                f"{project}:{group}: {name} is in {old[name][0]} in the built cluster; moved in place, its new role's "
                f"steps would find it joined and skip, and the old entry's removal would then reset it. Remove it "
                f"from {old[name][0]}, run `pulumi up`, then add it to {group}. Refused; nothing was changed.")
        elif name in old and old[name][1] != address:
            messages.append(
                f"{project}:{group}: {name} was built at {old[name][1]}; at {address} in place, the machine there "
                f"would be prepared but never joined, while {name}'s node stays on the old one. Remove the entry "
                f"(or mark it `decommission: unreachable` if the old machine is gone), run `pulumi up`, then add it "
                f"with its new address. Refused; nothing was changed.")
        elif name not in old:
            removed = sorted(other for other, (_, at) in old.items() if other not in new and at == address)
            if removed:
                messages.append(
                    f"{project}:{group}: {name} is new at {address}, the address of {', '.join(removed)}, which "
                    f"this run removes; the removal would reset the machine {name} joins on. Remove "
                    f"{', '.join(removed)}, run `pulumi up`, then add {name}. Refused; nothing was changed.")
    return messages


def _version_refusals(project: str, built: dict[str, str], wanted: dict[str, str]) -> list[str]:
    """A version change kubeadm cannot make (down, or past the next minor release), or one in the
    same run as a change of the nodes."""
    old, new = built.get(_VERSION), wanted.get(_VERSION)
    if old is None or new is None or old == new:
        return []
    key = f"{project}:{_VERSION}"
    (old_major, old_minor, _), (new_major, new_minor, _) = release_tuple(old), release_tuple(new)
    if release_tuple(new) < release_tuple(old):
        return [f"{key}: this cluster runs {old} (or an upgrade to it has begun); {new} would be a downgrade, which "
                f"kubeadm cannot do. Set it back to {old} (or a later release). Refused; nothing was changed."]
    if new_major != old_major or new_minor > old_minor + 1:
        return [f"{key}: this cluster runs {old}; {new} skips a minor release, and kubeadm upgrades one minor "
                f"release at a time. Upgrade to {old_major}.{old_minor + 1}.x first, then to {new}. Refused; "
                f"nothing was changed."]
    moved = [f"{group} ({', '.join(sorted(set(built[group].split(',')) ^ set(wanted[group].split(','))))})"
             for group in (_CONTROL_PLANES, _WORKERS)
             if group in built and group in wanted and built[group] != wanted[group]]
    if moved:
        return [f"{key}: the upgrade from {old} to {new} comes with a change of {' and '.join(moved)}; a node "
                f"joining during an upgrade would run a release the cluster does not. Change the nodes or the "
                f"version, run `pulumi up`, then the other. Refused; nothing was changed."]
    return []


def refusals(project: str, built: dict[str, str], wanted: dict[str, str]) -> list[str]:
    """One message per fixed setting that differs from what the cluster was built with, one for a
    version change kubeadm cannot make, and one for a removal of more than one control plane. A key
    the cluster has no recorded value for (a guard from an older kubeha) is recorded, not refused."""
    messages = [f"{project}:{key}: this cluster was built with {built[key]}; changing it to {wanted[key]} "
                f"{_WHY_FIXED[key].format(old=built[key])}. Refused; nothing was changed."
                for key in wanted if key in built and key in _WHY_FIXED and built[key] != wanted[key]]
    messages.extend(_version_refusals(project, built, wanted))
    messages.extend(_host_refusals(project, built, wanted))
    old_balancers, new_balancers = (set(filter(None, settings.get(_LOAD_BALANCERS, "").split(",")))
                                    for settings in (built, wanted))
    if old_balancers and new_balancers and not old_balancers & new_balancers:
        messages.append(
            f"{project}:loadBalancer.hosts: this change replaces every LB host at once "
            f"({', '.join(sorted(old_balancers))} by {', '.join(sorted(new_balancers))}); the VIP would have no "
            f"holder until a new host is up. Keep one host of the pair, run `pulumi up`, then replace it. Refused; "
            f"nothing was changed.")
    # With a restore, etcd starts again as one member: the control planes it lost go in the same run.
    if _CONTROL_PLANES in built and _CONTROL_PLANES in wanted and wanted.get(_RESTORE, "(none)") == "(none)":
        removed = sorted(set(built[_CONTROL_PLANES].split(",")) - set(wanted[_CONTROL_PLANES].split(",")))
        if len(removed) > 1:
            messages.append(
                f"{project}:controlPlanes: this change removes {len(removed)} control planes at once "
                f"({', '.join(removed)}); each removal takes an etcd member away, so kubeha removes one per "
                f"`pulumi up` and etcd keeps its quorum. Remove one, run `pulumi up`, then the next. Refused; "
                f"nothing was changed.")
    return messages


def _upgraded(built: dict[str, str], wanted: dict[str, str]) -> bool:
    old, new = built.get(_VERSION), wanted.get(_VERSION)
    return old is not None and new is not None and release_tuple(new) > release_tuple(old)


@dataclass(frozen=True)
class _GuardProvider(dynamic.ResourceProvider):
    project: str

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.CheckResult:
        built, wanted = (_olds or {}).get(SETTINGS) or {}, news.get(SETTINGS) or {}
        messages = refusals(self.project, built, wanted)
        # A new release is recorded only once the package repository is seen to have it (one read
        # on the lead), so an upgrade refused for it leaves the release the cluster runs recorded.
        if not messages and _upgraded(built, wanted) and news.get(_RELEASE_CHECK):
            problem = release_problem(news[_RELEASE_CHECK], news[_PRIVATE_KEY], wanted[_VERSION])
            if problem is not None:
                messages.append(f"{self.project}:{_VERSION}: {problem}; kubeha upgrades only to a release every node "
                                f"can install. Set a release it has, or add this one to it. Refused; nothing was "
                                f"changed.")
        return dynamic.CheckResult(news, [dynamic.CheckFailure(SETTINGS, message) for message in messages])

    def diff(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> dynamic.DiffResult:
        # A key this guard never recorded (a stack built by an older kubeha) is recorded with the
        # next change, not as a change of its own: a new kubeha previews no change on a stack.
        built, wanted = _olds.get(SETTINGS) or {}, _news.get(SETTINGS) or {}
        return dynamic.DiffResult(changes=any(wanted.get(key) != value for key, value in built.items()))

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        return dynamic.CreateResult(id_="settings", outs=props)

    def update(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> dynamic.UpdateResult:
        return dynamic.UpdateResult(outs=_news)


class SettingsGuard(DynamicResource):
    """The cluster's fixed settings, as built; every remote command depends on it."""

    def __init__(self, name: str, config: ClusterConfig, project: str, *, release_check: ReleaseCheck,
                 private_key: pulumi.Input[str], opts: Optional[pulumi.ResourceOptions] = None) -> None:
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=[_PRIVATE_KEY]))
        super().__init__(_GuardProvider(project), name, {
            SETTINGS: fixed_settings(config), _RELEASE_CHECK: release_check.to_dict(),
            _PRIVATE_KEY: pulumi.Output.secret(private_key)}, opts)
