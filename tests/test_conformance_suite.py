"""How `make conformance` and the CI smoke subset run the suite (tests/lab/conformance/suite.py),
checked without a lab: the skip list, the regexes handed to ginkgo, and the JUnit counting."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from tests.lab.cluster import KUBERNETES_VERSION
from tests.lab.conformance.suite import SMOKE, PhaseResult, any_of, conformance_results, go_regexp_literal, skip_list

CACHE_DIR = Path(os.environ.get("CACHE_DIR", "/var/cache/kubeha"))
CONFORMANCE_LIST = (CACHE_DIR / "go" / "mod" / "k8s.io" / f"kubernetes@v{KUBERNETES_VERSION}" / "test" / "conformance"
                    / "testdata" / "conformance.yaml")
JUNIT = """<?xml version="1.0" encoding="UTF-8"?>
<testsuites><testsuite name="Kubernetes e2e suite">
  <testcase name="[It] [sig-node] Pods should be submitted and removed [NodeConformance] [Conformance]" status="passed"/>
  <testcase name="[It] [sig-network] DNS should provide DNS for services  [Conformance]" status="failed">
    <failure type="failed">timed out</failure></testcase>
  <testcase name="[It] [sig-apps] Job should run a job [Conformance]" status="skipped">
    <skipped message="skipped - Only supported for providers [gce]"/></testcase>
  <testcase name="[It] [sig-storage] CSI mock volume should mount [Conformance]" status="skipped">
    <skipped message="skipped"/></testcase>
  <testcase name="[It] [sig-node] a test outside conformance" status="passed"/>
</testsuite></testsuites>
"""


@pytest.fixture
def phase(tmp_path: Path) -> PhaseResult:
    junit = tmp_path / "junit_01.xml"
    junit.write_text(JUNIT)
    counted = PhaseResult("parallel")
    conformance_results(junit, counted)
    return counted


def test_a_passed_conformance_test_counts_as_passed(phase):
    assert phase.passed == ["[sig-node] Pods should be submitted and removed [NodeConformance] [Conformance]"]


def test_a_failed_conformance_test_counts_as_failed(phase):
    assert phase.failed == ["[sig-network] DNS should provide DNS for services  [Conformance]"]


def test_only_a_test_that_skipped_itself_counts_as_skipped_not_one_filtered_out(phase):
    assert phase.skipped == ["[sig-apps] Job should run a job [Conformance]"]


def test_a_literal_name_matches_itself_and_nothing_else():
    name = "[sig-network] Services should serve multiport endpoints from pods [Conformance]"
    pattern = re.compile(go_regexp_literal(name))
    assert pattern.fullmatch(name)
    assert not pattern.search(name.replace("[Conformance]", "xConformancex"))


def test_a_literal_name_matches_the_same_name_with_two_spaces_before_a_tag():
    name = "[sig-network] DNS should provide DNS for services [Conformance]"
    assert re.fullmatch(go_regexp_literal(name), name.replace(" [Conformance]", "  [Conformance]"))


def test_the_literal_escapes_only_regexp_metacharacters():
    assert go_regexp_literal("a-b:c/d") == "a-b:c/d"
    assert go_regexp_literal("[x](y)") == r"\[x\]\(y\)"


def test_any_of_matches_each_smoke_name():
    pattern = re.compile(any_of(SMOKE))
    assert all(pattern.fullmatch(name) for name in SMOKE)


def test_every_skip_list_entry_says_why():
    assert all(entry.test.endswith("[Conformance]") and len(entry.why) > 20 for entry in skip_list())


def test_every_smoke_and_skip_list_name_is_a_conformance_test_of_the_release():
    """Against the release's own list (test/conformance/testdata/conformance.yaml in the module
    `make setup` downloads to build kubeadm)."""
    listed = yaml.safe_load(CONFORMANCE_LIST.read_text())
    names = {" ".join(entry["codename"].split()) for entry in listed}
    wanted = [*SMOKE, *(entry.test for entry in skip_list())]
    assert [name for name in wanted if " ".join(name.split()) not in names] == []


def test_the_smoke_subset_is_about_twenty_distinct_parallel_tests_none_skip_listed():
    skipped = {entry.test for entry in skip_list()}
    assert 18 <= len(set(SMOKE)) == len(SMOKE) <= 22
    assert not [name for name in SMOKE if "[Serial]" in name or name in skipped]
