#!/usr/bin/env python3
"""The container images the lab's clusters run, made from the lab's own builds, without a registry.

For every image `kubeadm config images list` names for the lab's version, one single-layer
docker-archive tar (manifest.json, config, layer) holding the binary built by build.sh, tagged
exactly as kubeadm lists it, so containerd (`ctr images import`) knows it by that name and
kubeadm's preflight finds it present. kube-proxy also gets Debian's iptables (nft) userspace from
the lab host image, which it calls.

The load-balancer modes' static pods and the pod network get images under the exact names the
product pins (LOAD_BALANCER_IMAGES, NETWORK_IMAGES in components/config/catalogue.py):
kube-vip, flanneld (with flannel's install-conf) and flannel's CNI plugin built by build.sh,
haproxy and keepalived from Debian's binaries in the lab host image (with bash and curl, which
the keepalived health check runs; cp for the CNI plugin's installer). They are NOT the published
images: same names and the paths the product relies on, our builds inside (README, "Real
Kubernetes in the lab").
Deterministic: the same inputs give the same image IDs.

usage: images.py KUBE_DIR HOST_IMAGE_ROOT [--components-only]   (writes KUBE_DIR/images/*.tar)
--components-only: the control-plane and kube-proxy images alone, for the release the upgrade test
starts from (its etcd, CoreDNS and pause are the same images as the lab's main release's).
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
PRODUCT_CATALOGUE = Path(__file__).resolve().parents[3] / "components" / "config" / "catalogue.py"
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

    def directory(self, path: str, mode: int = 0o755) -> None:
        if path in ("", ".", "/"):
            return
        info = self._entry(path, tarfile.DIRTYPE, mode)
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
    entrypoint: str  # "" for none (the image's command alone runs)
    user: str = "0"
    stop_signal: str = "SIGTERM"
    command: tuple[str, ...] = ()  # the image's default arguments (CMD)
    working_dir: str = "/"


def write_archive(out: Path, spec: ImageSpec, layer: Layer) -> None:
    layer_bytes = layer.bytes()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    run: dict[str, object] = {"Env": [PATH_ENV], "User": spec.user, "WorkingDir": spec.working_dir,
                              "StopSignal": spec.stop_signal}
    if spec.entrypoint:
        run["Entrypoint"] = [spec.entrypoint]
    if spec.command:
        run["Cmd"] = list(spec.command)
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
        "config": run,
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


def base_layer(tmp_mode: int = 0o755) -> Layer:
    layer = Layer()
    layer.directory("tmp", tmp_mode)
    for directory in ("etc", "run", "var/run", "usr/local/bin"):
        layer.directory(directory)
    return layer


def add_nss_libraries(layer: Layer, host_root: Path) -> None:
    """glibc's NSS modules from the host image, which getent's and curl's name lookups load."""
    for library in sorted((host_root / "usr/lib/x86_64-linux-gnu").glob("libnss_*.so.2")):
        layer.file(library, f"/usr/lib/x86_64-linux-gnu/{library.name}", 0o644)


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
    name = image_name(reference)
    layer = base_layer()
    if name == "pause":
        layer.file(bin_dir / "pause", "/pause")
        return ImageSpec(reference, "/pause", user="65535"), layer
    if name == "coredns":
        layer.file(bin_dir / "coredns", "/coredns")
        return ImageSpec(reference, "/coredns"), layer
    if name == "etcd":  # the official image carries etcdctl and etcdutl too; kubeha runs them from it
        layer.directory("var/lib/etcd")
        layer.file(bin_dir / "etcdctl", "/usr/local/bin/etcdctl")
        layer.file(bin_dir / "etcdutl", "/usr/local/bin/etcdutl")
    if name == "kube-proxy":
        add_iptables(layer, host_root)
    layer.file(bin_dir / name, f"/usr/local/bin/{name}")
    return ImageSpec(reference, f"/usr/local/bin/{name}"), layer


