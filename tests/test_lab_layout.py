"""The lab's one order (tests/lab/clusters.py) and how `make lab-test` splits it over two labs
(tests/lab/run.py), checked without a lab."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.lab.clusters import ORDER, TOPOLOGIES
from tests.lab.run import modules_by_lab, selected_labs

LAB_TESTS = Path(__file__).resolve().parent / "lab"


def test_every_lab_module_is_in_the_order_and_every_entry_is_a_module():
    on_disk = {path.stem for path in LAB_TESTS.glob("test_*_lab.py")}
    assert {step.module for step in ORDER} == on_disk


def test_each_module_runs_in_exactly_one_lab():
    labs = modules_by_lab()
    modules = [module for names in labs.values() for module in names]
    assert sorted(modules) == sorted(step.module for step in ORDER)


def test_a_labs_modules_keep_the_order():
    rank = {step.module: index for index, step in enumerate(ORDER)}
    for names in modules_by_lab().values():
        assert names == sorted(names, key=rank.__getitem__)


def test_the_ha_topology_is_lab_0s_the_one_make_lab_up_builds():
    assert TOPOLOGIES["ha"].lab == 0
    assert modules_by_lab()[0][0] == "test_cluster_lab"


def test_labs_selects_the_named_labs_only():
    assert selected_labs(modules_by_lab(), "1") == {1: modules_by_lab()[1]}


def test_an_empty_labs_selects_every_lab():
    assert selected_labs(modules_by_lab(), "") == modules_by_lab()


def test_a_lab_that_does_not_exist_is_refused_naming_labs():
    with pytest.raises(SystemExit, match="LABS='7'"):
        selected_labs(modules_by_lab(), "7")


def test_a_lab_that_is_not_a_number_is_refused_naming_labs():
    with pytest.raises(SystemExit, match="LABS='one'"):
        selected_labs(modules_by_lab(), "one")
