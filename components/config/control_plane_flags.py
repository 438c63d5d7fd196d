"""The control plane's own flags (`kubernetes.apiServer`, `.controllerManager`, `.scheduler`
`extraArgs`), checked before any host is touched.

kubeadm passes extraArgs to the component as `--name=value` in its static pod manifest. A
misspelt flag would only show on the host: the component refuses to start and `kubeadm init`
times out. component_flags.json holds every flag each component's binary lists (`--help` of the
release's own builds; tools/component-flags.sh writes it), so a name it does not hold is refused
at preview, with the nearest ones. Flags that kubeadm or kubeha set from the cluster's own
settings (its certificates, its etcd, its subnets, its endpoint) are refused too, naming what to
set instead: given twice, one would silently win.
"""
from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any, Optional

_CATALOGUE: dict[str, Any] = json.loads(Path(__file__).with_name("component_flags.json").read_text())
FLAGS_RELEASE: str = _CATALOGUE["release"]

# Config key under `kubernetes` -> the component's binary.
COMPONENTS = {"apiServer": "kube-apiserver", "controllerManager": "kube-controller-manager",
              "scheduler": "kube-scheduler"}

_CERTIFICATE = "is one of kubeadm's certificate files, which `pulumi up` renews in place"
_KUBECONFIG = "is the component's kubeconfig that kubeadm writes (and `pulumi up` renews)"
_EXITS = "makes the component print and exit instead of serving"
_EVERY_COMPONENT = {"help": _EXITS, "version": _EXITS}
_SET_BY_KUBEHA: dict[str, dict[str, str]] = {
    "apiServer": {
        **_EVERY_COMPONENT,
        "advertise-address": "is each control plane's own address (controlPlanes[].address)",
        "secure-port": "is the apiserver's 6443, in kubeha's port table, load balancers and firewall",
        "service-cluster-ip-range": "is set from kubernetes.serviceSubnet; set that",
        "etcd-servers": "is the control plane's own etcd member, which kubeadm connects it to",
        "etcd-cafile": _CERTIFICATE, "etcd-certfile": _CERTIFICATE, "etcd-keyfile": _CERTIFICATE,
        "tls-cert-file": _CERTIFICATE, "tls-private-key-file": _CERTIFICATE, "client-ca-file": _CERTIFICATE,
        "kubelet-client-certificate": _CERTIFICATE, "kubelet-client-key": _CERTIFICATE,
        "proxy-client-cert-file": _CERTIFICATE, "proxy-client-key-file": _CERTIFICATE,
        "requestheader-client-ca-file": _CERTIFICATE, "service-account-key-file": _CERTIFICATE,
        "service-account-signing-key-file": _CERTIFICATE,
        "service-account-issuer": "is the issuer of every service-account token the cluster has signed; "
                                  "another one would invalidate them all",
        "enable-bootstrap-token-auth": "is how kubeadm join authenticates new nodes",
        "allow-privileged": "must stay true: the control plane's own static pods are privileged",
        "authorization-mode": "is kubeadm's Node,RBAC, which the nodes and kubeadm's own RBAC rules rely on",
    },
    "controllerManager": {
        **_EVERY_COMPONENT,
        "kubeconfig": _KUBECONFIG,
        "cluster-cidr": "is set from kubernetes.podSubnet; set that",
        "allocate-node-cidrs": "is set by kubeadm with kubernetes.podSubnet (each node's pod CIDR)",
        "service-cluster-ip-range": "is set from kubernetes.serviceSubnet; set that",
        "cluster-name": "is set from kubernetes.clusterName; set that",
        "authentication-kubeconfig": _KUBECONFIG, "authorization-kubeconfig": _KUBECONFIG,
        "cluster-signing-cert-file": _CERTIFICATE, "cluster-signing-key-file": _CERTIFICATE,
        "root-ca-file": _CERTIFICATE, "service-account-private-key-file": _CERTIFICATE,
        "client-ca-file": _CERTIFICATE, "requestheader-client-ca-file": _CERTIFICATE,
        "controllers": "is kubeadm's list, with the bootstrap-token controllers kubeadm join needs",
    },
    "scheduler": {
        **_EVERY_COMPONENT,
        "kubeconfig": _KUBECONFIG,
        "authentication-kubeconfig": _KUBECONFIG, "authorization-kubeconfig": _KUBECONFIG,
    },
}
# kubeadm's own volumes in these static pods: another volume of the name, or mounted over one of
# these paths (or a folder holding one), would hide the certificates or kubeconfigs.
KUBEADM_VOLUMES = frozenset({"k8s-certs", "ca-certs", "etc-ca-certificates", "etc-pki", "usr-share-ca-certificates",
                             "usr-local-share-ca-certificates", "kubeconfig", "flexvolume-dir"})
KUBEADM_MOUNT_PATHS = ("/etc/kubernetes/pki", "/etc/ssl/certs", "/etc/ca-certificates", "/etc/pki",
                       "/usr/share/ca-certificates", "/usr/local/share/ca-certificates",
                       "/etc/kubernetes/controller-manager.conf", "/etc/kubernetes/scheduler.conf",
                       "/usr/libexec/kubernetes/kubelet-plugins/volume/exec")
MAX_VALUE_LENGTH = 4096


def flag_problem(key: str, name: str) -> Optional[str]:
    """Why `name` cannot be given in kubernetes.<key>.extraArgs (None: it can)."""
    if name in _SET_BY_KUBEHA[key]:
        return _SET_BY_KUBEHA[key][name]
    flags: list[str] = _CATALOGUE["flags"][COMPONENTS[key]]
    if name not in flags:
        near = difflib.get_close_matches(name, flags, n=3)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        return f"is not a flag of {COMPONENTS[key]} {FLAGS_RELEASE} (give it without the leading --){hint}"
    return None


def value_problem(value: str) -> Optional[str]:
    """Why `value` cannot be a flag's value: it lands in a YAML string, then one argument."""
    if len(value) > MAX_VALUE_LENGTH:
        return f"is longer than {MAX_VALUE_LENGTH} characters"
    if any(ord(character) < 0x20 or ord(character) == 0x7F for character in value):
        return "holds a control character (a newline, a tab); a flag's value is one line"
    return None


def mount_path_problem(path: str) -> Optional[str]:
    """Why a volume cannot be mounted at `path` in a control plane pod (None: it can)."""
    for taken in KUBEADM_MOUNT_PATHS:
        if path == taken or taken.startswith(path.rstrip("/") + "/"):
            return f"would cover kubeadm's own mount {taken}"
    return None
