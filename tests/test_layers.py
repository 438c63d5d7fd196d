"""The program's layers (components/__init__.py, docs/architecture.md): imports run one way, the
modules moved into the layers stay importable at their old paths (existing stacks' pickled
providers name them), and every dynamic resource has a type of its own that also answers to the
SDK's generic one."""
from __future__ import annotations

import ast
import importlib
import pickle
from pathlib import Path

import pytest

import components
from components.dynamic_resource import GENERIC_TYPE
from tests.harness import DYNAMIC_PREFIX

COMPONENTS = Path(components.__file__).parent
# What each layer may import of kubeha's (besides itself): down the list in components/__init__.py.
ALLOWED = {
    "config": set(),
    "render": set(),
    "dynamic_resource": set(),
    "ssh": {"config", "render", "dynamic_resource"},
    "gates": {"config", "render", "dynamic_resource", "ssh"},
    "loadbalancer": {"config", "render", "ssh"},
    "network": {"config", "render", "ssh"},
    "nodes": {"config", "render", "dynamic_resource", "ssh", "loadbalancer"},
    "day2": {"config", "render", "dynamic_resource", "ssh", "nodes"},
    "cluster": {"config", "render", "ssh", "gates", "loadbalancer", "network", "nodes", "day2"},
}


def layer_of(path: Path) -> str:
    relative = path.relative_to(COMPONENTS)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def kubeha_imports(path: Path) -> set[str]:
    """The layers a module imports (components.X...)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("components."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.ImportFrom) and node.module == "components":
            found.update(alias.name for alias in node.names)
    return found


MODULES = sorted(path for path in COMPONENTS.rglob("*.py") if path.name != "__init__.py")


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(COMPONENTS)))
def test_a_module_imports_only_the_layers_below_its_own(path):
    layer = layer_of(path)
    assert kubeha_imports(path) - {layer} <= ALLOWED[layer]


def test_every_module_is_in_a_layer():
    assert {layer_of(path) for path in MODULES} <= set(ALLOWED)


@pytest.mark.parametrize("old, new", sorted(components.MOVED.items()))
def test_an_old_module_path_is_the_module_at_its_new_one(old, new):
    assert importlib.import_module(old) is importlib.import_module(new)


def test_a_provider_pickled_under_its_old_path_loads():
    # How a stack built before the layers holds its settings guard's provider (pickle's GLOBAL).
    loaded = pickle.loads(b"ccomponents.settings_guard\n_GuardProvider\n.")
    assert loaded.__module__ == "components.gates.settings_guard"


def test_the_dynamic_resources_have_their_own_types(deployment):
    dynamic = [r for r in deployment.registrations if r.type.startswith("pulumi-python:dynamic")]
    assert dynamic and all(r.type.startswith(DYNAMIC_PREFIX) for r in dynamic), {r.type for r in dynamic}


def test_a_dynamic_resource_also_answers_to_the_generic_type(deployment):
    guard = deployment.named("cluster-settings")
    types = [spec.spec.type for spec in guard.alias_specs if spec.HasField("spec")]
    assert GENERIC_TYPE in types


def test_a_child_of_the_root_also_answers_to_the_generic_type_at_the_top_of_the_stack(deployment):
    guard = deployment.named("cluster-settings")
    at_the_top = [spec.spec for spec in guard.alias_specs if spec.HasField("spec") and spec.spec.noParent]
    assert {spec.type for spec in at_the_top} == {"", GENERIC_TYPE}
