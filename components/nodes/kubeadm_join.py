"""KubeadmJoin: fresh join material and `kubeadm join` as one step, so that a join run at any time
(a retry hours after a failed one included) has material that is still valid.

A bootstrap token lives two hours, and so do the control-plane certificates kubeadm uploads for a
certificate key. Made in a step of their own, they would be kept in the state and handed to
every later retry of a failed join, long after they expired. Here one create does it all:
  1. on the joining host, a check: a member already (the node that initialised the cluster, a
     stack from an older kubeha) needs nothing, and no token is made for it;
  2. on the cluster-side control plane, a fresh token (and certificate key), read into memory;
  3. on the joining host, `kubeadm join` with the material on its stdin;
  4. on the cluster-side control plane, the token deleted again, joined or not: it was for this
     join only.
The material is never in a command, an output or the state. The step is made once: a later edit
is no reason to join again (a node joins again by being removed and added).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pulumi
from pulumi import dynamic

from components.dynamic_resource import DynamicResource
from components.ssh.ssh_session import RemoteScriptFailed, SshTarget, run_over_ssh

# Where the joining host's member check exits with this, it is not a member yet.
NOT_A_MEMBER = 3


@dataclass(frozen=True)
class JoinScripts:
    """The four steps' scripts, each wrapped by remote.as_remote_command."""

    member_check: str  # on the node: exit 0 a member, NOT_A_MEMBER not yet
    mint: str  # on the cluster side: prints the material
    join: str  # on the node: reads the material from stdin
    forget: str  # on the cluster side: reads the token's ID from stdin, deletes the token


class _KubeadmJoinProvider(dynamic.ResourceProvider):
    def diff(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> dynamic.DiffResult:
        # Made once: no edit makes a node join again.
        return dynamic.DiffResult(changes=False)

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        node, cluster_side = SshTarget.from_dict(props["node"]), SshTarget.from_dict(props["cluster_side"])
        key, name = props["private_key"], props["node_name"]
        check = run_over_ssh(node, key, props["member_check"], label=f"{name}: member check", check=False)
        if check.status not in (0, NOT_A_MEMBER):
            raise RemoteScriptFailed(f"{name}: member check failed (exit {check.status}): {check.stderr.strip()}")
        if check.status == NOT_A_MEMBER:
            material = run_over_ssh(cluster_side, key, props["mint"], label=f"{name}: join material on "
                                    f"{props['cluster_side_name']}").stdout
            # The removal needs only the token's ID, its public half: neither the secret half nor
            # a control plane's certificate key goes to a step that does not need it.
            token_id = material.split(maxsplit=1)[0].split(".", 1)[0] if material.strip() else ""
            forget = {"target": cluster_side, "private_key": key, "command": props["forget"], "stdin": f"{token_id}\n",
                      "label": f"{name}: token removal on {props['cluster_side_name']}"}
            try:
                run_over_ssh(node, key, props["join"], label=f"{name}: kubeadm join", stdin=material)
            except RemoteScriptFailed:
                run_over_ssh(**forget, check=False)  # best effort: the join's own error is the one to see
                raise
            run_over_ssh(**forget)
        return dynamic.CreateResult(id_=name, outs={"node_name": name,
                                                    "joined_through": props["cluster_side_name"]})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        # The host's reset is the next step's delete (node_steps.join_cluster); nothing here.
        return None


class KubeadmJoin(DynamicResource):
    """One node's join with material minted for it as it runs (see the module docstring)."""

    def __init__(self, name: str, *, node_name: str, node: pulumi.Input[dict], cluster_side_name: str,
                 cluster_side: pulumi.Input[dict], private_key: pulumi.Input[str],
                 scripts: pulumi.Output[JoinScripts],
                 opts: Optional[pulumi.ResourceOptions] = None) -> None:
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["private_key"]))
        super().__init__(_KubeadmJoinProvider(), name, {
            "node_name": node_name, "node": node, "cluster_side_name": cluster_side_name,
            "cluster_side": cluster_side, "private_key": pulumi.Output.secret(private_key),
            "member_check": scripts.apply(lambda wrapped: wrapped.member_check),
            "mint": scripts.apply(lambda wrapped: wrapped.mint), "join": scripts.apply(lambda wrapped: wrapped.join),
            "forget": scripts.apply(lambda wrapped: wrapped.forget)}, opts)
