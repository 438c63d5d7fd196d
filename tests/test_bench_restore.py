"""The restore benchmark's recovery time, on probe timelines written by hand (no lab)."""
from __future__ import annotations

from tests.lab.bench.restore import recovered_at


def test_recovery_is_the_first_ok_after_which_every_probe_is_ok():
    assert recovered_at([(0.0, False), (1.0, True), (2.0, False), (3.0, True), (4.0, True)]) == 3.0


def test_a_run_that_ends_failing_never_recovered():
    assert recovered_at([(0.0, True), (1.0, False)]) is None


def test_no_probe_no_recovery():
    assert recovered_at([]) is None
