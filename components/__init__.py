"""kubeha's program, in layers (docs/architecture.md), each a package mirroring templates/:

- cluster: the root component, Cluster (kubeha:index:Cluster), which wires everything below;
- gates: the settings guard and preflight, which run first and know no roles;
- nodes, loadbalancer, network: the cluster's parts;
- day2: what changes a running cluster (upgrade, certificates, credential, etcd backups and restore);
- ssh and render: one SSH access and command helper, one paramiko session, one template renderer;
- config: the validated model, loading, grammars and the catalogue of pinned versions.

Imports run one way, down this list; config imports nothing of kubeha's.

The stacks kubeha built before the layers hold dynamic providers pickled with their module's old
path (`components.upgrade`): a delete or read of such a resource unpickles it. MOVED keeps those
paths importable, as the very module at the new path, without a file for each at the top.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Optional, Sequence

# Old module path -> where it lives now (the modules whose state holds a pickled provider, and
# the ones those providers' pickles name).
MOVED = {
    "components.admin_credential": "components.day2.admin_credential",
    "components.certificates": "components.day2.certificates",
    "components.etcd_backup": "components.day2.etcd_backup",
    "components.etcd_restore": "components.day2.etcd_restore",
    "components.upgrade": "components.day2.upgrade",
    "components.host_keys": "components.ssh.host_keys",
    "components.ssh_session": "components.ssh.ssh_session",
    "components.remote": "components.ssh.remote",
    "components.kubeadm_join": "components.nodes.kubeadm_join",
    "components.preflight": "components.gates.preflight",
    "components.preflight_checks": "components.gates.preflight_checks",
    "components.settings_guard": "components.gates.settings_guard",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves an old path to the module at its new one (the same module object)."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]],
                  target: Optional[ModuleType] = None) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        pass  # it ran at its new path


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())
