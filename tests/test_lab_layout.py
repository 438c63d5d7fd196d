"""The lab's one order (tests/lab/clusters.py) and how `make lab-test` splits it over two labs
(tests/lab/run.py), checked without a lab."""
from __future__ import annotations

from pathlib import Path

from tests.lab.clusters import ORDER, TOPOLOGIES
from tests.lab.run import modules_by_lab

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
