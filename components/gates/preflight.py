"""Preflight: every host about to be added is checked over SSH before any host is changed.

A resource of its own between the settings guard and every host step (SshAccess's gate). Its
create (a new stack) checks every host; its update (the host list changed) checks the hosts that
are new or moved, comparing them with every host for the checks across hosts (unique hostname,
MAC and product_uuid, clock skew). All hosts are read in parallel, each on its own, so one host's
fault never hides another's result; every problem of every host is reported at once, as one
table, and the run stops before any host is touched. A run with no host added never connects.
With preflight.onPreview the same checks also run in `check`, so a preview fails on them too.
The logic of the checks is in preflight_checks, tested on recorded facts.
"""
from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any, Optional

import pulumi
from pulumi import dynamic

from components.config.grammar import CONTROL_PLANE_PORTS
from components.config.model import ClusterConfig, LoadBalancerMode
from components.dynamic_resource import DynamicResource
from components.gates.preflight_checks import HostFacts, PlannedHost, Policy, Survey, findings, table
from components.render import render
from components.ssh.remote import SshAccess
from components.ssh.ssh_session import RemoteScriptFailed, SshTarget, run_over_ssh

KUBELET_PORT = 10250
_VIP_PROBE_TIMEOUT_S = 2.0
_PARALLEL_HOSTS = 16
# Set only in a preview with preflight.onPreview: the checks run in `check`, then. Never stored
# (check drops it), so it makes no diff between a preview and the run that follows.
CHECK_IN_PREVIEW = "check_in_preview"


class PreflightFailed(Exception):
    """Hosts that kubeha cannot build on; the message is the table of every problem."""


def _proxy_ports(config: ClusterConfig) -> tuple[int, ...]:
    balancer = config.load_balancer
    return (balancer.listen_port, balancer.health_port, balancer.stats_port)


def planned_hosts(config: ClusterConfig) -> list[PlannedHost]:
    """Every host the cluster keeps, with the ports its role takes (kubeadm-ha's port table);
    decommissioned hosts are left alone."""
    mode = config.load_balancer.mode
    control_plane_ports = sorted(CONTROL_PLANE_PORTS)
    node_proxy_ports: tuple[int, ...] = ()
    if mode is LoadBalancerMode.STATIC_PODS:
        control_plane_ports += _proxy_ports(config)
    if mode is LoadBalancerMode.LOCAL_NGINX:
        node_proxy_ports = (config.load_balancer.listen_port,)
    planned = [PlannedHost(host.name, host.ip, "load balancer", _proxy_ports(config))
               for host in config.load_balancer.hosts if mode is LoadBalancerMode.KEEPALIVED_HAPROXY]
    planned += [PlannedHost(host.name, host.ip, "control plane", tuple(sorted({*control_plane_ports,
                                                                              *node_proxy_ports})))
                for host in config.control_planes]
    planned += [PlannedHost(host.name, host.ip, "worker", tuple(sorted({KUBELET_PORT, *node_proxy_ports})),
                            node_port_range=True) for host in config.workers]
    return sorted(planned, key=lambda host: host.name)


def policy_of(config: ClusterConfig) -> Policy:
    kubelet = config.kubernetes.kubelet
    vip = config.load_balancer.vip if config.load_balancer.mode is not LoadBalancerMode.LOCAL_NGINX else None
    return Policy(skip=frozenset(config.preflight.skip), allow_cgroup_v1=kubelet.get("failCgroupV1") is False,
                  allow_swap=kubelet.get("failSwapOn") is False, vip=str(vip) if vip is not None else None,
                  endpoint=config.load_balancer.endpoint)


def _endpoint_of(config: ClusterConfig) -> dict[str, object]:
    """The site's balancer for the facts script (external mode): its host and port; else none."""
    balancer = config.load_balancer
    if balancer.mode is not LoadBalancerMode.EXTERNAL:
        return {"endpoint_host": None, "endpoint_port": None, "endpoint_is_address": False}
    host = balancer.endpoint_address
    return {"endpoint_host": str(host), "endpoint_port": balancer.listen_port,
            "endpoint_is_address": not isinstance(host, str)}


def _read_facts(target: SshTarget, private_key: str, command: str) -> HostFacts:
    """The host's facts."""
    started = time.time()
    result = run_over_ssh(target, private_key, command, label="preflight: host facts")
    finished = time.time()
    epoch = next((line.split("=", 1)[1] for line in result.stdout.splitlines() if line.startswith("epoch=")), "")
    # The host read its clock at the end of the script, between these two moments.
    offset = float(epoch) - (started + finished) / 2 if epoch else 0.0
    return HostFacts.parse(result.stdout, clock_offset_s=offset)


