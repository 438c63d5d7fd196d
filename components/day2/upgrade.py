"""KubernetesUpgrade: a change of `kubernetes.version` on a built cluster, node by node, the way
kubeadm documents it.

  1. `kubeadm upgrade apply` on the first control plane (the cluster's configuration, its static
     pods, kube-proxy, CoreDNS), then `kubeadm upgrade node` on every other control plane, one at
     a time: the load balancers route around each apiserver while it restarts;
  2. kubelet and kubectl per node: drained, upgraded, Ready on the new release, uncordoned;
     control planes one at a time, then workers in batches of `upgrade.maxUnavailableWorkers`.

Each run first reads where the cluster is (cluster-status.sh.j2) and plans only what is left, so
an upgrade stopped half way (a host unreachable, a drain blocked) is finished by the next
`pulumi up`. The settings guard refuses what kubeadm cannot do (a downgrade, a skipped minor
release, nodes changed in the same run, and, asking the lead with repository-check.sh.j2, a
release the package repository does not have), before it records the new release. `pulumi
preview --diff` shows the plan per node (`plan`).
"""
from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

import pulumi
from pulumi import dynamic

from components.dynamic_resource import DynamicResource
from components.ssh.ssh_session import RemoteScriptFailed, SshTarget, run_over_ssh

UPGRADE_CORDONED = "kubeha.io/upgrade-cordoned"


@dataclass(frozen=True)
class ClusterStatus:
    """Where the cluster is, as cluster-status.sh.j2 prints it (releases as `v1.34.4`)."""

    configured: str  # the release in kubeadm's ClusterConfiguration
    kubelets: dict[str, str] = field(default_factory=dict)  # node -> kubelet release
    held: frozenset[str] = frozenset()  # nodes kubeha cordoned for an upgrade
    apiservers: dict[str, str] = field(default_factory=dict)  # control plane -> its apiserver's release

    @classmethod
    def parse(cls, text: str) -> "ClusterStatus":
        configured, kubelets, held, apiservers = "", {}, set(), {}
        for line in text.splitlines():
            words = line.split()
            if words[:1] == ["cluster"] and len(words) == 2:
                configured = words[1]
            elif words[:1] == ["node"] and len(words) >= 3:
                kubelets[words[1]] = words[2]
                if len(words) > 3:
                    held.add(words[1])
            elif words[:1] == ["apiserver"] and len(words) == 3:
                apiservers[words[1]] = words[2].rsplit(":", 1)[-1]
        return cls(configured, kubelets, frozenset(held), apiservers)


class StepKind(str, Enum):
    APPLY = "kubeadm upgrade apply"
    CONTROL_PLANE = "kubeadm upgrade node"
    KUBELET = "drain, kubelet and kubectl, uncordon"


@dataclass(frozen=True)
class UpgradeStep:
    kind: StepKind
    nodes: tuple[str, ...]  # one node, or a batch of workers upgraded together

    def describe(self, version: str) -> str:
        return f"{', '.join(self.nodes)}: {self.kind.value} v{version}"


def plan(status: ClusterStatus, version: str, control_planes: list[str], workers: list[str],
         max_unavailable_workers: int) -> list[UpgradeStep]:
    """The steps still to take to bring every node of the config to `version` (x.y.z), in order;
    empty when the cluster is there. control_planes[0] is where `kubeadm upgrade apply` runs."""
    target = f"v{version}"
    steps: list[UpgradeStep] = []
    applied_on = None
    if status.configured != target:
        applied_on = control_planes[0]
        steps.append(UpgradeStep(StepKind.APPLY, (applied_on,)))
    steps += [UpgradeStep(StepKind.CONTROL_PLANE, (name,)) for name in control_planes
              if name != applied_on and status.apiservers.get(name) != target]

    def behind(name: str) -> bool:
        return status.kubelets.get(name) != target or name in status.held
    steps += [UpgradeStep(StepKind.KUBELET, (name,)) for name in control_planes if behind(name)]
    pending = [name for name in workers if behind(name)]
    steps += [UpgradeStep(StepKind.KUBELET, tuple(pending[start:start + max_unavailable_workers]))
              for start in range(0, len(pending), max_unavailable_workers)]
    return steps


def planned_steps(version: str, control_planes: list[str], workers: list[str],
                  max_unavailable_workers: int) -> list[str]:
    """The whole plan in words, for `pulumi preview --diff`; a run skips what is done already."""
    nothing_done = ClusterStatus(configured="")
    return [step.describe(version)
            for step in plan(nothing_done, version, control_planes, workers, max_unavailable_workers)]


