"""firewall.mode managed: kubeha's nftables table per host, by role, checked by the real nft; its
steps come before every other step. The lab proves the rules on real hosts
(tests/lab/test_cluster_lab.py, and the failover tests run with them)."""
from __future__ import annotations

import pytest

from components.config.loading import parse_cluster_config
from components.config.model import ConfigError
from components.network.firewall import host_firewall, render_ruleset
from tests.harness import COMMAND
from tests.test_load_balancer_modes import in_mode
from tests.validators import heredoc, inner_script, nft_check

HOSTS = ("lb1", "lb2", "cp1", "cp2", "cp3", "w1", "w2")


def managed(stack_config: dict) -> dict:
    stack_config["firewall"] = {"mode": "managed"}
    return stack_config


@pytest.fixture
def firewalled(deploy, stack_config):
    return deploy(managed(stack_config))


def rules_of(stack_config: dict, host_name: str) -> dict[str, str | None]:
    """The host's rules as match -> the source it accepts (None: the host itself only)."""
    config = parse_cluster_config(stack_config)
    host = next(host for _, host in config.all_hosts_with_keys() if host.name == host_name)
    return {rule.match: rule.source for rule in host_firewall(config, host).rules}


def test_unmanaged_by_default_no_host_gets_a_firewall_step(deployment):
    assert [r.name for r in deployment.of_type(COMMAND) if r.name.startswith("firewall-")] == []


def test_managed_every_host_gets_its_table(firewalled):
    assert {r.name for r in firewalled.of_type(COMMAND) if r.name.startswith("firewall-")} == {
        f"firewall-{name}" for name in HOSTS}


def test_every_other_step_waits_for_every_hosts_firewall(firewalled):
    for step, firewall in (("cp2-prepare", "firewall-w2"), ("lb-lb1-install", "firewall-cp3"),
                           ("cluster-init", "firewall-lb2"), ("w1-kubeadm-join", "firewall-cp1")):
        assert firewalled.depends_on(step, firewall), (step, firewall)


def test_the_firewall_waits_for_the_preflight(firewalled):
    assert firewalled.depends_on("firewall-cp1", "cluster-preflight")


@pytest.mark.parametrize("name", ["lb1", "cp1", "w1"])
def test_nft_accepts_every_hosts_ruleset(firewalled, name):
    script = inner_script(firewalled.scripts()[f"firewall-{name}:create"])
    nft_check(heredoc(script, "KUBEHA_NFT"))


def test_nft_rejects_a_broken_ruleset():
    with pytest.raises(AssertionError, match="nft -c failed"):
        nft_check("table inet kubeha { chain input { tcp dport drop } }\n")


def test_a_removed_host_or_unmanaged_mode_removes_only_kubehas_table(firewalled):
    delete = inner_script(firewalled.scripts()["firewall-w1:delete"])
    assert "nft delete table inet kubeha" in delete and "flush ruleset" not in delete


def test_only_kubehas_table_is_written(firewalled):
    ruleset = heredoc(inner_script(firewalled.scripts()["firewall-cp1:create"]), "KUBEHA_NFT")
    assert "flush ruleset" not in ruleset and ruleset.count("table inet kubeha") == 3


def test_etcd_is_for_the_control_planes_and_the_kubelet_for_the_nodes(stack_config):
    rules = rules_of(managed(stack_config), "cp1")
    assert rules["tcp dport 2379-2380"] == "control_planes"
    assert rules["tcp dport 10250"] == "nodes"
    assert rules["tcp dport { 10257, 10259 }"] is None
    assert "tcp dport 6443" not in rules  # the apiserver is for everyone


def test_a_worker_guards_its_kubelet_and_the_vxlan_port_only(stack_config):
    assert rules_of(managed(stack_config), "w1") == {"tcp dport 10250": "nodes", "udp dport 8472": "nodes"}


def test_load_balancers_take_vrrp_from_each_other_only(stack_config):
    config = managed(stack_config)
    assert rules_of(config, "lb1") == {"meta l4proto 112": "vrrp_peers", "tcp dport { 8081, 9090 }": None}
    parsed = parse_cluster_config(config)
    peers = next(source for source in host_firewall(parsed, parsed.load_balancer.hosts[0]).sources
                 if source.name == "vrrp_peers")
    assert peers.v4 == ["198.51.100.11/32", "198.51.100.12/32"]


def test_static_pods_control_planes_take_vrrp_from_each_other(stack_config):
    rules = rules_of(managed(in_mode(stack_config, "static-pods")), "cp2")
    assert rules["meta l4proto 112"] == "vrrp_peers"


def test_kube_vip_needs_no_vrrp_rule(stack_config):
    assert "meta l4proto 112" not in rules_of(managed(in_mode(stack_config, "kube-vip")), "cp1")


def test_calico_guards_its_own_vxlan_port(stack_config):
    stack_config["network"] = {"plugin": "calico"}
    assert rules_of(managed(stack_config), "w1")["udp dport 4789"] == "nodes"


def test_the_pods_may_reach_the_kubelet(stack_config):
    config = parse_cluster_config(managed(stack_config))
    nodes = next(source for source in host_firewall(config, config.workers[0]).sources if source.name == "nodes")
    assert "10.244.0.0/16" in nodes.v4


def test_ipv6_hosts_go_in_the_ipv6_sets(ipv6_stack_config):
    config = parse_cluster_config(managed(ipv6_stack_config))
    nodes = next(source for source in host_firewall(config, config.workers[1]).sources if source.name == "nodes")
    assert "2001:db8::31/128" in nodes.v6 and nodes.v4 == []
    nft_check(render_ruleset(host_firewall(config, config.workers[1])))


def test_node_networks_stand_for_the_nodes_so_a_new_worker_changes_no_other_host(deploy, stack_config):
    stack_config["firewall"] = {"mode": "managed", "nodeNetworks": ["198.51.100.0/24"]}
    before = deploy(stack_config).scripts()
    stack_config["workers"].append({"name": "w3", "address": "198.51.100.33"})
    after = deploy(stack_config).scripts()
    assert {name for name in after if name.startswith("firewall-") and before.get(name) != after[name]} == {
        "firewall-w3:create", "firewall-w3:delete"}


def test_node_networks_must_hold_every_node(stack_config):
    stack_config["firewall"] = {"mode": "managed", "nodeNetworks": ["198.51.100.0/28"]}
    with pytest.raises(ConfigError, match=r"kubeha:firewall.nodeNetworks: 198.51.100.0/28 does not contain "
                                          r"controlPlanes\[0\]"):
        parse_cluster_config(stack_config)
