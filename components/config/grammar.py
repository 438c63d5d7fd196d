"""The grammars of the values that reach a host, and the port table: what a config value may be,
checked by the model (components/config/model.py) before any host is touched."""
from __future__ import annotations

import ipaddress
import re
from typing import Optional


def check_port(value: Optional[int]) -> Optional[int]:
    if value is not None and not 1 <= value <= 65535:
        raise ValueError(f"must be a port between 1 and 65535 (got {value})")
    return value


# The port every apiserver listens on; the load balancer fronts them on loadBalancer.port.
APISERVER_PORT = 6443


def host_port(address: ipaddress.IPv4Address | ipaddress.IPv6Address | str, port: int) -> str:
    """'10.0.0.1:6443', '[fd00::1]:6443' for IPv6, or 'api.example.org:6443' for a name."""
    return f"[{address}]:{port}" if ":" in str(address) else f"{address}:{port}"


# A DNS name (RFC 1123 labels, at least one letter in the last one, so it is no IPv4 address).
DNS_NAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                      r"[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
ENDPOINT = re.compile(r"^(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]+)):(?P<port>[0-9]{1,5})$")


def parse_endpoint(value: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address | str, int]:
    """`host:port` (a DNS name or an IPv4 address) or `[IPv6]:port`: the host and the port."""
    match = ENDPOINT.match(value)
    if match is None:
        raise ValueError(f"must be host:port, such as api.example.org:6443, 10.0.0.10:6443 or [fd00::10]:6443 "
                         f"(got {value!r})")
    port = int(match["port"])
    if not 1 <= port <= 65535:
        raise ValueError(f"the port must be between 1 and 65535 (got {port})")
    if match["ipv6"] is not None:
        try:
            return ipaddress.IPv6Address(match["ipv6"]), port
        except ValueError:
            raise ValueError(f"{match['ipv6']!r} is no IPv6 address") from None
    try:
        return ipaddress.IPv4Address(match["host"]), port
    except ValueError:
        pass
    if not DNS_NAME.match(match["host"]):
        raise ValueError(f"{match['host']!r} is neither a DNS name nor an IPv4 address")
    return match["host"].lower(), port


# Well-known ports on a control plane (kubeadm-ha's port table); a proxy that runs there must not
# take one of them.
CONTROL_PLANE_PORTS = {APISERVER_PORT: "kube-apiserver", 2379: "etcd client", 2380: "etcd peer",
                       10250: "kubelet", 10257: "kube-controller-manager", 10259: "kube-scheduler"}
# Local ports the node components also take (on 127.0.0.1), which a proxy there must not take either.
NODE_LOCAL_PORTS = {2381: "etcd metrics", 10248: "the kubelet's health endpoint", 10249: "kube-proxy metrics",
                    10256: "kube-proxy's health endpoint"}
TAKEN_ON_CONTROL_PLANES = {**CONTROL_PLANE_PORTS, **NODE_LOCAL_PORTS}
# kube-proxy's NodePort range (the apiserver's default): a node's packets to these ports go to Services.
NODE_PORT_RANGE = range(30000, 32768)
# The pod network's health endpoint on every node (host network). flannel's is not upstream's 8081,
# which is kubeadm-ha's (and kubeha's) load-balancer health port; calico's is upstream's.
FLANNEL_HEALTHZ_PORT = 8475
CALICO_HEALTHZ_PORT = 9099

# Grammars of the strings that reach a host (scripts, configs, manifests): nothing in them can
# close a quote, a heredoc or a YAML scalar, or start a command.
# A Linux interface name (at most 15 bytes, no '/' or whitespace).
INTERFACE_NAME = r"^[A-Za-z0-9_.:-]{1,15}$"
# calico's interface setting is a regular expression over interface names (`interface=eth.*`).
INTERFACE_PATTERN = r"^[A-Za-z0-9_.:*+|()\[\]-]{1,64}$"
# kubeadm's clusterName: a name as in a kubeconfig, letters, digits, '-', '_' and '.'.
CLUSTER_NAME = r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$"
# An http(s) URL: host name, IPv4 or [IPv6] address, optional port and path; user:password@
# only for a proxy (whose validator then refuses it, naming why). Percent-encoding stands in
# for any other character.
_URL_PATH = r"(/[A-Za-z0-9._~%/:+@=-]*)?"
_URL_HOST = r"([A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?"
REPOSITORY_URL = rf"^https?://{_URL_HOST}{_URL_PATH}$"
PROXY_URL = rf"^https?://([A-Za-z0-9._~%-]+(:[A-Za-z0-9._~%-]*)?@)?{_URL_HOST}/?$"


