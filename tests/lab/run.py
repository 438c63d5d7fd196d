"""`make lab-test`: the lab modules in their labs, side by side (tests/lab/clusters.py).

One pytest per lab, each with its LAB_INSTANCE and the modules of the topologies that run there, in
ORDER. Lab 0's output streams live; every other lab's goes to build/labN/pytest.log and is printed
whole when its run ends. The exit status is the first failing run's (pytest's own codes: 5, no
test ran, fails too).

    python3 -m tests.lab.run [PYTEST ARGS...]   # e.g. -k readyz, -x
    LABS=1 python3 -m tests.lab.run             # only lab 1's modules (make lab-test LABS=1)

CI starts lab 1's run with `make lab-up`'s boot of lab 0, and lab 0's after the failover benchmark.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tests.lab.clusters import ORDER, TOPOLOGIES

ROOT = Path(__file__).resolve().parents[2]
PYTEST = [sys.executable, "-m", "pytest", "-m", "lab", "--durations=20"]


@dataclass
class LabRun:
    lab: int
    modules: list[str]
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    started: float = 0.0
    seconds: float = 0.0

    @property
    def log_path(self) -> Path:
        return ROOT / "build" / f"lab{self.lab or ''}" / "pytest.log"


def modules_by_lab() -> dict[int, list[str]]:
    labs: dict[int, list[str]] = {}
    for step in ORDER:
        labs.setdefault(TOPOLOGIES[step.topology].lab, []).append(step.module)
    return dict(sorted(labs.items()))


def selected_labs(labs: dict[int, list[str]], selection: str) -> dict[int, list[str]]:
    """The labs LABS names ("0", "1", "0 1"; empty: all of them)."""
    if not selection.strip():
        return labs
    names = selection.replace(",", " ").split()
    unknown = sorted(name for name in names if not name.isdigit() or int(name) not in labs)
    if unknown:
        raise SystemExit(f"LABS={selection!r}: no lab {', '.join(unknown)} (the labs: {sorted(labs)})")
    wanted = {int(name) for name in names}
    return {lab: modules for lab, modules in labs.items() if lab in wanted}


def start(run: LabRun, pytest_args: list[str]) -> None:
    paths = [f"tests/lab/{module}.py" for module in run.modules]
    environment = {**os.environ, "LAB_INSTANCE": str(run.lab)}
    output: IO[bytes] | None = None
    if run.lab != 0:
        run.log_path.parent.mkdir(parents=True, exist_ok=True)
        output = run.log = run.log_path.open("wb")
    run.started = time.monotonic()
    # Like its hosts (lab.sh's LAB_CPU_SHARES), a lab beside lab 0 runs its engine at a lower priority.
    priority = ["nice", "-n", "10"] if run.lab != 0 else []
    run.process = subprocess.Popen([*priority, *PYTEST, *pytest_args, *paths], cwd=ROOT, env=environment,
                                   stdout=output, stderr=subprocess.STDOUT if output else None,
                                   stdin=subprocess.DEVNULL)


def finish(run: LabRun) -> int:
    assert run.process is not None
    status = run.process.wait()
    run.seconds = run.seconds or time.monotonic() - run.started
    if run.log is not None:
        run.log.close()
        print(f"\n===== lab {run.lab} ({', '.join(run.modules)}): {run.log_path}", flush=True)
        sys.stdout.write(run.log_path.read_text(errors="replace"))
    return status


def main(pytest_args: list[str]) -> int:
    labs = selected_labs(modules_by_lab(), os.environ.get("LABS", ""))
    runs = [LabRun(lab, modules) for lab, modules in labs.items()]
    for run in runs:
        start(run, pytest_args)
    statuses: dict[int, int] = {}
    try:
        # Each run's own wall time: polled, as the runs end in any order.
        while any(run.process is not None and run.process.poll() is None for run in runs):
            time.sleep(1)
            for run in runs:
                if run.seconds == 0.0 and run.process is not None and run.process.poll() is not None:
                    run.seconds = time.monotonic() - run.started
        # Lab 0 streamed; the others are printed in lab order after it.
        for run in runs:
            statuses[run.lab] = finish(run)
    finally:
        for run in runs:
            if run.process is not None and run.process.poll() is None:
                # An interrupted `make lab-test`: as for Ctrl-C, each pytest tears its lab down.
                run.process.send_signal(signal.SIGINT)
                run.process.wait(timeout=300)
    print("\nlab runs side by side")
    for run in runs:
        print(f"  lab {run.lab}: exit {statuses.get(run.lab)}, {run.seconds:.0f} s, {len(run.modules)} modules")
    return next((status for status in statuses.values() if status != 0), 0)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
