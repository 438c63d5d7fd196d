"""Lab fixtures: the session's shared clusters (tests/lab/clusters.py), the modules in their one
order, and a table of where the time went (per module and per topology) at the end of the run,
also written to build/lab/timings.json."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from tests.lab.cluster import LabStack
from tests.lab.clusters import RANK, TOPOLOGY_OF, LabClusters
from tests.lab.hosts import LAB_DIR, LabHost, lab_unavailable_reason

LAB_TESTS = Path(__file__).resolve().parent


def _module_name(item: pytest.Item) -> str | None:
    """The lab module's name of a test item, or None for a test outside tests/lab."""
    path = Path(str(item.fspath))
    return path.stem if path.parent == LAB_TESTS else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Lab modules run in clusters.ORDER (file order inside a module); one it does not list is an error."""
    unlisted = sorted({name for name in map(_module_name, items) if name is not None and name not in RANK})
    if unlisted:
        raise pytest.UsageError(f"lab modules missing from tests/lab/clusters.py ORDER: {', '.join(unlisted)}")
    position = {id(item): index for index, item in enumerate(items)}

    def rank(item: pytest.Item) -> tuple[int, int]:
        name = _module_name(item)
        return (-1 if name is None else RANK[name], position[id(item)])

    items.sort(key=rank)


@dataclass
class ModuleTime:
    topology: str
    seconds: float = 0.0
    lab_switch_s: float = 0.0  # booting its cluster (and tearing down the one before) inside its tests
    passed: int = 0
    failed: int = 0
    skipped: int = 0


_CLUSTERS = LabClusters()
_MODULE_TIMES: dict[str, ModuleTime] = {}


def _switch_seconds() -> float:
    return sum(times.boot_s + times.teardown_s for times in _CLUSTERS.times.values())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    name = _module_name(item)
    if name is None:
        yield
        return
    record = _MODULE_TIMES.setdefault(name, ModuleTime(TOPOLOGY_OF[name]))
    started, switched = time.monotonic(), _switch_seconds()
    yield
    record.seconds += time.monotonic() - started
    record.lab_switch_s += _switch_seconds() - switched


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    record = _MODULE_TIMES.get(Path(report.nodeid.split("::")[0]).stem)  # lab modules only
    if record is None:
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if report.passed:
            record.passed += 1
        elif report.skipped:
            record.skipped += 1
        else:
            record.failed += 1


@pytest.fixture(scope="session")
def lab_clusters():
    """The session's lab; torn down at the end of the run."""
    reason = lab_unavailable_reason()
    if reason:
        pytest.skip(reason)
    try:
        yield _CLUSTERS
    finally:
        _CLUSTERS.close()


def _topology(request: pytest.FixtureRequest) -> str:
    """The topology clusters.ORDER gives the requesting module."""
    return TOPOLOGY_OF[request.module.__name__.rsplit(".", 1)[-1]]


@pytest.fixture(scope="module")
def lab_stack(request, lab_clusters: LabClusters) -> LabStack:
    """The cluster of the module's topology (clusters.ORDER), shared with the modules around it."""
    return lab_clusters.cluster(_topology(request))


@pytest.fixture(scope="module")
def lab_hosts(request, lab_clusters: LabClusters) -> dict[str, LabHost]:
    """The bare hosts of the module's topology (clusters.ORDER)."""
    return lab_clusters.bare_hosts(_topology(request))


@pytest.fixture(scope="module")
def kubeconfig_file(lab_stack, tmp_path_factory) -> Path:
    """The module's cluster's kubeconfig output in a root-only file."""
    path = tmp_path_factory.mktemp("kube") / "config"
    path.write_text(lab_stack.kubeconfig())
    path.chmod(0o600)
    return path


def pytest_terminal_summary(terminalreporter) -> None:
    if not _MODULE_TIMES:
        return
    write = terminalreporter.write_line
    write("")
    write("lab time per module (wall clock; boot: the lab switched to its topology inside it)")
    write(f"{'module':28} {'topology':12} {'passed':>6} {'failed':>6} {'skipped':>7} {'tests s':>8} {'boot s':>7}")
    for name, record in _MODULE_TIMES.items():
        write(f"{name:28} {record.topology:12} {record.passed:>6} {record.failed:>6} {record.skipped:>7} "
              f"{record.seconds - record.lab_switch_s:>8.0f} {record.lab_switch_s:>7.0f}")
    write("")
    write("lab time per topology")
    write(f"{'topology':12} {'boot s':>7} {'tests s':>8} {'teardown s':>10}  note")
    per_topology: dict[str, float] = {}
    for record in _MODULE_TIMES.values():
        per_topology[record.topology] = per_topology.get(record.topology, 0.0) + record.seconds - record.lab_switch_s
    for topology, times in _CLUSTERS.times.items():
        note = "adopted the running cluster (make lab-up's)" if times.adopted else ""
        write(f"{topology:12} {times.boot_s:>7.0f} {per_topology.get(topology, 0.0):>8.0f} {times.teardown_s:>10.0f}  {note}")
    total = sum(record.seconds for record in _MODULE_TIMES.values())
    write(f"{'all':12} {'':>7} {total:>8.0f}  (every module, boots included)")
    LAB_DIR.mkdir(parents=True, exist_ok=True)
    (LAB_DIR / "timings.json").write_text(json.dumps({
        "modules": {name: asdict(record) for name, record in _MODULE_TIMES.items()},
        "topologies": {name: asdict(times) for name, times in _CLUSTERS.times.items()}}, indent=1) + "\n")
