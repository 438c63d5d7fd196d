"""`make conformance`: the Kubernetes conformance suite against the running lab cluster.

The cluster is the one `make lab-up` built (LAB_INSTANCE=N: lab N's). The suite's images go into
every node's containerd first; then e2e.test runs through ginkgo, the tests not marked [Serial] in
parallel (--procs), then the [Serial] ones alone, skipping the skip list (skip-list.yaml). The
JUnit reports, logs and a summary (summary.txt, summary.json) land in build/conformance/.

usage: python3 -m tests.lab.conformance.run [--focus REGEX] [--skip REGEX] [--procs N] [--smoke]
"""
from __future__ import annotations

import argparse
import shutil
import sys

from tests.lab.cluster import ROOT, LabStack
from tests.lab.conformance.suite import CONFORMANCE, SMOKE, any_of, load_images, run_suite
from tests.lab.hosts import LAB_DIR, running_hosts

OUT_DIR = ROOT / "build" / "conformance"


def lab_cluster() -> LabStack:
    """The running lab stack (make lab-up), or a clear refusal."""
    hosts_file = LAB_DIR / "hosts"
    if not (LAB_DIR / "env").exists() or not hosts_file.exists():
        raise SystemExit(f"no lab cluster runs ({LAB_DIR}): `make lab-up` first")
    return LabStack(running_hosts())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--focus", default="", help=f"run only the tests matching this regex (default {CONFORMANCE})")
    parser.add_argument("--skip", default="", help="also skip the tests matching this regex")
    parser.add_argument("--procs", type=int, default=4, help="ginkgo processes for the parallel phase")
    parser.add_argument("--smoke", action="store_true", help="the smoke subset only (suite.SMOKE; none is [Serial])")
    args = parser.parse_args(argv)
    stack = lab_cluster()
    if OUT_DIR.exists():
        shutil.rmtree(OUT_DIR)
    OUT_DIR.mkdir(parents=True)
    kubeconfig = OUT_DIR / "kubeconfig"
    kubeconfig.touch(mode=0o600)
    kubeconfig.write_text(stack.kubeconfig())
    nodes = [host for name, host in stack.hosts.items() if not name.startswith("lb")]
    print(f"loading the suite's images into {', '.join(host.name for host in nodes)}", flush=True)
    load_images(nodes)
    focus = any_of(SMOKE) if args.smoke else args.focus or CONFORMANCE
    print(f"running e2e.test --focus={focus!r} --skip={args.skip!r} (logs: {OUT_DIR}/*.log)", flush=True)
    run = run_suite(kubeconfig, OUT_DIR, focus=focus, skip=args.skip, procs=args.procs, serial=not args.smoke)
    kubeconfig.unlink()  # the admin credential does not stay behind in build/
    print(run.table())
    return 0 if run.ok() else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
