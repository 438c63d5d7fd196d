"""Restore benchmark on the lab: how long a cluster that lost etcd's quorum takes to serve again
with `etcd.restore`, and what a backup costs.

    python3 -m tests.lab.bench.restore      (make bench-restore; needs root)

Boots the lab's static-pods cluster (cp1-cp3 holding the VIP, w1), writes CONFIGMAPS ConfigMaps,
takes a backup by hand on cp1 (`systemctl start kubeha-etcd-backup.service`, timed), powers cp2
and cp3 off (the API stops answering), makes the documented change (both marked unreachable,
etcd.restore from cp1's backup) and runs `pulumi up`, while a client probes
https://VIP:8443/readyz 20 times a second (fresh TLS connection each, no retry, bounded count and
time). Then every control plane is lost: lb1 becomes the copy host (etcd.backup.copyTo), a backup is
taken by hand on cp1 and copied (timed), cp1 is powered off, and the documented change for a
restore onto new hosts (cp6-cp8, from lb1's copy) runs under the same probe.
Recovery time: from the start of `pulumi up` to the first probe answered `ok` with every
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
    backup_copied,
    configmaps_back,
    copy_backups_to_lb1,
    lose_every_control_plane,
    lose_quorum,
    set_restore,
    set_restore_onto_new_hosts,
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


def restore_under_probe(stack: LabStack, kubeconfig: Path, configmaps: int) -> dict:
    """`pulumi up` (etcd.restore set) while the probe runs; what it saw, and what makes the sample
    invalid (`problems`)."""
    prober = Prober(VIP, PORT, stack.cluster_ca, interval=0.05, timeout=1, max_seconds=MAX_SECONDS,
                    max_probes=MAX_SECONDS * 20).start()
    up = stack.pulumi("up", "--yes", "--skip-preview", check=False, timeout=MAX_SECONDS)
    up_seconds = round(prober.now(), 1)
    time.sleep(2)
    timeline = [(result.at, result.ok) for result in prober.stop()]
    recovered = recovered_at(timeline)
    back = configmaps_back(fresh_kubeconfig(stack, kubeconfig)) if up.returncode == 0 else 0
    problems = [problem for problem, found in (("pulumi up failed", up.returncode != 0),
                                               ("no probe ran", not timeline),
                                               ("the probe never saw the cluster serve again", recovered is None),
                                               (f"{back} of {configmaps} ConfigMaps came back", back != configmaps))
                if found]
    return {"problems": problems, "configmaps_back": back, "up_seconds": up_seconds, "recovered_after_s": recovered,
            "probes": len(timeline), "failed_probes": sum(not ok for _, ok in timeline), "timeline": timeline,
            "up_tail": up.stdout[-3000:] if up.returncode else ""}


def fresh_kubeconfig(stack: LabStack, kubeconfig: Path) -> Path:
    """The kubeconfig output as it is now (the file rewritten)."""
    kubeconfig.write_text(stack.kubeconfig())
    return kubeconfig


def run(stack: LabStack, kubeconfig: Path) -> dict:
    # Quorum lost: cp2 and cp3 powered off, restored on cp1 from its own backup.
    write_configmaps(kubeconfig, CONFIGMAPS, kubeconfig.parent / "restore-configmaps.yaml")
    started = time.monotonic()
    backup = backup_by_hand(stack)
    backup_seconds = round(time.monotonic() - started, 1)
    backup_bytes = int(stack.hosts["cp1"].run(f"stat -c %s {backup}").stdout)
    lose_quorum(stack, kubeconfig)
    set_restore(stack, backup)
    quorum_lost = restore_under_probe(stack, kubeconfig, CONFIGMAPS)
    # Every control plane lost: cp1 powered off too, restored onto cp6-cp8 from lb1's copy.
    all_lost: dict = {"problems": ["not run: the quorum-lost restore failed"]}
    copy_seconds = None
    if not quorum_lost["problems"]:
        copy_backups_to_lb1(stack, kubeconfig.parent / "copy-key")
        started = time.monotonic()
        copied = backup_copied(stack, "cp1")
        copy_seconds = round(time.monotonic() - started, 1)
        lose_every_control_plane(stack, fresh_kubeconfig(stack, kubeconfig))
        set_restore_onto_new_hosts(stack, copied)
        all_lost = restore_under_probe(stack, kubeconfig, CONFIGMAPS)
    problems = [f"quorum lost: {problem}" for problem in quorum_lost["problems"]] + \
               [f"every control plane lost: {problem}" for problem in all_lost["problems"]]
    return {
        "valid": not problems, "invalid_because": "; ".join(problems) or None,
        "backup_seconds": backup_seconds, "backup_bytes": backup_bytes, "backup_directory": DIRECTORY,
        "backup_and_copy_seconds": copy_seconds, "configmaps": CONFIGMAPS, "probe_hz": 20,
        "quorum_lost": quorum_lost, "every_control_plane_lost": all_lost,
    }


def table(result: dict) -> str:
    if not result["valid"]:
        tails = [case.get("up_tail", "") for case in (result["quorum_lost"], result["every_control_plane_lost"])]
        return f"invalid run: {result['invalid_because']}\n" + "\n".join(tail for tail in tails if tail)
    quorum, every = result["quorum_lost"], result["every_control_plane_lost"]
    return "\n".join([
        f"{'measure':52} {'quorum lost':>12} {'all lost':>10}",
        f"{'backup by hand on cp1 (s)':52} {result['backup_seconds']:>12}",
        f"{'backup by hand on cp1, copied to lb1 (s)':52} {'':>12} {result['backup_and_copy_seconds']:>10}",
        f"{'backup file (MB)':52} {result['backup_bytes'] / 1e6:>12.2f}",
        f"{'pulumi up with etcd.restore (s)':52} {quorum['up_seconds']:>12} {every['up_seconds']:>10}",
        f"{'recovery: up start to /readyz ok via VIP (s)':52} {quorum['recovered_after_s']:>12} "
        f"{every['recovered_after_s']:>10}",
        f"{'ConfigMaps back (of ' + str(result['configmaps']) + ')':52} {quorum['configmaps_back']:>12} "
        f"{every['configmaps_back']:>10}",
        f"{'probes (20 Hz, no retry)':52} {quorum['probes']:>12} {every['probes']:>10}",
    ])


def draw(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cases = (("quorum lost (cp2, cp3): restored on cp1", result["quorum_lost"]),
             ("every control plane lost: restored onto new cp6-cp8 from lb1's copy", result["every_control_plane_lost"]))
    figure, axes = plt.subplots(2, 1, figsize=(9, 3.4))
    for axis, (title, case) in zip(axes, cases, strict=True):
        ok = [at for at, good in case["timeline"] if good]
        bad = [at for at, good in case["timeline"] if not good]
        axis.scatter(bad, [0] * len(bad), s=3, color="tab:red")
        axis.scatter(ok, [1] * len(ok), s=3, color="tab:green")
        axis.axvline(case["recovered_after_s"], color="tab:blue", linewidth=1)
        axis.set_yticks([0, 1], ["failed", "ok"])
        axis.set_ylim(-0.5, 1.5)
        axis.set_title(f"{title}: /readyz through the VIP serves again {case['recovered_after_s']:.0f} s after "
                       f"`pulumi up` started ({case['up_seconds']:.0f} s in all)", fontsize=8)
    axes[-1].set_xlabel("seconds since `pulumi up` started")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> int:
    return bench_main("restore", __doc__, LabOptions(mode="static-pods", workers=("w1",)), run, table, draw)


if __name__ == "__main__":
    raise SystemExit(main())
