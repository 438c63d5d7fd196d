"""The base of kubeha's dynamic resources: each has a type name of its own
(`pulumi-python:dynamic/kubeha:SettingsGuard`, not the SDK's generic `pulumi-python:dynamic:Resource`),
so a preview says what each step is.

The stacks kubeha built before carry the generic type in their URNs: every resource also answers to
it (with each alias it was given, such as a child of Cluster's old place at the top of the stack),
so those stacks update in place, with no replacement.
"""
from __future__ import annotations

from typing import Any, Optional

import pulumi
from pulumi import dynamic

GENERIC_TYPE = "pulumi-python:dynamic:Resource"


def with_generic_type(aliases: list[Any]) -> list[Any]:
    """The aliases, each also under the generic type, and the generic type alone."""
    generic: list[Any] = [pulumi.Alias(type_=GENERIC_TYPE)]
    for alias in aliases:
        if isinstance(alias, pulumi.Alias):
            generic.append(pulumi.Alias(name=alias.name, type_=GENERIC_TYPE, parent=alias.parent,
                                        stack=alias.stack, project=alias.project))
    return [*aliases, *generic]


class DynamicResource(dynamic.Resource):
    """A dynamic resource typed `pulumi-python:dynamic/kubeha:<its class name>`."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(module="kubeha", name=cls.__name__, **kwargs)

    def __init__(self, provider: dynamic.ResourceProvider, name: str, props: dict[str, Any],
                 opts: Optional[pulumi.ResourceOptions] = None) -> None:
        typed = pulumi.ResourceOptions.merge(opts, None)  # a copy: the caller's stays as it was
        typed.aliases = with_generic_type(list(typed.aliases or []))
        super().__init__(provider, name, props, typed)
