"""The stack config model: the public interface of the program.

Every key is validated here, before any resource is registered, so bad input fails
`pulumi preview` with one message that names the config key and no host is touched.
"""
from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from enum import Enum
from typing import Any, Callable, ClassVar, Iterable, Optional

import pulumi
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic.alias_generators import to_camel

from components.config.catalogue import (
    DEFAULT_IMAGE_REPOSITORY,
    KUBERNETES_VERSION,
    LOAD_BALANCER_IMAGES,
    NETWORK_IMAGES,
    PAUSE_VERSIONS,
    on_mirror,
)
from components.config.component_config import KUBE_PROXY_CONFIGURATION, KUBELET_CONFIGURATION, check_fields
from components.config.control_plane_flags import (
    COMPONENTS,
    KUBEADM_VOLUMES,
    flag_problem,
    mount_path_problem,
    value_problem,
)
from components.config.grammar import (
    ABSOLUTE_PATH,
    APISERVER_PORT,
    BACKUP_DIRECTORY,
    BACKUP_FILE,
    CALICO_HEALTHZ_PORT,
    CLUSTER_NAME,
    DNS_NAME,
    FLANNEL_HEALTHZ_PORT,
    INTERFACE_NAME,
    INTERFACE_PATTERN,
    MIRROR_URL,
    NODE_PORT_RANGE,
    ON_CALENDAR,
    PROXY_URL,
    REGISTRY_HOST,
    REPOSITORY_URL,
    TAKEN_ON_CONTROL_PLANES,
    USER_NAME,
    VOLUME_NAME,
    check_pinned_image,
    check_port,
    check_registry_path,
    host_port,
    parse_endpoint,
)


class ConfigError(pulumi.RunError):
    """Bad stack config. RunError makes Pulumi print only the message, no traceback."""


class _Model(BaseModel):
    # camelCase keys in YAML, snake_case in Python; unknown keys are typos, so they fail.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True,
                              use_attribute_docstrings=True)


class LoadBalancerMode(str, Enum):
    """How the apiservers are fronted (kubeadm-ha's four modes)."""

    KEEPALIVED_HAPROXY = "keepalived-haproxy"  # a dedicated pair of LB hosts holds the VIP
    STATIC_PODS = "static-pods"  # keepalived + haproxy as static pods on the control planes
    KUBE_VIP = "kube-vip"  # kube-vip static pods on the control planes, ARP, leader election
    LOCAL_NGINX = "local-nginx"  # a proxy on every node at 127.0.0.1, no VIP
    EXTERNAL = "external"  # the site's own balancer (F5, NetScaler, an HAProxy tier) at loadBalancer.endpoint


class LocalProxy(str, Enum):
    NGINX = "nginx"
    HAPROXY = "haproxy"


class Host(_Model):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    """The host's name: its Kubernetes node name and how kubeha names its steps (lowercase letters,
    digits and '-').
    """
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    """The address kubeha connects to over SSH; on nodes also the kubelet's node-ip."""
    # Where this host holds the VIP (keepalived, kube-vip), when it is not loadBalancer.interface.
    interface: Optional[str] = Field(default=None, pattern=INTERFACE_NAME)
    """Where this host holds the VIP (LB hosts in keepalived-haproxy, control planes in static-pods
    and kube-vip) when it is not loadBalancer.interface; refused on hosts that hold none.
    """

    @property
    def ip(self) -> str:
        return str(self.address)


class Decommission(str, Enum):
    # The host is dead or gone: the cluster forgets it (drained, deleted, out of etcd) and nothing
    # connects to it; its resources leave the stack without their delete steps.
    UNREACHABLE = "unreachable"


class NodeHost(Host):
    """A control plane's or a worker's entry."""

    decommission: Optional[Decommission] = None
    """`unreachable`: the host is dead or gone. The next `up` removes it from the cluster and etcd
    from another control plane without connecting to it; delete the entry afterwards.
    """


# An OpenSSH public key line, as in known_hosts or /etc/ssh/ssh_host_*_key.pub: type, base64, comment.
_HOST_KEY = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+={0,3}( \S.*)?$")


# A private key file's content (PEM or OpenSSH), not a path or a public key.
PRIVATE_KEY_FILE = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")


def host_key_problem(key: str) -> Optional[str]:
    """What is wrong with an OpenSSH public key line, or None."""
    if not _HOST_KEY.match(key.strip()):
        return ("must be an OpenSSH public key line, e.g. the content of the host's "
                "/etc/ssh/ssh_host_ed25519_key.pub ('ssh-ed25519 AAAA...')")
    kind, blob = key.split()[:2]
    try:
        decoded = base64.b64decode(blob, validate=True)
    except binascii.Error:
        return "its key is not valid base64 (copied in part?)"
    # The blob starts with its own type, length-prefixed: a key pasted under the wrong type fails here.
    if decoded[4:4 + len(kind)] != kind.encode():
        return f"is not a {kind} key (its data says otherwise)"
    return None


class SshSettings(_Model):
    user: str = Field("root", pattern=USER_NAME)
    """The login on every host. Other than root, it needs passwordless sudo: every script then runs
    through `sudo -n`.
    """
    port: int = 22
    """The SSH port of every host."""
    private_key_path: Optional[str] = None
    """A file holding the SSH private key, instead of the secret `sshPrivateKey` (`pulumi config set
    --secret sshPrivateKey < KEYFILE`).
    """
    # Host name -> its SSH host key (OpenSSH public-key line). A pinned host whose key differs
    # fails its first connection, before anything is sent; an unpinned host's key is accepted.
    host_keys: dict[str, str] = {}
    """Host name -> its SSH host key (an OpenSSH public-key line, e.g. from
    /etc/ssh/ssh_host_ed25519_key.pub). A pinned host whose key differs fails its first
    connection, before any login. An unpinned host is trusted on first use: the key it offers the
    first time is recorded and required from then on, and a host offering another one stops the
    run before any step connects, naming both fingerprints (pin the new key if the host was
    reinstalled).
    Changing a pin runs that host's steps once more (each is idempotent).
    """

    _port = field_validator("port")(check_port)

    @field_validator("host_keys")
    @classmethod
    def _openssh_public_keys(cls, keys: dict[str, str]) -> dict[str, str]:
        for name, key in keys.items():
            problem = host_key_problem(key)
            if problem:
                raise ConfigKeyError(f"ssh.hostKeys.{name}", problem)
        return {name: key.strip() for name, key in keys.items()}


class LoadBalancerImages(_Model):
    """Images of the static pods (static-pods and kube-vip modes). Unset: the pinned defaults,
    moved to kubernetes.imageRepository when that is set (a mirror in air-gapped sites)."""

    haproxy: Optional[str] = None
    """The haproxy image (static-pods); a pinned tag or digest, never `latest`. Default
    docker.io/library/haproxy:3.0.7.
    """
    keepalived: Optional[str] = None
    """The keepalived image (static-pods); it needs bash and curl for the health check. Default
    docker.io/osixia/keepalived:2.0.20.
    """
    kube_vip: Optional[str] = None
    """The kube-vip image. Default ghcr.io/kube-vip/kube-vip:v1.2.3."""

    _pinned = field_validator("haproxy", "keepalived", "kube_vip")(check_pinned_image)

    DEFAULTS: ClassVar[dict[str, str]] = LOAD_BALANCER_IMAGES  # the catalogue's

    def reference(self, name: str, image_repository: Optional[str]) -> str:
        """The image to run: as configured, else the default (on the mirror, if there is one)."""
        configured = getattr(self, name)
        return configured if configured is not None else on_mirror(self.DEFAULTS[name], image_repository)


class KubeVipSettings(_Model):
    """kube-vip's leader election (seconds). The defaults are kube-vip's own: a dead leader's
    lease runs out after at most 5 s, a live one renews every second."""

    lease_duration: int = 5
    """kube-vip's leader lease, in seconds: a dead leader's VIP moves within it."""
    renew_deadline: int = 3
    """How long, in seconds, the leader tries to renew its lease before it gives the VIP up."""
    retry_period: int = 1
    """How often, in seconds, kube-vip tries to take or renew the lease."""

    @model_validator(mode="after")
    def _ordered(self) -> "KubeVipSettings":
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ConfigKeyError(
                "loadBalancer.kubeVip", f"needs 0 < retryPeriod < renewDeadline < leaseDuration (got "
                f"{self.retry_period} / {self.renew_deadline} / {self.lease_duration})")
        return self


