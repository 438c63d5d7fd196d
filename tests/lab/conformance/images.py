"""The conformance suite's images, made here: its own programs and Debian's binaries.

`e2e.test --list-images` names every image the suite can run. The ones its `[Conformance]` tests
run are made here, under exactly those names and tags, so the nodes' containerd knows them by the
name a test asks for (`make conformance` imports them into every node before the run):

- agnhost: the suite's own program (built by tests/lab/kubernetes/build.sh conformance from the
  release's test/images/agnhost), laid out as its Dockerfile does (/agnhost, /agnhost-2, /uploads,
  porter's certificate, the users and group a test looks for, /coredns), on a userland of Debian's
  busybox (built from Debian's source, build.sh says how) with Debian's curl, nc, dig, ip, ss,
  getent and bash, the tools its Alpine base gives the tests (userland() says why that busybox).
- busybox: that busybox and its applets, its shell as /bin/sh.
- httpd (both tags): Debian's apache2, serving /usr/local/apache2/htdocs as the official image does.
- nginx (both tags): Debian's nginx, serving /usr/share/nginx/html.
- jessie-dnsutils: the userland with Debian's dig (its image is Debian with dnsutils).
- nautilus and kitten: agnhost with the release's own html/ files, running test-webserver.
- nonewprivs: the release's nnp, setuid root; nonroot: the userland as uid 1234.
- sample-apiserver: built from k8s.io/sample-apiserver of the release; etcd: the release's v3.6.4.
- pause: the lab's own (tests/lab/kubernetes/images.py), already on every node.

They are NOT the published images: same names and the paths the tests rely on, Debian's and our
builds inside (README, "Conformance").

usage: python3 -m tests.lab.conformance.images KUBE_DIR DEBIAN_ROOT KUBERNETES_SOURCE
(writes KUBE_DIR/conformance/images; KUBERNETES_SOURCE: the k8s.io/kubernetes module the suite is built from)
"""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from tests.lab.kubernetes.images import (
    ImageSpec,
    Layer,
    add_debian_binaries,
    add_nss_libraries,
    base_layer,
    write_archive,
)

# Debian's tools the suite's Alpine-based images give the tests (agnhost's Dockerfile installs
# bind-tools, curl, netcat-openbsd, iproute2 and bash), by path in the Debian root.
USERLAND_TOOLS = {"/usr/bin/curl", "/usr/bin/dig", "/usr/bin/nslookup", "/usr/bin/host", "/usr/bin/nc.openbsd",
                  "/usr/bin/getent", "/usr/bin/ip", "/usr/bin/ss"}
# build.sh's busybox, in the Debian root.
BUSYBOX = "/usr/local/bin/busybox"
HTDOCS = "/usr/local/apache2/htdocs"
HTTPD_CONF = f"""ServerRoot /usr/local/apache2
Listen 80
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule dir_module /usr/lib/apache2/modules/mod_dir.so
LoadModule mime_module /usr/lib/apache2/modules/mod_mime.so
User daemon
Group daemon
ServerName localhost
DefaultRuntimeDir /usr/local/apache2/logs
PidFile /usr/local/apache2/logs/httpd.pid
ErrorLog /proc/self/fd/2
LogLevel warn
TypesConfig /etc/mime.types
DocumentRoot "{HTDOCS}"
<Directory />
    AllowOverride None
    Require all denied
</Directory>
<Directory "{HTDOCS}">
    Require all granted
</Directory>
DirectoryIndex index.html
"""
HTTPD_FOREGROUND = b"#!/bin/sh\nset -e\nrm -f /usr/local/apache2/logs/httpd.pid\n" \
                   b"exec /usr/sbin/apache2 -DFOREGROUND -f /usr/local/apache2/conf/httpd.conf \"$@\"\n"
NGINX_CONF = b"""user nobody nogroup;
worker_processes 1;
error_log stderr;
pid /run/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    server {
        listen 80;
        root /usr/share/nginx/html;
        index index.html;
    }
}
"""
PASSWD = "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n" \
         "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
GROUP = "root:x:0:\ndaemon:x:1:\nnogroup:x:65534:\n"