def pinned_images(name: str) -> dict[str, str]:
    """The product's catalogue entry `name` (image name -> reference), read from its source."""
    module = ast.parse(PRODUCT_CATALOGUE.read_text())
    for statement in module.body:
        if (isinstance(statement, ast.AnnAssign) and getattr(statement.target, "id", "") == name
                and statement.value is not None):
            return ast.literal_eval(statement.value)
    raise SystemExit(f"{PRODUCT_CATALOGUE}: no {name}")


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


# Pinned by the product but not built here: calico-node is not built in the lab, so
# network.plugin calico is rendered and validated only (README).
NOT_IN_THE_LAB = {"calico_node", "calico_cni", "calico_kube_controllers"}


def network_image(name: str, reference: str, bin_dir: Path, host_root: Path) -> tuple[ImageSpec, Layer]:
    """flannel's two images, laid out as upstream's: the programs its DaemonSet runs by path."""
    layer = base_layer()
    if name == "flannel":
        layer.file(bin_dir / "flanneld", "/opt/bin/flanneld")
        layer.file(bin_dir / "install-conf", "/opt/bin/install-conf")
        add_iptables(layer, host_root)  # flanneld's masquerade and forward rules
        return ImageSpec(reference, "/opt/bin/flanneld"), layer
    if name == "flannel_cni_plugin":  # its init container runs `cp -f /flannel /opt/cni/bin/flannel`
        layer.file(bin_dir / "flannel-cni", "/flannel")
        add_debian_binaries(layer, host_root, {"/usr/bin/cp"})
        layer.symlink("/bin/cp", "../usr/bin/cp")
        return ImageSpec(reference, "/usr/bin/cp"), layer
    raise SystemExit(f"no lab image for the network's {name!r} image")


# The lab tests' own pod image (not the product's): what a pod needs to show that the pod
# network and CoreDNS work (ping a pod IP, resolve a Service name), from Debian's binaries.
NETTOOLS_IMAGE = "kubeha.lab/nettools:1"


def nettools_image(host_root: Path) -> tuple[ImageSpec, Layer]:
    layer = base_layer()
    add_debian_binaries(layer, host_root, {"/usr/bin/dash", "/usr/bin/ping", "/usr/bin/getent", "/usr/bin/sleep"})
    add_nss_libraries(layer, host_root)
    layer.symlink("/bin/sh", "../usr/bin/dash")
    layer.data("/etc/nsswitch.conf", b"hosts: files dns\n")
    return ImageSpec(NETTOOLS_IMAGE, "/usr/bin/sleep"), layer


def image_name(reference: str) -> str:
    return reference.rsplit("/", 1)[1].split(":")[0]


def main(kube_dir: Path, host_root: Path, components_only: bool = False) -> None:
    bin_dir, out_dir = kube_dir / "bin", kube_dir / "images"
    version = (bin_dir / "kubeadm.version").read_text().strip()
    listed = subprocess.run([str(bin_dir / "kubeadm"), "config", "images", "list", "--kubernetes-version", version],
                            capture_output=True, text=True, check=True).stdout.split()
    if components_only:
        listed = [reference for reference in listed if image_name(reference).startswith("kube-")]
    out_dir.mkdir(parents=True, exist_ok=True)
    for reference in listed:
        spec, layer = image_for(reference, bin_dir, host_root)
        write_archive(out_dir / (image_name(reference) + ".tar"), spec, layer)
    if components_only:
        (out_dir / "list").write_text("\n".join(listed) + "\n")
        return
    for prefix, catalogue_name, make in (("lb", "LOAD_BALANCER_IMAGES", load_balancer_image),
                                         ("network", "NETWORK_IMAGES", network_image)):
        for name, reference in sorted(pinned_images(catalogue_name).items()):
            if name in NOT_IN_THE_LAB:
                print(f"{reference}: not built in the lab")
                continue
            spec, layer = make(name, reference, bin_dir, host_root)
            write_archive(out_dir / f"{prefix}-{name.replace('_', '-')}.tar", spec, layer)
            listed.append(reference)
    spec, layer = nettools_image(host_root)
    write_archive(out_dir / "lab-nettools.tar", spec, layer)
    listed.append(NETTOOLS_IMAGE)
    (out_dir / "list").write_text("\n".join(listed) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), components_only="--components-only" in sys.argv[3:])