# Which loadBalancer keys each mode uses; a key given for a mode that ignores it is a mistake
# (also the configuration reference's "modes" note, tools/config_reference.py).
LOAD_BALANCER_KEYS_BY_MODE: dict[str, set[LoadBalancerMode]] = {
    "hosts": {LoadBalancerMode.KEEPALIVED_HAPROXY},
    "vip": {LoadBalancerMode.KEEPALIVED_HAPROXY, LoadBalancerMode.STATIC_PODS, LoadBalancerMode.KUBE_VIP},
    "interface": {LoadBalancerMode.KEEPALIVED_HAPROXY, LoadBalancerMode.STATIC_PODS, LoadBalancerMode.KUBE_VIP},
    "virtual_router_id": {LoadBalancerMode.KEEPALIVED_HAPROXY, LoadBalancerMode.STATIC_PODS},
    "health_port": {LoadBalancerMode.KEEPALIVED_HAPROXY, LoadBalancerMode.STATIC_PODS, LoadBalancerMode.LOCAL_NGINX},
    "stats_port": {LoadBalancerMode.KEEPALIVED_HAPROXY, LoadBalancerMode.STATIC_PODS, LoadBalancerMode.LOCAL_NGINX},
    "local_proxy": {LoadBalancerMode.LOCAL_NGINX},
    "kube_vip": {LoadBalancerMode.KUBE_VIP},
    "images": {LoadBalancerMode.STATIC_PODS, LoadBalancerMode.KUBE_VIP},
    "endpoint": {LoadBalancerMode.EXTERNAL},
}
# The modes whose proxy runs on the control planes, beside the apiserver.
_ON_CONTROL_PLANES = {LoadBalancerMode.STATIC_PODS, LoadBalancerMode.LOCAL_NGINX}
_DEFAULT_PORT = 8443  # kubeadm-ha's port table
# Node-local proxies listen here only: nothing off the node can use (or abuse) them.
LOCAL_PROXY_ADDRESS = ipaddress.IPv4Address("127.0.0.1")