# systemd's OnCalendar grammar, narrowed to what calendar events are written with ("hourly",
# "*-*-* 02:30:00", "Mon..Fri 22:00", "*:0/15"): no `%` (a unit-file specifier), no newline.
ON_CALENDAR = r"^[A-Za-z0-9*][A-Za-z0-9*:/,.~+ -]{0,63}$"
# A POSIX login name (it lands in SSH connections and sudo's checks).
USER_NAME = r"^[a-z_][a-z0-9_-]{0,31}$"
# An absolute path of plain names (no `..`): it lands in a unit file, a shell word, a `find` or a
# static pod's hostPath.
ABSOLUTE_PATH = r"^(/[A-Za-z0-9_][A-Za-z0-9._-]*)+$"
BACKUP_DIRECTORY = ABSOLUTE_PATH
# A Kubernetes volume name (a DNS label).
VOLUME_NAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
# A backup file's path: plain names, ending in the name the backups get.
BACKUP_FILE = r"^(/[A-Za-z0-9_][A-Za-z0-9._-]*)*/kubeha-etcd-[0-9]{8}T[0-9]{6}Z-[a-z0-9-]+\.tar\.enc$"


# What each grammar allows, for the error that names the key.
GRAMMARS = {
    INTERFACE_NAME: "a network interface name such as eth0 (letters, digits, '_', '.', ':' and '-'; at most 15)",
    INTERFACE_PATTERN: "an interface name or a regular expression over names such as eth.* (no spaces or quotes)",
    CLUSTER_NAME: "a name of letters, digits, '_', '.' and '-' (at most 63), such as kubernetes",
    REPOSITORY_URL: "an http(s) URL such as https://pkgs.k8s.io/core:/stable: (no spaces, quotes or '$')",
    PROXY_URL: "an http(s) proxy URL such as http://proxy.example:3128 (no path, spaces, quotes or '$')",
    ON_CALENDAR: "a systemd OnCalendar value such as hourly, *:0/15 or '*-*-* 02:30:00' (no '%' or quotes)",
    USER_NAME: "a login name of lowercase letters, digits, '_' and '-' such as kubeha",
    ABSOLUTE_PATH: "an absolute path of letters, digits, '_', '.' and '-', such as /var/lib/kubeha/etcd-backup",
    VOLUME_NAME: "a volume name of lowercase letters, digits and '-' (at most 63), such as audit-policy",
    BACKUP_FILE: "the absolute path of a kubeha backup file, such as "
                 "/var/lib/kubeha/etcd-backup/kubeha-etcd-20261204T100000Z-cp1.tar.enc",
}


# Image references must pin a version: a tag other than `latest`, or a digest.
IMAGE_REFERENCE = re.compile(
    r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})|@sha256:[0-9a-f]{64})")
REGISTRY_PATH = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*")


# A registry host (name or address, optional port), and a mirror's URL (no credentials in it).
REGISTRY_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:\d{1,5})?")
MIRROR_URL = re.compile(r"https?://[A-Za-z0-9.\[\]:-]+(/[A-Za-z0-9._/-]*)?")


def check_registry_path(value: Optional[str]) -> Optional[str]:
    if value is not None and not REGISTRY_PATH.fullmatch(value):
        raise ValueError(f"must be a registry path such as registry.example:5000/k8s (got {value!r})")
    return value


def check_pinned_image(value: Optional[str]) -> Optional[str]:
    if value is None:
        return value
    match = IMAGE_REFERENCE.fullmatch(value)
    if match is None:
        raise ValueError(f"must be an image reference with a version, e.g. docker.io/library/haproxy:3.0.7 "
                         f"(got {value!r})")
    if match.group("tag") == "latest":
        raise ValueError(f"must pin a version, not `latest` (got {value!r})")
    return value