def userland(debian: Path, tools: set[str] = USERLAND_TOOLS, passwd: str = PASSWD, group: str = GROUP) -> Layer:
    """busybox (built from Debian's source by build.sh) with every applet and its shell as /bin/sh,
    Debian's bash and `tools` before the applets on PATH, a writable /tmp, accounts.

    Not busybox-static's binary: it prefers its own applets to any program on PATH (its nc, not
    the OpenBSD nc whose `-v` the Service tests use), and its shell drops environment variables
    whose names are not shell names, which the env-prefix tests (`data-1`, `$_-data-1`) need
    passed on, as the published images' shell does. A test also waits for busybox's shell's own
    words (`/bin/sh: can't create /file: Read-only file system`), so neither bash nor dash will do.
    """
    layer = base_layer(tmp_mode=0o1777)
    layer.directory("var/tmp", 0o1777)
    layer.directory("root")
    add_debian_binaries(layer, debian, {"/usr/bin/bash", *tools})
    add_nss_libraries(layer, debian)
    if "/usr/bin/nc.openbsd" in tools:
        layer.symlink("/usr/bin/nc", "nc.openbsd")
    layer.symlink("/bin/bash", "../usr/bin/bash")
    layer.file(debian / BUSYBOX.lstrip("/"), "/bin/busybox")
    layer.symlink("/bin/sh", "busybox")
    applets = subprocess.run(["chroot", str(debian), BUSYBOX, "--list-full"], capture_output=True,
                             text=True, check=True).stdout.split()
    # At Debian's paths for them (Alpine's too), and every one in /bin as well, where the published
    # busybox image has them all (a test runs /bin/sysctl). A path a Debian tool took keeps it.
    for applet in applets:
        layer.symlink(f"/{applet}", "/bin/busybox")
    for applet in applets:
        layer.symlink(f"/bin/{PurePosixPath(applet).name}", "/bin/busybox")
    layer.data("/etc/passwd", passwd.encode())
    layer.data("/etc/group", group.encode())
    layer.data("/etc/nsswitch.conf", b"passwd: files\ngroup: files\nhosts: files dns\n")
    return layer


def agnhost_layer(suite: Path, debian: Path, kubernetes_source: Path, coredns: bool = True) -> Layer:
    """agnhost laid out as its Dockerfile does, on the userland (`coredns`: with /coredns)."""
    # user-defined-in-image (uid 1000) in group-defined-in-image (gid 50000): a SupplementalGroups test.
    layer = userland(debian, passwd=PASSWD + "user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh\n",
                     group=GROUP + "user-defined-in-image:x:1000:\n"
                                   "group-defined-in-image:x:50000:user-defined-in-image\n")
    layer.file(suite / "agnhost", "/agnhost")
    layer.symlink("/agnhost-2", "agnhost")
    layer.directory("uploads")
    porter = kubernetes_source / "test/images/agnhost/porter"
    layer.file(porter / "localhost.crt", "/localhost.crt", 0o644)
    layer.file(porter / "localhost.key", "/localhost.key", 0o644)
    if coredns:  # the lab's CoreDNS build; DNS tests run it in an agnhost pod
        layer.file(suite.parents[1] / "bin" / "coredns", "/coredns")
    return layer


def make_agnhost(reference: str, suite: Path, debian: Path, source: Path) -> tuple[ImageSpec, Layer]:
    return ImageSpec(reference, "/agnhost", command=("pause",)), agnhost_layer(suite, debian, source)


def make_webserver_demo(reference: str, suite: Path, debian: Path, source: Path) -> tuple[ImageSpec, Layer]:
    """nautilus and kitten: agnhost with the release's html/ files in /, serving them (no test runs
    CoreDNS in them, so they leave out its 70 MB)."""
    name = image_path(reference).rsplit("/", 1)[1]
    layer = agnhost_layer(suite, debian, source, coredns=False)
    for page in sorted((source / "test/images" / name / "html").iterdir()):
        layer.file(page, f"/{page.name}", 0o644)
    return ImageSpec(reference, "/agnhost", command=("test-webserver",)), layer


def make_busybox(reference: str, suite: Path, debian: Path, source: Path) -> tuple[ImageSpec, Layer]:
    return ImageSpec(reference, "", command=("sh",)), userland(debian, tools=set())


def make_dnsutils(reference: str, suite: Path, debian: Path, source: Path) -> tuple[ImageSpec, Layer]:
    return ImageSpec(reference, "", command=("bash",)), userland(debian)


def make_httpd(reference: str, suite: Path, debian: Path, source: Path) -> tuple[ImageSpec, Layer]:
    modules = {f"/usr/lib/apache2/modules/mod_{name}.so" for name in ("mpm_event", "authz_core", "dir", "mime")}
    layer = userland(debian, tools={"/usr/sbin/apache2", *modules})
    layer.directory("usr/local/apache2/logs", 0o777)
    layer.data("/usr/local/apache2/conf/httpd.conf", HTTPD_CONF.encode())
    layer.data(f"{HTDOCS}/index.html", b"<html><body><h1>It works!</h1></body></html>\n")
    layer.file(debian / "etc/mime.types", "/etc/mime.types", 0o644)
    layer.data("/usr/local/bin/httpd-foreground", HTTPD_FOREGROUND, 0o755)
    return ImageSpec(reference, "", command=("httpd-foreground",), stop_signal="SIGWINCH",
                     working_dir="/usr/local/apache2"), layer


