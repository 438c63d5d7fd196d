"""Preflight: the checks on recorded host facts, the ports each role takes, which hosts a run
checks, and that every host step waits for it. The lab proves it on real hosts
(tests/lab/test_cluster_lab.py); what the lab cannot provoke (swap, the clock, the hardware of the
machine its hosts share) is covered here."""
from __future__ import annotations

import copy
import dataclasses
import re
from typing import Any

import pytest

from components.config.loading import parse_cluster_config
from components.config.model import ConfigError
from components.gates import preflight
from components.gates.preflight import (
    CHECK_IN_PREVIEW,
    PreflightFailed,
    _PreflightProvider,
    planned_hosts,
    policy_of,
)
from components.gates.preflight_checks import HostFacts, PlannedHost, Policy, Survey, findings, table
from components.ssh.ssh_session import RemoteScriptFailed, ScriptResult
from tests.conftest import FAKE_PRIVATE_KEY
from tests.harness import COMMAND, run_program
from tests.test_load_balancer_modes import in_mode

# What templates/preflight/host-facts.sh.j2 prints on a good Debian 12 control plane.
GOOD_FACTS = """os_id=debian
os_version=12
cgroup=2
swap_kb=0
cpus=4
memory_mb=7900
hostname={name}
product_uuid=uuid-{name}
macs=aa:bb:cc:00:00:{number:02x}
listening=22
time_synchronized=yes
in_use_by_kubeha=no
epoch=1700000000.0
"""
WORKER = PlannedHost("w3", "10.0.0.33", "worker", (10250,), node_port_range=True)
CONTROL_PLANE = PlannedHost("cp4", "10.0.0.24", "control plane", (2379, 2380, 6443, 10250, 10257, 10259))


def facts(name: str, number: int = 1, offset: float = 0.0, **changes: Any) -> HostFacts:
    recorded = HostFacts.parse(GOOD_FACTS.format(name=name, number=number), clock_offset_s=offset)
    return dataclasses.replace(recorded, **changes)


NO_POLICY = Policy()


def problems(survey: Survey, checked: set[str] = frozenset({"w3", "cp4"}), policy: Policy = NO_POLICY,
             planned: tuple[PlannedHost, ...] = (WORKER, CONTROL_PLANE)) -> list[tuple[str, str]]:
    return [(finding.host, finding.check) for finding in findings(list(planned), set(checked), survey, policy)]


def test_good_hosts_have_no_finding():
    assert problems(Survey(facts={"w3": facts("w3", 1), "cp4": facts("cp4", 2)})) == []


def test_a_taken_kubelet_port_and_an_unsynchronised_clock_are_reported_together():
    survey = Survey(facts={"w3": facts("w3", 1, listening=frozenset({22, 10250})),
                           "cp4": facts("cp4", 2, time_synchronized="no")})
    assert problems(survey) == [("cp4", "time-sync"), ("w3", "ports")]


def test_an_unreachable_host_does_not_hide_the_others_findings():
    survey = Survey(facts={"cp4": facts("cp4", 2, swap_kb=2048 * 1024)}, unreachable={"w3": "no SSH session"})
    assert problems(survey) == [("w3", "ssh"), ("cp4", "swap")]


def test_swap_is_accepted_where_the_kubelet_is_told_to_run_with_it():
    survey = Survey(facts={"w3": facts("w3", 1, swap_kb=1024), "cp4": facts("cp4", 2)})
    assert problems(survey, policy=Policy(allow_swap=True)) == []


def test_cgroup_v1_is_refused_unless_the_kubelet_is_told_to_run_on_it():
    survey = Survey(facts={"w3": facts("w3", 1, cgroup=1), "cp4": facts("cp4", 2)})
    assert problems(survey) == [("w3", "cgroup")]
    assert problems(survey, policy=Policy(allow_cgroup_v1=True)) == []


def test_an_unsupported_os_is_named_with_the_supported_ones():
    survey = Survey(facts={"w3": facts("w3", 1, os_id="centos", os_version="7"), "cp4": facts("cp4", 2)})
    found = findings([WORKER, CONTROL_PLANE], {"w3", "cp4"}, survey, Policy())
    assert [(f.check, f.found) for f in found] == [("os", "centos 7")]
    assert "debian 11, 12, 13" in found[0].expected


