"""Lab fixtures: real Debian hosts in systemd-nspawn, reached over SSH. Needs root and nspawn."""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

LAB_SCRIPT = Path(__file__).resolve().parent / "lab.sh"


def lab_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root"
    for tool in ("systemd-nspawn", "debootstrap", "ssh"):
        if shutil.which(tool) is None:
            return f"the lab needs {tool}"
    return None


@dataclass
class LabHost:
    name: str
    address: str

    def run(self, command: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([str(LAB_SCRIPT), "ssh", self.name, command], capture_output=True, text=True,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{self.name}: exit {result.returncode}\n{result.stdout}\n{result.stderr}")
        return result

    def holds(self, address: str) -> bool:
        return f" {address}/" in self.run("ip -o -4 addr show dev host0").stdout


def lab(*args: str, timeout: float = 600) -> str:
    """tests/lab/lab.sh ARGS; its stdout."""
    return subprocess.run([str(LAB_SCRIPT), *args], capture_output=True, text=True, check=True,
                          timeout=timeout).stdout.strip()


def lab_host(name: str) -> LabHost:
    return LabHost(name, lab("address", name))


@pytest.fixture(scope="module")
def lab_hosts(request) -> dict[str, LabHost]:
    """Boot the hosts named by the module's LAB_HOSTS; always tear the lab down afterwards."""
    reason = lab_unavailable_reason()
    if reason:
        pytest.skip(reason)
    names: list[str] = request.module.LAB_HOSTS
    try:
        subprocess.run([str(LAB_SCRIPT), "down"], check=False, timeout=120, capture_output=True)
        subprocess.run([str(LAB_SCRIPT), "up", *names], check=True, timeout=600)
        yield {name: lab_host(name) for name in names}
    finally:
        subprocess.run([str(LAB_SCRIPT), "down"], check=False, timeout=120)


@pytest.fixture(scope="module")
def kubeconfig_file(lab_stack, tmp_path_factory) -> Path:
    """The module's cluster's kubeconfig output in a root-only file (lab_stack: the module's own fixture)."""
    path = tmp_path_factory.mktemp("kube") / "config"
    path.write_text(lab_stack.kubeconfig())
    path.chmod(0o600)
    return path
