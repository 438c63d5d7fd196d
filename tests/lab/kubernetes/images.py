#!/usr/bin/env python3
"""The container images the lab's clusters run, made from the lab's own builds, without a registry.

For every image `kubeadm config images list` names for the lab's version, one single-layer
docker-archive tar (manifest.json, config, layer) holding the binary built by build.sh, tagged
exactly as kubeadm lists it, so containerd (`ctr images import`) knows it by that name and
kubeadm's preflight finds it present. kube-proxy also gets Debian's iptables (nft) userspace from
the lab host image, which it calls.

The load-balancer modes' static pods get images under the exact names the product pins
(LoadBalancerImages.DEFAULTS in components/config.py): kube-vip built from its source snapshot,
haproxy and keepalived from Debian's binaries in the lab host image (with bash and curl, which
the keepalived health check runs). They are NOT the published images: same names and the paths
the product relies on, Debian's builds inside (README, "Real Kubernetes in the lab").
Deterministic: the same inputs give the same image IDs.

usage: images.py KUBE_DIR HOST_IMAGE_ROOT   (writes KUBE_DIR/images/*.tar)
"""
from __future__ import annotations

import ast
import hashlib
import io
import json
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

PATH_ENV = "PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin"
PRODUCT_CONFIG = Path(__file__).resolve().parents[3] / "components" / "config.py"
IPTABLES_TOOLS = ("iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore")


@dataclass
class Layer:
    """One image layer under construction: a tar of files, directories and links, mtime 0."""

    buffer: io.BytesIO = field(default_factory=io.BytesIO)
    written: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.tar = tarfile.open(fileobj=self.buffer, mode="w", format=tarfile.GNU_FORMAT)

    def _entry(self, path: str, kind: bytes, mode: int) -> tarfile.TarInfo | None:
        name = str(PurePosixPath(path)).lstrip("/")
        if name in self.written:
            return None
        self.directory(str(PurePosixPath(name).parent))
        self.written.add(name)
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = kind, mode, 0
        return info

    def directory(self, path: str) -> None:
        if path in ("", ".", "/"):
            return
        info = self._entry(path, tarfile.DIRTYPE, 0o755)
        if info is not None:
            self.tar.addfile(info)

    def file(self, source: Path, path: str, mode: int = 0o755) -> None:
        self.data(path, source.read_bytes(), mode)

    def data(self, path: str, data: bytes, mode: int = 0o644) -> None:
        info = self._entry(path, tarfile.REGTYPE, mode)
        if info is not None:
            info.size = len(data)
            self.tar.addfile(info, io.BytesIO(data))

    def symlink(self, path: str, target: str) -> None:
        info = self._entry(path, tarfile.SYMTYPE, 0o777)
        if info is not None:
            info.linkname = target
            self.tar.addfile(info)

    def bytes(self) -> bytes:
        self.tar.close()
        return self.buffer.getvalue()


@dataclass(frozen=True)
class ImageSpec:
    reference: str  # exactly as kubeadm lists it, or as the product pins it
    entrypoint: str
    user: str = "0"
    stop_signal: str = "SIGTERM"