def test_a_small_control_plane_is_refused_and_a_small_worker_is_not():
    survey = Survey(facts={"w3": facts("w3", 1, cpus=1, memory_mb=900), "cp4": facts("cp4", 2, cpus=1,
                                                                                       memory_mb=900)})
    assert problems(survey) == [("cp4", "cpu"), ("cp4", "memory")]


def test_a_node_port_in_use_on_a_new_worker_is_reported():
    survey = Survey(facts={"w3": facts("w3", 1, listening=frozenset({22, 30080})), "cp4": facts("cp4", 2)})
    assert problems(survey) == [("w3", "ports")]


def test_ports_of_a_host_kubeha_uses_already_are_its_own():
    survey = Survey(facts={"w3": facts("w3", 1, listening=frozenset({10250}), in_use_by_kubeha=True),
                           "cp4": facts("cp4", 2)})
    assert problems(survey) == []


def test_a_product_uuid_a_new_host_shares_with_a_member_is_reported_on_the_new_host_only():
    survey = Survey(facts={"w3": facts("w3", 1, product_uuid="cloned"), "cp4": facts("cp4", 2),
                           "w1": facts("w1", 3, product_uuid="cloned")})
    found = findings([WORKER, CONTROL_PLANE], {"w3"}, survey, Policy())
    assert [(f.host, f.check, f.found) for f in found] == [("w3", "unique-product-uuid", "cloned (also on w1)")]


def test_a_skipped_check_is_not_reported():
    survey = Survey(facts={"w3": facts("w3", 1, product_uuid="cloned"), "cp4": facts("cp4", 2, product_uuid="cloned")})
    assert problems(survey, policy=Policy(skip=frozenset({"unique-product-uuid"}))) == []


def test_clocks_more_than_a_second_apart_are_reported():
    survey = Survey(facts={"w3": facts("w3", 1, offset=1.4), "cp4": facts("cp4", 2, offset=-0.1)})
    assert problems(survey) == [("cp4", "clock-skew"), ("w3", "clock-skew")]


def test_a_vip_that_answers_before_the_cluster_exists_is_reported():
    survey = Survey(facts={"w3": facts("w3", 1), "cp4": facts("cp4", 2)}, vip_answering=True)
    assert problems(survey, policy=Policy(vip="10.0.0.100")) == [("(vip)", "vip-free")]


def test_the_vip_of_a_built_cluster_answers_as_it_should():
    survey = Survey(facts={"w3": facts("w3", 1), "cp4": facts("cp4", 2, in_use_by_kubeha=True)}, vip_answering=True)
    assert problems(survey, policy=Policy(vip="10.0.0.100")) == []


EXTERNAL = Policy(endpoint="api.example.org:6443")


def test_a_site_balancer_every_host_resolves_and_reaches_passes():
    survey = Survey(facts={name: facts(name, number, endpoint_resolves="yes", endpoint_answers="yes")
                           for number, name in enumerate(["w3", "cp4"])})
    assert problems(survey, policy=EXTERNAL) == []


def test_a_site_balancer_a_host_cannot_resolve_is_reported_for_that_host():
    survey = Survey(facts={"w3": facts("w3", 1, endpoint_resolves="no"),
                           "cp4": facts("cp4", 2, endpoint_resolves="yes", endpoint_answers="yes")})
    [finding] = findings([WORKER, CONTROL_PLANE], {"w3", "cp4"}, survey, EXTERNAL)
    assert (finding.host, finding.check) == ("w3", "endpoint")
    assert finding.found == "loadBalancer.endpoint api.example.org:6443: the name does not resolve here"


def test_a_site_balancer_that_does_not_answer_says_init_needs_it_forwarding():
    survey = Survey(facts={"cp4": facts("cp4", 2, endpoint_resolves="yes", endpoint_answers="no")})
    [finding] = findings([CONTROL_PLANE], {"cp4"}, survey, EXTERNAL)
    assert "to the first control plane at least, or kubeadm init cannot finish" in finding.expected


