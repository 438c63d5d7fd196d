"""The frame of a benchmark that boots one lab cluster, measures one run on it and tears it down
(bench/upgrade, bench/restore): arguments, the kubeconfig file, the JSON, the picture, the table."""
from __future__ import annotations

import argparse
import datetime
import json
import platform
from pathlib import Path
from typing import Callable

from tests.lab.cluster import ROOT, LabOptions, LabStack, boot_cluster, tear_down_cluster

Run = Callable[[LabStack, Path], dict]


def bench_main(name: str, description: str, options: LabOptions, run: Run, table: Callable[[dict], str],
               draw: Callable[[dict, Path], None]) -> int:
    """Boot the cluster, `run` it (with a kubeconfig file of its output), tear it down; write
    build/bench/<name>.json and, for a valid run, <name>-timeline.png; print the table. A run that
    did not observe what it measures says so (`valid` false) and exits 1."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "bench" / f"{name}.json")
    parser.add_argument("--picture", type=Path, default=ROOT / "build" / "bench" / f"{name}-timeline.png")
    args = parser.parse_args()
    stack = boot_cluster(options)
    try:
        kubeconfig = ROOT / "build" / "bench" / f"{name}.kubeconfig"
        kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        kubeconfig.write_text(stack.kubeconfig())
        kubeconfig.chmod(0o600)
        result = run(stack, kubeconfig)
        kubeconfig.unlink()
    finally:
        tear_down_cluster()
    result["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    result["machine"] = f"{platform.node()} {platform.machine()} {platform.release()}"
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    if result["valid"]:
        draw(result, args.picture)
    print(table(result))
    print(f"wrote {args.out}" + (f" and {args.picture.relative_to(ROOT)}" if result["valid"] else ""))
    return 0 if result["valid"] else 1
