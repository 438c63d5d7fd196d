"""The product's lab stack, shared by the end-to-end tests and the failover benchmark.

`boot_cluster()` runs tests/lab/lab-stack.sh up (what `make lab-up` runs): lab hosts booted if
they are not running, then the product's real `pulumi up`. LabStack runs pulumi against it.
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import yaml

from tests.lab.hosts import LAB_DIR, LAB_INSTANCE, VIP, LabHost, lab, lab_down, lab_host, running_hosts

ROOT = Path(__file__).resolve().parents[2]
STACK_SCRIPT = Path(__file__).resolve().parent / "lab-stack.sh"
ENGINE_DIR = os.environ.get("ENGINE_DIR", "/var/cache/kubeha/engine")
# The lab's real Kubernetes (make lab-kubernetes): its kubectl runs the tests' queries.
KUBERNETES_VERSION = "1.34.4"
UPGRADE_FROM_VERSION = "1.34.3"  # the Makefile's UPGRADE_FROM_VERSION: test_upgrade_lab builds at it
KUBE_DIR = Path(os.environ.get("KUBE_DIR", f"/var/cache/kubeha/kubernetes/v{KUBERNETES_VERSION}"))
KUBECTL = KUBE_DIR / "bin" / "kubectl"
PORT = 8443
LOAD_BALANCERS = ("lb1", "lb2")
# `show stat` on haproxy's admin socket, through python3 (on every host).
HAPROXY_SHOW_STAT = ("import socket; s = socket.socket(socket.AF_UNIX); s.connect('/run/haproxy/admin.sock'); "
                     "s.sendall(b'show stat\\n'); print(s.makefile().read())")
# Run on an LB host: print "ready", then CLOCK_MONOTONIC (shared by the host and its containers)
# the moment haproxy reports server sys.argv[1] DOWN; polls every 10 ms for at most 30 s.
HAPROXY_WAIT_DOWN = """
import socket, sys, time
print("ready", flush=True)
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    s = socket.socket(socket.AF_UNIX); s.connect("/run/haproxy/admin.sock"); s.sendall(b"show stat\\n")
    rows = [line.split(",") for line in s.makefile().read().splitlines()]
    if any(row[:2] == ["apiserver", sys.argv[1]] and row[17].startswith("DOWN") for row in rows):
        print(time.monotonic(), flush=True); break
    time.sleep(0.01)
"""


@dataclass(frozen=True)
class LabOptions:
    """How the lab stack is configured (tests/lab/lab-stack.sh)."""

    mode: str = "keepalived-haproxy"  # loadBalancer.mode
    ssh_user: str = "root"
    firewall: str = "unmanaged"  # firewall.mode
    package_proxy: str = ""  # packages.proxy
    # kubernetes.version the cluster is built with: the lab's release, or UPGRADE_FROM_VERSION.
    kubernetes_version: str = KUBERNETES_VERSION
    workers: tuple[str, ...] = ("w1", "w2")  # beside cp1-cp3


def stack_settings(options: LabOptions) -> dict[str, str]:
    """The environment lab-stack.sh reads the stack's settings from."""
    return {"LAB_LB_MODE": options.mode, "LAB_SSH_USER": options.ssh_user, "LAB_FIREWALL": options.firewall,
            "LAB_PACKAGE_PROXY": options.package_proxy, "LAB_KUBERNETES_VERSION": options.kubernetes_version,
            "LAB_WORKERS": " ".join(options.workers)}


def lab_environment(options: LabOptions = LabOptions()) -> dict[str, str]:
    return {**os.environ, "KUBEHA_ROOT": str(ROOT), "ENGINE_DIR": ENGINE_DIR, "LAB_TOPOLOGY": "",
            "LAB_INSTANCE": str(LAB_INSTANCE), **stack_settings(options)}


APISERVER_MANIFEST = "/etc/kubernetes/manifests/kube-apiserver.yaml"
APISERVER_MANIFEST_AWAY = "/etc/kubernetes/kube-apiserver.yaml.stopped-by-test"
APISERVER_RUNNING = "pgrep -x kube-apiserver"