def test_the_facts_script_asks_for_the_site_balancer_only_in_external_mode(deploy, stack_config):
    assert "getent hosts" not in deploy(stack_config).named("cluster-preflight").inputs["facts_command"]
    command = deploy(in_mode(stack_config, "external")).named("cluster-preflight").inputs["facts_command"]
    assert "getent hosts api.example.org" in command and "endpoint-check api.example.org 6443" in command


def test_a_site_balancer_at_an_address_needs_no_lookup(deploy, stack_config):
    # (getent hosts looks an address up in reverse, which a lab or a site need not have.)
    command = deploy(in_mode(stack_config, "external", endpoint="198.51.100.50:6443")).named(
        "cluster-preflight").inputs["facts_command"]
    assert "getent hosts" not in command and "endpoint-check 198.51.100.50 6443" in command


def test_the_table_has_one_row_per_problem_under_a_header():
    survey = Survey(facts={"w3": facts("w3", 1, listening=frozenset({10250})), "cp4": facts("cp4", 2, cgroup=1)})
    lines = table(findings([WORKER, CONTROL_PLANE], {"w3", "cp4"}, survey, Policy())).splitlines()
    assert lines[0].split() == ["host", "check", "found", "expected"]
    assert [line.split()[:2] for line in lines[1:]] == [["cp4", "cgroup"], ["w3", "ports"]]


# The ports each role takes, from the config -------------------------------------------------

def roles(stack_config: dict) -> dict[str, PlannedHost]:
    return {host.name: host for host in planned_hosts(parse_cluster_config(stack_config))}


def test_each_role_takes_the_port_tables_ports(stack_config):
    planned = roles(stack_config)
    assert planned["lb1"].ports == (8443, 8081, 9090)
    assert planned["cp1"].ports == (2379, 2380, 6443, 10250, 10257, 10259)
    assert planned["w1"].ports == (10250,) and planned["w1"].node_port_range


def test_static_pods_put_the_proxy_ports_on_the_control_planes(stack_config):
    planned = roles(in_mode(stack_config, "static-pods"))
    assert "lb1" not in planned
    assert {8443, 8081, 9090} <= set(planned["cp1"].ports)


def test_the_kubelet_settings_decide_what_is_accepted(stack_config):
    stack_config["kubernetes"] = {"kubelet": {"failCgroupV1": False, "failSwapOn": False}}
    policy = policy_of(parse_cluster_config(stack_config))
    assert policy.allow_cgroup_v1 and policy.allow_swap


def test_an_unknown_check_to_skip_is_refused_naming_the_key(stack_config):
    stack_config["preflight"] = {"skip": ["time-sink"]}
    with pytest.raises(ConfigError, match=r"kubeha:preflight.skip: unknown check\(s\) time-sink; the checks are"):
        parse_cluster_config(stack_config)


# The provider: which hosts a run checks ------------------------------------------------------

def props(*names: str) -> dict[str, Any]:
    return {"hosts": [{"name": name, "address": f"10.0.0.{number}", "role": "worker", "ports": [10250],
                       "node_port_range": True, "target": {"address": f"10.0.0.{number}", "port": 22, "user": "root"}}
                      for number, name in enumerate(names, start=1)],
            "policy": {"skip": [], "allow_cgroup_v1": False, "allow_swap": False, "vip": None},
            "vip_port": 8443, "facts_command": "FACTS", "private_key": "KEY"}


@pytest.fixture
def read_hosts(monkeypatch) -> list[str]:
    """Hosts answer with good facts, except w3, whose kubelet port is taken; records who was read."""
    read: list[str] = []

    def run_over_ssh(target, private_key, command, *, label, stdin="", check=True) -> ScriptResult:
        name = {"10.0.0.1": "w1", "10.0.0.2": "w2", "10.0.0.3": "w3"}[target.address]
        read.append(name)
        text = GOOD_FACTS.format(name=name, number=len(name) + int(name[1:]))
        return ScriptResult(0, text.replace("listening=22", "listening=22,10250") if name == "w3" else text, "")
    monkeypatch.setattr(preflight, "run_over_ssh", run_over_ssh)
    return read


def test_a_new_stack_checks_every_host_and_fails_with_the_table(read_hosts):
    with pytest.raises(PreflightFailed, match=r"(?s)no host was changed.*w3\s+ports\s+in use: 10250"):
        _PreflightProvider().create(props("w1", "w2", "w3"))
    assert sorted(read_hosts) == ["w1", "w2", "w3"]


