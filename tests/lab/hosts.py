"""Lab hosts: real Debian hosts in systemd-nspawn (tests/lab/lab.sh), reached over SSH. Needs root.

LAB_INSTANCE (0 by default) says which of the machine's labs this process works on: each has its
own bridge, network 10.250.N.0/24 and folder (lab.sh). Every address a test names comes from here.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

LAB_SCRIPT = Path(__file__).resolve().parent / "lab.sh"
LAB_INSTANCE = int(os.environ.get("LAB_INSTANCE", "0"))
_NETWORK = f"10.250.{LAB_INSTANCE}"
NETWORK = f"{_NETWORK}.0/24"
BRIDGE_ADDRESS = f"{_NETWORK}.1"  # this machine, on the lab's bridge
VIP = f"{_NETWORK}.100"  # the lab stack's loadBalancer.vip
LAB_DIR = Path(__file__).resolve().parents[2] / "build" / f"lab{LAB_INSTANCE or ''}"


def lab_address(last: int) -> str:
    """An address in this lab's network by its last number (11: lb1, 21: cp1, 31: w1, as lab.sh)."""
    return f"{_NETWORK}.{last}"


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


def running_hosts() -> dict[str, LabHost]:
    """The hosts this lab booted last (lab.sh writes their names to LAB_DIR/hosts)."""
    return {name: lab_host(name) for name in (LAB_DIR / "hosts").read_text().split()}


def boot_hosts(names: list[str]) -> dict[str, LabHost]:
    """Bare hosts, freshly booted (any running lab goes first)."""
    lab_down()
    subprocess.run([str(LAB_SCRIPT), "up", *names], check=True, timeout=600, capture_output=True)
    return {name: lab_host(name) for name in names}


def lab_down() -> None:
    """Every lab host stopped, the bridge and the route gone."""
    subprocess.run([str(LAB_SCRIPT), "down"], check=False, timeout=180, capture_output=True)