def write_archive(out: Path, spec: ImageSpec, layer: Layer) -> None:
    layer_bytes = layer.bytes()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
        "config": {"Entrypoint": [spec.entrypoint], "Env": [PATH_ENV], "User": spec.user, "WorkingDir": "/",
                   "StopSignal": spec.stop_signal},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "kubeha lab images.py"}],
    }, sort_keys=True).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    layer_name = diff_id.removeprefix("sha256:") + "/layer.tar"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [spec.reference], "Layers": [layer_name]}]).encode()
    partial = out.with_suffix(".partial")
    with tarfile.open(partial, "w", format=tarfile.GNU_FORMAT) as archive:
        for name, data in ((config_name, config), (layer_name, layer_bytes), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            archive.addfile(info, io.BytesIO(data))
    partial.rename(out)
    print(f"{out.name}: {spec.reference} ({len(layer_bytes) // 1024} KiB layer)")


def base_layer() -> Layer:
    layer = Layer()
    for directory in ("tmp", "etc", "run", "var/run", "usr/local/bin"):
        layer.directory(directory)
    return layer


def resolve_in(root: Path, path: str) -> Path:
    """`path` inside `root` with every symlink followed inside `root` (absolute links included)."""
    resolved = root
    for part in PurePosixPath(path).parts[1:]:
        candidate = resolved / part
        for _ in range(40):
            if not candidate.is_symlink():
                break
            target = candidate.readlink()
            candidate = resolve_in(root, str(target)) if target.is_absolute() else candidate.parent / target
        resolved = candidate
    return resolved


def add_debian_binaries(layer: Layer, host_root: Path, binaries: set[str]) -> None:
    """Debian's `binaries` (paths in the host image) with every library they load, at the same paths."""
    needed = set(binaries)
    for binary in sorted(binaries):
        ldd = subprocess.run(["chroot", str(host_root), "ldd", binary], capture_output=True, text=True, check=True)
        for line in ldd.stdout.splitlines():
            words = line.split()
            library = words[2] if "=>" in words and len(words) > 2 else words[0]
            if library.startswith("/"):
                needed.add(library)
    for path in sorted(needed):
        layer.file(resolve_in(host_root, path), path, 0o755)


def add_iptables(layer: Layer, host_root: Path) -> None:
    """Debian's xtables-nft-multi with every library it and its extensions load, from the host image."""
    extensions = sorted((host_root / "usr/lib/x86_64-linux-gnu/xtables").glob("*.so"))
    add_debian_binaries(layer, host_root,
                        {"/usr/sbin/xtables-nft-multi", *(f"/{path.relative_to(host_root)}" for path in extensions)})
    for tool in IPTABLES_TOOLS:
        layer.symlink(f"/usr/sbin/{tool}", "xtables-nft-multi")
    ethertypes = host_root / "etc/ethertypes"
    if ethertypes.exists():
        layer.file(ethertypes, "/etc/ethertypes", 0o644)


def image_for(reference: str, bin_dir: Path, host_root: Path) -> tuple[ImageSpec, Layer]:
    name = reference.rsplit("/", 1)[1].split(":")[0]
    layer = base_layer()
    if name == "pause":
        layer.file(bin_dir / "pause", "/pause")
        return ImageSpec(reference, "/pause", user="65535"), layer
    if name == "coredns":
        layer.file(bin_dir / "coredns", "/coredns")
        return ImageSpec(reference, "/coredns"), layer
    if name == "etcd":  # the official image carries etcdctl too; kubeha runs it in the pod
        layer.directory("var/lib/etcd")
        layer.file(bin_dir / "etcdctl", "/usr/local/bin/etcdctl")
    if name == "kube-proxy":
        add_iptables(layer, host_root)
    layer.file(bin_dir / name, f"/usr/local/bin/{name}")
    return ImageSpec(reference, f"/usr/local/bin/{name}"), layer


def pinned_load_balancer_images() -> dict[str, str]:
    """LoadBalancerImages.DEFAULTS of the product, read from its source (no product imports here)."""
    module = ast.parse(PRODUCT_CONFIG.read_text())
    for node in ast.walk(module):
        if isinstance(node, ast.ClassDef) and node.name == "LoadBalancerImages":
            for statement in node.body:
                if isinstance(statement, ast.AnnAssign) and getattr(statement.target, "id", "") == "DEFAULTS":
                    return ast.literal_eval(statement.value)
    raise SystemExit(f"{PRODUCT_CONFIG}: no LoadBalancerImages.DEFAULTS")


def load_balancer_image(name: str, reference: str, bin_dir: Path, host_root: Path) -> tuple[ImageSpec, Layer]:
    layer = base_layer()
    if name == "kube_vip":  # like the published image: the static binary at /kube-vip
        layer.file(bin_dir / "kube-vip", "/kube-vip")
        return ImageSpec(reference, "/kube-vip"), layer
    # Accounts the daemons look up: haproxy runs as uid 99 as in the published image, and
    # keepalived resolves its script_user (root).
    layer.data("/etc/passwd", b"root:x:0:0:root:/root:/bin/bash\nhaproxy:x:99:99::/var/lib/haproxy:/usr/sbin/nologin\n")
    layer.data("/etc/group", b"root:x:0:\nhaproxy:x:99:\n")
    if name == "haproxy":
        add_debian_binaries(layer, host_root, {"/usr/sbin/haproxy"})
        layer.directory("usr/local/etc/haproxy")
        return ImageSpec(reference, "/usr/sbin/haproxy", user="99:99", stop_signal="SIGUSR1"), layer
    if name == "keepalived":
        add_debian_binaries(layer, host_root, {"/usr/sbin/keepalived", "/usr/bin/bash", "/usr/bin/curl", "/usr/bin/env"})
        layer.symlink("/bin/bash", "../usr/bin/bash")
        layer.directory("usr/local/etc/keepalived")
        return ImageSpec(reference, "/usr/sbin/keepalived"), layer
    raise SystemExit(f"no lab image for the load balancer's {name!r} image")


def main(kube_dir: Path, host_root: Path) -> None:
    bin_dir, out_dir = kube_dir / "bin", kube_dir / "images"
    version = (bin_dir / "kubeadm.version").read_text().strip()
    listed = subprocess.run([str(bin_dir / "kubeadm"), "config", "images", "list", "--kubernetes-version", version],
                            capture_output=True, text=True, check=True).stdout.split()
    out_dir.mkdir(parents=True, exist_ok=True)
    for reference in listed:
        spec, layer = image_for(reference, bin_dir, host_root)
        write_archive(out_dir / (reference.rsplit("/", 1)[1].split(":")[0] + ".tar"), spec, layer)
    for name, reference in sorted(pinned_load_balancer_images().items()):
        spec, layer = load_balancer_image(name, reference, bin_dir, host_root)
        write_archive(out_dir / f"lb-{name.replace('_', '-')}.tar", spec, layer)
        listed.append(reference)
    (out_dir / "list").write_text("\n".join(listed) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
