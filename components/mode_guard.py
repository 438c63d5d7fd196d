"""Refuses a loadBalancer.mode change on a deployed cluster, before any host is touched.

A mode change moves the control-plane endpoint, which is baked into every certificate and
kubeconfig kubeadm wrote; applying it node by node would leave a cluster half on each
endpoint. So the program reads the mode its own stack last deployed (a StackReference to
itself: the engine serves the last deployment's outputs) and fails on a different one — before
it registers anything else. (It waits for that read on purpose: registering the cluster at the
same time makes the engine write the stack's checkpoint while the reference reads it, and the
file backend can then read a half-written file.)
"""
from __future__ import annotations

from typing import Optional

import pulumi
from pulumi.runtime.sync_await import _sync_await

from components.config import ConfigError, LoadBalancerMode

MODE_OUTPUT = "loadBalancerMode"
# Deployments made before the modes existed have an endpoint but no mode output: they are all
# keepalived-haproxy, the only mode there was.
ENDPOINT_OUTPUT = "apiserverEndpoint"


def check_deployed_mode(mode: LoadBalancerMode, project: str) -> None:
    """Raise ConfigError unless `mode` is the deployed one (or nothing is deployed yet)."""
    this_stack = f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"
    deployed = pulumi.StackReference("deployed-stack", stack_name=this_stack)
    outputs = pulumi.Output.all(deployed.get_output(MODE_OUTPUT), deployed.get_output(ENDPOINT_OUTPUT))
    # The SDK's own way to wait for a value in the middle of a program (as its synchronous invokes do).
    mode_output, endpoint_output = _sync_await(outputs.future())
    _same_mode(_deployed_mode(mode_output, endpoint_output), mode, project)


def _deployed_mode(mode_output: Optional[str], endpoint_output: Optional[str]) -> Optional[str]:
    if mode_output is None and endpoint_output is not None:
        return LoadBalancerMode.KEEPALIVED_HAPROXY.value
    return mode_output


def _same_mode(previous: Optional[str], mode: LoadBalancerMode, project: str) -> str:
    if previous is not None and previous != mode.value:
        raise ConfigError(
            f"{project}:loadBalancer.mode: this cluster was built with {previous}; changing it to {mode.value} "
            f"would move the control-plane endpoint that every certificate and kubeconfig carries, so it is "
            f"refused and nothing was changed. Set loadBalancer.mode back to {previous}, or build a new stack "
            f"for the new mode and move the workloads.")
    return mode.value