def _vip_answers(vip: str, port: int) -> bool:
    """Whether something already has the VIP: a refused connection is an answer too."""
    try:
        with socket.create_connection((vip, port), timeout=_VIP_PROBE_TIMEOUT_S):
            return True
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def survey(targets: dict[str, SshTarget], private_key: str, command: str, vip: Optional[str],
           port: int) -> Survey:
    result = Survey()

    def read(name: str) -> None:
        try:
            result.facts[name] = _read_facts(targets[name], private_key, command)
        except RemoteScriptFailed as error:
            result.unreachable[name] = str(error).splitlines()[-1][:200]

    with ThreadPoolExecutor(max_workers=_PARALLEL_HOSTS) as pool:
        list(pool.map(read, sorted(targets)))
    result.vip_answering = vip is not None and _vip_answers(vip, port)
    return result


def _planned(props: dict[str, Any]) -> list[PlannedHost]:
    # Numbers come back from the engine as floats: ports are ints again here.
    return [PlannedHost(host["name"], host["address"], host["role"], tuple(int(port) for port in host["ports"]),
                        bool(host["node_port_range"])) for host in props.get("hosts", [])]


def _identity(host: dict[str, Any]) -> tuple[str, str, str]:
    return host["name"], host["address"], host["role"]


def _new_hosts(olds: dict[str, Any], news: dict[str, Any]) -> set[str]:
    """The hosts of `news` that `olds` does not have with the same address and role."""
    known = {_identity(host) for host in (olds or {}).get("hosts", [])}
    return {host["name"] for host in news.get("hosts", []) if _identity(host) not in known}


class _PreflightProvider(dynamic.ResourceProvider):
    def _check_hosts(self, props: dict[str, Any], checked: set[str]) -> None:
        """Fails with the table of every problem."""
        if not checked:
            return
        # The engine drops keys whose value is None (no VIP in local-nginx mode): .get, not [].
        policy = Policy(skip=frozenset(props["policy"].get("skip", [])),
                        allow_cgroup_v1=bool(props["policy"].get("allow_cgroup_v1")),
                        allow_swap=bool(props["policy"].get("allow_swap")), vip=props["policy"].get("vip"),
                        endpoint=props["policy"].get("endpoint"))
        targets = {host["name"]: SshTarget.from_dict(host["target"]) for host in props["hosts"]}
        surveyed = survey(targets, props["private_key"], props["facts_command"], policy.vip, int(props["vip_port"]))
        found = findings(_planned(props), checked, surveyed, policy)
        if found:
            raise PreflightFailed(f"preflight found {len(found)} problem(s) on {', '.join(sorted(checked))}; "
                                  f"no host was changed. Fix them, or skip a check with preflight.skip:\n"
                                  + table(found))

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.CheckResult:
        inputs = {key: value for key, value in news.items() if key != CHECK_IN_PREVIEW}
        if not news.get(CHECK_IN_PREVIEW):
            return dynamic.CheckResult(inputs, [])
        try:
            self._check_hosts(news, _new_hosts(olds, news))
        except PreflightFailed as failed:
            return dynamic.CheckResult(inputs, [dynamic.CheckFailure("hosts", str(failed))])
        return dynamic.CheckResult(inputs, [])

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        # Only a host to check is a change: a new port setting, a pinned key or the facts script's
        # text is not (and shows in the steps that apply it), so those edits preview as theirs alone.
        def hosts(props: dict[str, Any]) -> set[tuple[str, str, str]]:
            return {_identity(host) for host in props.get("hosts", [])}
        return dynamic.DiffResult(changes=not hosts(news) <= hosts(olds))

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        self._check_hosts(props, {host["name"] for host in props["hosts"]})
        return dynamic.CreateResult(id_="preflight", outs=props)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        self._check_hosts(news, _new_hosts(olds, news))
        return dynamic.UpdateResult(outs=news)


class Preflight(DynamicResource):
    """The check of new hosts; with the settings guard before it, every host step waits for it."""

    def __init__(self, name: str, config: ClusterConfig, ssh: SshAccess,
                 opts: Optional[pulumi.ResourceOptions] = None) -> None:
        hosts_by_name = {host.name: host for _, host in config.all_hosts_with_keys()}
        hosts = [{**asdict(host), "ports": list(host.ports), "target": ssh.target(hosts_by_name[host.name])}
                 for host in planned_hosts(config)]
        policy = policy_of(config)
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["private_key"]))
        super().__init__(_PreflightProvider(), name, {
            "hosts": hosts,
            "policy": {"skip": sorted(policy.skip), "allow_cgroup_v1": policy.allow_cgroup_v1,
                       "allow_swap": policy.allow_swap, "vip": policy.vip, "endpoint": policy.endpoint},
            "vip_port": config.load_balancer.listen_port,
            "facts_command": ssh.command(render("preflight/host-facts.sh.j2", **_endpoint_of(config)),
                                         "preflight-facts"),
            "private_key": pulumi.Output.secret(ssh.private_key),
            CHECK_IN_PREVIEW: config.preflight.on_preview and pulumi.runtime.is_dry_run()}, opts)
