"""The conformance suite's smoke subset on the `ha` cluster, after its upgrade to the lab's release
and with kubeha's managed firewall on: about 20 [Conformance] tests of the release's own e2e.test
(tests/lab/conformance/suite.py SMOKE), run as `make conformance` runs the whole suite, on the
suite's images made here. The whole suite: `make conformance` (docs/conformance.md).
"""
from __future__ import annotations

import pytest

from tests.lab.cluster import ROOT
from tests.lab.conformance.suite import SMOKE, SuiteRun, any_of, load_images, run_suite, same_test

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def smoke_run(lab_stack, kubeconfig_file) -> SuiteRun:
    load_images([host for name, host in lab_stack.hosts.items() if not name.startswith("lb")])
    out_dir = ROOT / "build" / "conformance-smoke"
    out_dir.mkdir(parents=True, exist_ok=True)
    run = run_suite(kubeconfig_file, out_dir, focus=any_of(SMOKE), procs=4, serial=False)
    print(run.table())
    return run


def test_every_smoke_test_ran_and_passed(smoke_run):
    [phase] = smoke_run.phases
    assert smoke_run.failed == [], smoke_run.table()
    # Every name matched a test, and none skipped itself.
    assert len(phase.passed) == len(SMOKE), smoke_run.table()
    assert all(any(same_test(name, passed) for passed in phase.passed) for name in SMOKE), smoke_run.table()
    assert phase.exit_code == 0
