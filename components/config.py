"""The stack config model: the public interface of the program.

Every key is validated here, before any resource is registered, so bad input fails
`pulumi preview` with one message that names the config key and no host is touched.
"""
from __future__ import annotations

import ipaddress
import os
import re
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import pulumi
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

class ConfigError(pulumi.RunError):
    """Bad stack config. RunError makes Pulumi print only the message, no traceback."""


class _Model(BaseModel):
    # camelCase keys in YAML, snake_case in Python; unknown keys are typos, so they fail.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


def _check_port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError(f"must be a port between 1 and 65535 (got {value})")
    return value


# The port every apiserver listens on; the load balancer fronts them on loadBalancer.port.
APISERVER_PORT = 6443


def host_port(address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> str:
    """'10.0.0.1:6443', or '[fd00::1]:6443' for IPv6."""
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


class LoadBalancerMode(str, Enum):
    KEEPALIVED_HAPROXY = "keepalived-haproxy"


class Host(_Model):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    address: ipaddress.IPv4Address | ipaddress.IPv6Address

    @property
    def ip(self) -> str:
        return str(self.address)


class SshSettings(_Model):
    user: str = "root"
    port: int = 22
    private_key_path: Optional[str] = None

    _port = field_validator("port")(_check_port)


class LoadBalancerSettings(_Model):
    mode: LoadBalancerMode = LoadBalancerMode.KEEPALIVED_HAPROXY
    vip: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int = 8443
    interface: str = "eth0"
    virtual_router_id: int = 51
    hosts: list[Host]
    # Local-only ports from the seed's port table: health (monitor-uri) and the stats page.
    health_port: int = 8081
    stats_port: int = 9090

    _ports = field_validator("port", "health_port", "stats_port")(_check_port)

    @field_validator("mode", mode="before")
    @classmethod
    def _known_mode(cls, value: Any) -> Any:
        known = [mode.value for mode in LoadBalancerMode]
        if value not in known:
            raise ValueError(f"unknown mode {value!r}; known modes: {', '.join(known)}")
        return value

    @field_validator("virtual_router_id")
    @classmethod
    def _router_id_range(cls, value: int) -> int:
        if not 1 <= value <= 255:
            raise ValueError(f"must be between 1 and 255 (got {value})")
        return value

    @field_validator("hosts")
    @classmethod
    def _at_least_two(cls, hosts: list[Host]) -> list[Host]:
        if len(hosts) < 2:
            raise ValueError(f"needs at least two hosts for failover (got {len(hosts)})")
        return hosts

    @property
    def endpoint_host_port(self) -> str:
        return host_port(self.vip, self.port)


class KubernetesSettings(_Model):
    version: str = "1.31.4"
    pod_subnet: ipaddress.IPv4Network | ipaddress.IPv6Network = ipaddress.IPv4Network("10.244.0.0/16")
    service_subnet: ipaddress.IPv4Network | ipaddress.IPv6Network = ipaddress.IPv4Network("10.96.0.0/12")
    cluster_name: str = "kubernetes"
    # Where hosts fetch kubeadm/kubelet/kubectl packages (a mirror in air-gapped sites).
    package_repository: str = "https://pkgs.k8s.io/core:/stable:"

    @field_validator("version")
    @classmethod
    def _semver(cls, value: str) -> str:
        if not re.fullmatch(r"\d+\.\d+\.\d+", value):
            raise ValueError(f"must be x.y.z, e.g. 1.31.4 (got {value!r})")
        return value

    @property
    def minor(self) -> str:
        """'v1.31' — the path element of the pkgs.k8s.io repository."""
        major, minor, _ = self.version.split(".")
        return f"v{major}.{minor}"

    @property
    def kubeadm_api_version(self) -> str:
        """v1beta4 is the kubeadm config API from 1.31 on; v1beta3 before it."""
        major, minor, _ = (int(part) for part in self.version.split("."))
        return "kubeadm.k8s.io/v1beta4" if (major, minor) >= (1, 31) else "kubeadm.k8s.io/v1beta3"


class PackageSettings(_Model):
    # An HTTP proxy for apt/dnf on the hosts (e.g. an apt-cacher-ng); none by default.
    proxy: Optional[str] = None


class ClusterConfig(_Model):
    ssh: SshSettings = SshSettings()
    load_balancer: LoadBalancerSettings
    control_planes: list[Host]
    workers: list[Host] = []
    kubernetes: KubernetesSettings = KubernetesSettings()
    packages: PackageSettings = PackageSettings()

    @field_validator("control_planes")
    @classmethod
    def _at_least_one(cls, hosts: list[Host]) -> list[Host]:
        if not hosts:
            raise ValueError("needs at least one control plane")
        return hosts

    @model_validator(mode="after")
    def _cross_checks(self) -> "ClusterConfig":
        _check_unique("name", self.all_hosts_with_keys(), lambda host: host.name)
        _check_unique("address", self.all_hosts_with_keys(), lambda host: host.ip)
        for key, host in self.all_hosts_with_keys():
            if host.address == self.load_balancer.vip:
                raise ConfigKeyError("loadBalancer.vip", f"{self.load_balancer.vip} is also the address of {key}")
        self._check_subnets()
        return self

    def _check_subnets(self) -> None:
        pods, services = self.kubernetes.pod_subnet, self.kubernetes.service_subnet
        if pods.version == services.version and pods.overlaps(services):
            raise ConfigKeyError("kubernetes.podSubnet", f"{pods} overlaps kubernetes.serviceSubnet {services}")
        for subnet_key, subnet in (("kubernetes.podSubnet", pods), ("kubernetes.serviceSubnet", services)):
            for host_key, host in self.all_hosts_with_keys():
                if host.address in subnet:
                    raise ConfigKeyError(subnet_key, f"{subnet} contains {host_key} ({host.ip})")
            if self.load_balancer.vip in subnet:
                raise ConfigKeyError(subnet_key, f"{subnet} contains loadBalancer.vip ({self.load_balancer.vip})")

    def all_hosts_with_keys(self) -> list[tuple[str, Host]]:
        """Every host with the config key that defines it, for error messages."""
        groups = (("loadBalancer.hosts", self.load_balancer.hosts), ("controlPlanes", self.control_planes),
                  ("workers", self.workers))
        return [(f"{key}[{index}]", host) for key, hosts in groups for index, host in enumerate(hosts)]

    @property
    def first_control_plane(self) -> Host:
        return self.control_planes[0]

    @property
    def apiserver_endpoint(self) -> str:
        return f"https://{self.load_balancer.endpoint_host_port}"


class ConfigKeyError(ValueError):
    """A cross-field problem, raised with the config key it belongs to."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


def _check_unique(what: str, hosts: Iterable[tuple[str, Host]], value_of: Callable[[Host], str]) -> None:
    seen: dict[str, str] = {}
    for key, host in hosts:
        value = value_of(host)
        if value in seen:
            raise ConfigKeyError(f"{key}.{what}", f"duplicate host {what} {value!r} (also at {seen[value]})")
        seen[value] = key


# ---------------------------------------------------------------------------------------------
# Reading the stack config


_TOP_LEVEL_KEYS = ("ssh", "loadBalancer", "controlPlanes", "workers", "kubernetes", "packages")


def _key_path(location: tuple[Any, ...]) -> str:
    """('loadBalancer', 'hosts', 1, 'address') -> 'loadBalancer.hosts[1].address'."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("IPv4Address", "IPv6Address", "IPv4Network", "IPv6Network") or "[" in str(part):
            continue  # pydantic names the union member it tried; the key is what matters
        else:
            path += f".{part}" if path else str(part)
    return path


def parse_cluster_config(raw: dict[str, Any], project: str = "kubeha") -> ClusterConfig:
    """Validate raw config values; raise ConfigError naming the first bad key."""
    try:
        return ClusterConfig.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        nested = first.get("ctx", {}).get("error")
        if isinstance(nested, ConfigKeyError):
            raise ConfigError(f"{project}:{nested.key}: {nested.message}") from None
        key = _key_path(first["loc"]) or "config"
        message = _describe(first)
        raise ConfigError(f"{project}:{key}: {message}") from None


def _describe(error: dict[str, Any]) -> str:
    kind, message = error["type"], error["msg"]
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known key (check the spelling)"
    if kind in ("ip_v4_address", "ip_v6_address", "ip_any_address"):
        return f"must be an IP address (got {error.get('input')!r})"
    if kind in ("ip_v4_network", "ip_v6_network", "ip_any_network"):
        return f"must be a network in CIDR form, e.g. 10.244.0.0/16 (got {error.get('input')!r})"
    return message.removeprefix("Value error, ")


def load_cluster_config(config: pulumi.Config) -> ClusterConfig:
    raw = {key: value for key in _TOP_LEVEL_KEYS if (value := config.get_object(key)) is not None}
    cluster = parse_cluster_config(raw, config.name)
    if len(cluster.control_planes) % 2 == 0:
        pulumi.log.warn(
            f"{config.name}:controlPlanes: {len(cluster.control_planes)} control planes give etcd no extra "
            f"fault tolerance over {len(cluster.control_planes) - 1}; use an odd number for quorum")
    return cluster


def load_ssh_private_key(config: pulumi.Config, ssh: SshSettings) -> pulumi.Output[str]:
    """The SSH key as a secret: from the secret config key, else from ssh.privateKeyPath."""
    secret_key = config.get_secret("sshPrivateKey")
    if secret_key is not None:
        return secret_key
    if ssh.private_key_path is None:
        raise ConfigError(
            f"{config.name}:sshPrivateKey: no SSH credential; set it with "
            f"`pulumi config set --secret sshPrivateKey < KEYFILE` or set ssh.privateKeyPath")
    path = Path(os.path.expanduser(ssh.private_key_path))
    if not path.is_file():
        raise ConfigError(f"{config.name}:ssh.privateKeyPath: no such file {path}")
    return pulumi.Output.secret(path.read_text())
