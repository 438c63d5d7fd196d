"""Restore benchmark on the lab: how long a cluster that lost etcd's quorum takes to serve again
with `etcd.restore`, and what a backup costs.

    python3 -m tests.lab.bench.restore      (make bench-restore; needs root)

Boots the lab's static-pods cluster (cp1-cp3 holding the VIP, w1), writes CONFIGMAPS ConfigMaps,
takes a backup by hand on cp1 (`systemctl start kubeha-etcd-backup.service`, timed), powers cp2
and cp3 off (the API stops answering), makes the documented change (both marked unreachable,
etcd.restore from cp1's backup) and runs `pulumi up`, while a client probes
https://VIP:8443/readyz 20 times a second (fresh TLS connection each, no retry, bounded count and
time). Recovery time: from the start of `pulumi up` to the first probe answered `ok` with every
probe after it `ok` too. Prints a table, writes build/bench/restore.json and
build/bench/restore-timeline.png. A run whose `up` failed, whose probe never saw the cluster
serve, or whose ConfigMaps did not all come back is reported as invalid, never as a result.
"""
from __future__ import annotations

import time
from pathlib import Path

from tests.lab.bench.one_cluster import bench_main
from tests.lab.cluster import PORT, VIP, LabOptions, LabStack
from tests.lab.probe import Prober
from tests.lab.quorum_loss import (
    DIRECTORY,
    backup_by_hand,
    configmaps_back,
    lose_quorum,
    set_restore,
    write_configmaps,
)

CONFIGMAPS = 200
MAX_SECONDS = 900  # the probe stops by itself after this


def recovered_at(timeline: list[tuple[float, bool]]) -> float | None:
    """The time of the first ok probe after which every probe was ok; None if the run ended failing."""
    recovered = None
    for at, ok in timeline:
        if ok and recovered is None:
            recovered = at
        elif not ok:
            recovered = None
    return recovered


def run(stack: LabStack, kubeconfig: Path) -> dict:
    write_configmaps(kubeconfig, CONFIGMAPS, kubeconfig.parent / "restore-configmaps.yaml")
    started = time.monotonic()
    backup = backup_by_hand(stack)
    backup_seconds = round(time.monotonic() - started, 1)
    backup_bytes = int(stack.hosts["cp1"].run(f"stat -c %s {backup}").stdout)
    lose_quorum(stack, kubeconfig)
    set_restore(stack, backup)
    prober = Prober(VIP, PORT, stack.cluster_ca, interval=0.05, timeout=1, max_seconds=MAX_SECONDS,
                    max_probes=MAX_SECONDS * 20).start()
    up = stack.pulumi("up", "--yes", "--skip-preview", check=False, timeout=MAX_SECONDS)
    up_seconds = round(prober.now(), 1)
    time.sleep(2)
    timeline = [(result.at, result.ok) for result in prober.stop()]
    recovered = recovered_at(timeline)
    back = configmaps_back(kubeconfig) if up.returncode == 0 else 0
    problems = [problem for problem, found in (("pulumi up failed", up.returncode != 0),
                                               ("no probe ran", not timeline),
                                               ("the probe never saw the cluster serve again", recovered is None),
                                               (f"{back} of {CONFIGMAPS} ConfigMaps came back", back != CONFIGMAPS))
                if found]
    return {
        "valid": not problems, "invalid_because": "; ".join(problems) or None,
        "backup_seconds": backup_seconds, "backup_bytes": backup_bytes, "backup_directory": DIRECTORY,
        "configmaps": CONFIGMAPS, "configmaps_back": back,
        "up_seconds": up_seconds, "recovered_after_s": recovered, "probe_hz": 20, "probes": len(timeline),
        "failed_probes": sum(not ok for _, ok in timeline), "timeline": timeline,
        "up_tail": up.stdout[-3000:] if up.returncode else "",
    }


def table(result: dict) -> str:
    if not result["valid"]:
        return f"invalid run: {result['invalid_because']}\n{result['up_tail']}"
    return "\n".join([
        f"{'measure':44} {'value':>12}",
        f"{'backup by hand on cp1 (s)':44} {result['backup_seconds']:>12}",
        f"{'backup file (MB)':44} {result['backup_bytes'] / 1e6:>12.2f}",
        f"{'pulumi up with etcd.restore (s)':44} {result['up_seconds']:>12}",
        f"{'recovery: up start to /readyz ok via VIP (s)':44} {result['recovered_after_s']:>12}",
        f"{'ConfigMaps back':44} {result['configmaps_back']:>8} / {result['configmaps']}",
        f"{'probes (20 Hz, no retry)':44} {result['probes']:>12}",
    ])


def draw(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axis = plt.subplots(figsize=(9, 1.8))
    ok = [at for at, good in result["timeline"] if good]
    bad = [at for at, good in result["timeline"] if not good]
    axis.scatter(bad, [0] * len(bad), s=3, color="tab:red")
    axis.scatter(ok, [1] * len(ok), s=3, color="tab:green")
    axis.axvline(result["recovered_after_s"], color="tab:blue", linewidth=1)
    axis.set_yticks([0, 1], ["failed", "ok"])
    axis.set_ylim(-0.5, 1.5)
    axis.set_title(f"etcd.restore on the lab: /readyz through the VIP serves again {result['recovered_after_s']:.0f} s "
                   f"after `pulumi up` started ({result['up_seconds']:.0f} s in all)", fontsize=9)
    axis.set_xlabel("seconds since `pulumi up` started")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> int:
    return bench_main("restore", __doc__, LabOptions(mode="static-pods", workers=("w1",)), run, table, draw)


if __name__ == "__main__":
    raise SystemExit(main())