def make_nginx(reference: str, suite: Path, debian: Path, source: Path) -> tuple[ImageSpec, Layer]:
    layer = userland(debian, tools={"/usr/sbin/nginx"})
    for directory in ("var/log/nginx", "var/lib/nginx/body", "var/lib/nginx/proxy", "var/lib/nginx/fastcgi",
                      "var/lib/nginx/uwsgi", "var/lib/nginx/scgi"):
        layer.directory(directory)
    layer.data("/etc/nginx/nginx.conf", NGINX_CONF)
    layer.data("/usr/share/nginx/html/index.html", b"<html><body><h1>Welcome to nginx!</h1></body></html>\n")
    return ImageSpec(reference, "", command=("nginx", "-g", "daemon off;"), stop_signal="SIGQUIT"), layer


def make_nonewprivs(reference: str, suite: Path, debian: Path, source: Path) -> tuple[ImageSpec, Layer]:
    layer = userland(debian, tools=set())
    layer.file(suite / "nnp", "/usr/local/bin/nnp", 0o4755)  # setuid root, as its Dockerfile's chmod +s
    return ImageSpec(reference, "", command=("nnp",)), layer


def make_nonroot(reference: str, suite: Path, debian: Path, source: Path) -> tuple[ImageSpec, Layer]:
    return ImageSpec(reference, "", user="1234"), userland(debian, tools=set())


def make_sample_apiserver(reference: str, suite: Path, debian: Path, source: Path) -> tuple[ImageSpec, Layer]:
    layer = base_layer()
    layer.file(suite / "sample-apiserver", "/sample-apiserver")
    return ImageSpec(reference, "/sample-apiserver"), layer


def make_etcd(reference: str, suite: Path, debian: Path, source: Path) -> tuple[ImageSpec, Layer]:
    layer = base_layer()
    layer.directory("var/lib/etcd")
    layer.file(suite / "etcd", "/usr/local/bin/etcd")
    return ImageSpec(reference, "/usr/local/bin/etcd"), layer


Maker = Callable[[str, Path, Path, Path], tuple[ImageSpec, Layer]]
# Image path (registry host and tag dropped) -> how it is made.
MAKERS: dict[str, Maker] = {
    "e2e-test-images/agnhost": make_agnhost,
    "e2e-test-images/busybox": make_busybox,
    "e2e-test-images/httpd": make_httpd,
    "e2e-test-images/nginx": make_nginx,
    "e2e-test-images/jessie-dnsutils": make_dnsutils,
    "e2e-test-images/nautilus": make_webserver_demo,
    "e2e-test-images/kitten": make_webserver_demo,
    "e2e-test-images/nonewprivs": make_nonewprivs,
    "e2e-test-images/nonroot": make_nonroot,
    "e2e-test-images/sample-apiserver": make_sample_apiserver,
    "etcd": make_etcd,
}


def image_path(reference: str) -> str:
    """registry.k8s.io/e2e-test-images/httpd:2.4.38-4 -> e2e-test-images/httpd"""
    return reference.split("/", 1)[1].rsplit(":", 1)[0]


def archive_name(reference: str) -> str:
    return image_path(reference).replace("/", "-") + "-" + reference.rsplit(":", 1)[1] + ".tar"


def suite_images(suite: Path) -> list[str]:
    """Every image `e2e.test --list-images` names, on the registries it names (registry.k8s.io only)."""
    listed = subprocess.run([str(suite / "e2e.test"), "--list-images"], capture_output=True, text=True,
                            check=True).stdout.split()
    return [reference for reference in listed if reference.startswith("registry.k8s.io/")]


def main(kube_dir: Path, debian: Path, source: Path) -> None:
    suite, out_dir = kube_dir / "conformance" / "bin", kube_dir / "conformance" / "images"
    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    for reference in suite_images(suite):
        make = MAKERS.get(image_path(reference))
        if make is None:
            continue
        spec, layer = make(reference, suite, debian, source)
        write_archive(out_dir / archive_name(reference), spec, layer)
        made.append(reference)
    missing = sorted(set(MAKERS) - {image_path(reference) for reference in made})
    if missing:
        raise SystemExit(f"e2e.test --list-images no longer names {', '.join(missing)}: update {__file__}")
    (out_dir / "list").write_text("\n".join(made) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