def wait_for(condition: Callable[[], bool], seconds: float, interval: float = 0.5) -> bool:
    """Poll condition until it holds (True) or seconds pass (False); a failed host command counts as no."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except AssertionError:
            pass
        time.sleep(interval)
    return False


@dataclass
class LabStack:
    hosts: dict[str, LabHost]
    timings: dict[str, float] = field(default_factory=dict)
    up_output: str = ""  # what the first `pulumi up` printed (boot_cluster)

    def pulumi(self, *args: str, cwd: Path = ROOT, stack: str | None = None, check: bool = True,
               timeout: float = 900, stdin: str | None = None) -> subprocess.CompletedProcess:
        command = 'source "$LAB_ENV" 2>/dev/null && cd "$PULUMI_CWD" && pulumi "$@"'
        stack_args = ["--stack", stack] if stack else []
        result = subprocess.run(["bash", "-c", command, "pulumi", *args, *stack_args, "--non-interactive"],
                                cwd=ROOT, env={**lab_environment(), "PULUMI_CWD": str(cwd), "LAB_ENV": str(LAB_DIR / "env")},
                                capture_output=True, text=True, timeout=timeout, input=stdin)
        if check and result.returncode != 0:
            # The diagnostics (each failed step's error), not the outputs after them.
            start = result.stdout.find("Diagnostics:")
            shown = result.stdout[start:start + 8000] if start >= 0 else result.stdout[-4000:]
            raise AssertionError(f"pulumi {' '.join(args)} failed:\n{shown}\n{result.stderr[-4000:]}")
        return result

    def output(self, name: str, show_secrets: bool = False) -> object:
        flags = ["--show-secrets"] if show_secrets else []
        return json.loads(self.pulumi("stack", "output", "--json", *flags).stdout).get(name)

    def config_value(self, key: str) -> object:
        """A structured stack config value (e.g. the controlPlanes list)."""
        return json.loads(self.pulumi("config", "get", key, "--json").stdout)["objectValue"]

    def set_config_value(self, key: str, value: object) -> None:
        """Replace a structured stack config value as a whole."""
        entry = {"value": json.dumps(value), "objectValue": value, "secret": False}
        self.pulumi("config", "set-all", "--json", json.dumps({f"kubeha:{key}": entry}))

    def forget(self, name: str) -> None:
        """Take a resource out of the stack's state, and out of every dependency on it, leaving what
        it made in place: as after a create that reached its target but not the state."""
        exported = json.loads(self.pulumi("stack", "export").stdout)
        resources = exported["deployment"]["resources"]
        [urn] = [resource["urn"] for resource in resources if resource_name(resource["urn"]) == name]
        for resource in resources:
            resource["dependencies"] = [other for other in resource.get("dependencies", []) if other != urn]
            for key, urns in resource.get("propertyDependencies", {}).items():
                resource["propertyDependencies"][key] = [other for other in urns if other != urn]
        exported["deployment"]["resources"] = [resource for resource in resources if resource["urn"] != urn]
        with tempfile.NamedTemporaryFile("w", suffix=".json") as state:
            json.dump(exported, state)
            state.flush()
            self.pulumi("stack", "import", "--file", state.name)

    def add_host(self, name: str) -> LabHost:
        lab("up", name)
        self.hosts[name] = lab_host(name)
        return self.hosts[name]

    def ssh_sessions(self) -> dict[str, int]:
        """SSH logins per host so far (each count includes the login that reads it)."""
        count = "journalctl -u ssh --no-pager -o cat | grep -c 'Accepted publickey' || true"
        return {name: int(host.run(count).stdout.strip() or 0) for name, host in self.hosts.items()}

    def stop_apiserver(self, name: str, kill: bool = False) -> None:
        """Stop a control plane's apiserver: gracefully (its static pod taken away, so the kubelet
        stops it and keeps it stopped) or with SIGKILL (the kubelet restarts it by itself)."""
        host = self.hosts[name]
        if kill:
            host.run("pkill -KILL -x kube-apiserver")
        else:
            host.run(f"mv {APISERVER_MANIFEST} {APISERVER_MANIFEST_AWAY}")
            assert wait_for(lambda: host.run(APISERVER_RUNNING, check=False).returncode != 0, 60), name

    def start_apiserver(self, name: str) -> None:
        """Undo stop_apiserver (a killed one comes back by itself; this waits for it, as long as the
        kubelet's restart back-off can keep it down: 5 minutes at most, and its start)."""
        host = self.hosts[name]
        host.run(f"if [ -e {APISERVER_MANIFEST_AWAY} ]; then mv {APISERVER_MANIFEST_AWAY} {APISERVER_MANIFEST}; fi")
        assert wait_for(lambda: host.run("curl -fsk -o /dev/null https://127.0.0.1:6443/readyz",
                                         check=False).returncode == 0, 390), f"{name}: apiserver not ready again"

    def vip_holders(self) -> list[str]:
        return [name for name in LOAD_BALANCERS if self.hosts[name].holds(VIP)]

    def backend_status(self, lb: str) -> dict[str, str]:
        """haproxy's view of the apiservers on one LB host, e.g. {"cp1": "UP", ...}, from its admin socket."""
        stats = self.hosts[lb].run(f"python3 -c {HAPROXY_SHOW_STAT!r}").stdout
        return {row[1]: row[17] for row in (line.split(",") for line in stats.splitlines())
                if row[0] == "apiserver" and row[1] not in ("FRONTEND", "BACKEND")}

    def pair_healthy(self) -> bool:
        """Exactly one VIP holder, and every apiserver UP in both haproxies."""
        return len(self.vip_holders()) == 1 and all(
            set(self.backend_status(lb).values()) == {"UP"} for lb in LOAD_BALANCERS)

    @property
    def kubernetes_version(self) -> str:
        """The release the stack's config names now (an upgrade changes it)."""
        return self.pulumi("config", "get", "--path", "kubernetes.version").stdout.strip()

    def kubeconfig(self) -> str:
        return str(self.output("kubeconfig", show_secrets=True))

    @cached_property
    def cluster_ca(self) -> str:
        """The cluster CA (PEM) from the kubeconfig output; read once, it never changes."""
        document = yaml.safe_load(self.kubeconfig())
        return base64.b64decode(document["clusters"][0]["cluster"]["certificate-authority-data"]).decode()


def boot_cluster(options: LabOptions = LabOptions()) -> LabStack:
    """`make lab-up` without the make: lab hosts (reused if they run with these options, see
    lab-stack.sh) and the product's `pulumi up` with the stack configured by `options`."""
    started = time.monotonic()
    result = subprocess.run([str(STACK_SCRIPT), "up"], env=lab_environment(options), capture_output=True,
                            text=True, timeout=1800)
    if result.returncode != 0:
        raise AssertionError(f"lab-stack.sh up failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}")
    stack = LabStack(running_hosts(), up_output=result.stdout)
    stack.timings["pulumi_up_s"] = float((LAB_DIR / "last-up.seconds").read_text())  # from bare hosts unless reused
    stack.timings["lab_up_total_s"] = round(time.monotonic() - started, 1)
    return stack


def tear_down_cluster() -> None:
    """`pulumi destroy` while the hosts run, then the lab down (what `make lab-down` does)."""
    subprocess.run([str(STACK_SCRIPT), "destroy"], env=lab_environment(), check=False, timeout=900,
                   capture_output=True)
    lab_down()


def forget_cluster() -> None:
    """The lab down and the stack's state forgotten, with no `pulumi destroy` first: for a cluster
    whose hosts are thrown away anyway (destroy itself is proven once, by test_destroy_lab)."""
    lab_down()
    subprocess.run([str(STACK_SCRIPT), "destroy"], env=lab_environment(), check=False, timeout=120,
                   capture_output=True)


def kubectl(kubeconfig: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """kubectl from this machine against the lab: the one built with the lab's Kubernetes."""
    return subprocess.run([str(KUBECTL), "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True,
                          timeout=timeout)


def running_pod(kubeconfig: Path, name: str, namespace: str = "kube-system", seconds: float = 120) -> dict:
    """The pod `name`, once it is Running (a static pod's mirror shows up a little after its node joins)."""
    found: dict = {}

    def running() -> bool:
        result = kubectl(kubeconfig, "-n", namespace, "get", "pod", name, "-o", "json")
        found.update(json.loads(result.stdout) if result.returncode == 0 else {})
        return found.get("status", {}).get("phase") == "Running"

    assert wait_for(running, seconds, interval=2), f"{name}: not Running after {seconds} s: {found.get('status')}"
    return found


def assert_readyz_through(kubeconfig: Path, endpoint: str) -> None:
    """The kubeconfig's server is `endpoint` and /readyz answers ok there (TLS verified against the cluster CA)."""
    assert f"server: https://{endpoint}" in kubeconfig.read_text()
    result = kubectl(kubeconfig, "get", "--raw", "/readyz")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def etcd_members(kubeconfig: Path, on: str = "cp1") -> list[tuple[str, str]]:
    """(status, name) of every etcd member, asked of etcd on `on` with the built kubectl."""
    members = kubectl(kubeconfig, "-n", "kube-system", "exec", f"etcd-{on}", "--", "etcdctl",
                      "--endpoints=https://127.0.0.1:2379", "--cacert=/etc/kubernetes/pki/etcd/ca.crt",
                      "--cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt",
                      "--key=/etc/kubernetes/pki/etcd/healthcheck-client.key", "member", "list")
    assert members.returncode == 0, members.stderr
    return sorted((row[1], row[2]) for row in (line.split(", ") for line in members.stdout.splitlines()))


def changed_steps(preview_json: str) -> list[dict]:
    """The steps of a `pulumi preview --json` that change something."""
    return [step for step in json.loads(preview_json).get("steps", []) if step["op"] != "same"]


def resource_name(urn: str) -> str:
    return urn.rsplit("::", 1)[1]


def ready_nodes(kubeconfig: Path) -> set[str]:
    nodes = json.loads(kubectl(kubeconfig, "get", "nodes", "-o", "json").stdout)["items"]
    return {node["metadata"]["name"] for node in nodes
            if any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])}
