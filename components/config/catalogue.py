"""The catalogue: the versions and images kubeha pins by default, and where images come from
(kubernetes.imageRepository, a mirror keeping the upstream paths)."""
from __future__ import annotations

from typing import Optional

# The Kubernetes release a new cluster gets (kubernetes.version unset).
KUBERNETES_VERSION = "1.34.4"


def on_mirror(image: str, image_repository: Optional[str]) -> str:
    """`image` pulled from `image_repository` (a mirror keeping the upstream paths), if one is set."""
    if image_repository is None:
        return image
    return f"{image_repository.rstrip('/')}/{image.split('/', 1)[1]}"


# The pause (sandbox) image each kubeadm release expects (`kubeadm config images list`); containerd
# must run the same one, or the kubelet and containerd disagree about the sandbox.
PAUSE_VERSIONS = {(1, 28): "3.9", (1, 29): "3.9", (1, 30): "3.9", (1, 31): "3.10", (1, 32): "3.10",
                  (1, 33): "3.10", (1, 34): "3.10.1"}
DEFAULT_IMAGE_REPOSITORY = "registry.k8s.io"


# The load balancers' images: each is the image its project publishes. The pods name their command,
# so an image only has to provide the program on PATH (and, for keepalived, bash and curl for the
# health check).
LOAD_BALANCER_IMAGES: dict[str, str] = {
    "haproxy": "docker.io/library/haproxy:3.0.7",
    "keepalived": "docker.io/osixia/keepalived:2.0.20",
    "kube_vip": "ghcr.io/kube-vip/kube-vip:v1.2.3",
}


# The pod networks' images, pinned and tested together: the flannel release and the CNI plugin its
# DaemonSet installs on every node; calico's manifest install, one release.
NETWORK_IMAGES: dict[str, str] = {
    "flannel": "ghcr.io/flannel-io/flannel:v0.28.10",
    "flannel_cni_plugin": "ghcr.io/flannel-io/flannel-cni-plugin:v1.9.1-flannel1",
    "calico_node": "quay.io/calico/node:v3.30.3",
    "calico_cni": "quay.io/calico/cni:v3.30.3",
    "calico_kube_controllers": "quay.io/calico/kube-controllers:v3.30.3",
}
