"""Shared fixtures: a valid cluster config (documentation addresses) and a mocked deployment."""
from __future__ import annotations

import copy
import pickle
from typing import Any, Callable

import pytest

from tests.harness import Deployment, run_program
from tests.jail import make_jail

FAKE_PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----\n"
# etcd.backup.copyTo: a copy host with a real (throwaway) host key.
COPY_HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMlzkELr4qZXkYAJ7qaKcVbVMzydE0dFZFFWwpjk/PRw copyhost"
COPY_TO = {"host": "backup.example", "user": "kubeha-backup", "path": "/srv/kubeha", "hostKey": COPY_HOST_KEY,
           "privateKey": FAKE_PRIVATE_KEY}


def _hosts(prefix: str, first_octet: int, count: int) -> list[dict[str, str]]:
    return [{"name": f"{prefix}{i}", "address": f"198.51.100.{first_octet + i}"} for i in range(1, count + 1)]


@pytest.fixture(autouse=True)
def _unwrapped_pickler():
    """Each dynamic resource the SDK serialises wraps the pure-Python pickler's dict writer once
    more and never unwraps it (pulumi.dynamic.serialize_provider). One `pulumi up` makes a few
    (one per node); hundreds of mocked deployments in one test process would nest the wrapper past
    Python's recursion limit. So each test starts and ends with the writer as it was."""
    writer = pickle._Pickler._batch_setitems
    yield
    pickle._Pickler._batch_setitems = writer


@pytest.fixture
def lb_hosts() -> list[dict[str, str]]:
    return _hosts("lb", 10, 2)


@pytest.fixture
def control_plane_hosts() -> list[dict[str, str]]:
    return _hosts("cp", 20, 3)


@pytest.fixture
def worker_hosts() -> list[dict[str, str]]:
    return _hosts("w", 30, 2)


@pytest.fixture
def stack_config(lb_hosts, control_plane_hosts, worker_hosts) -> dict[str, Any]:
    """A valid stack config, as the keys of Pulumi.<stack>.yaml (without the namespace)."""
    return {
        "ssh": {"user": "root", "port": 22},
        "loadBalancer": {"mode": "keepalived-haproxy", "vip": "198.51.100.100", "port": 8443,
                         "interface": "eth0", "virtualRouterId": 51, "hosts": lb_hosts},
        "controlPlanes": control_plane_hosts,
        "workers": worker_hosts,
        "kubernetes": {"version": "1.34.4", "podSubnet": "10.244.0.0/16", "serviceSubnet": "10.96.0.0/12"},
    }


@pytest.fixture
def ipv6_stack_config(stack_config) -> dict[str, Any]:
    """The same cluster single-stack IPv6: every address 2001:db8::<its IPv4 last octet>, IPv6
    subnets (kubeha builds clusters of one family)."""
    config = copy.deepcopy(stack_config)
    for group in (config["loadBalancer"]["hosts"], config["controlPlanes"], config["workers"]):
        for host in group:
            host["address"] = "2001:db8::" + host["address"].rsplit(".", 1)[1]
    config["loadBalancer"]["vip"] = "2001:db8::100"
    config["kubernetes"].update(podSubnet="fd00:10:244::/56", serviceSubnet="fd00:10:96::/112")
    return config


@pytest.fixture
def deploy() -> Callable[[dict[str, Any]], Deployment]:
    """Run the program under mocks with a config (the SSH key given as a secret)."""
    def _deploy(config: dict[str, Any]) -> Deployment:
        return run_program(copy.deepcopy(config), {"sshPrivateKey": FAKE_PRIVATE_KEY})
    return _deploy


@pytest.fixture
def deployment(deploy, stack_config) -> Deployment:
    return deploy(stack_config)


@pytest.fixture
def jail(tmp_path) -> Any:
    """A chroot with only bash in it, for running a rendered script for real (tests/jail.py)."""
    return make_jail(tmp_path)