def test_ports_that_come_back_from_the_engine_as_floats_are_reported_as_ports(read_hosts):
    engine_props = props("w1", "w2", "w3")
    for host in engine_props["hosts"]:
        host["ports"] = [10250.0]
    with pytest.raises(PreflightFailed, match=r"in use: 10250 +free for a worker: 10250$"):
        _PreflightProvider().create(engine_props)


def test_a_stack_without_a_vip_is_checked_though_the_engine_dropped_the_empty_key(read_hosts):
    engine_props = props("w1", "w2")
    del engine_props["policy"]["vip"]  # local-nginx: None, which the engine does not pass on
    assert _PreflightProvider().create(engine_props).outs["hosts"]


def test_an_unchanged_host_list_previews_no_change():
    assert not _PreflightProvider().diff("preflight", props("w1", "w2"), props("w1", "w2")).changes


def test_an_update_checks_only_the_added_host(read_hosts):
    with pytest.raises(PreflightFailed) as failed:
        _PreflightProvider().update("preflight", props("w1", "w2"), props("w1", "w2", "w3"))
    assert "w3" in str(failed.value) and " w1 " not in str(failed.value)


def test_an_update_that_adds_no_host_connects_to_none(read_hosts):
    _PreflightProvider().update("preflight", props("w1", "w2", "w3"), props("w1", "w2"))
    assert read_hosts == []


def test_a_preview_checks_nothing_unless_told(read_hosts):
    result = _PreflightProvider().check(props("w1"), props("w1", "w3"))
    assert result.failures == [] and read_hosts == []


def test_a_preview_told_to_check_fails_on_the_added_hosts_problems(read_hosts):
    result = _PreflightProvider().check(props("w1", "w2"), {**props("w1", "w2", "w3"), CHECK_IN_PREVIEW: True})
    assert [failure.property for failure in result.failures] == ["hosts"]
    assert re.search(r"w3\s+ports\s+in use: 10250", result.failures[0].reason)
    assert sorted(read_hosts) == ["w1", "w2", "w3"] and "w1 " not in result.failures[0].reason


def test_the_preview_flag_is_never_stored():
    assert CHECK_IN_PREVIEW not in _PreflightProvider().check({}, {**props("w1"), CHECK_IN_PREVIEW: False}).inputs


def test_an_unreachable_host_is_a_finding_not_a_crash(monkeypatch):
    def unreachable(*_args, **_kwargs) -> ScriptResult:
        raise RemoteScriptFailed("10.0.0.1: no SSH session after 6 attempts: timed out")
    monkeypatch.setattr(preflight, "run_over_ssh", unreachable)
    with pytest.raises(PreflightFailed, match=r"w1\s+ssh\s+10.0.0.1: no SSH session"):
        _PreflightProvider().create(props("w1"))


# Wiring ----------------------------------------------------------------------------------------

def test_every_remote_command_waits_for_the_preflight(deployment):
    commands = deployment.of_type(COMMAND)
    assert [command.name for command in commands if not deployment.depends_on(command.name, "cluster-preflight")] == []


def test_the_preflight_waits_for_the_settings_guard(deployment):
    assert deployment.depends_on("cluster-preflight", "cluster-settings")


def test_the_preflight_keeps_the_ssh_key_secret(deployment):
    assert "private_key" in deployment.named("cluster-preflight").secret_outputs


def preflight_told_to_check(stack_config: dict, *, preview: bool) -> bool:
    deployed = run_program(copy.deepcopy(stack_config), {"sshPrivateKey": FAKE_PRIVATE_KEY}, preview=preview)
    return deployed.named("cluster-preflight").inputs[CHECK_IN_PREVIEW]


def test_with_on_preview_a_preview_checks_and_the_deploying_run_checks_in_its_steps(stack_config):
    stack_config["preflight"] = {"onPreview": True}
    assert preflight_told_to_check(stack_config, preview=True) is True
    assert preflight_told_to_check(stack_config, preview=False) is False


def test_by_default_a_preview_does_not_check(stack_config):
    assert preflight_told_to_check(stack_config, preview=True) is False
