"""The kubelet's and kube-proxy's configuration fields, checked before any host is touched.

`kubernetes.kubelet` and `kubernetes.kubeProxy` are passed to kubeadm as fields of
KubeletConfiguration and KubeProxyConfiguration. A misspelt field (`failSwapon`) or a value of the
wrong type (`"false"` for a boolean) would otherwise reach every node and fail there, or be
ignored. component_config_fields.json holds every field of both types with its JSON kind, read by
reflection from the real Go types (tools/component-config-fields.sh writes it).
"""
from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

KUBELET_CONFIGURATION = "kubelet.config.k8s.io/v1beta1/KubeletConfiguration"
KUBE_PROXY_CONFIGURATION = "kubeproxy.config.k8s.io/v1alpha1/KubeProxyConfiguration"
_FIELDS: dict[str, Any] = json.loads((Path(__file__).with_name("component_config_fields.json")).read_text())

# Go's time.ParseDuration: "0", or numbers with units ("1m30s", "500ms", "1.5h").
_DURATION = re.compile(r"[-+]?(0|(\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+|[-+]?0")
# resource.Quantity: a number with an optional binary or decimal suffix or exponent ("100Mi", "1.5", "2e3").
_QUANTITY = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?")


@dataclass(frozen=True)
class FieldProblem:
    path: str  # below the setting, e.g. "evictionHard" or "conntrack.maxPerCore"
    message: str


def _kind_name(kind: str) -> str:
    return {"boolean": "true or false", "integer": "a whole number", "number": "a number",
            "string": "a string", "duration": 'a duration such as "30s" or "5m0s"',
            "duration-or-integer": 'a duration such as "5s" or nanoseconds',
            "quantity": 'a quantity such as "100Mi" or "0.5"', "int-or-string": "a number or a string",
            "object": "a mapping of fields", "list": "a list", "map": "a mapping"}.get(kind, kind)


def _scalar_fits(kind: str, value: Any) -> bool:
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "duration":
        return isinstance(value, str) and _DURATION.fullmatch(value) is not None
    if kind == "duration-or-integer":
        return _scalar_fits("integer", value) or _scalar_fits("duration", value)
    if kind == "quantity":
        return _scalar_fits("number", value) or (isinstance(value, str) and _QUANTITY.fullmatch(value) is not None)
    if kind == "int-or-string":
        return _scalar_fits("integer", value) or isinstance(value, str)
    return kind == "any"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _check(shape: dict[str, Any], value: Any, path: str) -> Optional[FieldProblem]:
    kind = shape["kind"]
    if kind == "object":
        if not isinstance(value, dict):
            return FieldProblem(path, f"must be {_kind_name(kind)} (got {value!r})")
        for name in sorted(value):
            if name not in shape["fields"]:
                close = difflib.get_close_matches(name, shape["fields"], n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                return FieldProblem(_join(path, name), f"is not a field of this configuration{hint}")
            problem = _check(shape["fields"][name], value[name], _join(path, name))
            if problem:
                return problem
        return None
    if kind in ("list", "map"):
        if not isinstance(value, list if kind == "list" else dict):
            return FieldProblem(path, f"must be {_kind_name(kind)} (got {value!r})")
        members = ([(f"{path}[{index}]", item) for index, item in enumerate(value)] if kind == "list"
                   else [(_join(path, str(name)), value[name]) for name in sorted(value)])
        element = shape["items" if kind == "list" else "values"]
        return next((problem for member_path, member in members
                     if (problem := _check(element, member, member_path))), None)
    if not _scalar_fits(kind, value):
        return FieldProblem(path, f"must be {_kind_name(kind)} (got {value!r})")
    return None


def check_fields(configuration: str, settings: dict[str, Any]) -> Optional[FieldProblem]:
    """The first field of `settings` that `configuration` (e.g. KUBELET_CONFIGURATION) does not
    have, or whose value is not of its kind; None when every field fits."""
    return _check(_FIELDS[configuration], settings, "")
