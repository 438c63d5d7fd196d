"""Upgrade benchmark on the lab: one `pulumi up` that upgrades the 7-host cluster, under load.

    python3 -m tests.lab.bench.upgrade      (make bench-upgrade; needs root)

Boots the lab and the product's cluster at UPGRADE_FROM_VERSION (1.34.3, as `make lab-up` with
LAB_KUBERNETES_VERSION), sets kubernetes.version to the lab's release (1.34.4) and runs `pulumi
up`, while a client probes https://VIP:8443/readyz every 50 ms (20 Hz, fresh TLS connection,
bounded count and time) and a watcher reads every node's kubelet release and cordon once a second.
Prints a table, writes build/bench/upgrade.json and build/bench/upgrade-timeline.png (the docs' copy is
refreshed on purpose: --picture docs/upgrade-timeline.png). A run whose probe
saw nothing (no probe at all) or whose `up` failed is reported as invalid, never as a result.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.lab.bench.one_cluster import bench_main
from tests.lab.cluster import (
    KUBERNETES_VERSION,
    PORT,
    UPGRADE_FROM_VERSION,
    VIP,
    LabOptions,
    LabStack,
    kubectl,
)
from tests.lab.probe import Prober

WATCH_INTERVAL_S = 1.0
MAX_SECONDS = 1500  # the probe and the watcher stop by themselves after this


@dataclass
class NodeWatcher:
    """Each node's (seconds, kubelet release, cordoned) once a second, from the kubeconfig output."""

    kubeconfig: Path
    started: float
    samples: dict[str, list[tuple[float, str, bool]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set() and time.monotonic() - self.started < MAX_SECONDS:
            result = kubectl(self.kubeconfig, "get", "nodes", "-o", "json", timeout=10)
            now = round(time.monotonic() - self.started, 2)
            if result.returncode == 0:
                for node in json.loads(result.stdout)["items"]:
                    self.samples.setdefault(node["metadata"]["name"], []).append(
                        (now, node["status"]["nodeInfo"]["kubeletVersion"], bool(node["spec"].get("unschedulable"))))
            self._stop.wait(WATCH_INTERVAL_S)

    def start(self) -> "NodeWatcher":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def node_summary(self, name: str) -> dict[str, float | None]:
        """When the node's kubelet reported the new release, and how long it was cordoned."""
        samples = self.samples.get(name, [])
        upgraded = next((at for at, version, _ in samples if version == f"v{KUBERNETES_VERSION}"), None)
        cordoned = [at for at, _, held in samples if held]
        return {"kubelet_upgraded_at_s": upgraded,
                "cordoned_s": round(cordoned[-1] - cordoned[0] + WATCH_INTERVAL_S, 1) if cordoned else 0.0,
                "cordoned_from_s": cordoned[0] if cordoned else None}


def run(stack: LabStack, kubeconfig: Path) -> dict:
    stack.pulumi("config", "set", "--path", "kubernetes.version", KUBERNETES_VERSION)
    # Counted twice: as probed (a failed probe is a failed request) and with one immediate retry
    # (a client's retry), which the lab tests use.
    prober = Prober(VIP, PORT, stack.cluster_ca, interval=0.05, timeout=1, max_seconds=MAX_SECONDS,
                    max_probes=int(MAX_SECONDS * 20), retries=1).start()
    # On the prober's clock (it starts first; the two starts are a few microseconds apart).
    watcher = NodeWatcher(kubeconfig, time.monotonic() - prober.now()).start()
    up = stack.pulumi("up", "--yes", "--skip-preview", check=False, timeout=MAX_SECONDS)
    up_seconds = round(prober.now(), 1)
    time.sleep(2)  # a little service after the upgrade, in the picture
    results = prober.stop()
    watcher.stop()
    valid = up.returncode == 0 and len(results) > 0
    return {
        "from": UPGRADE_FROM_VERSION, "to": KUBERNETES_VERSION, "valid": valid,
        "invalid_because": None if valid else ("pulumi up failed" if up.returncode else "no probe ran"),
        "up_seconds": up_seconds, "probe_hz": 20, "probes": len(results),
        "failed_requests": sum(not result.ok for result in results),
        "failed_first_attempts": sum(result.attempts > 1 or not result.ok for result in results),
        "nodes": {name: watcher.node_summary(name) for name in sorted(watcher.samples)},
        "timeline": [(result.at, result.ok, result.attempts) for result in results],
        "node_samples": watcher.samples,
        "up_tail": up.stdout[-3000:] if up.returncode else "",
    }


def table(result: dict) -> str:
    if not result["valid"]:
        return f"invalid run: {result['invalid_because']}\n{result['up_tail']}"
    lines = [f"upgrade {result['from']} -> {result['to']}: pulumi up {result['up_seconds']:.1f} s, "
             f"{result['failed_requests']} failed of {result['probes']} probes (20 Hz through the VIP, one retry); "
             f"{result['failed_first_attempts']} first attempts failed",
             f"{'node':6} {'kubelet at new release (s)':>28} {'cordoned (s)':>13}"]
    for name, node in result["nodes"].items():
        upgraded = node["kubelet_upgraded_at_s"]
        lines.append(f"{name:6} {upgraded if upgraded is not None else '-':>28} {node['cordoned_s']:>13}")
    return "\n".join(lines)


def draw(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, (probes, nodes) = plt.subplots(2, 1, figsize=(9, 4.2), sharex=True,
                                           gridspec_kw={"height_ratios": [1, 2]})
    ok = [at for at, good, attempts in result["timeline"] if good and attempts == 1]
    bad = [at for at, good, _ in result["timeline"] if not good]
    probes.scatter(ok, [1] * len(ok), s=2, color="tab:green")
    probes.scatter(bad, [0] * len(bad), s=6, color="tab:red")
    probes.set_yticks([0, 0.5, 1], ["failed", "retried", "ok"])
    probes.set_ylim(-0.5, 1.5)
    retried = [at for at, good, attempts in result["timeline"] if good and attempts > 1]
    probes.scatter(retried, [0.5] * len(retried), s=6, color="tab:orange")
    probes.set_title(f"kubeha upgrade {result['from']} -> {result['to']} on the lab: {result['failed_requests']} "
                     f"failed of {result['probes']} probes of /readyz through the VIP (orange: ok on the retry)",
                     fontsize=9)
    names = list(result["nodes"])
    for row, name in enumerate(names):
        samples = result["node_samples"][name]
        held = [at for at, _, cordoned in samples if cordoned]
        nodes.scatter(held, [row] * len(held), s=6, color="tab:orange", marker="s")
        upgraded = result["nodes"][name]["kubelet_upgraded_at_s"]
        if upgraded is not None:
            nodes.scatter([upgraded], [row], s=40, color="tab:blue", marker="|")
    nodes.set_yticks(range(len(names)), names)
    nodes.set_title("orange: cordoned (drained); blue: kubelet reports the new release", fontsize=9)
    nodes.set_xlabel(f"seconds since `pulumi up` started ({result['up_seconds']:.0f} s in all)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> int:
    return bench_main("upgrade", __doc__, LabOptions(kubernetes_version=UPGRADE_FROM_VERSION), run, table, draw)


if __name__ == "__main__":
    raise SystemExit(main())
