"""A strict checker for kubeadm configuration files (kubeadm.k8s.io v1beta3 and v1beta4).

kubeadm itself cannot be installed here, so this does what `kubeadm config validate` does for
the parts we use: every document's apiVersion/kind must be known, every field must exist in that
API version (unknown fields are errors, as with kubeadm's strict decoding), values must have the
right type and format, and v1beta4 is required from Kubernetes 1.31 on. Reused by the lab's
kubeadm stand-in, so keep it free of test-framework imports.

Usage: python -m tests.kubeadm_config_check FILE [KUBERNETES_VERSION]
"""
from __future__ import annotations

import ipaddress
import re
import sys
from dataclasses import dataclass
from typing import Any, Callable, Union

import yaml

Validator = Callable[[Any], Union[str, None]]  # returns an error message or None
Schema = Union[dict[str, "Schema"], "ListOf", "MapOf", Validator]


@dataclass(frozen=True)
class ListOf:
    item: Schema


@dataclass(frozen=True)
class MapOf:
    value: Schema


class KubeadmConfigError(ValueError):
    pass


def _typed(kind: type, what: str) -> Validator:
    def check(value: Any) -> str | None:
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        return None if ok else f"must be {what} (got {value!r})"
    return check


def _matching(pattern: str, what: str) -> Validator:
    def check(value: Any) -> str | None:
        if isinstance(value, str) and re.fullmatch(pattern, value):
            return None
        return f"must be {what} (got {value!r})"
    return check


def _port(value: Any) -> str | None:
    return None if isinstance(value, int) and 1 <= value <= 65535 else f"must be a port 1-65535 (got {value!r})"


def _ip(value: Any) -> str | None:
    try:
        ipaddress.ip_address(value)
        return None
    except (ValueError, TypeError):
        return f"must be an IP address (got {value!r})"


def _cidrs(value: Any) -> str | None:
    try:
        for part in str(value).split(","):
            ipaddress.ip_network(part.strip())
        return None
    except ValueError:
        return f"must be a CIDR or comma-separated CIDRs (got {value!r})"


def _endpoint(value: Any) -> str | None:
    match = re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(:(\d+))?", str(value))
    if not match or (match.group(3) and not 1 <= int(match.group(3)) <= 65535):
        return f"must be host[:port] (got {value!r})"
    return None


def _one_of(*allowed: str) -> Validator:
    def check(value: Any) -> str | None:
        return None if value in allowed else f"must be one of {', '.join(allowed)} (got {value!r})"
    return check