@dataclass(frozen=True)
class NodeScripts:
    """One node's upgrade scripts, each wrapped by remote.as_remote_command."""

    control_plane: Optional[str]  # on the node (control planes): kubeadm upgrade apply / node
    drain: str  # on the cluster side
    kubelet: str  # on the node
    uncordon: str  # on the cluster side

    def to_dict(self) -> dict[str, Optional[str]]:
        return {"control_plane": self.control_plane, "drain": self.drain, "kubelet": self.kubelet,
                "uncordon": self.uncordon}


@dataclass(frozen=True)
class UpgradeScripts:
    status: str  # on the cluster side, read only
    nodes: dict[str, NodeScripts]


class _Upgrade:
    """One run's work over SSH, from the resource's properties."""

    def __init__(self, props: dict[str, Any]) -> None:
        self.props = props
        self.key: str = props["private_key"]
        self.targets = {node["name"]: SshTarget.from_dict(node["target"]) for node in props["nodes"]}
        self.cluster_side: str = props["cluster_side"]

    def run(self, node: str, script: str, label: str) -> str:
        return run_over_ssh(self.targets[node], self.key, script, label=f"{label} (upgrade to "
                            f"v{self.props['version']})").stdout

    def status(self) -> ClusterStatus:
        return ClusterStatus.parse(self.run(self.cluster_side, self.props["status"],
                                            f"{self.cluster_side}: cluster status"))

    def remaining(self, status: ClusterStatus) -> list[UpgradeStep]:
        return plan(status, self.props["version"], list(self.props["control_planes"]),
                    list(self.props["workers"]), int(self.props["max_unavailable_workers"]))

    def at_release(self, status: ClusterStatus) -> bool:
        """The cluster's configuration and every kubelet at the release, none held cordoned. (Each
        control plane's own static pods are checked on the node by its step: a mirror pod can lag.)"""
        return not [step for step in self.remaining(status) if step.kind is not StepKind.CONTROL_PLANE]

    def kubelet(self, node: str) -> None:
        scripts, side = self.props["scripts"][node], self.cluster_side
        self.run(side, scripts["drain"], f"{node}: drain on {side}")
        self.run(node, scripts["kubelet"], f"{node}: kubelet and kubectl")
        self.run(side, scripts["uncordon"], f"{node}: Ready and uncordoned, seen from {side}")

    def converge(self) -> None:
        for step in self.remaining(self.status()):
            if step.kind is StepKind.KUBELET:
                with concurrent.futures.ThreadPoolExecutor(max_workers=len(step.nodes)) as pool:
                    for done in [pool.submit(self.kubelet, node) for node in step.nodes]:
                        done.result()
            else:
                [node] = step.nodes
                self.run(node, self.props["scripts"][node]["control_plane"], f"{node}: {step.kind.value}")
        final = self.status()
        if not self.at_release(final):
            left = [step for step in self.remaining(final) if step.kind is not StepKind.CONTROL_PLANE]
            version = self.props["version"]
            raise RemoteScriptFailed(f"the upgrade to v{version} ran every step but the cluster still shows these "
                                     f"as not done: {'; '.join(step.describe(version) for step in left)}")


class _UpgradeProvider(dynamic.ResourceProvider):
    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        # Only the release is a reason to run: nodes added later join at it already.
        return dynamic.DiffResult(changes=olds.get("version") != news.get("version"), replaces=[],
                                  delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        # A new cluster is at its release already (one read shows it); a stack from a kubeha
        # without this step may be behind, and is brought there.
        run = _Upgrade(props)
        if not run.at_release(run.status()):
            run.converge()
        return dynamic.CreateResult(id_="kubernetes-upgrade", outs=props)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        _Upgrade(news).converge()
        return dynamic.UpdateResult(outs=news)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None  # nothing on the hosts belongs to this step


@dataclass(frozen=True)
class KubernetesUpgradeArgs:
    version: str
    control_planes: list[str]  # the first is where `kubeadm upgrade apply` runs; the cluster side
    workers: list[str]
    max_unavailable_workers: int
    targets: dict[str, dict]  # node -> SshAccess.target()
    private_key: pulumi.Input[str]
    scripts: UpgradeScripts


class KubernetesUpgrade(DynamicResource):
    """The cluster brought to `kubernetes.version` (see the module docstring)."""

    def __init__(self, name: str, args: KubernetesUpgradeArgs,
                 opts: Optional[pulumi.ResourceOptions] = None) -> None:
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["private_key"]))
        super().__init__(_UpgradeProvider(), name, {
            "version": args.version,
            "plan": planned_steps(args.version, args.control_planes, args.workers, args.max_unavailable_workers),
            "control_planes": args.control_planes, "workers": args.workers,
            "max_unavailable_workers": args.max_unavailable_workers,
            "cluster_side": args.control_planes[0],
            "nodes": [{"name": name, "target": target} for name, target in args.targets.items()],
            "private_key": pulumi.Output.secret(args.private_key),
            "status": args.scripts.status,
            "scripts": {name: scripts.to_dict() for name, scripts in args.scripts.nodes.items()}}, opts)