class LoadBalancerSettings(_Model):
    mode: LoadBalancerMode = LoadBalancerMode.KEEPALIVED_HAPROXY
    """How the apiservers are fronted: `keepalived-haproxy` (an LB pair), `static-pods` (keepalived
    and haproxy as static pods on the control planes), `kube-vip`, `local-nginx` (a proxy on
    every node), or `external` (the site's own balancer at `endpoint`). See docs/architecture.md.
    """
    vip: Optional[ipaddress.IPv4Address | ipaddress.IPv6Address] = None
    """The virtual IP clients use: a free address on the segment of the hosts that hold it."""
    # Unset: 8443; kube-vip serves the apiservers' own port 6443 on the VIP.
    port: Optional[int] = None
    """The endpoint's port: 8443 when unset (kube-vip: 6443, the apiservers' own). Not 6443 where
    haproxy shares a host with an apiserver.
    """
    interface: str = Field("eth0", pattern=INTERFACE_NAME)
    """The interface that holds the VIP (a host entry's `interface` overrides it)."""
    # No default: keepalived's own (51) is everyone's, and two VRRP instances with one id on a
    # segment take each other's VIP.
    virtual_router_id: Optional[int] = None
    """The VRRP router id, 1-255, unique among the VRRP instances of the segment: two with one id
    take each other's VIP, so there is no default.
    """
    hosts: list[Host] = []
    """The LB hosts, `{name, address}` each (two or more)."""
    # Local-only ports from kubeadm-ha's port table: health (monitor-uri) and the stats page.
    health_port: int = 8081
    """The load balancer's own health endpoint, on loopback only."""
    stats_port: int = 9090
    """haproxy's read-only stats page, on loopback only."""
    local_proxy: LocalProxy = LocalProxy.NGINX
    """The proxy on every node in local-nginx mode: `nginx` or `haproxy`."""
    kube_vip: KubeVipSettings = KubeVipSettings()
    """kube-vip's leader election (kube-vip mode)."""
    images: LoadBalancerImages = LoadBalancerImages()
    """The static pods' images (static-pods, kube-vip)."""
    endpoint: Optional[str] = None
    """The site's balancer (external mode): `host:port`, the host a DNS name or an address. It must
    forward TCP to every control plane's 6443 (the `loadBalancerBackends` output), checking each
    with `GET /readyz` over HTTPS; the first control plane's at least before the first `pulumi up`.
    """

    _ports = field_validator("port", "health_port", "stats_port")(check_port)

    @field_validator("endpoint")
    @classmethod
    def _endpoint_grammar(cls, value: Optional[str]) -> Optional[str]:
        if value is None:
            return value
        host, port = parse_endpoint(value)
        if isinstance(host, (ipaddress.IPv4Address, ipaddress.IPv6Address)) and (
                host.is_loopback or host.is_unspecified or host.is_multicast):
            raise ValueError(f"{host} is not an address the nodes can reach the site's balancer at")
        return host_port(host, port)

    @field_validator("mode", mode="before")
    @classmethod
    def _known_mode(cls, value: Any) -> Any:
        known = [mode.value for mode in LoadBalancerMode]
        if value not in known:
            raise ValueError(f"unknown mode {value!r}; known modes: {', '.join(known)}")
        return value

    @field_validator("virtual_router_id")
    @classmethod
    def _router_id_range(cls, value: Optional[int]) -> Optional[int]:
        if value is not None and not 1 <= value <= 255:
            raise ValueError(f"must be between 1 and 255 (got {value})")
        return value

    @model_validator(mode="after")
    def _fits_the_mode(self) -> "LoadBalancerSettings":
        mode = self.mode.value
        for name in sorted(self.model_fields_set):
            if name in LOAD_BALANCER_KEYS_BY_MODE and self.mode not in LOAD_BALANCER_KEYS_BY_MODE[name]:
                raise ConfigKeyError(f"loadBalancer.{to_camel(name)}", f"is not used with loadBalancer.mode {mode}; "
                                     f"remove it")
        if self.mode in LOAD_BALANCER_KEYS_BY_MODE["vip"] and self.vip is None:
            raise ConfigKeyError("loadBalancer.vip", f"is required with loadBalancer.mode {mode}")
        if self.mode is LoadBalancerMode.KEEPALIVED_HAPROXY and len(self.hosts) < 2:
            raise ConfigKeyError("loadBalancer.hosts", f"needs at least two hosts for failover (got {len(self.hosts)})")
        if self.mode in LOAD_BALANCER_KEYS_BY_MODE["virtual_router_id"] and self.virtual_router_id is None:
            raise ConfigKeyError("loadBalancer.virtualRouterId", f"is required with loadBalancer.mode {mode}: a VRRP "
                                 f"router id (1-255) that no other VRRP instance on the segment uses (two with one "
                                 f"id take each other's VIP); clusters built before it was required use 51")
        if self.mode is LoadBalancerMode.EXTERNAL and self.endpoint is None:
            raise ConfigKeyError("loadBalancer.endpoint", "is required with loadBalancer.mode external: the host:port "
                                 "of the site's balancer, such as api.example.org:6443")
        if self.mode is LoadBalancerMode.EXTERNAL and self.port is not None:
            raise ConfigKeyError("loadBalancer.port", "is not used with loadBalancer.mode external: the port is "
                                 "loadBalancer.endpoint's; remove it")
        if self.mode is LoadBalancerMode.KUBE_VIP and self.port not in (None, APISERVER_PORT):
            raise ConfigKeyError("loadBalancer.port", f"kube-vip moves only the address: the endpoint is the VIP on "
                                 f"the apiservers' own port {APISERVER_PORT} (got {self.port}); remove the key")
        self._check_port_clashes()
        return self

    def _check_port_clashes(self) -> None:
        if self.mode in (LoadBalancerMode.KUBE_VIP, LoadBalancerMode.EXTERNAL):
            return  # no proxy of kubeha's: kube-vip serves the apiservers' own port, a site's balancer its own
        ports = {"port": self.listen_port, "healthPort": self.health_port, "statsPort": self.stats_port}
        seen: dict[int, str] = {}
        for key, port in ports.items():
            if port in seen:
                raise ConfigKeyError(f"loadBalancer.{key}", f"{port} is also loadBalancer.{seen[port]}")
            seen[port] = key
            if self.mode in _ON_CONTROL_PLANES and port in TAKEN_ON_CONTROL_PLANES:
                raise ConfigKeyError(
                    f"loadBalancer.{key}",
                    f"{port} is taken by {TAKEN_ON_CONTROL_PLANES[port]} on the control planes, "
                    f"where loadBalancer.mode {self.mode.value} runs its proxy; pick another (e.g. {_DEFAULT_PORT})")

    def interface_of(self, host: Host) -> str:
        """The interface `host` holds the VIP on."""
        return host.interface or self.interface

    @property
    def listen_port(self) -> int:
        """The port of the control-plane endpoint."""
        if self.mode is LoadBalancerMode.KUBE_VIP:
            return APISERVER_PORT
        if self.mode is LoadBalancerMode.EXTERNAL:
            assert self.endpoint is not None  # the validator requires it
            return parse_endpoint(self.endpoint)[1]
        return self.port if self.port is not None else _DEFAULT_PORT

    @property
    def endpoint_address(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | str:
        """The VIP, the node-local proxy's loopback address in local-nginx mode, or the site's
        balancer's name or address in external mode."""
        if self.mode is LoadBalancerMode.LOCAL_NGINX:
            return LOCAL_PROXY_ADDRESS
        if self.mode is LoadBalancerMode.EXTERNAL:
            assert self.endpoint is not None  # the validator requires it
            return parse_endpoint(self.endpoint)[0]
        assert self.vip is not None  # the validator requires it in every other mode
        return self.vip

    @property
    def endpoint_host_port(self) -> str:
        return host_port(self.endpoint_address, self.listen_port)


# Configuration fields kubeha or kubeadm set from other settings, or that the rest of the design
# depends on (the port table, the firewall, the static pod manifests): given in
# kubernetes.kubelet or kubeProxy, the two would disagree. Each says where the value comes from.
_KUBELET_KEYS_SET_BY_KUBEHA = {
    "cgroupDriver": "is set from containerd.cgroupDriver; set it there",
    "staticPodPath": "is kubeadm's /etc/kubernetes/manifests, where the control plane's and the "
                     "load balancer's static pods are placed",
    "clusterDNS": "is set by kubeadm from kubernetes.serviceSubnet; set that",
    "clusterDomain": "is kubeadm's cluster.local, which kubeha keeps",
    "authentication": "is set by kubeadm (the kubelet's TLS bootstrap and client CA)",
    "authorization": "is set by kubeadm (Webhook authorization)",
    "rotateCertificates": "is set by kubeadm (kubelet client certificates rotate)",
    "port": "is the kubelet's 10250, in kubeha's port table and firewall rules",
    "healthzPort": "is the kubelet's 10248, which kubeadm waits on and kubeha's port table holds",
    "healthzBindAddress": "is set by kubeadm (127.0.0.1, which kubeadm waits on)",
}
_KUBE_PROXY_KEYS_SET_BY_KUBEHA = {
    "clusterCIDR": "is set by kubeadm from kubernetes.podSubnet; set that",
    "clientConnection": "is set by kubeadm (kube-proxy's kubeconfig)",
    "hostnameOverride": "is each node's own name; one value for every node would make them one",
    "healthzBindAddress": "is kube-proxy's :10256, in kubeha's port table and firewall rules",
    "metricsBindAddress": "is kube-proxy's 127.0.0.1:10249, in kubeha's port table",
}
_COMPONENT_CONFIG_KEYS = {"apiVersion", "kind"}


def _check_component_config(key: str, configuration: str, settings: dict[str, Any],
                            set_by_kubeha: dict[str, str]) -> None:
    for name in sorted(settings):
        if name in _COMPONENT_CONFIG_KEYS:
            raise ConfigKeyError(f"kubernetes.{key}.{name}", "is set by kubeha; give only the configuration's fields")
        if name in set_by_kubeha:
            raise ConfigKeyError(f"kubernetes.{key}.{name}", set_by_kubeha[name])
    problem = check_fields(configuration, settings)
    if problem:
        kind = configuration.rsplit("/", 1)[-1]
        raise ConfigKeyError(f"kubernetes.{key}.{problem.path}", f"{problem.message} ({kind}, Kubernetes 1.34)")


class HostPathType(str, Enum):
    """A hostPath volume's check before the pod starts (Kubernetes' HostPathType)."""

    DIRECTORY_OR_CREATE = "DirectoryOrCreate"
    DIRECTORY = "Directory"
    FILE_OR_CREATE = "FileOrCreate"
    FILE = "File"
    SOCKET = "Socket"
    CHAR_DEVICE = "CharDevice"
    BLOCK_DEVICE = "BlockDevice"


class HostPathVolume(_Model):
    """A file or folder of the control plane host, mounted into a control plane component's pod
    (kubeadm's extraVolumes): where a flag names a file (a policy, a configuration)."""

    name: str = Field(pattern=VOLUME_NAME)
    """The volume's name in the static pod (not one of kubeadm's own, such as k8s-certs)."""
    host_path: str = Field(pattern=ABSOLUTE_PATH)
    """The file or folder on every control plane host."""
    mount_path: str = Field(pattern=ABSOLUTE_PATH)
    """Where the component sees it (not over kubeadm's own mounts, such as /etc/kubernetes/pki)."""
    read_only: bool = True
    """Mounted read-only (the default), or writable (a log folder)."""
    path_type: Optional[HostPathType] = None
    """What must be at hostPath before the pod starts (DirectoryOrCreate, File, ...); none: no check."""


class ControlPlaneComponent(_Model):
    """Flags and host files of one control plane component (kube-apiserver, kube-controller-manager
    or kube-scheduler), as kubeadm passes them at init and to every control plane that joins."""

    extra_args: dict[str, str] = {}
    """Flag name (without --) -> value, e.g. {profiling: "false", audit-log-maxage: "30"}. Checked
    against the component's flags (Kubernetes 1.34); flags kubeadm or kubeha set (certificates, etcd,
    subnets, the endpoint) are refused, naming what to set instead.
    """
    extra_volumes: list[HostPathVolume] = []
    """Host files or folders the flags name, mounted into the component's pod: `{name, hostPath,
    mountPath, readOnly, pathType}` each (readOnly true unless set; pathType one of Kubernetes'
    HostPathType values, e.g. DirectoryOrCreate). Not kubeadm's own volume names or mounts.
    """

    @field_validator("extra_args", mode="before")
    @classmethod
    def _values_as_text(cls, value: object) -> object:
        # A YAML `false` or `30` is the flag's text, as kubeadm writes it: "false", "30".
        if not isinstance(value, dict):
            return value
        return {name: ("true" if item is True else "false" if item is False else
                       str(item) if isinstance(item, (int, float)) else item) for name, item in value.items()}


def _check_control_plane_component(key: str, component: ControlPlaneComponent) -> None:
    for name in sorted(component.extra_args):
        problem = flag_problem(key, name) or value_problem(component.extra_args[name])
        if problem:
            raise ConfigKeyError(f"kubernetes.{key}.extraArgs.{name}", problem)
    names: set[str] = set()
    mount_paths: set[str] = set()
    for index, volume in enumerate(component.extra_volumes):
        where = f"kubernetes.{key}.extraVolumes[{index}]"
        if volume.name in KUBEADM_VOLUMES:
            raise ConfigKeyError(f"{where}.name", f"{volume.name} is one of kubeadm's own volumes; choose another name")
        if volume.name.startswith("kubeha-"):
            raise ConfigKeyError(f"{where}.name", "names starting kubeha- are kubeha's own volumes; choose another")
        if volume.name in names:
            raise ConfigKeyError(f"{where}.name", f"{volume.name} is given twice")
        problem = mount_path_problem(volume.mount_path)
        if problem:
            raise ConfigKeyError(f"{where}.mountPath", problem)
        if volume.mount_path in mount_paths:
            raise ConfigKeyError(f"{where}.mountPath", f"{volume.mount_path} is mounted twice")
        names.add(volume.name)
        mount_paths.add(volume.mount_path)


class AuditPreset(str, Enum):
    """A ready audit policy: what every request leaves in the audit log."""

    METADATA = "metadata"  # who did what to which object, when; no bodies
    REQUEST = "request"  # also the request's body, except for objects that carry credentials


# Never logged by the presets: the health checks (the load balancers ask twice a second each) and
# events (the cluster's own chatter, which would drown the rest).
_AUDIT_QUIET: list[dict[str, Any]] = [
    {"level": "None", "nonResourceURLs": ["/healthz*", "/readyz*", "/livez*", "/version"]},
    {"level": "None", "resources": [{"group": "", "resources": ["events"]},
                                    {"group": "events.k8s.io", "resources": ["events"]}]},
]
# Objects whose bodies hold credentials: at most their metadata, whatever the preset.
_AUDIT_CREDENTIALS: dict[str, Any] = {
    "level": "Metadata",
    "resources": [{"group": "", "resources": ["secrets", "configmaps", "serviceaccounts/token"]},
                  {"group": "authentication.k8s.io", "resources": ["tokenreviews"]}]}
AUDIT_PRESETS: dict[AuditPreset, list[dict[str, Any]]] = {
    AuditPreset.METADATA: [*_AUDIT_QUIET, {"level": "Metadata"}],
    AuditPreset.REQUEST: [*_AUDIT_QUIET, _AUDIT_CREDENTIALS, {"level": "Request"}],
}
AUDIT_LEVELS = ("None", "Metadata", "Request", "RequestResponse")
_AUDIT_POLICY_KEYS = {"apiVersion", "kind", "metadata", "rules", "omitStages", "omitManagedFields"}
_AUDIT_RULE_KEYS = {"level", "users", "userGroups", "verbs", "resources", "namespaces", "nonResourceURLs",
                    "omitStages", "omitManagedFields"}
# Where kubeha puts the policy on every control plane (root-only), and the flags it sets from
# kubernetes.audit.
AUDIT_POLICY_FILE = "/etc/kubernetes/audit/policy.yaml"
AUDIT_FLAGS = ("audit-policy-file", "audit-log-path", "audit-log-maxage", "audit-log-maxbackup", "audit-log-maxsize")


class AuditSettings(_Model):
    """The apiserver's audit log, on every control plane's disk."""

    policy: AuditPreset | dict[str, Any] = AuditPreset.METADATA
    """`metadata` (who did what to which object, when), `request` (also request bodies, but only
    the metadata of Secrets, ConfigMaps and token requests), or a whole audit.k8s.io/v1 Policy.
    The presets leave out health checks and events.
    """
    log_path: str = Field("/var/log/kubernetes/audit/audit.log", pattern=ABSOLUTE_PATH)
    """The log file on each control plane; its folder is mounted into the apiserver."""
    max_age: int = Field(30, ge=0, le=3650)
    """Days an old log file is kept (0: no limit by age)."""
    max_backups: int = Field(10, ge=0, le=1000)
    """Old log files kept (0: no limit by count)."""
    max_size: int = Field(100, ge=1, le=100_000)
    """Megabytes a log file grows to before it is rotated."""

    @field_validator("policy")
    @classmethod
    def _audit_policy(cls, policy: AuditPreset | dict[str, Any]) -> AuditPreset | dict[str, Any]:
        if isinstance(policy, AuditPreset):
            return policy
        if policy.get("apiVersion") != "audit.k8s.io/v1" or policy.get("kind") != "Policy":
            raise ValueError("must be metadata, request, or a Policy with apiVersion audit.k8s.io/v1")
        unknown = sorted(set(policy) - _AUDIT_POLICY_KEYS)
        if unknown:
            raise ValueError(f"{unknown[0]} is not a field of an audit Policy")
        rules = policy.get("rules")
        if not isinstance(rules, list) or not rules:
            raise ValueError("a Policy needs rules (a list with at least one)")
        for index, rule in enumerate(rules):
            if not isinstance(rule, dict) or rule.get("level") not in AUDIT_LEVELS:
                raise ValueError(f"rules[{index}].level must be one of {', '.join(AUDIT_LEVELS)}")
            unknown = sorted(set(rule) - _AUDIT_RULE_KEYS)
            if unknown:
                raise ValueError(f"rules[{index}].{unknown[0]} is not a field of an audit rule")
        return policy

    @field_validator("log_path")
    @classmethod
    def _log_file_in_a_folder(cls, path: str) -> str:
        folder = path.rsplit("/", 1)[0]
        if not folder:
            raise ValueError("must be a file in a folder (its folder is mounted into the apiserver)")
        problem = mount_path_problem(folder)
        if problem:
            raise ValueError(f"its folder {folder} {problem}")
        return path

    def policy_document(self) -> dict[str, Any]:
        """The audit.k8s.io/v1 Policy the apiservers load."""
        if isinstance(self.policy, AuditPreset):
            return {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
                    "rules": AUDIT_PRESETS[self.policy]}
        return self.policy

    @property
    def log_folder(self) -> str:
        return self.log_path.rsplit("/", 1)[0]

    @property
    def policy_file(self) -> str:
        return AUDIT_POLICY_FILE

    @property
    def policy_folder(self) -> str:
        return AUDIT_POLICY_FILE.rsplit("/", 1)[0]

    def flags(self) -> dict[str, str]:
        return {"audit-policy-file": AUDIT_POLICY_FILE, "audit-log-path": self.log_path,
                "audit-log-maxage": str(self.max_age), "audit-log-maxbackup": str(self.max_backups),
                "audit-log-maxsize": str(self.max_size)}

    def volumes(self) -> list[HostPathVolume]:
        folder = self.policy_folder
        return [HostPathVolume(name="kubeha-audit-policy", host_path=folder, mount_path=folder, read_only=True,
                               path_type=HostPathType.DIRECTORY),
                HostPathVolume(name="kubeha-audit-log", host_path=self.log_folder, mount_path=self.log_folder,
                               read_only=False, path_type=HostPathType.DIRECTORY_OR_CREATE)]


def release_tuple(version: str) -> tuple[int, int, int]:
    """'1.34.4' -> (1, 34, 4): a kubernetes.version (validated x.y.z) as numbers that compare."""
    major, minor, patch = (int(part) for part in version.split("."))
    return major, minor, patch


class KubernetesSettings(_Model):
    version: str = KUBERNETES_VERSION
    """The Kubernetes release (1.28-1.34) of kubeadm, kubelet and kubectl. A higher one on a built
    cluster upgrades it node by node, one minor at a time.
    """
    pod_subnet: ipaddress.IPv4Network | ipaddress.IPv6Network = ipaddress.IPv4Network("10.244.0.0/16")
    """The pods' network (kubeadm's podSubnet; flannel's or calico's network)."""
    service_subnet: ipaddress.IPv4Network | ipaddress.IPv6Network = ipaddress.IPv4Network("10.96.0.0/12")
    """The Services' network (kubeadm's serviceSubnet), at most /12 (IPv6: /108)."""
    cluster_name: str = Field("kubernetes", pattern=CLUSTER_NAME)
    """The cluster's name in its configuration and kubeconfigs."""
    # Where hosts fetch kubeadm/kubelet/kubectl packages (a mirror in air-gapped sites).
    package_repository: str = Field("https://pkgs.k8s.io/core:/stable:", pattern=REPOSITORY_URL)
    """Where hosts get the Kubernetes packages: `<repository>/v1.34/deb/`, signed (`Release.key`),
    as pkgs.k8s.io lays it out.
    """
    # kubeadm's imageRepository (a mirror); also where the load balancer's default images come from.
    image_repository: Optional[str] = None
    """kubeadm's imageRepository (a mirror of registry.k8s.io); containerd's sandbox image and the
    load balancer's default images come from it too.
    """
    # Fields of the kubelet's KubeletConfiguration (kubelet.config.k8s.io/v1beta1) and of
    # kube-proxy's KubeProxyConfiguration (kubeproxy.config.k8s.io/v1alpha1), passed to kubeadm
    # init as they are, for every node: e.g. {failCgroupV1: false} on cgroup v1 hosts.
    kubelet: dict[str, Any] = {}
    """Fields of the kubelet's KubeletConfiguration (v1beta1), e.g. {maxPods: 50}, checked against
    its Go type at preview. Fields kubeha sets are refused. A change on a built cluster rolls out
    one node at a time (the kubelet restarted, no drain); the CPU, memory and topology managers'
    policies are fixed once built (they need a drained node).
    """
    kube_proxy: dict[str, Any] = {}
    """Fields of kube-proxy's KubeProxyConfiguration (v1alpha1), e.g. {mode: iptables}, checked
    against its Go type at preview. Fields kubeha sets are refused. A change on a built cluster
    updates its ConfigMap and restarts its DaemonSet; `mode` is fixed once built.
    """
    audit: Optional[AuditSettings] = None
    """The apiserver's audit log: `{policy: metadata}` switches it on (see its keys). kubeha writes
    the policy, root-only, to every control plane before kubeadm init and join, and sets the
    apiserver's audit flags and mounts. Off unless set. A change on a built cluster rolls out one
    control plane at a time (a new policy restarts each apiserver).
    """
    api_server: ControlPlaneComponent = ControlPlaneComponent()
    """kube-apiserver's flags (extraArgs) and host files (extraVolumes), given to kubeadm init and to
    every control plane that joins. A change on a built cluster rolls out one control plane at a
    time: kubeadm's configuration in the cluster, then each node's manifest, the next once its
    apiserver is ready again."""
    controller_manager: ControlPlaneComponent = ControlPlaneComponent()
    """kube-controller-manager's flags and host files, as apiServer's."""
    scheduler: ControlPlaneComponent = ControlPlaneComponent()
    """kube-scheduler's flags and host files, as apiServer's."""
    # How long removing a node waits for its drain; a drain still blocked then (a
    # PodDisruptionBudget, a pod that will not stop) fails the removal and says so, rather than
    # hold `pulumi up` indefinitely.
    drain_timeout_seconds: int = Field(180, ge=10, le=3600)
    """How long removing a node waits for its drain; still blocked then (a PodDisruptionBudget), the
    removal fails saying so and the node stays cordoned.
    """
    # How long the `kubeconfig` output's client certificate is valid (components/day2/admin_credential);
    # `pulumi up` renews it past two thirds of that. A year, as kubeadm's own certificates, so that
    # nothing expires sooner than with kubeadm; shorter is safer where `pulumi up` runs often.
    kubeconfig_validity_hours: int = Field(8760, ge=1, le=5 * 8760)
    """How long the `kubeconfig` output's client certificate is valid; `pulumi up` renews it past
    two thirds of that.
    """

    @model_validator(mode="after")
    def _component_configs(self) -> "KubernetesSettings":
        _check_component_config("kubelet", KUBELET_CONFIGURATION, self.kubelet, _KUBELET_KEYS_SET_BY_KUBEHA)
        _check_component_config("kubeProxy", KUBE_PROXY_CONFIGURATION, self.kube_proxy, _KUBE_PROXY_KEYS_SET_BY_KUBEHA)
        for key in COMPONENTS:
            _check_control_plane_component(key, self.control_plane_component(key))
        for name in sorted(set(self.api_server.extra_args) & set(AUDIT_FLAGS)):
            raise ConfigKeyError(f"kubernetes.apiServer.extraArgs.{name}", "is set from kubernetes.audit; set that")
        if self.audit is not None:
            taken = {volume.mount_path for volume in self.audit.volumes()}
            for index, volume in enumerate(self.api_server.extra_volumes):
                if volume.mount_path in taken:
                    raise ConfigKeyError(f"kubernetes.apiServer.extraVolumes[{index}].mountPath",
                                         f"{volume.mount_path} is where kubernetes.audit's files are mounted")
        return self

    def apiserver_arguments(self) -> dict[str, str]:
        """Every extraArg of the apiservers: kubernetes.apiServer's and kubernetes.audit's."""
        return {**self.api_server.extra_args, **(self.audit.flags() if self.audit else {})}

    def apiserver_volumes(self) -> list[HostPathVolume]:
        return [*self.api_server.extra_volumes, *(self.audit.volumes() if self.audit else [])]

    def control_plane_component(self, key: str) -> ControlPlaneComponent:
        """The settings under kubernetes.<key> (apiServer, controllerManager or scheduler)."""
        components = {"apiServer": self.api_server, "controllerManager": self.controller_manager,
                      "scheduler": self.scheduler}
        return components[key]

    _mirror = field_validator("image_repository")(check_registry_path)

    @field_validator("version")
    @classmethod
    def _supported_release(cls, value: str) -> str:
        if not re.fullmatch(r"\d+\.\d+\.\d+", value):
            raise ValueError(f"must be x.y.z, e.g. 1.31.4 (got {value!r})")
        if tuple(int(part) for part in value.split(".")[:2]) not in PAUSE_VERSIONS:
            known = ", ".join(f"{a}.{b}" for a, b in sorted(PAUSE_VERSIONS))
            raise ValueError(f"{value}: kubeha supports Kubernetes {known}")
        return value

    @property
    def minor(self) -> str:
        """'v1.31' — the path element of the pkgs.k8s.io repository."""
        major, minor, _ = self.version.split(".")
        return f"v{major}.{minor}"

    @property
    def version_tuple(self) -> tuple[int, int, int]:
        return release_tuple(self.version)

    @property
    def pause_image(self) -> str:
        """The sandbox image kubeadm expects for this release, from imageRepository if set."""
        major, minor, _ = self.version_tuple
        return f"{self.image_repository or DEFAULT_IMAGE_REPOSITORY}/pause:{PAUSE_VERSIONS[(major, minor)]}"

    @property
    def kubeadm_api_version(self) -> str:
        """v1beta4 is the kubeadm config API from 1.31 on; v1beta3 before it."""
        return "kubeadm.k8s.io/v1beta4" if self.version_tuple >= (1, 31, 0) else "kubeadm.k8s.io/v1beta3"


class CgroupDriver(str, Enum):
    SYSTEMD = "systemd"  # kubeadm's default: systemd manages the cgroups (systemd is PID 1)
    CGROUPFS = "cgroupfs"  # the runtime writes cgroupfs directly (hosts where systemd does not own cgroups)


class ContainerdSettings(_Model):
    """containerd on every node: its default config, with these changes."""

    # Used by containerd's runc and by the kubelet (they must agree).
    cgroup_driver: CgroupDriver = CgroupDriver.SYSTEMD
    """`systemd` or `cgroupfs`, for containerd's runc and the kubelet alike."""
    # containerd's CRI `restrict_oom_score_adj`: for hosts without CAP_SYS_RESOURCE (unprivileged
    # containers, some LXC/nspawn hosts), where runc cannot lower a process's OOM score.
    restrict_oom_score_adj: bool = False
    """containerd's CRI `restrict_oom_score_adj`, for hosts without CAP_SYS_RESOURCE (unprivileged
    containers).
    """
    # Pull-through mirrors per registry, tried in order before the registry itself, e.g.
    # {registry.k8s.io: [https://mirror.example:5000]}: one hosts.toml per registry under
    # /etc/containerd/certs.d (containerd reads them at each pull, no restart).
    registry_mirrors: dict[str, list[str]] = {}
    """Pull-through mirrors per registry, tried in order before the registry itself, e.g.
    {registry.k8s.io: [https://mirror.example:5000]}.
    """

    @field_validator("registry_mirrors")
    @classmethod
    def _mirrors(cls, mirrors: dict[str, list[str]]) -> dict[str, list[str]]:
        for registry, urls in mirrors.items():
            if not REGISTRY_HOST.fullmatch(registry):
                raise ValueError(f"{registry!r} is not a registry host such as registry.k8s.io or docker.io")
            if not urls:
                raise ValueError(f"{registry}: give at least one mirror URL")
            for url in urls:
                if not MIRROR_URL.fullmatch(url):
                    raise ValueError(f"{registry}: {url!r} is not an http(s) URL such as https://mirror.example:5000")
        return mirrors

    def upstream(self, registry: str) -> str:
        """The registry's own server, which containerd falls back to after the mirrors."""
        return "https://registry-1.docker.io" if registry == "docker.io" else f"https://{registry}"


class NetworkPlugin(str, Enum):
    FLANNEL = "flannel"  # deployed by kubeha, vxlan
    CALICO = "calico"  # deployed by kubeha, vxlan, calico IPAM; rendered and validated, not run in the lab
    NONE = "none"  # the user brings their own; nodes stay NotReady until they do


class NetworkImages(_Model):
    """The pod network's images, pinned and tested together (flannel's own release pairing)."""

    DEFAULTS: ClassVar[dict[str, str]] = NETWORK_IMAGES  # the catalogue's
    # The image whose tag is the plugin's release (the networkVersion output).
    RELEASE_IMAGE: ClassVar[dict[str, str]] = {"flannel": "flannel", "calico": "calico_node"}


class FlannelSettings(_Model):
    # Unset: flannel's own choice, the interface of the default route. Set it on hosts whose
    # nodes talk over another interface (several NICs, or no default route).
    interface: Optional[str] = Field(default=None, pattern=INTERFACE_NAME)
    """The interface nodes talk over (flannel's --iface); needed without a default route or with
    several NICs.
    """
    # Unset: flannel derives it (the interface's MTU minus the 50 bytes of VXLAN).
    mtu: Optional[int] = Field(default=None, ge=1280, le=9000)
    """The VXLAN MTU; unset, derived from the interface."""


class CalicoSettings(_Model):
    # Unset: calico's own choice (the first interface with an address). Set it on hosts whose
    # nodes talk over another interface (a regular expression over interface names).
    interface: Optional[str] = Field(default=None, pattern=INTERFACE_PATTERN)
    """The interface nodes talk over, a regular expression over interface names
    (IP_AUTODETECTION_METHOD=interface=...).
    """
    # Unset: calico derives it from the interface (minus the 50 bytes of VXLAN).
    mtu: Optional[int] = Field(default=None, ge=1280, le=9000)
    """The veth and VXLAN MTU; unset, derived from the interface."""


class NetworkSettings(_Model):
    """The pod network kubeha deploys through the cluster's API (pulumi-kubernetes)."""

    plugin: NetworkPlugin = NetworkPlugin.FLANNEL
    """The pod network kubeha deploys: `flannel`, `calico` (VXLAN, calico IPAM; not run in the lab),
    or `none` (bring your own; nodes stay NotReady until you do).
    """
    # A mirror for the network's images (same paths as upstream), like kubernetes.imageRepository.
    image_repository: Optional[str] = None
    """A mirror for the pod network's images (same paths as upstream)."""
    flannel: FlannelSettings = FlannelSettings()
    """flannel's settings (with plugin flannel)."""
    calico: CalicoSettings = CalicoSettings()
    """calico's settings (with plugin calico)."""
    # How long `pulumi up` waits for every node to be Ready and CoreDNS available.
    ready_timeout_seconds: int = Field(default=300, ge=30, le=3600)
    """How long `pulumi up` waits for every node Ready and CoreDNS available."""

    _mirror = field_validator("image_repository")(check_registry_path)

    @model_validator(mode="after")
    def _settings_of_the_plugin_in_use(self) -> "NetworkSettings":
        for plugin in (NetworkPlugin.FLANNEL, NetworkPlugin.CALICO):
            if plugin.value in self.model_fields_set and self.plugin is not plugin:
                raise ConfigKeyError(f"network.{plugin.value}", f"is not used: network.plugin is {self.plugin.value}; "
                                     f"remove the key, or set network.plugin: {plugin.value}")
        return self

    def image(self, name: str) -> str:
        return on_mirror(NetworkImages.DEFAULTS[name], self.image_repository)

    @property
    def version(self) -> Optional[str]:
        """The plugin's release, e.g. 'v0.28.10' (none for `none`)."""
        if self.plugin is NetworkPlugin.NONE:
            return None
        return NetworkImages.DEFAULTS[NetworkImages.RELEASE_IMAGE[self.plugin.value]].rsplit(":", 1)[1]


class PackageSettings(_Model):
    # An HTTP proxy for every download on the hosts (apt, the repository key, containerd's image
    # pulls), e.g. an apt-cacher-ng or a site proxy; none by default.
    proxy: Optional[str] = Field(default=None, pattern=PROXY_URL)
    """An HTTP proxy for every download on the hosts: apt, the repository key and containerd's image
    pulls. No credentials in the URL.
    """

    @field_validator("proxy")
    @classmethod
    def _no_credentials(cls, value: Optional[str]) -> Optional[str]:
        # The URL lands in the steps' command text (the state, the preview) and in files on the
        # hosts, none of them secret: a password there would be out in the open. Refused until
        # kubeha carries proxy credentials as secrets.
        if value is not None and "@" in value.split("://", 1)[1]:
            raise ValueError("holds credentials (user:password@), which would be stored in plain text in the "
                             "stack's state and on the hosts; kubeha does not take proxy credentials yet: use a "
                             "proxy that admits the hosts by their address")
        return value


def kubernetes_package_source(kubernetes: KubernetesSettings, packages: PackageSettings) -> dict[str, object]:
    """What lib/kubernetes-packages.sh.j2 renders with: the release and where its packages are."""
    return {"kubernetes_version": kubernetes.version, "kubernetes_minor": kubernetes.minor,
            "package_repository": kubernetes.package_repository, "package_proxy": packages.proxy}


class FirewallMode(str, Enum):
    # kubeha leaves the hosts' firewalls to the site: the default, because many sites manage
    # host firewalls with their own tooling, and rules kubeha wrote unasked could fight them.
    UNMANAGED = "unmanaged"
    # kubeha's own nftables table guards the cluster's ports by source (components/network/firewall).
    MANAGED = "managed"


class FirewallSettings(_Model):
    mode: FirewallMode = FirewallMode.UNMANAGED
    """`managed`: kubeha's own nftables table on every host guards the cluster's ports by source.
    `unmanaged` (the default) leaves the hosts' firewalls to the site.
    """
    # Networks the nodes' addresses are in (e.g. [10.0.0.0/24]): when set, the kubelet and the pod
    # network's VXLAN accept them (and the pod subnet) instead of each node's own address, so
    # adding or removing a worker changes no other host's rules. Empty: each node's address.
    node_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    """With `managed`: networks holding every node's address; the kubelet and VXLAN ports accept
    them instead of each node's address, so adding a worker changes no other host.
    """


class CertificateSettings(_Model):
    # `pulumi up` renews a control plane's certificates once the earliest expires within this
    # many days (components/day2/certificates). kubeadm's certificates live a year; half of it at most,
    # so that a renewal is never due again right after it ran.
    renew_before_days: int = Field(30, ge=1, le=180)
    """`pulumi up` renews a control plane's kubeadm certificates once the earliest expires within
    this many days.
    """


class UpgradeSettings(_Model):
    # How many workers a Kubernetes upgrade drains and upgrades at once (components/day2/upgrade):
    # control planes always go one at a time; workers in batches of this many.
    max_unavailable_workers: int = Field(1, ge=1, le=100)
    """How many workers an upgrade drains and upgrades at once; control planes always go one at a
    time.
    """


class BackupCopySettings(_Model):
    """An off-host copy of every backup (etcd.backup.copyTo): what a restore onto new hosts starts
    from when every control plane is lost."""

    host: str = Field(max_length=253)
    """The copy host's address or DNS name, as the control planes reach it."""
    port: int = 22
    """Its SSH port."""
    user: str = Field(pattern=USER_NAME)
    """The login on the copy host that receives the files (no sudo; it needs only write access to
    `path`; it may be one with a forced command or a restricted shell that runs `sh -c`)."""
    path: str = Field(pattern=BACKUP_DIRECTORY)
    """The folder on the copy host; each cluster's backups go into `<path>/<kubernetes.clusterName>`."""
    # Pinned: the control planes have no first use to trust, and they hand over the cluster's CA keys.
    host_key: str
    """The copy host's SSH host key (an OpenSSH public-key line, e.g. its
    /etc/ssh/ssh_host_ed25519_key.pub): the control planes send a backup only to that key."""
    # A secret: `kubeha:etcd` must then be a secret in the stack config (load_cluster_config).
    private_key: SecretStr
    """The private key the control planes log in with (a key of its own, authorised on the copy
    host for `user` only): `pulumi config set --secret --path etcd.backup.copyTo.privateKey < KEYFILE`."""

    _port = field_validator("port")(check_port)

    @field_validator("host")
    @classmethod
    def _address_or_name(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            pass
        if not DNS_NAME.match(value):
            raise ValueError(f"must be an IP address or a DNS name (got {value!r})")
        return value

    @field_validator("host_key")
    @classmethod
    def _openssh_public_key(cls, value: str) -> str:
        problem = host_key_problem(value)
        if problem:
            raise ValueError(problem)
        return value.strip()

    @field_validator("private_key")
    @classmethod
    def _a_private_key(cls, value: SecretStr) -> SecretStr:
        if not PRIVATE_KEY_FILE.search(value.get_secret_value()):
            raise ValueError("must be a private key file's content ('-----BEGIN OPENSSH PRIVATE KEY-----...'), "
                             "not a path or a public key")
        return value


class EtcdBackupSettings(_Model):
    # On by default: with stacked etcd, losing two of three control planes loses quorum, and only
    # a snapshot brings the cluster back (docs/operations.md).
    enabled: bool = True
    """Every control plane takes an encrypted, verified etcd snapshot on a schedule (systemd
    timer `kubeha-etcd-backup.timer`; `systemctl start kubeha-etcd-backup.service` takes one by
    hand).
    """
    schedule: str = Field("hourly", pattern=ON_CALENDAR)
    """When: a systemd OnCalendar value, e.g. `hourly`, `*:0/15` or `*-*-* 02:30:00`. The host
    checks it with `systemd-analyze calendar`.
    """
    keep: int = Field(48, ge=1, le=10000)
    """How many backups each control plane keeps; older ones are deleted after each new one is
    verified."""
    directory: str = Field("/var/lib/kubeha/etcd-backup", pattern=BACKUP_DIRECTORY)
    """Where on each control plane the backups are kept (root only, mode 0700)."""
    # A secret: `kubeha:etcd` must then be a secret in the stack config (load_cluster_config
    # refuses a plain one); SecretStr keeps it out of the guard's record and the model's repr.
    encryption_key: Optional[SecretStr] = Field(default=None, min_length=32, max_length=1024)
    """The key every backup is encrypted with (AES-256, PBKDF2), at least 32 characters; a
    secret: `pulumi config set --secret --path etcd.backup.encryptionKey`. Unset, kubeha generates
    one and keeps it as a secret in the stack's state (the `etcdBackupKey` output).
    """

    copy_to: Optional[BackupCopySettings] = None
    """An off-host copy: every new backup also goes over SSH to this host, checked by its checksum
    there (a failed copy fails the backup's unit, and `pulumi up` says so); `keep` holds there
    too."""

    @field_validator("encryption_key")
    @classmethod
    def _one_line(cls, value: Optional[SecretStr]) -> Optional[SecretStr]:
        # It reaches the hosts as the first line of a script's stdin.
        if value is not None and any(char in value.get_secret_value() for char in "\r\n"):
            raise ValueError("must be one line (no line break)")
        return value

    @field_validator("directory")
    @classmethod
    def _plain_path(cls, value: str) -> str:
        # (`.` and `..` never get here: BACKUP_DIRECTORY lets no name start with a dot.)
        if value.rstrip("/") in ("/etc", "/var", "/var/lib", "/usr", "/root", "/tmp") \
                or value.startswith(("/etc/kubernetes", "/var/lib/etcd")):
            raise ValueError(f"must be a folder of its own, not {value!r} (kubeha deletes old backups in it)")
        return value


class EtcdRestoreSettings(_Model):
    backup: str = Field(pattern=BACKUP_FILE)
    """The backup file to restore from: on the control plane `on` (a path in etcd.backup.directory,
    as the `etcdBackups` output lists them), or with `fromCopyHost` on the copy host."""
    on: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    """The control plane that becomes the restored cluster's one etcd member: the lead (the first
    control plane by name that is not decommissioned) or the next one. It may be a new host: it is
    prepared, then made a control plane of the restored cluster with the backup's CAs. The others
    join it again as new control planes."""
    # A restore rewinds the cluster to the snapshot: refused while etcd has a quorum, so a healthy
    # cluster is never rewound by mistake.
    force: bool = False
    """Restore even though etcd still has a quorum (everything written since the backup is lost)."""
    from_copy_host: bool = False
    """`backup` is a path on etcd.backup.copyTo's host (as the `copiedTo` field of `etcdBackups`
    gives it): the control plane `on` fetches it from there first, with the backups' own login
    and pinned host key. For a restore onto new hosts, when every control plane was lost."""


class EtcdSettings(_Model):
    backup: EtcdBackupSettings = EtcdBackupSettings()
    """Scheduled backups of etcd (the cluster's state) on every control plane."""
    restore: Optional[EtcdRestoreSettings] = None
    """Bring the cluster back from a backup after etcd lost its quorum (docs/operations.md). Done
    once per backup file; left in place it changes nothing more."""


# Check names, as `preflight.skip` takes them.
CHECKS = ("ssh", "os", "swap", "cgroup", "ports", "cpu", "memory", "unique-hostname", "unique-mac",
          "unique-product-uuid",
          "time-sync", "clock-skew", "vip-free", "endpoint")


class PreflightSettings(_Model):
    # Checks (components/preflight_checks.CHECKS) a site knows it cannot pass and accepts, e.g.
    # unique-product-uuid where VMs were cloned without a new one, or time-sync on containers
    # whose clock is their machine's.
    skip: list[str] = []
    """Preflight checks a site accepts failing, by name, e.g. [unique-product-uuid] for VMs cloned
    without a new one.
    """
    # Also check new hosts in `pulumi preview` (and in the preview `pulumi up` shows first), so a
    # reviewer sees the problems before approving. Off by default: a preview then opens SSH
    # sessions to the new hosts, which some sites keep for the deploying run only.
    on_preview: bool = False
    """Also run the preflight of new hosts in `pulumi preview`, so problems show before anyone
    approves (a preview then opens SSH sessions).
    """

    @field_validator("skip")
    @classmethod
    def _known_checks(cls, names: list[str]) -> list[str]:
        unknown = [name for name in names if name not in CHECKS]
        if unknown:
            raise ValueError(f"unknown check(s) {', '.join(unknown)}; the checks are {', '.join(CHECKS)}")
        return names


class ClusterConfig(_Model):
    ssh: SshSettings = SshSettings()
    """How every host is reached."""
    load_balancer: LoadBalancerSettings
    """The control-plane endpoint's load balancing."""
    # The entries as written, decommissioned ones included; `control_planes` and `workers` are the
    # cluster's members.
    control_plane_entries: list[NodeHost] = Field(alias="controlPlanes")
    """The control planes, `{name, address}` each; their order means nothing. One for a test
    cluster, three (or five) for HA.
    """
    worker_entries: list[NodeHost] = Field(default=[], alias="workers")
    """The workers, `{name, address}` each; their order means nothing."""
    kubernetes: KubernetesSettings = KubernetesSettings()
    """The Kubernetes release and kubeadm's settings."""
    containerd: ContainerdSettings = ContainerdSettings()
    """containerd on every node: its distribution's default config with these changes."""
    packages: PackageSettings = PackageSettings()
    """How hosts download packages."""
    network: NetworkSettings = NetworkSettings()
    """The pod network."""
    preflight: PreflightSettings = PreflightSettings()
    """The checks of new hosts before any host is changed."""
    certificates: CertificateSettings = CertificateSettings()
    """Renewal of the control planes' certificates."""
    firewall: FirewallSettings = FirewallSettings()
    """The hosts' firewall."""
    upgrade: UpgradeSettings = UpgradeSettings()
    """How a Kubernetes upgrade rolls."""
    etcd: EtcdSettings = EtcdSettings()
    """etcd, the cluster's store: its backups."""

    @field_validator("control_plane_entries")
    @classmethod
    def _at_least_one(cls, hosts: list[NodeHost]) -> list[NodeHost]:
        if not any(host.decommission is None for host in hosts):
            raise ValueError("needs at least one control plane that is not decommissioned")
        return hosts

    @model_validator(mode="after")
    def _cross_checks(self) -> "ClusterConfig":
        _check_unique("name", self.all_hosts_with_keys(), lambda host: host.name)
        _check_unique("address", self.all_hosts_with_keys(), lambda host: host.ip)
        for key, host in self.all_hosts_with_keys():
            if self.load_balancer.vip is not None and host.address == self.load_balancer.vip:
                raise ConfigKeyError("loadBalancer.vip", f"{self.load_balancer.vip} is also the address of {key}")
        self._check_addresses()
        self._check_subnets()
        self._check_interfaces()
        self._check_node_networks()
        self._check_restore()
        self._check_ports_beside_the_nodes()
        names = {host.name for _, host in self.all_hosts_with_keys()}
        for name in self.ssh.host_keys:
            if name not in names:
                raise ConfigKeyError(f"ssh.hostKeys.{name}", "names no host of loadBalancer.hosts, controlPlanes or "
                                     "workers")
        return self

    def _check_interfaces(self) -> None:
        """A host's `interface` only where that host holds the VIP."""
        mode = self.load_balancer.mode
        vip_holders = {LoadBalancerMode.KEEPALIVED_HAPROXY: "loadBalancer.hosts",
                       LoadBalancerMode.STATIC_PODS: "controlPlanes",
                       LoadBalancerMode.KUBE_VIP: "controlPlanes"}.get(mode)
        for key, host in self.all_hosts_with_keys():
            if host.interface is not None and not key.startswith(f"{vip_holders}["):
                raise ConfigKeyError(f"{key}.interface", f"is not used: with loadBalancer.mode {mode.value} "
                                     + (f"only {vip_holders} hold the VIP" if vip_holders else "no host holds a VIP"))

    def _check_ports_beside_the_nodes(self) -> None:
        """A proxy on the nodes (static-pods, local-nginx) keeps off the pod network's health port
        and kube-proxy's NodePort range there (the node components' own ports: LoadBalancerSettings)."""
        settings = self.load_balancer
        if settings.mode not in _ON_CONTROL_PLANES:
            return
        healthz = {NetworkPlugin.FLANNEL: FLANNEL_HEALTHZ_PORT, NetworkPlugin.CALICO: CALICO_HEALTHZ_PORT}.get(
            self.network.plugin)
        for key, port in {"port": settings.listen_port, "healthPort": settings.health_port,
                          "statsPort": settings.stats_port}.items():
            if port == healthz:
                raise ConfigKeyError(f"loadBalancer.{key}", f"{port} is {self.network.plugin.value}'s health endpoint "
                                     f"on every node (network.plugin); pick another (e.g. {_DEFAULT_PORT})")
            if port in NODE_PORT_RANGE:
                raise ConfigKeyError(f"loadBalancer.{key}", f"{port} is in kube-proxy's NodePort range "
                                     f"{NODE_PORT_RANGE.start}-{NODE_PORT_RANGE.stop - 1}, which a Service would take "
                                     f"over on the nodes; pick another (e.g. {_DEFAULT_PORT})")

    def _check_restore(self) -> None:
        restore = self.etcd.restore
        if restore is None:
            return
        if restore.on not in {host.name for host in self.control_planes}:
            raise ConfigKeyError("etcd.restore.on", f"{restore.on!r} is not a control plane of the cluster that is not "
                                 "decommissioned; name the control plane that holds the backup")
        # Only the restored control plane is a member at first: the lead's join runs through it,
        # or it is the lead (whose cluster-side steps every other node's join needs).
        first_two = [host.name for host in self.control_planes[:2]]
        if restore.on not in first_two:
            raise ConfigKeyError("etcd.restore.on", f"must be the lead control plane ({first_two[0]}: the first "
                                 f"by name that is not decommissioned) or the next one ({first_two[-1]}), "
                                 f"not {restore.on!r}")
        if restore.from_copy_host and self.etcd.backup.copy_to is None:
            raise ConfigKeyError("etcd.restore.fromCopyHost", "needs etcd.backup.copyTo, the host to fetch the "
                                 "backup from")
        if self.etcd.backup.encryption_key is None and not self.etcd.backup.enabled:
            raise ConfigKeyError("etcd.restore", "needs the backup key: keep etcd.backup.enabled (its generated key "
                                 "is in the stack's state) or set etcd.backup.encryptionKey")

    def _check_node_networks(self) -> None:
        networks = self.firewall.node_networks
        if not networks:
            return
        for key, host in self.all_hosts_with_keys():
            if not key.startswith("loadBalancer.") and not any(host.address in network for network in networks):
                raise ConfigKeyError("firewall.nodeNetworks", f"{', '.join(map(str, networks))} does not contain "
                                     f"{key} ({host.ip}); the firewall would shut that node out")

    def _check_addresses(self) -> None:
        """Every host address and the VIP: a unicast address of the cluster's family."""
        family = self.kubernetes.service_subnet.version
        keyed: list[tuple[str, ipaddress.IPv4Address | ipaddress.IPv6Address]] = [
            (f"{key}.address", host.address) for key, host in self.all_hosts_with_keys()]
        if self.load_balancer.vip is not None:
            keyed.append(("loadBalancer.vip", self.load_balancer.vip))
        if self.load_balancer.endpoint is not None:
            endpoint_host = parse_endpoint(self.load_balancer.endpoint)[0]
            if not isinstance(endpoint_host, str):
                keyed.append(("loadBalancer.endpoint", endpoint_host))
        for key, address in keyed:
            problem = _address_problem(address)
            if problem:
                raise ConfigKeyError(key, f"{address} {problem}")
            if address.version != family:
                raise ConfigKeyError(key, f"{address} is IPv{address.version}, but the cluster is IPv{family} "
                                     f"(kubernetes.serviceSubnet {self.kubernetes.service_subnet}); kubeha builds "
                                     "single-stack clusters, every address of one family")

    def _check_subnet_sizes(self) -> None:
        pods, services = self.kubernetes.pod_subnet, self.kubernetes.service_subnet
        if pods.version != services.version:
            raise ConfigKeyError("kubernetes.podSubnet", f"{pods} is IPv{pods.version} and kubernetes.serviceSubnet "
                                 f"{services} IPv{services.version}; kubeha builds single-stack clusters")
        largest, smallest = _SERVICE_SUBNET_PREFIXES[services.version]
        if services.prefixlen < largest:
            raise ConfigKeyError("kubernetes.serviceSubnet", f"{services} is too large: the apiserver takes at most a "
                                 f"/{largest} for IPv{services.version}")
        if services.prefixlen > smallest:
            raise ConfigKeyError("kubernetes.serviceSubnet", f"{services} is too small: the kubernetes Service takes "
                                 f"its first address and cluster DNS its tenth; use a /{smallest} or larger")
        node_mask = _NODE_CIDR_MASK[pods.version]
        if not 0 < node_mask - pods.prefixlen <= 16:
            raise ConfigKeyError("kubernetes.podSubnet", f"{pods}: each node gets a /{node_mask} of it (the "
                                 "controller manager's default), so it must be a "
                                 f"/{node_mask - 16} to /{node_mask - 1}")
        nodes = len(self.control_planes) + len(self.workers)
        if 2 ** (node_mask - pods.prefixlen) < nodes:
            raise ConfigKeyError("kubernetes.podSubnet", f"{pods} holds {2 ** (node_mask - pods.prefixlen)} node "
                                 f"ranges of /{node_mask}, fewer than the {nodes} nodes")

    def _check_subnets(self) -> None:
        self._check_subnet_sizes()
        pods, services = self.kubernetes.pod_subnet, self.kubernetes.service_subnet
        if pods.overlaps(services):  # one family: _check_subnet_sizes
            raise ConfigKeyError("kubernetes.podSubnet", f"{pods} overlaps kubernetes.serviceSubnet {services}")
        for subnet_key, subnet in (("kubernetes.podSubnet", pods), ("kubernetes.serviceSubnet", services)):
            for host_key, host in self.all_hosts_with_keys():
                if host.address in subnet:
                    raise ConfigKeyError(subnet_key, f"{subnet} contains {host_key} ({host.ip})")
            if self.load_balancer.vip is not None and self.load_balancer.vip in subnet:
                raise ConfigKeyError(subnet_key, f"{subnet} contains loadBalancer.vip ({self.load_balancer.vip})")

    def all_hosts_with_keys(self) -> list[tuple[str, Host]]:
        """Every host with the config key that defines it, for error messages."""
        groups: tuple[tuple[str, list[Any]], ...] = (
            ("loadBalancer.hosts", self.load_balancer.hosts), ("controlPlanes", self.control_plane_entries),
            ("workers", self.worker_entries))
        return [(f"{key}[{index}]", host) for key, hosts in groups for index, host in enumerate(hosts)]

    def live_hosts_with_keys(self) -> list[tuple[str, Host]]:
        """Every host kubeha still connects to (decommissioned entries left out), with its key."""
        return [(key, host) for key, host in self.all_hosts_with_keys()
                if not (isinstance(host, NodeHost) and host.decommission is not None)]

    @property
    def control_planes(self) -> list[NodeHost]:
        """The control planes the cluster keeps (decommissioned entries left out), by name: the
        order of the entries means nothing, so reordering them changes no resource."""
        return sorted((host for host in self.control_plane_entries if host.decommission is None),
                      key=lambda host: host.name)

    @property
    def workers(self) -> list[NodeHost]:
        return sorted((host for host in self.worker_entries if host.decommission is None), key=lambda host: host.name)

    @property
    def decommissioned(self) -> list[NodeHost]:
        return [host for host in (*self.control_plane_entries, *self.worker_entries) if host.decommission is not None]

    @property
    def lead_control_plane(self) -> NodeHost:
        """The control plane whose name sorts first. It initialises a new cluster and runs the
        cluster-side steps (tokens, membership, removals) of every other node. Chosen by name,
        not list position, so reordering controlPlanes changes nothing."""
        return self.control_planes[0]

    def cluster_side_host(self, node: Host) -> NodeHost:
        """Where the cluster-side steps of `node` run: the lead control plane, or for the lead
        itself the next one by name (a node is never removed from the cluster by itself)."""
        others = [host for host in self.control_planes if host.name != node.name]
        return others[0] if others else self.lead_control_plane

    @property
    def control_plane_endpoint(self) -> str:
        """What kubeadm and every node use: VIP:port, or 127.0.0.1:port in local-nginx mode."""
        return self.load_balancer.endpoint_host_port

    @property
    def apiserver_endpoint(self) -> str:
        """What clients off the cluster use. local-nginx has no shared address (kubeadm-ha's
        trade-off), so they get the lead control plane's apiserver: reachable, not HA."""
        if self.load_balancer.mode is LoadBalancerMode.LOCAL_NGINX:
            return f"https://{host_port(self.lead_control_plane.address, APISERVER_PORT)}"
        return f"https://{self.control_plane_endpoint}"


# The apiserver's limits on its service range (largest prefix: 20 bits of addresses), and the
# smallest range holding the kubernetes Service (first address) and cluster DNS (tenth).
_SERVICE_SUBNET_PREFIXES = {4: (12, 28), 6: (108, 124)}
# kube-controller-manager's --node-cidr-mask-size defaults (kubeadm keeps them): each node's pod range.
_NODE_CIDR_MASK = {4: 24, 6: 64}


def _address_problem(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Optional[str]:
    """Why a host or VIP address cannot be one, or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return f"is an IPv4-mapped IPv6 address; write it as {address.ipv4_mapped}"
    for problem, applies in (("is a loopback address", address.is_loopback),
                             ("is the unspecified address", address.is_unspecified),
                             ("is a multicast address", address.is_multicast),
                             ("is a link-local address", address.is_link_local)):
        if applies:
            return f"{problem}; a host needs an address other hosts reach it at"
    return None


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