STRING = _typed(str, "a string")
BOOL = _typed(bool, "true or false")
INT = _typed(int, "an integer")
DURATION = _matching(r"(\d+(\.\d+)?(ns|us|ms|s|m|h))+", "a duration such as 4m0s")
TOKEN = _matching(r"[a-z0-9]{6}\.[a-z0-9]{16}", "a bootstrap token [a-z0-9]{6}.[a-z0-9]{16}")
CA_HASH = _matching(r"sha256:[0-9a-f]{64}", "sha256:<64 hex digits>")
CERT_KEY = _matching(r"[0-9a-f]{64}", "a certificate key of 64 hex digits")
K8S_VERSION = _matching(r"v\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?", "a version such as v1.31.4")
SOCKET = _matching(r"unix:///\S+", "a unix:/// socket URL")
DNS_NAME = _matching(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", "a DNS-1123 name")


def _schemas(v1beta4: bool) -> dict[str, dict[str, Schema]]:
    """Field schemas per kind. The two API versions differ in the places marked."""
    args: Schema = ListOf({"name": STRING, "value": STRING}) if v1beta4 else MapOf(STRING)
    env = ListOf({"name": STRING, "value": STRING})
    volumes = ListOf({"name": STRING, "hostPath": STRING, "mountPath": STRING, "readOnly": BOOL,
                      "pathType": STRING})
    control_plane_component = {"extraArgs": args, "extraVolumes": volumes}
    if v1beta4:
        control_plane_component["extraEnvs"] = env
    node_registration: dict[str, Schema] = {
        "name": DNS_NAME, "criSocket": SOCKET, "ignorePreflightErrors": ListOf(STRING),
        "taints": ListOf({"key": STRING, "value": STRING, "effect": _one_of("NoSchedule", "PreferNoSchedule",
                                                                             "NoExecute"), "timeAdded": STRING}),
        "kubeletExtraArgs": args, "imagePullPolicy": _one_of("Always", "IfNotPresent", "Never")}
    if v1beta4:
        node_registration["imagePullSerial"] = BOOL
    local_endpoint = {"advertiseAddress": _ip, "bindPort": _port}
    bootstrap_token = {"token": TOKEN, "description": STRING, "ttl": DURATION, "expires": STRING,
                       "usages": ListOf(STRING), "groups": ListOf(STRING)}
    timeouts = {name: DURATION for name in ("controlPlaneComponentHealthCheck", "kubeletHealthCheck",
                                            "kubernetesAPICall", "etcdAPICall", "tlsBootstrap", "discovery",
                                            "upgradeManifests")}
    common = {"apiVersion": STRING, "kind": STRING}

    init: dict[str, Schema] = {**common, "bootstrapTokens": ListOf(bootstrap_token),
                               "nodeRegistration": node_registration, "localAPIEndpoint": local_endpoint,
                               "certificateKey": CERT_KEY, "skipPhases": ListOf(STRING),
                               "patches": {"directory": STRING}}
    local_etcd: dict[str, Schema] = {"imageRepository": STRING, "imageTag": STRING, "dataDir": STRING,
                                     "extraArgs": args, "serverCertSANs": ListOf(STRING),
                                     "peerCertSANs": ListOf(STRING)}
    api_server: dict[str, Schema] = {**control_plane_component, "certSANs": ListOf(STRING)}
    cluster: dict[str, Schema] = {
        **common,
        "etcd": {"local": local_etcd, "external": {"endpoints": ListOf(STRING), "caFile": STRING,
                                                   "certFile": STRING, "keyFile": STRING}},
        "networking": {"serviceSubnet": _cidrs, "podSubnet": _cidrs, "dnsDomain": STRING},
        "kubernetesVersion": K8S_VERSION, "controlPlaneEndpoint": _endpoint, "apiServer": api_server,
        "controllerManager": control_plane_component, "scheduler": control_plane_component,
        "dns": {"imageRepository": STRING, "imageTag": STRING}, "certificatesDir": STRING,
        "imageRepository": STRING, "featureGates": MapOf(BOOL), "clusterName": STRING,
    }
    discovery: dict[str, Schema] = {
        "bootstrapToken": {"token": TOKEN, "apiServerEndpoint": _endpoint, "caCertHashes": ListOf(CA_HASH),
                           "unsafeSkipCAVerification": BOOL},
        "file": {"kubeConfigPath": STRING}, "tlsBootstrapToken": TOKEN}
    join: dict[str, Schema] = {**common, "nodeRegistration": node_registration, "caCertPath": STRING,
                               "discovery": discovery,
                               "controlPlane": {"localAPIEndpoint": local_endpoint, "certificateKey": CERT_KEY},
                               "skipPhases": ListOf(STRING), "patches": {"directory": STRING}}
    if v1beta4:
        for schema in (init, join):
            schema["dryRun"] = BOOL
            schema["timeouts"] = timeouts
        local_etcd["extraEnvs"] = env
        cluster["dns"] = {"imageRepository": STRING, "imageTag": STRING, "disabled": BOOL}
        cluster["proxy"] = {"disabled": BOOL}
        cluster["encryptionAlgorithm"] = _one_of("RSA-2048", "RSA-3072", "RSA-4096", "ECDSA-P256", "ECDSA-P384")
        cluster["certificateValidityPeriod"] = DURATION
        cluster["caCertificateValidityPeriod"] = DURATION
    else:
        api_server["timeoutForControlPlane"] = DURATION
        discovery["timeout"] = DURATION
    return {"InitConfiguration": init, "ClusterConfiguration": cluster, "JoinConfiguration": join}


# The KubeletConfiguration fields kubeha may set; anything else is flagged so it gets reviewed.
KUBELET_SCHEMA: dict[str, Schema] = {
    "apiVersion": STRING, "kind": STRING, "cgroupDriver": _one_of("systemd", "cgroupfs"),
    "failSwapOn": BOOL, "serverTLSBootstrap": BOOL, "rotateCertificates": BOOL,
    "containerRuntimeEndpoint": SOCKET, "clusterDNS": ListOf(_ip), "clusterDomain": STRING,
}


def _check(value: Any, schema: Schema, path: str, errors: list[str]) -> None:
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            errors.append(f"{path}: must be a mapping (got {value!r})")
            return
        for key, item in value.items():
            if key not in schema:
                errors.append(f"{path}.{key}: unknown field (strict decoding)")
            else:
                _check(item, schema[key], f"{path}.{key}", errors)
    elif isinstance(schema, ListOf):
        if not isinstance(value, list):
            errors.append(f"{path}: must be a list (got {value!r})")
            return
        for index, item in enumerate(value):
            _check(item, schema.item, f"{path}[{index}]", errors)
    elif isinstance(schema, MapOf):
        if not isinstance(value, dict):
            errors.append(f"{path}: must be a mapping (got {value!r})")
            return
        for key, item in value.items():
            _check(item, schema.value, f"{path}.{key}", errors)
    else:
        message = schema(value)
        if message:
            errors.append(f"{path}: {message}")


def _expected_api_version(kubernetes_version: str) -> str:
    major, minor = (int(part) for part in kubernetes_version.lstrip("v").split(".")[:2])
    return "kubeadm.k8s.io/v1beta4" if (major, minor) >= (1, 31) else "kubeadm.k8s.io/v1beta3"


def _semantic_checks(document: dict[str, Any], path: str, errors: list[str]) -> None:
    """Rules kubeadm enforces beyond field types."""
    kind = document.get("kind")
    if kind == "JoinConfiguration":
        discovery = document.get("discovery") or {}
        token = discovery.get("bootstrapToken")
        if not token and not discovery.get("file"):
            errors.append(f"{path}.discovery: needs bootstrapToken or file")
        if token:
            if not token.get("apiServerEndpoint"):
                errors.append(f"{path}.discovery.bootstrapToken.apiServerEndpoint: required")
            if not token.get("caCertHashes") and not token.get("unsafeSkipCAVerification"):
                errors.append(f"{path}.discovery.bootstrapToken: caCertHashes or unsafeSkipCAVerification required")
        control_plane = document.get("controlPlane")
        if control_plane is not None and not control_plane.get("certificateKey"):
            errors.append(f"{path}.controlPlane.certificateKey: required to fetch the uploaded certificates")
    if kind == "ClusterConfiguration":
        networking = document.get("networking") or {}
        pods, services = networking.get("podSubnet"), networking.get("serviceSubnet")
        if pods and services and ipaddress.ip_network(pods).overlaps(ipaddress.ip_network(services)):
            errors.append(f"{path}.networking: podSubnet and serviceSubnet overlap")


def check_kubeadm_config(text: str, kubernetes_version: str) -> list[dict[str, Any]]:
    """Validate a kubeadm config stream; return its documents or raise KubeadmConfigError."""
    expected_api = _expected_api_version(kubernetes_version)
    schemas = _schemas(v1beta4=expected_api.endswith("v1beta4"))
    documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    errors: list[str] = []
    if not documents:
        errors.append("no documents")
    kinds = []
    for index, document in enumerate(documents):
        path = f"document[{index}]"
        if not isinstance(document, dict):
            errors.append(f"{path}: must be a mapping")
            continue
        kind, api_version = document.get("kind"), document.get("apiVersion")
        kinds.append(kind)
        path = f"{path}({kind})"
        if kind == "KubeletConfiguration":
            if api_version != "kubelet.config.k8s.io/v1beta1":
                errors.append(f"{path}.apiVersion: must be kubelet.config.k8s.io/v1beta1 (got {api_version!r})")
            _check(document, KUBELET_SCHEMA, path, errors)
            continue
        if kind not in schemas:
            errors.append(f"{path}.kind: unknown kind {kind!r}")
            continue
        if api_version != expected_api:
            errors.append(f"{path}.apiVersion: Kubernetes {kubernetes_version} needs {expected_api} "
                          f"(got {api_version!r})")
        _check(document, schemas[kind], path, errors)
        _semantic_checks(document, path, errors)
    if len(kinds) != len(set(kinds)):
        errors.append(f"duplicate kinds: {kinds}")
    if "JoinConfiguration" in kinds and "InitConfiguration" in kinds:
        errors.append("InitConfiguration and JoinConfiguration cannot be mixed")
    if errors:
        raise KubeadmConfigError("; ".join(errors))
    return documents


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    version = argv[2] if len(argv) == 3 else "1.31.0"
    try:
        with open(argv[1], encoding="utf-8") as config_file:
            check_kubeadm_config(config_file.read(), version)
    except KubeadmConfigError as error:
        print(f"{argv[1]}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
